import {Flags} from '@oclif/core'
import {DEFAULT_CONTAINERD_ADDRESS} from '../containerd/address.js'
import type {BuilderChoice} from '../buildkit/client.js'
import type {SecretSource} from '../buildkit/session.js'
import type {PoolOptions} from '../ssh/index.js'
import type {KubeClient} from '../kube/client.js'
import type {NodeTarget} from '../nodes/index.js'
import {hostTarget} from '../ops/host-targets.js'
import {DEFAULT_SEEDS, type P2pOptions} from '../ops/p2p.js'
import {UsageError} from '../ui/command.js'
import type {NodeAccess, SideloadConfig} from '../config/config.js'
import {expandHome} from '../config/config.js'

// Every repeatable flag takes exactly one value per occurrence (`--host a --host b`, as docker and
// kubectl read them): oclif's default `multiple` would take every following word, positional
// arguments included (`--build-arg A=B ./ctx` made ./ctx a second build argument).

/** The SSH and node-access flags every command that reaches nodes shares. */
export const sshFlags = {
  'ssh-key': Flags.string({description: 'private key to try first (repeatable; ssh-agent and ~/.ssh/config keys are used too)', multiple: true, multipleNonGreedy: true}),
  'known-hosts': Flags.string({description: 'known_hosts file to check host keys against (default: ~/.ssh/known_hosts and UserKnownHostsFile)'}),
  'trust-new-host-keys': Flags.boolean({description: 'record the host key of a node seen for the first time (a host known by any key, of any type, must match it: a changed key is always refused)'}),
  'ssh-config': Flags.string({description: 'ssh_config file (default: ~/.ssh/config)'}),
  'containerd-socket': Flags.string({description: 'containerd socket on the nodes (default: detected among /run/containerd, /run/k3s/containerd, microk8s)'}),
  snapshotter: Flags.string({description: 'snapshotter to unpack into on the nodes (default: what the node\'s CRI uses)'}),
  // no oclif default: not given, the config file's importMode decides (else auto); given, it wins over the config
  'import-mode': Flags.string({description: 'native: containerd API over SSH; ctr: `sudo -n ctr images import`; auto: native when the socket is accessible (default: the config file\'s importMode, else auto)', options: ['auto', 'native', 'ctr']}),
  config: Flags.string({description: 'config file with per-node SSH settings (default: ~/.config/sideload/config.yaml, $SIDELOAD_CONFIG)'}),
}

/** The kubeconfig flags every command that talks to the cluster shares. */
export const kubeFlags = {
  kubeconfig: Flags.string({description: 'kubeconfig file (default: $KUBECONFIG or ~/.kube/config)'}),
  context: Flags.string({description: 'kubeconfig context (default: its current-context)'}),
  'request-timeout': Flags.string({description: 'how long one Kubernetes API request may take, as kubectl\'s (e.g. 30s, 1m; 0: no limit)', default: '0'}),
}

/** The node access flags (sshFlags) as parsed. */
export interface NodeAccessFlagValues {
  'containerd-socket'?: string
  snapshotter?: string
  'import-mode'?: string
}

/** The node access the flags give, over the config file's per node (config.ts accessFor); what is not given is left to the config. */
export function nodeAccessFrom(flags: NodeAccessFlagValues): NodeAccess {
  return {containerdSocket: flags['containerd-socket'], snapshotter: flags.snapshotter, importMode: flags['import-mode'] as NodeAccess['importMode']}
}

/**
 * The nodes a command acts on, as `push` takes them: SSH targets (--host) and Kubernetes nodes
 * (--node, --pod, --all-nodes, --node-selector) with the kubeconfig flags. `to` completes
 * "node to …" (e.g. `push to`, `prune`).
 */
export function targetFlags(to: string) {
  return {
    host: Flags.string({char: 'H', description: `node to ${to}, [user@]host[:port] or an ssh_config alias (repeatable)`, multiple: true, multipleNonGreedy: true}),
    node: Flags.string({description: `Kubernetes node to ${to} (repeatable); reached at its InternalIP, else ExternalIP, else Hostname, or the config file's address`, multiple: true, multipleNonGreedy: true}),
    pod: Flags.string({description: `${to} the node this pod is scheduled on (repeatable)`, multiple: true, multipleNonGreedy: true}),
    'all-nodes': Flags.boolean({description: `${to} every node of the cluster`}),
    'node-selector': Flags.string({description: `${to} the nodes with these labels (k=v[,k2=v2])`}),
    namespace: Flags.string({char: 'n', description: 'Kubernetes namespace of --pod, and of the pods --restart restarts (default: the context\'s)', aliases: ['pod-namespace'], deprecateAliases: true}),
    ...kubeFlags,
  }
}

