// The "cluster" for the bench's `fix` row: the test API server and the kubelet stand-in whose image
// truth is each bed node's containerd (test/kube), on the bench's own bed. Each round gets a fresh
// namespace with pods stuck in ErrImageNeverPull, spread over the nodes.
import type {Bed} from '../bed/bed.js'
import {rbacAccessRules} from '../expose/rbac.js'
import {startApiServer, type ApiServer} from '../kube/apiserver.js'
import {bedHasImage, kubeletNodes} from '../kube/bed-wiring.js'
import {startKubelet, type Kubelet} from '../kube/kubelet.js'
import type {JsonObject} from '../kube/patch.js'

export interface FixCluster {
  kubeconfig: string
  /** Creates namespace `ns` with `count` pods of `image` (imagePullPolicy Never) round-robin over the nodes; waits until the kubelet has seen them. */
  stuckPods(ns: string, image: string, count: number): Promise<void>
  /** Pods of `ns` not Running. */
  notRunning(ns: string): string[]
  removePods(ns: string): void
  stop(): Promise<void>
}

export async function startFixCluster(bed: Bed): Promise<FixCluster> {
  const server: ApiServer = await startApiServer()
  const kubelet: Kubelet = startKubelet({store: server.store, nodes: kubeletNodes(bed), hasImage: bedHasImage(bed), resyncMs: 10_000, pullBackoffMs: 10_000})
  const kubeconfig = server.addUser('sideload', {rules: rbacAccessRules()}).kubeconfigPath
  const podsOf = (ns: string): JsonObject[] => server.store.list('pods', {namespace: ns, labels: [], fields: []}).items
  return {
    kubeconfig,
    async stuckPods(ns, image, count) {
      server.store.create('namespaces', undefined, {metadata: {name: ns}})
      for (let i = 0; i < count; i++) {
        const node = bed.nodes[i % bed.nodes.length]
        server.store.create('pods', ns, {
          metadata: {name: `stuck-${i}`, labels: {app: 'bench'}},
          spec: {nodeName: node.name, containers: [{name: 'main', image, imagePullPolicy: 'Never', command: ['sleep', '3600']}]},
        })
      }
      await kubelet.syncNow()
    },
    notRunning(ns) {
      return podsOf(ns)
        .filter((p) => (p.status as JsonObject | undefined)?.phase !== 'Running')
        .map((p) => String((p.metadata as JsonObject).name))
    },
    removePods(ns) {
      for (const p of podsOf(ns)) server.store.delete('pods', ns, String((p.metadata as JsonObject).name))
    },
    async stop() {
      await kubelet.stop()
      await server.stop()
    },
  }
}
