// Kubernetes nodes as push targets: which nodes (by name, by pod, by selector, all), and how to
// reach each one over SSH (the node's address from its status, overridable per node in the config).
import type {V1Node} from '@kubernetes/client-node'
import {type NodeAccess, type SideloadConfig, accessFor} from '../config/config.js'
import {parsePlatform} from '../image/index.js'
import {type KubeClient, clusterNode} from '../kube/client.js'
import type {NodeTarget} from '../nodes/index.js'
import {formatTarget} from '../ssh/index.js'
import {KubeError} from '../kube/errors.js'

/** Which Kubernetes nodes a push goes to. Several kinds may be combined; the union is taken. */
export interface NodeSelection {
  /** --node NAME */
  nodes?: string[]
  /** --pod NAME: the node the pod is scheduled on */
  pods?: string[]
  /** namespace of --pod (default: the client's) */
  namespace?: string
  /** --all-nodes */
  allNodes?: boolean
  /** --node-selector k=v[,k2=v2] */
  nodeSelector?: string
}

export class NodeTargetError extends Error {
  override name = 'NodeTargetError'
  constructor(message: string, readonly hint?: string, readonly reason = 'node-target') {
    super(message)
  }
}

export function hasNodeSelection(sel: NodeSelection): boolean {
  return Boolean(sel.nodes?.length || sel.pods?.length || sel.allNodes || sel.nodeSelector)
}

/**
 * A Kubernetes node as a push target. The SSH address is the config's `address` for the node,
 * else InternalIP, else ExternalIP, else Hostname; user, port, socket, snapshotter and import
 * mode come from the config (defaults, then the node's entry, then `flags`).
 */
export function nodeTarget(node: V1Node, access: NodeAccess): NodeTarget {
  const cn = clusterNode(node)
  const host = access.address ?? cn.address
  if (!host) {
    throw new NodeTargetError(`node ${cn.name} reports no address (InternalIP, ExternalIP or Hostname) in its status; ` +
      `set one for it in the config file (nodes: {${cn.name}: {address: HOST}})`)
  }
  const target: NodeTarget = {
    name: cn.name,
    sshTarget: formatTarget({user: access.sshUser, host, port: access.sshPort}),
    platform: parsePlatform(cn.platform),
  }
  if (access.sshKey) target.sshKey = access.sshKey
  if (access.containerdSocket) target.containerdSocket = access.containerdSocket
  if (access.snapshotter) target.snapshotter = access.snapshotter
  if (access.importMode) target.importMode = access.importMode
  return target
}

/** The nodes named by a selection, in a stable order (by name), each once. */
export async function selectNodes(client: KubeClient, sel: NodeSelection, unknown?: string[]): Promise<V1Node[]> {
  const byName = new Map<string, V1Node>()
  const add = (n: V1Node): void => {
    const name = n.metadata?.name
    if (name) byName.set(name, n)
  }
  if (sel.allNodes) for (const n of await client.listNodes()) add(n)
  if (sel.nodeSelector) {
    const nodes = await client.listNodes(sel.nodeSelector)
    if (nodes.length === 0) {
      throw new NodeTargetError(`no node matches --node-selector ${sel.nodeSelector}; list the labels with: kubectl get nodes --show-labels`)
    }
    for (const n of nodes) add(n)
  }
  for (const name of sel.nodes ?? []) {
    if (byName.has(name)) continue
    try {
      add(await client.getNode(name))
    } catch (err) {
      // `unknown` collects names the cluster does not have (their own failure); else the 404 stands
      if (!unknown || !(err instanceof KubeError && err.kind === 'not-found')) throw err
      unknown.push(name)
    }
  }
  for (const podName of sel.pods ?? []) {
    const pod = await client.getPod(podName, sel.namespace ?? client.namespace)
    const nodeName = pod.spec?.nodeName
    if (!nodeName) {
      throw new NodeTargetError(`pod ${pod.metadata?.namespace ?? ''}/${podName} is not scheduled to a node yet, so there is no node to push to; ` +
        'wait until it is (kubectl get pod -o wide), or use `sideload fix --wait-scheduled`')
    }
    if (!byName.has(nodeName)) add(await client.getNode(nodeName))
  }
  return [...byName.values()].sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''))
}

export interface ResolvedTargets {
  targets: NodeTarget[]
  /** the sshKey settings of these nodes (also on each target's sshKey) */
  identityFiles: string[]
}

/** Push targets for nodes, with the config's settings (defaults, the node's entry, then `flags`). */
export function targetsFor(nodes: V1Node[], config: SideloadConfig, flags: NodeAccess = {}): ResolvedTargets {
  const targets = nodes.map((node) => nodeTarget(node, accessFor(config, node.metadata?.name ?? '', flags)))
  return {targets, identityFiles: [...new Set(targets.flatMap((t) => (t.sshKey ? [t.sshKey] : [])))]}
}

/**
 * selectNodes then targetsFor. A `--node` the cluster does not have becomes a target that fails
 * by itself (naming the nodes that exist), so the other nodes still get their push.
 */
export async function resolveNodeTargets(client: KubeClient, sel: NodeSelection, config: SideloadConfig, flags: NodeAccess = {}): Promise<ResolvedTargets> {
  const unknown: string[] = []
  const resolved = targetsFor(await selectNodes(client, sel, unknown), config, flags)
  if (unknown.length > 0) {
    const known = (await client.listNodes()).map((n) => n.metadata?.name ?? '').filter(Boolean).sort()
    const hint = known.length > 0 ? `the cluster's nodes: ${known.join(', ')} (kubectl get nodes)` : 'the cluster has no nodes (kubectl get nodes)'
    for (const name of unknown) {
      resolved.targets.push({name, sshTarget: name, unavailable: new NodeTargetError(`node ${name} is not in the cluster`, hint, 'node-not-found')})
    }
  }
  return resolved
}
