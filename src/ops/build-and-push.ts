// `sideload build-and-push`: build the image a pod wants, push it straight from the build
// output to the pod's node, and wait until the pod runs (optionally expose it).
import * as os from 'node:os'
import * as path from 'node:path'
import type {V1Container, V1ContainerStatus, V1Pod} from '@kubernetes/client-node'
import {type NodeAccess, type SideloadConfig} from '../config/config.js'
import {formatPlatform, hostPlatform, normalizeImageName, type Platform} from '../image/index.js'
import {KubeClient} from '../kube/client.js'
import type {KubeTargetOptions} from '../kube/config.js'
import {isKubeError} from '../kube/errors.js'
import type {NodeTarget} from '../nodes/index.js'
import type {PoolOptions} from '../ssh/index.js'
import type {Reporter} from '../ui/progress.js'
import {type BuildOptions, type BuildResult, build, removeTemporaryArchive} from './build/index.js'
import {type ExposeResult, expose} from './expose.js'
import {IMAGE_WAIT_REASONS, defaultPullPolicy} from './fix/plan.js'
import {hostTarget} from './host-targets.js'
import {type PushResult, push} from './push.js'
import {type RestartReport, nodeNamesOf, pushMoreWith, pushedDigests, restartStalePods, staleWarning, stalePods} from './restart/index.js'
import {selectNodes, targetsFor} from './targets.js'
import type {SourceSpec} from '../sources/index.js'
import {sleep} from '../util/async.js'

export interface BuildAndPushOptions extends KubeTargetOptions {
  /** The pod whose image is built; its node is the push target. Optional with node/host (pod not created yet). */
  pod?: string
  /** The container whose image is built (required when the pod has several). */
  container?: string
  /** Image name; default: the container's image. */
  tag?: string
  /** Push to this Kubernetes node instead of the pod's (e.g. for a pod not created yet). */
  node?: string
  /** Push to this SSH target ([user@]host[:port]) instead of the pod's node. */
  host?: string
  /** Everything for the build except the name (context, dockerfile, build args, target, builder…). */
  build: Omit<BuildOptions, 'tags'>
  config?: SideloadConfig
  nodeFlags?: NodeAccess
  ssh?: PoolOptions
  reporter?: Reporter
  /** How long to wait for the pod to run after the push (default 120 s); 0 = do not wait. */
  waitTimeoutMs?: number
  /** Expose the pod on a NodePort once it runs (service port). */
  exposePort?: number
  /** --restart: restart the running pods on the node that run an older digest of the image (ops/restart/) */
  restart?: boolean
  /** -A: those pods in every namespace, not only the pod's (namespace, else the context's) */
  allNamespaces?: boolean
  /** overwrite (or adopt) the node's record of the same name that sideload did not write */
  replace?: boolean
  /** the command that restarts them, for the warning without --restart (the same command with --restart) */
  rerunWithRestart?: string
  signal?: AbortSignal
  /** A client instead of loading the kubeconfig (tests). */
  client?: KubeClient
}

export type PodOutcome =
  | {state: 'running'; restartNeeded?: boolean}
  | {state: 'waiting' | 'terminated' | 'timeout' | 'gone' | 'not-waited'; reason?: string; message?: string}

export interface BuildAndPushResult {
  image: string
  node: string
  build: {digest?: string; durationMs: number; builder: string}
  push: PushResult
  pod?: {namespace: string; name: string; container: string; outcome: PodOutcome}
  expose?: ExposeResult
  /** --restart: what was restarted */
  restart?: RestartReport
  warnings: string[]
  /** The image is on the node and the pod (when there is one and it was waited for) runs. */
  ok: boolean
}

export class BuildAndPushError extends Error {
  constructor(message: string, readonly hint?: string) {
    super(hint ? `${message}\n  hint: ${hint}` : message)
    this.name = 'BuildAndPushError'
  }
}

interface PodContainer {
  spec: Pick<V1Container, 'name' | 'image' | 'imagePullPolicy'>
  init: boolean
}

