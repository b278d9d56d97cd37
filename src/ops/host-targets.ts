import {accessFor, type NodeAccess, type SideloadConfig} from '../config/config.js'
import {type NodeAccessFlagValues, nodeAccessFrom} from '../config/flags.js'
import type {KubeClient} from '../kube/client.js'
import type {NodeTarget} from '../nodes/index.js'
import {formatTarget, parseTarget} from '../ssh/index.js'
import {UsageError} from '../ui/command.js'

/**
 * A node named by --host `[user@]host[:port]` (no cluster needed). The config file's entry
 * for that host (or for its bare host name) may supply the address, user, port, key and socket;
 * what the --host value spells out itself wins.
 */
export function hostTarget(host: string, config: SideloadConfig, flags: NodeAccess = {}): NodeTarget {
  const spec = parseTarget(host)
  const access = accessFor(config, config.nodes[host] ? host : spec.host, flags)
  return {
    name: host,
    sshTarget: formatTarget({user: spec.user ?? access.sshUser, host: access.address ?? spec.host, port: spec.port ?? access.sshPort}),
    sshKey: access.sshKey,
    containerdSocket: access.containerdSocket,
    snapshotter: access.snapshotter,
    importMode: access.importMode,
  }
}

/** The target flags (config/flags.ts targetFlags) and the node access flags, as parsed. */
export interface TargetFlagValues extends NodeAccessFlagValues {
  host?: string[]
  node?: string[]
  pod?: string[]
  'all-nodes'?: boolean
  'node-selector'?: string
  namespace?: string
  kubeconfig?: string
  context?: string
  'request-timeout'?: string
}

export interface FlagTargets {
  nodes: NodeTarget[]
  /** The cluster, when nodes were named through it (--node, --pod, --all-nodes, --node-selector). */
  kube?: {client: KubeClient; nodes: Set<string>}
}

function namesClusterNodes(flags: TargetFlagValues): boolean {
  // ops/targets hasNodeSelection, without loading it: a --host run never loads the Kubernetes client (~0.3 s)
  return Boolean(flags.node?.length || flags.pod?.length || flags['all-nodes'] || flags['node-selector'])
}

/** A usage error (`none`: e.g. "no nodes to push to") when the flags name no node at all. */
export function requireTargets(flags: TargetFlagValues, none: string): void {
  if (!flags.host?.length && !namesClusterNodes(flags)) {
    throw new UsageError(none, 'name them with --host [user@]host (repeatable), or Kubernetes nodes with --node, --pod, --all-nodes or --node-selector')
  }
}

/** The nodes the flags name: --host targets first, then the cluster's (each as a NodeTarget, resolved through the API). */
export async function targetsFromFlags(flags: TargetFlagValues, config: SideloadConfig, none: string): Promise<FlagTargets> {
  requireTargets(flags, none)
  const access = nodeAccessFrom(flags)
  const nodes = (flags.host ?? []).map((h) => hostTarget(h, config, access))
  if (!namesClusterNodes(flags)) return {nodes}
  const [{KubeClient}, {resolveNodeTargets}] = await Promise.all([import('../kube/client.js'), import('./targets.js')])
  const client = KubeClient.load({kubeconfig: flags.kubeconfig, context: flags.context, namespace: flags.namespace, requestTimeout: flags['request-timeout']})
  const selection = {nodes: flags.node, pods: flags.pod, allNodes: flags['all-nodes'], nodeSelector: flags['node-selector'], namespace: flags.namespace}
  const cluster = (await resolveNodeTargets(client, selection, config, access)).targets
  nodes.push(...cluster)
  return {nodes, kube: {client, nodes: new Set(cluster.map((t) => t.name))}}
}