/** --replace (push, fix, build-and-push): see record-owner.ts. */
export function replaceFlag() {
  return Flags.boolean({description: "overwrite a node's image record of the same name that sideload did not write (a registry pull, ctr or nerdctl import): it is refused without this, and left as it is when it holds the same image"})
}

/** How push and fix send an image to the nodes (ops/push.ts PushOptions). */
export const pushFlags = {
  platform: Flags.string({description: 'send this platform instead of each node\'s own (e.g. linux/arm64)'}),
  jobs: Flags.integer({char: 'j', description: 'nodes to push to in parallel', default: 4, min: 1}),
  pin: Flags.boolean({description: 'label the image io.cri-containerd.pinned=pinned so kubelet GC keeps it', default: true, allowNo: true}),
  unpack: Flags.boolean({description: 'unpack on the node now instead of at first container start', default: true, allowNo: true}),
  replace: replaceFlag(),
  retries: Flags.integer({description: 'reconnect and resume this many times when a node\'s connection drops', default: 3, min: 0}),
}

/** --p2p and --seeds, as push and fix take them (src/ops/p2p.ts). */
export const p2pFlags = {
  p2p: Flags.string({description: 'send the image to --seeds nodes only; every other node pulls it from them, node to node, through its registry mirror (Spegel on each node); a node whose pull fails gets a direct push', options: ['spegel']}),
  seeds: Flags.integer({description: `with --p2p: how many nodes sideload sends to itself (default ${DEFAULT_SEEDS})`, min: 1}),
}

/** --p2p/--seeds as options; --seeds alone is a usage error. */
export function p2pFrom(flags: {p2p?: string; seeds?: number}): P2pOptions | undefined {
  if (!flags.p2p) {
    if (flags.seeds !== undefined) throw new UsageError('--seeds needs --p2p', 'add --p2p spegel (the nodes run Spegel), or drop --seeds to push to every node directly')
    return undefined
  }
  return {via: 'spegel', seeds: flags.seeds ?? DEFAULT_SEEDS}
}

/** --restart, as push, fix and build-and-push take it (src/ops/restart/). */
export const restartFlag = {
  restart: Flags.boolean({description: 'restart the running pods of the namespace (-n, else the context\'s; -A: every namespace) on those nodes whose image is now older than the one pushed: owners rolled out as `kubectl rollout restart` does, another owner\'s pods evicted (PodDisruptionBudgets hold), a bare pod created again from its own spec on its node; a Job\'s pods are left alone'}),
}

/** -A as kubectl takes it, for push and build-and-push: which pods --restart restarts (and the warning without it names). */
export const allNamespacesFlag = {
  'all-namespaces': Flags.boolean({char: 'A', description: 'with --restart: the pods of every namespace, not only -n\'s (or the context\'s)', exclusive: ['namespace']}),
}

/** The Dockerfile and builder flags `build` and `build-and-push` share. */
export const buildFlags = {
    file: Flags.string({char: 'f', description: 'path of the Dockerfile (default: CONTEXT/Dockerfile)'}),
    'build-arg': Flags.string({description: 'build argument K=V (repeatable)', multiple: true, multipleNonGreedy: true}),
    target: Flags.string({description: 'build this stage of a multi-stage Dockerfile'}),
    'no-cache': Flags.boolean({description: 'do not use the build cache'}),
    secret: Flags.string({description: 'secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR (repeatable)', multiple: true, multipleNonGreedy: true}),
    builder: Flags.string({description: 'which BuildKit to use', options: ['auto', 'buildkit', 'docker'], default: 'auto'}),
    'buildkit-host': Flags.string({description: 'BuildKit daemon address (unix:///… or tcp://host:port)', env: 'BUILDKIT_HOST'}),
    'docker-host': Flags.string({description: 'Docker daemon address for --builder docker', env: 'DOCKER_HOST'}),
    pull: Flags.string({description: 'base images: `always` pull them; `missing` use the builder\'s local copy when it has one (offline, air-gapped)', options: ['always', 'missing']}),
    'containerd-address': localContainerdFlag('this machine\'s containerd: a BuildKit containerd worker on this very daemon builds straight into it'),
}