function containersOf(pod: V1Pod): PodContainer[] {
  return [
    ...(pod.spec?.initContainers ?? []).map((spec) => ({spec, init: true})),
    ...(pod.spec?.containers ?? []).map((spec) => ({spec, init: false})),
  ]
}

/** The container to build for: --container, else the pod's only (non-init) container. */
export function chooseContainer(pod: V1Pod, name: string | undefined): PodContainer {
  const all = containersOf(pod)
  const podName = `${pod.metadata?.namespace ?? ''}/${pod.metadata?.name ?? ''}`
  if (name) {
    const c = all.find((x) => x.spec.name === name)
    if (!c) throw new BuildAndPushError(`pod ${podName} has no container "${name}"`, `its containers: ${all.map((x) => x.spec.name).join(', ')}`)
    return c
  }
  const apps = all.filter((x) => !x.init)
  if (apps.length === 1) return apps[0]
  throw new BuildAndPushError(`pod ${podName} has ${apps.length} containers; say which one to build for`,
    `pass --container NAME (one of ${all.map((x) => x.spec.name).join(', ')})`)
}

function statusOf(pod: V1Pod, c: PodContainer): V1ContainerStatus | undefined {
  return (c.init ? pod.status?.initContainerStatuses : pod.status?.containerStatuses)?.find((s) => s.name === c.spec.name)
}

/** Waiting reasons the kubelet gets out of by itself (or by the image arriving). */
const TRANSIENT = new Set(['ContainerCreating', 'PodInitializing', ...IMAGE_WAIT_REASONS])

/** Wait until the container runs (an init container: has completed), or says why it will not. */
async function waitForPod(client: KubeClient, namespace: string, name: string, c: PodContainer, timeoutMs: number, signal?: AbortSignal): Promise<PodOutcome> {
  const end = Date.now() + timeoutMs
  let last: PodOutcome = {state: 'timeout'}
  for (;;) {
    let pod: V1Pod
    try {
      pod = await client.getPod(name, namespace)
    } catch (err) {
      if (isKubeError(err, 'not-found')) return {state: 'gone', message: `pod ${namespace}/${name} was deleted`}
      throw err
    }
    const st = statusOf(pod, c)?.state
    if (st?.running) return {state: 'running'}
    if (st?.terminated) {
      if (c.init && st.terminated.exitCode === 0) return {state: 'running'}
      if (!c.init) return {state: 'terminated', reason: st.terminated.reason, message: st.terminated.message ?? `exit code ${st.terminated.exitCode}`}
    }
    const waiting = st?.waiting
    if (waiting?.reason && !TRANSIENT.has(waiting.reason)) return {state: 'waiting', reason: waiting.reason, message: waiting.message}
    last = {state: 'timeout', reason: waiting?.reason ?? pod.status?.phase, message: waiting?.message}
    if (Date.now() >= end || signal?.aborted) return last
    await sleep(Math.min(500, Math.max(0, end - Date.now())), signal)
  }
}

/**
 * The platform to build for: what was asked, else the node's when it differs from this machine's
 * (an arm64 node gets an arm64 image), else the builder's default.
 */
export function buildPlatforms(asked: string[] | undefined, node: Platform | undefined, host: Platform = hostPlatform()): string[] | undefined {
  if (asked?.length) return asked
  if (!node || (node.os === host.os && node.architecture === host.architecture)) return undefined
  return [formatPlatform(node)]
}

/** The pod (when it exists), its container and the image name; all checked before anything is built. */
interface Subject {
  pod?: V1Pod
  container?: PodContainer
  image: string
}

