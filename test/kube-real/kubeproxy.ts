// A kube-proxy stand-in, as a client of the real API server with kube-proxy's identity
// (system:kube-proxy, bound to system:node-proxier by the bootstrap RBAC): for every NodePort
// service it keeps, on every node, a forwarder from NODE_IP:nodePort to a ready pod the service
// selects (podIP:targetPort, named target ports resolved from the pod's container ports). The
// forwarding itself is a callback (the bed runs socat inside the node), so what `sideload expose`
// prints can be connected to for real. (No endpoints controller runs here; it reads pods itself.)
import {inform} from './informer.js'
import type {KubeletNode} from './kubelet.js'
import type {RealApiServer} from './apiserver.js'
import {type JsonObject, Rest, RestError, arr, corePath, obj, str} from './rest.js'

export interface ForwardRule {
  nodePort: number
  protocol: 'TCP' | 'UDP'
  targetIP: string
  targetPort: number
}

export interface Forwarder {
  open(node: KubeletNode, rule: ForwardRule): Promise<void>
  close(node: KubeletNode, rule: ForwardRule): Promise<void>
}

export interface KubeProxy {
  syncNow(): Promise<void>
  /** the rules in force, per node name */
  rules(): Map<string, ForwardRule[]>
  stop(): Promise<void>
}

const selects = (selector: [string, string][], pod: JsonObject): boolean => {
  const labels = obj(obj(pod.metadata).labels)
  return selector.every(([k, v]) => labels[k] === v)
}

/** The rules every node should have, from the services and pods as last seen. */
export function desiredRules(services: JsonObject[], pods: JsonObject[]): ForwardRule[] {
  const rules: ForwardRule[] = []
  for (const svc of services) {
    const spec = obj(svc.spec)
    if (spec.type !== 'NodePort' && spec.type !== 'LoadBalancer') continue
    const selector = Object.entries(obj(spec.selector)).map(([k, v]): [string, string] => [k, str(v)])
    if (selector.length === 0) continue
    const ns = str(obj(svc.metadata).namespace)
    const pod = pods.find(p => {
      const st = obj(p.status)
      return str(obj(p.metadata).namespace) === ns && obj(p.metadata).deletionTimestamp === undefined && selects(selector, p) &&
        st.phase === 'Running' && typeof st.podIP === 'string' && arr(st.conditions).some(c => c.type === 'Ready' && c.status === 'True')
    })
    if (!pod) continue
    for (const port of arr(spec.ports)) {
      if (typeof port.nodePort !== 'number') continue
      let target = port.targetPort ?? port.port
      if (typeof target === 'string') {
        const named = arr(obj(pod.spec).containers).flatMap(c => arr(c.ports)).find(p => p.name === target)
        if (!named) continue
        target = named.containerPort ?? null
      }
      if (typeof target !== 'number') continue
      rules.push({nodePort: port.nodePort, protocol: port.protocol === 'UDP' ? 'UDP' : 'TCP',
        targetIP: str(obj(pod.status).podIP), targetPort: target})
    }
  }
  return rules
}

const ruleKey = (r: ForwardRule): string => `${r.protocol}/${r.nodePort}`
const sameRule = (a: ForwardRule, b: ForwardRule): boolean => a.targetIP === b.targetIP && a.targetPort === b.targetPort

/**
 * The one right the stand-in needs beyond system:node-proxier: reading pods (a real kube-proxy reads
 * EndpointSlices, which the endpointslice controller writes from the pods; no controller runs here).
 * Granted by the admin, as a ClusterRole bound to user system:kube-proxy; idempotent.
 */
async function grantPodReads(server: RealApiServer): Promise<void> {
  const admin = new Rest({url: server.url, caPath: server.caPath, certPath: server.adminCert.certPath, keyPath: server.adminCert.keyPath})
  const name = 'sideload-test:kube-proxy-stand-in'
  const rbac = '/apis/rbac.authorization.k8s.io/v1'
  const ignoreExists = (err: unknown): void => {
    if (!(err instanceof RestError && err.status === 409)) throw err
  }
  try {
    await admin.create(`${rbac}/clusterroles`, {apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: {name},
      rules: [{apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch']}]}).catch(ignoreExists)
    await admin.create(`${rbac}/clusterrolebindings`, {apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: {name},
      roleRef: {apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name},
      subjects: [{apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'system:kube-proxy'}]}).catch(ignoreExists)
  } finally {
    admin.close()
  }
}

export async function startKubeProxy(opts: {server: RealApiServer; nodes: KubeletNode[]; forwarder: Forwarder; syncMs?: number}): Promise<KubeProxy> {
  // system:node-proxier (bootstrap RBAC) does not include pods: without this the pod informer never syncs
  await grantPodReads(opts.server)
  const cert = opts.server.clientCert('system:kube-proxy')
  const rest = new Rest({url: opts.server.url, caPath: opts.server.caPath, certPath: cert.certPath, keyPath: cert.keyPath})
  const current = new Map<string, Map<string, ForwardRule>>(opts.nodes.map(n => [n.name, new Map()]))
  let chain: Promise<void> = Promise.resolve()
  let stopped = false

  const sync = (): Promise<void> => {
    chain = chain.then(syncOnce, syncOnce).catch(() => undefined)
    return chain
  }
  const services = inform(rest, corePath('services'), {}, () => void sync())
  const pods = inform(rest, corePath('pods'), {}, () => void sync())
  async function syncOnce(): Promise<void> {
    const want = stopped ? [] : desiredRules(services.items(), pods.items())
    for (const node of opts.nodes) {
      const have = current.get(node.name) ?? new Map<string, ForwardRule>()
      current.set(node.name, have)
      const wanted = new Map(want.map(r => [ruleKey(r), r]))
      for (const [key, rule] of [...have]) {
        const w = wanted.get(key)
        if (!w || !sameRule(w, rule)) {
          await opts.forwarder.close(node, rule).catch(() => undefined)
          have.delete(key)
        }
      }
      for (const [key, rule] of wanted) {
        if (have.has(key)) continue
        await opts.forwarder.open(node, rule)
        have.set(key, rule)
      }
    }
  }
  await Promise.all([services.synced, pods.synced])
  const timer = setInterval(() => void sync(), opts.syncMs ?? 1000)
  await sync()

  return {
    syncNow: sync,
    rules: () => new Map([...current].map(([n, m]) => [n, [...m.values()]])),
    async stop() {
      clearInterval(timer)
      services.stop()
      pods.stop()
      stopped = true
      await sync()
      rest.close()
    },
  }
}
