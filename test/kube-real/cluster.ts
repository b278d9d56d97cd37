// A cluster for the tests: the real API server (etcd + kube-apiserver), a kubelet stand-in per bed
// node with that node's identity, optionally a kube-proxy stand-in and containers really run on the
// nodes. The test itself acts as the admin (creates namespaces and pods) and, when asked, as the
// scheduler (`bindPod`); sideload gets the kubeconfig of manifests/rbac.yaml's service account.
import type {Bed} from '../bed/bed.js'
import {type RealApiServer, startRealApiServer} from './apiserver.js'
import {bedForwarder, bedHasImage, bedRuntime, kubeletNodes} from './bed-wiring.js'
import {type Kubelet, bindPod, startKubelet} from './kubelet.js'
import {type KubeProxy, startKubeProxy} from './kubeproxy.js'
import {type JsonObject, Rest, RestError, arr, corePath, obj, str} from './rest.js'

export interface ClusterOptions {
  /** run pod containers on the nodes (`ctr run --net-host`) instead of only reporting them */
  runContainers?: boolean
  /** forward node ports to pods (kube-proxy stand-in; implies nothing about runContainers) */
  kubeProxy?: boolean
  resyncMs?: number
  pullBackoffMs?: number
  /** the real kube-scheduler binds new pods (default: only `bindPod`, when a test asks) */
  scheduler?: boolean
  /**
   * the real kube-controller-manager runs the controllers rollouts need (apiserver.ts CONTROLLERS:
   * deployment, replicaset, statefulset, daemonset, garbagecollector, resourcequota; never node
   * lifecycle) — with `scheduler` for the pods they create (default: no controllers)
   */
  controllers?: boolean
  /** the API server's folder name under /run/sideload-kube (default: unique) */
  serverName?: string
  /** how long a container takes to start once its image is there (a real kubelet: seconds; default 0) */
  containerStartMs?: number
}

export interface PodOptions {
  policy?: string
  init?: boolean
  labels?: Record<string, string>
  command?: string[]
  ports?: JsonObject[]
}

export interface Cluster {
  server: RealApiServer
  /** the admin (system:masters), for setting scenes */
  admin: Rest
  kubelet: Kubelet
  proxy?: KubeProxy
  /** kubeconfig of ServiceAccount sideload/sideload, with exactly manifests/rbac.yaml's rights */
  kubeconfig: string
  createNamespace(ns: string): Promise<void>
  createPod(ns: string, name: string, node: string | undefined, image: string, opts?: PodOptions): Promise<JsonObject>
  getPod(ns: string, name: string): Promise<JsonObject | undefined>
  /** phase and the waiting reasons of every (init) container */
  podStatus(ns: string, name: string): Promise<{phase: string; waiting: string[]; imageIDs: string[]}>
  /** the scheduler stand-in */
  bindPod(ns: string, name: string, node: string): Promise<void>
  stop(): Promise<void>
}

export async function startCluster(bed: Bed, opts: ClusterOptions = {}): Promise<Cluster> {
  const server = await startRealApiServer({name: opts.serverName})
  const admin = new Rest({url: server.url, caPath: server.caPath, certPath: server.adminCert.certPath, keyPath: server.adminCert.keyPath})
  let kubelet: Kubelet | undefined
  let proxy: KubeProxy | undefined
  const stop = async (): Promise<void> => {
    await proxy?.stop().catch(() => undefined)
    await kubelet?.stop().catch(() => undefined)
    admin.close()
    await server.stop()
  }
  try {
    const nodes = kubeletNodes(bed)
    const {kubeconfigPath} = await server.serviceAccountKubeconfig()
    const has = bedHasImage(bed)
    const hasImage = async (node: string, ref: string): Promise<boolean | string> => {
      const present = await has(node, ref)
      if (present && opts.containerStartMs) await new Promise(resolve => setTimeout(resolve, opts.containerStartMs))
      return present
    }
    kubelet = await startKubelet({server, nodes, hasImage, resyncMs: opts.resyncMs, pullBackoffMs: opts.pullBackoffMs,
      ...(opts.runContainers ? {runtime: bedRuntime(bed)} : {})})
    // what the node lifecycle controller does for a Ready node (it does not run here)
    for (const n of nodes) {
      const node = await admin.get(corePath('nodes', undefined, n.name))
      const taints = arr(obj(node.spec).taints).filter(t => t.key !== 'node.kubernetes.io/not-ready')
      await admin.patch(corePath('nodes', undefined, n.name), {spec: {taints}}, 'merge')
    }
    if (opts.scheduler) await server.startScheduler()
    if (opts.controllers) await server.startControllerManager()
    if (opts.kubeProxy) proxy = await startKubeProxy({server, nodes, forwarder: bedForwarder(bed), syncMs: 500})

    const getPod = (ns: string, name: string): Promise<JsonObject | undefined> => admin.tryGet(corePath('pods', ns, name))
    return {
      server, admin, kubelet, proxy, kubeconfig: kubeconfigPath,
      createNamespace: ns => server.ensureNamespace(ns),
      async createPod(ns, name, node, image, o = {}) {
        const container: JsonObject = {name: 'main', image, imagePullPolicy: o.policy ?? 'Never', command: o.command ?? ['sleep', '3600'],
          ...(o.ports ? {ports: o.ports} : {})}
        return admin.create(corePath('pods', ns), {
          apiVersion: 'v1', kind: 'Pod',
          metadata: {name, labels: o.labels ?? {app: name}},
          spec: {
            ...(node ? {nodeName: node} : {}),
            containers: o.init ? [{name: 'app', image, imagePullPolicy: o.policy ?? 'Never'}] : [container],
            ...(o.init ? {initContainers: [{...container, name: 'init'}]} : {}),
          },
        })
      },
      getPod,
      async podStatus(ns, name) {
        const status = obj((await getPod(ns, name))?.status)
        const all = [...arr(status.initContainerStatuses), ...arr(status.containerStatuses)]
        return {
          phase: str(status.phase),
          waiting: all.map(s => str(obj(obj(s.state).waiting).reason)).filter(Boolean),
          imageIDs: all.map(s => str(s.imageID)).filter(Boolean),
        }
      },
      bindPod: (ns, name, node) => bindPod(server, ns, name, node),
      stop,
    }
  } catch (err) {
    await stop().catch(() => undefined)
    throw err
  }
}

export {RestError}