/** Build the pod's image, push it to the pod's node from the build output, wait for the pod. */
export async function buildAndPush(opts: BuildAndPushOptions): Promise<BuildAndPushResult> {
  const config = opts.config ?? {defaults: {}, nodes: {}}
  const warnings: string[] = []
  const needKube = opts.pod !== undefined || opts.node !== undefined
  const client = opts.client ?? (needKube ? KubeClient.load(opts) : undefined)
  const namespace = opts.namespace ?? client?.namespace ?? 'default'
  // 1. the pod, its container, the image name; 2. where it goes
  const {pod, container, image} = await subjectOf(opts, client, namespace, warnings)
  const target = await pushTarget(opts, config, client, namespace, pod, warnings)
  // 3. build; a failed build throws here and nothing reaches any node
  const built: BuildResult = await build({...opts.build, tags: [image], platforms: buildPlatforms(opts.build.platforms, target.platform), signal: opts.signal})
  // 4. push straight from the build output (and --restart)
  const {pushed, restart} = await pushBuilt(opts, config, client, built, image, target, restartScope(opts, namespace))
  const result: BuildAndPushResult = {
    image: normalizeImageName(image), node: target.name,
    build: {digest: built.digest, durationMs: built.durationMs, builder: built.builder},
    push: pushed, warnings, ok: pushed.ok && (restart?.ok ?? true), ...(restart ? {restart} : {}),
  }
  if (!pushed.ok || !pod || !container || !opts.pod) return result
  // 5. the pod: restarted, or waited for
  const outcome = await podOutcome(opts, client, namespace, container, target, pushed, restart, warnings)
  result.pod = {namespace, name: opts.pod, container: container.spec.name, outcome}
  result.ok = (outcome.state === 'running' || outcome.state === 'not-waited') && (restart?.ok ?? true)
  // 6. expose
  if (result.ok && opts.exposePort !== undefined && client) {
    result.expose = await expose({client, namespace, pod: opts.pod, port: opts.exposePort})
  }
  return result
}

/** Step 1: the pod (a missing one is fine with --node/--host), its container and the image name. */
async function subjectOf(opts: BuildAndPushOptions, client: KubeClient | undefined, namespace: string, warnings: string[]): Promise<Subject> {
  let pod: V1Pod | undefined
  let container: PodContainer | undefined
  if (opts.pod !== undefined && client) {
    try {
      pod = await client.getPod(opts.pod, namespace)
    } catch (err) {
      if (!(isKubeError(err, 'not-found') && (opts.node || opts.host))) throw err
      warnings.push(`pod ${namespace}/${opts.pod} does not exist yet: the image goes to ${opts.node ?? opts.host}; not waiting for the pod`)
    }
  }
  if (pod) {
    container = chooseContainer(pod, opts.container)
    const policy = container.spec.imagePullPolicy ?? defaultPullPolicy(container.spec.image ?? '')
    if (policy === 'Always') {
      throw new BuildAndPushError(`pod ${namespace}/${opts.pod} container "${container.spec.name}" has imagePullPolicy: Always, so the kubelet pulls from a registry and ignores images on the node`,
        'set imagePullPolicy: IfNotPresent (or Never) in the pod\'s manifest or its owner\'s template, and recreate the pod')
    }
  }
  const image = opts.tag ?? container?.spec.image
  if (!image) throw new BuildAndPushError('no image name: the pod does not exist yet', 'name the image with -t NAME')
  if (container?.spec.image && normalizeImageName(container.spec.image) !== normalizeImageName(image)) {
    warnings.push(`container "${container.spec.name}" runs ${container.spec.image}, not ${image}: the pod will not use the image built`)
  }
  return {pod, container, image}
}

/** Step 2: where the image goes: --host, --node, else the pod's node. */
async function pushTarget(opts: BuildAndPushOptions, config: SideloadConfig, client: KubeClient | undefined, namespace: string, pod: V1Pod | undefined, warnings: string[]): Promise<NodeTarget> {
  if (opts.host) return hostTarget(opts.host, config, opts.nodeFlags)
  if (!client) throw new BuildAndPushError('no node to push to', 'name the pod (--pod), a node (--node) or an SSH target (--host)')
  if (!opts.node && !pod?.spec?.nodeName) {
    throw new BuildAndPushError(`pod ${namespace}/${opts.pod} is not scheduled to a node yet, so there is no node to push to`,
      'wait until it is (kubectl get pod -o wide), or name the node with --node / --host')
  }
  const nodes = await selectNodes(client, opts.node ? {nodes: [opts.node]} : {pods: [opts.pod ?? ''], namespace})
  const target = targetsFor(nodes, config, opts.nodeFlags).targets[0]
  if (pod?.spec?.nodeName && target.name !== pod.spec.nodeName) {
    warnings.push(`pod ${namespace}/${opts.pod} runs on ${pod.spec.nodeName}, not on ${target.name}`)
  }
  return target
}