/**
 * --builder with --buildkit-host and --docker-host: `buildkit` or `docker` picks that builder; `auto`
 * takes the one whose address is given, else looks at the environment and the default sockets.
 */
export function builderChoice(kind: string, buildkitHost?: string, dockerHost?: string): BuilderChoice {
  if (kind === 'docker') return {kind: 'docker', dockerHost}
  if (kind === 'buildkit') return {kind: 'buildkitd', address: buildkitHost}
  if (buildkitHost) return {kind: 'buildkitd', address: buildkitHost}
  if (dockerHost) return {kind: 'docker', dockerHost}
  return {kind: 'auto'}
}

/** Repeated `K=V` flags (`--build-arg`, `--label`); `--build-arg NAME` takes the value from the environment, like docker build. */
export function keyValues(values: string[], flag: '--build-arg' | '--label'): Record<string, string> {
  const out: Record<string, string> = {}
  for (const v of values) {
    const eq = v.indexOf('=')
    if (eq <= 0) {
      if (flag === '--build-arg' && eq === -1 && process.env[v] !== undefined) {
        out[v] = process.env[v] as string
        continue
      }
      throw new UsageError(`${flag} ${v}: expected KEY=VALUE`, flag === '--build-arg' ? `write it as ${flag} KEY=VALUE (a bare KEY takes the value of that environment variable, which is not set)` : `write it as ${flag} KEY=VALUE`)
    }
    out[v.slice(0, eq)] = v.slice(eq + 1)
  }
  return out
}

/** `--secret id=ID,src=FILE` (also `source=`) or `id=ID,env=VAR`. */
export function parseSecrets(values: string[]): Record<string, SecretSource> {
  const out: Record<string, SecretSource> = {}
  for (const v of values) {
    const fields = Object.fromEntries(v.split(',').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]))
    const id = fields.id
    if (!id) throw new Error(`--secret ${v}: missing id=ID (e.g. id=npmrc,src=$HOME/.npmrc)`)
    const file = fields.src ?? fields.source
    if (file) out[id] = {file}
    else if (fields.env) out[id] = {env: fields.env}
    else out[id] = {env: id}
  }
  return out
}

/** This machine's containerd, as ctr and nerdctl take it ($CONTAINERD_ADDRESS). */
export function localContainerdFlag(description: string) {
  return Flags.string({description, default: DEFAULT_CONTAINERD_ADDRESS, env: 'CONTAINERD_ADDRESS'})
}

export interface SshFlagValues {
  'ssh-key'?: string[]
  'known-hosts'?: string
  'trust-new-host-keys'?: boolean
  'ssh-config'?: string
}

/** SSH pool options from the flags, falling back to the config file's defaults. */
export function sshOptionsFrom(flags: SshFlagValues, config: SideloadConfig): PoolOptions {
  const keys = [...(flags['ssh-key'] ?? []), ...(config.defaults.sshKey ? [config.defaults.sshKey] : [])].map(expandHome)
  const knownHosts = flags['known-hosts'] ?? config.defaults.knownHosts
  return {
    identityFiles: keys.length ? keys : undefined,
    knownHostsPath: knownHosts ? expandHome(knownHosts) : undefined,
    trustOnFirstUse: flags['trust-new-host-keys'] || undefined,
    resolve: flags['ssh-config'] ? {configPath: expandHome(flags['ssh-config'])} : undefined,
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
  const [{KubeClient}, {resolveNodeTargets}] = await Promise.all([import('../kube/client.js'), import('../ops/targets.js')])
  const client = KubeClient.load({kubeconfig: flags.kubeconfig, context: flags.context, namespace: flags.namespace, requestTimeout: flags['request-timeout']})
  const selection = {nodes: flags.node, pods: flags.pod, allNodes: flags['all-nodes'], nodeSelector: flags['node-selector'], namespace: flags.namespace}
  const cluster = (await resolveNodeTargets(client, selection, config, access)).targets
  nodes.push(...cluster)
  return {nodes, kube: {client, nodes: new Set(cluster.map((t) => t.name))}}
}
