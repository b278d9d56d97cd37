// A kube-proxy stand-in: for every NodePort service it keeps, on every node, a forwarder from
// NODE_IP:nodePort to a ready pod the service selects (podIP:targetPort, named target ports resolved
// from the pod's container ports). The forwarding itself is a callback (the bed tests run socat
// inside the node), so what `sideload expose` prints can be connected to for real.
import type {Json, JsonObject} from './patch.js'
import type {KubeletNode} from './kubelet.js'
import type {Store} from './store.js'

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

export interface KubeProxyOptions {
  store: Store
  nodes: KubeletNode[]
  forwarder: Forwarder
  /** periodic full re-sync in ms (changes to services and pods also trigger one) */
  syncMs?: number
}

export interface KubeProxy {
  syncNow(): Promise<void>
  /** the rules in force, per node name */
  rules(): Map<string, ForwardRule[]>
  stop(): Promise<void>
}

function obj(v: Json | undefined): JsonObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? v : {}
}
function arr(v: Json | undefined): JsonObject[] {
  return Array.isArray(v) ? v.map(obj) : []
}

/** The rules every node should have right now. */
export function desiredRules(store: Store): ForwardRule[] {
  const rules: ForwardRule[] = []
  for (const svc of store.list('services', {labels: [], fields: []}).items) {
    const spec = obj(svc.spec)
    if (spec.type !== 'NodePort' && spec.type !== 'LoadBalancer') continue
    const selector = Object.entries(obj(spec.selector))
    if (selector.length === 0) continue
    const ns = String(obj(svc.metadata).namespace)
    const ready = store.list('pods', {namespace: ns, labels: selector.map(([key, v]) => ({key, op: 'eq', values: [String(v)]})), fields: []})
      .items.filter(p => {
        const st = obj(p.status)
        return st.phase === 'Running' && typeof st.podIP === 'string' &&
          arr(st.conditions).some(c => c.type === 'Ready' && c.status === 'True')
      })
    const pod = ready[0]
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
        targetIP: String(obj(pod.status).podIP), targetPort: target})
    }
  }
  return rules
}

const ruleKey = (r: ForwardRule): string => `${r.protocol}/${r.nodePort}`
const sameRule = (a: ForwardRule, b: ForwardRule): boolean => a.targetIP === b.targetIP && a.targetPort === b.targetPort

export function startKubeProxy(opts: KubeProxyOptions): KubeProxy {
  const current = new Map<string, Map<string, ForwardRule>>(opts.nodes.map(n => [n.name, new Map()]))
  let chain: Promise<void> = Promise.resolve()
  let stopped = false

  const syncOnce = async (): Promise<void> => {
    const want = stopped ? [] : desiredRules(opts.store)
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
  const sync = (): Promise<void> => {
    chain = chain.then(syncOnce, syncOnce).catch(() => undefined)
    return chain
  }
  const cancels = ['services', 'pods'].map(resource =>
    opts.store.watch(resource, {labels: [], fields: []}, opts.store.resourceVersion, () => void sync()))
  const timer = setInterval(() => void sync(), opts.syncMs ?? 1000)
  void sync()

  return {
    syncNow: sync,
    rules: () => new Map([...current].map(([n, m]) => [n, [...m.values()]])),
    async stop() {
      clearInterval(timer)
      for (const c of cancels) c()
      stopped = true
      await sync()
    },
  }
}