/** The namespace whose pods --restart restarts (and the warning names): the pod's; undefined: every namespace (-A). */
function restartScope(opts: BuildAndPushOptions, namespace: string): string | undefined {
  return opts.allNamespaces ? undefined : namespace
}

/**
 * Step 4: push straight from the build output; with --restart, the pods that run an older digest
 * restarted while the build output is still open (an owner's other nodes get it from there too).
 */
async function pushBuilt(opts: BuildAndPushOptions, config: SideloadConfig, client: KubeClient | undefined, built: BuildResult, image: string, target: NodeTarget,
  restartNamespace: string | undefined): Promise<{pushed: PushResult; restart?: RestartReport}> {
  const temporaryArchive = built.location.kind === 'archive' && !opts.build.output ? built.location.path : undefined
  try {
    let source: SourceSpec
    let closeSource = async (): Promise<void> => undefined
    if (built.location.kind === 'containerd') {
      source = {kind: 'containerd', address: built.location.containerdAddress, namespace: built.location.namespace}
    } else {
      // the archive written by the build, or dockerd's image spooled once; push reads it in place
      const src = await built.openImageSource()
      source = {kind: 'archive', path: src.file}
      closeSource = () => src.close()
    }
    try {
      const pushed = await push({images: [image], source, nodes: [target], replace: opts.replace, ssh: opts.ssh, reporter: opts.reporter, signal: opts.signal})
      if (!(opts.restart && client && pushed.ok)) return {pushed}
      const digests = pushedDigests(pushed.results, await nodeNamesOf(client, [target]))
      const restart = await restartStalePods({client, pushed: digests, namespace: restartNamespace, pushMore: pushMoreWith(client, {source, ssh: opts.ssh, signal: opts.signal}, config, opts.nodeFlags),
        timeoutMs: opts.waitTimeoutMs || 120_000, signal: opts.signal})
      return {pushed, restart}
    } finally {
      await closeSource()
    }
  } finally {
    if (temporaryArchive && path.resolve(temporaryArchive).startsWith(path.resolve(opts.build.workDir ?? os.tmpdir()))) {
      await removeTemporaryArchive(temporaryArchive)
    }
  }
}

/**
 * Step 5: how the pod came out: its --restart row, else waited for; without --restart, the pods on
 * that node that keep running the old digest are named in a warning, with the command that restarts them.
 */
async function podOutcome(opts: BuildAndPushOptions, client: KubeClient | undefined, namespace: string, container: PodContainer, target: NodeTarget,
  pushed: PushResult, restart: RestartReport | undefined, warnings: string[]): Promise<PodOutcome> {
  const podName = opts.pod ?? ''
  const timeout = opts.waitTimeoutMs ?? 120_000
  const restarted = restart?.rows.find((r) => r.namespace === namespace && r.pods.includes(podName))
  let outcome: PodOutcome
  if (restarted) {
    outcome = restarted.ok ? {state: 'running'} : {state: 'waiting', reason: restarted.action, message: restarted.error?.message ?? restarted.result}
  } else {
    outcome = timeout > 0 && client ? await waitForPod(client, namespace, podName, container, timeout, opts.signal) : {state: 'not-waited'}
  }
  if (!opts.restart && client) {
    const stale = await stalePods(client, pushedDigests(pushed.results, await nodeNamesOf(client, [target])), restartScope(opts, namespace)).catch(() => [])
    const warning = staleWarning(stale, opts.rerunWithRestart ?? 'the same command with --restart')
    if (warning) {
      if (outcome.state === 'running' && stale.some((s) => s.namespace === namespace && s.pod === podName)) outcome.restartNeeded = true
      warnings.push(warning)
    }
  }
  return outcome
}
