// The "cluster" for the bench's `fix` row: the real API server and the kubelet stand-in whose image
// truth is each bed node's containerd (test/kube-real), on the bench's own bed. Each round gets a
// fresh namespace with pods stuck in ErrImageNeverPull, spread over the nodes.
import type {Bed, BedNode} from '../bed/bed.js'
import {type Cluster, startCluster} from '../kube-real/cluster.js'
import {corePath, obj, str} from '../kube-real/rest.js'

export interface FixCluster {
  kubeconfig: string
  /** Creates namespace `ns` with `count` pods of `image` (imagePullPolicy Never) round-robin over the given nodes; waits until the kubelet has seen them. */
  stuckPods(ns: string, image: string, count: number): Promise<void>
  /** Pods of `ns` not Running. */
  notRunning(ns: string): Promise<string[]>
  stop(): Promise<void>
}

/** The pods go to `nodes` (the bed may have more: the kubelet stand-in serves them all). */
export async function startFixCluster(bed: Bed, nodes: BedNode[] = bed.nodes): Promise<FixCluster> {
  const cluster: Cluster = await startCluster(bed, {resyncMs: 10_000, pullBackoffMs: 10_000})
  return {
    kubeconfig: cluster.kubeconfig,
    async stuckPods(ns, image, count) {
      await cluster.createNamespace(ns)
      for (let i = 0; i < count; i++) await cluster.createPod(ns, `stuck-${i}`, nodes[i % nodes.length].name, image, {labels: {app: 'bench'}})
      await cluster.kubelet.syncNow()
    },
    async notRunning(ns) {
      const pods = await cluster.admin.list(corePath('pods', ns))
      return pods.items.filter(p => obj(p.status).phase !== 'Running').map(p => str(obj(p.metadata).name))
    },
    stop: () => cluster.stop(),
  }
}
