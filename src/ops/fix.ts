// `sideload fix`: find the pods that wait for an image the kubelet will not pull, send each image
// once to each node that needs it, nudge the pods and wait until they run. `fixWatch` keeps doing
// so for pods that get stuck later.
import type {V1Pod} from '@kubernetes/client-node'
import type {NodeAccess, SideloadConfig} from '../config/config.js'
import {ContainerdError} from '../containerd/index.js'
import {normalizeImageName} from '../image/index.js'
import {KubeClient} from '../kube/client.js'
import type {KubeTargetOptions} from '../kube/config.js'
import {isKubeError} from '../kube/errors.js'
import type {NodeTarget} from '../nodes/index.js'
import {SshPool, type PoolOptions} from '../ssh/index.js'
import type {Reporter} from '../ui/progress.js'
import {type Diagnosis, IMAGE_WAIT_REASONS, type StuckContainer, type Transfer, planFix} from './fix-plan.js'
import {type NodeImageResult, push} from './push.js'
import {notInSourceHint, type SourceInventory, sourceInventory, type SourceSpec} from '../sources/index.js'
import {type RestartReport, type StalePod, pushMoreWith, restartStalePods, stalePods} from './restart.js'
import {targetsFor} from './targets.js'
import {sleep} from '../util/async.js'

/** Set on a pod after its image was sent: the kubelet re-syncs a pod at once when its annotations change. */
export const PUSHED_AT_ANNOTATION = 'sideload.dev/pushed-at'

export interface FixOptions extends KubeTargetOptions {
  /** an already loaded client (tests, the watch); otherwise one is made from the kubeconfig options */
  client?: KubeClient
  /** -A: every namespace (otherwise the client's namespace) */
  allNamespaces?: boolean
  /** --pod NAME: only this pod */
  pod?: string
  /** print the plan only */
  dryRun?: boolean
  /** how long to wait for the pods to run after the push (default 5 min) */
  timeoutMs?: number
  /** wait for unscheduled pods to be scheduled (and stuck) instead of reporting them */
  waitScheduled?: boolean
  source: SourceSpec
  config?: SideloadConfig
  /** SSH settings given as flags, over the config's (user, port, key, socket…) */
  access?: NodeAccess
  ssh?: PoolOptions
  pool?: SshPool
  jobs?: number
  pin?: boolean
  unpack?: boolean
  retries?: number
  platform?: string
  /** patch PUSHED_AT_ANNOTATION on the repaired pods (default true) */
  annotate?: boolean
  /** --restart: restart the running pods on the nodes pushed to that run an older digest (ops/restart.ts) */
  restart?: boolean
  reporter?: Reporter
  signal?: AbortSignal
}

export type FixAction = 'would push' | 'pushed' | 'up to date' | 'push failed' | 'not pushed' | 'cancelled'

/** One line of the result table: POD NODE IMAGE ACTION RESULT. */
export interface FixRow {
  namespace: string
  pod: string
  container: string
  node: string
  image: string
  action: FixAction
  /** 'Running', 'ContainerCreating', the new waiting reason, or what went wrong */
  result: string
  ok: boolean
  hint?: string
}

/** One (image, node) transfer as push() reported it. */
export interface TransferResult {
  image: string
  node: string
  pods: string[]
  push?: NodeImageResult
}

export interface FixResult {
  rows: FixRow[]
  transfers: TransferResult[]
  diagnoses: FixDiagnosis[]
  /** --restart: what was restarted */
  restart?: RestartReport
  /** without --restart: running pods on the nodes pushed to that keep an older digest */
  stale?: StalePod[]
  /** nothing failed and nothing was left that pushing cannot fix */
  ok: boolean
}

/** What pushing cannot fix (planFix's diagnoses) or what the source lacks. */
export type FixDiagnosis = Diagnosis | {kind: 'not-in-source'; image: string; pods: string[]; hint: string}

export class FixError extends Error {
  override name = 'FixError'
}

// ---------------------------------------------------------------------------------------------
// pods

function uniquePods(containers: StuckContainer[]): {namespace: string; pod: string}[] {
  const seen = new Map<string, {namespace: string; pod: string}>()
  for (const c of containers) seen.set(`${c.namespace}/${c.pod}`, {namespace: c.namespace, pod: c.pod})
  return [...seen.values()]
}

function podKey(p: V1Pod): string {
  return `${p.metadata?.namespace ?? ''}/${p.metadata?.name ?? ''}`
}

function isUnscheduled(pod: V1Pod): boolean {
  return !pod.spec?.nodeName && (pod.status?.phase ?? 'Pending') === 'Pending' && !pod.metadata?.deletionTimestamp
}

/** Whether the kubelet has reported on every container yet (a pod just bound may have no statuses). */
function hasStatuses(pod: V1Pod): boolean {
  return (pod.status?.containerStatuses?.length ?? 0) > 0 || (pod.status?.initContainerStatuses?.length ?? 0) > 0
}

/** Where a container stands now, for the RESULT column; `stuck` while it still waits for its image. */
export function containerState(pod: V1Pod | undefined, container: string): {state: string; stuck: boolean} {
  if (!pod) return {state: 'pod deleted', stuck: false}
  const all = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? []), ...(pod.status?.ephemeralContainerStatuses ?? [])]
  const s = all.find((c) => c.name === container)
  if (!s) return {state: pod.status?.phase ?? 'Pending', stuck: false}
  if (s.state?.running) return {state: 'Running', stuck: false}
  const terminated = s.state?.terminated
  if (terminated) {
    // an init container that did its job: what matters now is the pod
    const initDone = terminated.exitCode === 0 && (pod.status?.initContainerStatuses ?? []).includes(s)
    return {state: initDone ? (pod.status?.phase ?? 'Completed') : `Terminated (${terminated.reason ?? `exit ${terminated.exitCode}`})`, stuck: false}
  }
  const reason = s.state?.waiting?.reason ?? 'Waiting'
  return {state: reason, stuck: IMAGE_WAIT_REASONS.has(reason)}
}

async function listTargetPods(client: KubeClient, opts: FixOptions): Promise<V1Pod[]> {
  const namespace = opts.allNamespaces ? undefined : client.namespace
  if (opts.pod) return [await client.getPod(opts.pod, client.namespace)]
  return (await client.listPods({namespace})).items
}

/**
 * With --wait-scheduled: wait until every pod that was not scheduled is, and the kubelet has
 * reported its containers (stuck or not), or the deadline passes.
 */
async function waitScheduled(client: KubeClient, opts: FixOptions, pods: V1Pod[], deadline: number): Promise<V1Pod[]> {
  let current = pods
  const waitingFor = new Set(pods.filter(isUnscheduled).map(podKey))
  while (waitingFor.size > 0 && Date.now() < deadline && !opts.signal?.aborted) {
    await sleep(500, opts.signal)
    current = await listTargetPods(client, opts)
    for (const p of current) {
      if (waitingFor.has(podKey(p)) && !isUnscheduled(p) && hasStatuses(p)) waitingFor.delete(podKey(p))
    }
    if (!current.some((p) => waitingFor.has(podKey(p)))) break
  }
  return current
}

async function annotate(client: KubeClient, c: {namespace: string; pod: string}): Promise<void> {
  try {
    await client.patchPod(c.pod, c.namespace, {metadata: {annotations: {[PUSHED_AT_ANNOTATION]: new Date().toISOString()}}})
  } catch (err) {
    // the pod went away, or patching is not allowed: the kubelet still finds the image on its next re-sync
    if (!isKubeError(err, 'not-found') && !isKubeError(err, 'forbidden')) throw err
  }
}

/** Polls the pods until none of the containers waits for its image any more, or the deadline. */
async function waitForContainers(client: KubeClient, containers: StuckContainer[], deadline: number, signal?: AbortSignal): Promise<Map<StuckContainer, {state: string; stuck: boolean}>> {
  const states = new Map<StuckContainer, {state: string; stuck: boolean}>()
  const pending = new Set(containers)
  for (;;) {
    const pods = new Map<string, V1Pod | undefined>()
    for (const c of pending) {
      const key = `${c.namespace}/${c.pod}`
      if (!pods.has(key)) {
        pods.set(key, await client.getPod(c.pod, c.namespace).catch((err: unknown) => {
          if (isKubeError(err, 'not-found')) return undefined
          throw err
        }))
      }
      const s = containerState(pods.get(key), c.container)
      states.set(c, s)
      // ContainerCreating/PodInitializing come before Running: wait for a final word too
      if (!s.stuck && !['ContainerCreating', 'PodInitializing', 'Pending'].includes(s.state)) pending.delete(c)
    }
    if (pending.size === 0 || Date.now() >= deadline || signal?.aborted) return states
    await sleep(250, signal)
  }
}

// ---------------------------------------------------------------------------------------------
// one-shot fix

function diagnosisRows(d: FixDiagnosis): FixRow[] {
  switch (d.kind) {
    case 'pull-policy-always':
      return [{namespace: d.container.namespace, pod: d.container.pod, container: d.container.container, node: d.container.node ?? '',
        image: d.container.image, action: 'not pushed', result: `imagePullPolicy ${d.container.pullPolicy}`, ok: false, hint: d.hint}]
    case 'unscheduled':
      return [{namespace: d.namespace, pod: d.pod, container: '', node: '<none>', image: d.images.join(','), action: 'not pushed',
        result: 'not scheduled', ok: false, hint: d.hint}]
    case 'not-in-source':
      return []
  }
}

/** Node targets for the nodes named in the transfers, from the API (address, platform) and the config. */
async function nodeTargets(client: KubeClient, names: string[], opts: FixOptions): Promise<Map<string, NodeTarget>> {
  const nodes = await Promise.all(names.map((n) => client.getNode(n)))
  return new Map(targetsFor(nodes, opts.config ?? {defaults: {}, nodes: {}}, opts.access).targets.map((t) => [t.name, t]))
}

/** Drops transfers whose image the source lacks, turning them into diagnoses. */
async function checkSource(transfers: Transfer[], inventory: SourceInventory): Promise<{ready: Transfer[]; missing: FixDiagnosis[]}> {
  const images = [...new Set(transfers.map((t) => t.image))]
  const missingImages = new Set<string>()
  for (const image of images) {
    let has: boolean
    try {
      has = await inventory.has(image)
    } catch (err) {
      if (err instanceof ContainerdError) throw err // names this machine's containerd and what to do
      throw new FixError(`cannot look for ${image} in the ${inventory.description}: ${(err as Error).message}. ` +
        'Hint: take the images from elsewhere with --source containerd|docker|DIR or --archive FILE (and --containerd-address for another containerd)')
    }
    if (!has) missingImages.add(image)
  }
  const missing: FixDiagnosis[] = []
  if (missingImages.size > 0) {
    const names = await inventory.names().catch(() => undefined)
    for (const image of missingImages) {
      const pods = transfers.filter((t) => t.image === image).flatMap((t) => t.containers.map((c) => `${c.namespace}/${c.pod}`))
      missing.push({kind: 'not-in-source', image, pods: [...new Set(pods)], hint: notInSourceHint(image, inventory, names)})
    }
  }
  return {ready: transfers.filter((t) => !missingImages.has(t.image)), missing}
}

/**
 * Repair the pods stuck for want of an image: plan (one transfer per image and node), check the
 * source has each image, push each image to the nodes that need it, annotate the pods so the
 * kubelet looks again at once, and wait until they run (opts.timeoutMs).
 */
export async function fix(opts: FixOptions): Promise<FixResult> {
  const client = opts.client ?? KubeClient.load(opts)
  const deadline = Date.now() + (opts.timeoutMs ?? 300_000)
  let pods = await listTargetPods(client, opts)
  if (opts.waitScheduled && pods.some(isUnscheduled)) pods = await waitScheduled(client, opts, pods, deadline)
  const plan = planFix(pods, normalizeImageName)
  const inventory = sourceInventory(opts.source)
  const {ready, missing} = await checkSource(plan.transfers, inventory)
  const diagnoses: FixDiagnosis[] = [...plan.diagnoses, ...missing]
  const rows: FixRow[] = []
  const transfers: TransferResult[] = []
  for (const t of plan.transfers.filter((x) => !ready.includes(x))) {
    const d = missing.find((m) => m.kind === 'not-in-source' && m.image === t.image)
    for (const c of t.containers) {
      rows.push({namespace: c.namespace, pod: c.pod, container: c.container, node: t.node, image: c.image, action: 'not pushed',
        result: 'image not in the source', ok: false, hint: d?.hint})
    }
  }
  if (opts.dryRun) {
    for (const t of ready) {
      transfers.push({image: t.image, node: t.node, pods: t.containers.map((c) => `${c.namespace}/${c.pod}`)})
      for (const c of t.containers) rows.push({namespace: c.namespace, pod: c.pod, container: c.container, node: t.node, image: c.image, action: 'would push', result: c.reason, ok: true})
    }
    for (const d of diagnoses) rows.push(...diagnosisRows(d))
    return {rows, transfers, diagnoses, ok: diagnoses.length === 0}
  }

  if (ready.length > 0) {
    const targets = await nodeTargets(client, [...new Set(ready.map((t) => t.node))], opts)
    const pool = opts.pool ?? new SshPool(opts.ssh)
    try {
      // one push per image, to exactly the nodes that need it
      for (const image of [...new Set(ready.map((t) => t.image))]) {
        const forImage = ready.filter((t) => t.image === image)
        const result = await pushOnce(opts, pool, image, forImage.map((t) => targets.get(t.node)).filter((t): t is NodeTarget => t !== undefined))
        for (const t of forImage) {
          const r = result.find((x) => x.node === t.node)
          transfers.push({image, node: t.node, pods: t.containers.map((c) => `${c.namespace}/${c.pod}`), push: r})
        }
      }
    } finally {
      if (!opts.pool) await pool.closeAll()
    }
    // nudge the kubelet, then wait for the verdict
    const repaired = transfers.filter((t) => t.push && t.push.status !== 'failed')
    if (opts.annotate !== false) {
      const seen = new Set<string>()
      for (const t of repaired) {
        for (const c of ready.find((x) => x.image === t.image && x.node === t.node)?.containers ?? []) {
          const key = `${c.namespace}/${c.pod}`
          if (seen.has(key)) continue
          seen.add(key)
          await annotate(client, c)
        }
      }
    }
    const waitFor = repaired.flatMap((t) => ready.find((x) => x.image === t.image && x.node === t.node)?.containers ?? [])
    const states = await waitForContainers(client, waitFor, deadline, opts.signal)
    for (const t of transfers) {
      const r = t.push
      for (const c of ready.find((x) => x.image === t.image && x.node === t.node)?.containers ?? []) {
        if (!r || r.status === 'failed') {
          rows.push({namespace: c.namespace, pod: c.pod, container: c.container, node: t.node, image: c.image,
            action: r?.error === 'cancelled' ? 'cancelled' : 'push failed', result: r?.error ?? 'not pushed', ok: false, hint: r?.hint})
          continue
        }
        const s = states.get(c)
        const still = s?.stuck ?? true
        rows.push({namespace: c.namespace, pod: c.pod, container: c.container, node: t.node, image: c.image, action: r.status,
          result: still ? `still ${s?.state ?? c.reason} after the push` : (s?.state ?? 'unknown'), ok: !still,
          hint: still ? `the image is on node ${t.node} now; the kubelet should start the pod on its next re-sync (kubectl describe pod ${c.pod} -n ${c.namespace})` : undefined})
      }
    }
  }
  for (const d of diagnoses) rows.push(...diagnosisRows(d))
  const ok = diagnoses.length === 0 && rows.every((r) => r.ok)
  // the other pods on those nodes that run an older digest of an image sent: restarted, or named
  const pushed = transfers.flatMap((t) => t.push && t.push.status !== 'failed' && t.push.digest ? [{node: t.node, image: t.image, digest: t.push.digest}] : [])
  if (pushed.length === 0) return {rows, transfers, diagnoses, ok}
  if (opts.restart) {
    const access = opts.access
    const restart = await restartStalePods({client, pushed, timeoutMs: Math.max(deadline - Date.now(), 60_000), signal: opts.signal,
      pushMore: pushMoreWith(client, {source: opts.source, ssh: opts.ssh, platform: opts.platform, pin: opts.pin, unpack: opts.unpack, retries: opts.retries, signal: opts.signal}, opts.config ?? {defaults: {}, nodes: {}}, access)})
    return {rows, transfers, diagnoses, restart, ok: ok && restart.ok}
  }
  const stale = await stalePods(client, pushed).catch(() => [])
  return {rows, transfers, diagnoses, ...(stale.length ? {stale} : {}), ok}
}

/** push() one image to some nodes; a failure to open the source becomes a failed result per node. */
async function pushOnce(opts: FixOptions, pool: SshPool, image: string, nodes: NodeTarget[]): Promise<NodeImageResult[]> {
  try {
    const r = await push({
      images: [image], source: opts.source, nodes, pool, platform: opts.platform, jobs: opts.jobs, pin: opts.pin,
      unpack: opts.unpack, retries: opts.retries, reporter: opts.reporter && keepOpen(opts.reporter), signal: opts.signal,
    })
    return r.results
  } catch (err) {
    const cancelled = opts.signal?.aborted
    const error = cancelled ? 'cancelled' : (err as Error).message
    return nodes.map((n) => ({node: n.name, image, status: 'failed', sentBytes: 0, skippedBytes: 0, durationMs: 0, attempts: 0, error}))
  }
}

/** push() closes its reporter when done; the caller's one lives on. */
function keepOpen(reporter: Reporter): Reporter {
  return {event: (e) => reporter.event(e), close: () => undefined}
}

// ---------------------------------------------------------------------------------------------
// fix --watch

export interface FixWatchOptions extends FixOptions {
  /** every result line as it happens (pods repaired, failures, diagnoses) */
  onRow?(row: FixRow): void
  /** every transfer when it ends */
  onTransfer?(t: TransferResult): void
  /** the watch could not go on (e.g. forbidden); fixWatch then rejects with it */
  onError?(err: Error): void
  /** how long a finished transfer counts for pods of the same (image, node) arriving later (default 30 s) */
  settleMs?: number
  /** first delay before a failed transfer is tried again, doubling up to 60 s (default 5 s) */
  retryMs?: number
}

export interface FixWatchSummary {
  transfers: TransferResult[]
  rows: FixRow[]
}

interface InFlight {
  image: string
  node: string
  containers: StuckContainer[]
  done: Promise<NodeImageResult>
}

/**
 * Watches pods (resuming from the last resourceVersion, re-listing on 410) and repairs each one
 * that gets stuck, until opts.signal aborts. Never two transfers of one image to one node at
 * once: a pod arriving while its (image, node) is being sent waits for that transfer. Resolves
 * after the signal with what was done; running pushes are aborted and the SSH pool closed.
 */
export async function fixWatch(opts: FixWatchOptions): Promise<FixWatchSummary> {
  const client = opts.client ?? KubeClient.load(opts)
  const namespace = opts.allNamespaces ? undefined : client.namespace
  const inventory = sourceInventory(opts.source)
  const summary: FixWatchSummary = {transfers: [], rows: []}
  const inFlight = new Map<string, InFlight>()
  const finished = new Map<string, {at: number; result: NodeImageResult}>()
  /** pod uid + container → when it was last handled: one repair per stuck spell */
  const handled = new Map<string, number>()
  const diagnosed = new Set<string>()
  const settleMs = opts.settleMs ?? 30_000
  const retryMs = opts.retryMs ?? 5000
  /** (image, node) → failed transfers in a row, for the back-off */
  const failures = new Map<string, number>()
  const retryTimers = new Set<NodeJS.Timeout>()
  const pool = opts.pool ?? new SshPool(opts.ssh)
  const abort = new AbortController()
  const onAbort = (): void => abort.abort()
  opts.signal?.addEventListener('abort', onAbort, {once: true})
  const tasks = new Set<Promise<void>>()
  const track = (p: Promise<void>): void => {
    tasks.add(p)
    void p.finally(() => tasks.delete(p))
  }
  const emit = (row: FixRow): void => {
    summary.rows.push(row)
    opts.onRow?.(row)
  }
  let fatal: Error | undefined

  const transfer = (key: string, image: string, node: string, first: StuckContainer): InFlight => {
    const send = async (): Promise<NodeImageResult> => {
      const base = {node, image, sentBytes: 0, skippedBytes: 0, durationMs: 0, attempts: 0}
      try {
        if (!(await inventory.has(image))) {
          const names = await inventory.names().catch(() => undefined)
          return {...base, status: 'failed', error: 'image not in the source', hint: notInSourceHint(image, inventory, names)}
        }
        const targets = await nodeTargets(client, [node], opts)
        const [result] = await pushOnce({...opts, signal: abort.signal}, pool, image, [...targets.values()])
        return result ?? {...base, status: 'failed', error: abort.signal.aborted ? 'cancelled' : 'push reported nothing for the node'}
      } catch (err) {
        return {...base, status: 'failed', error: (err as Error).message}
      }
    }
    const flight: InFlight = {image, node, containers: [first], done: send()}
    track((async () => {
      const result = await flight.done
      inFlight.delete(key)
      finished.set(key, {at: Date.now(), result})
      const t: TransferResult = {image, node, pods: [...new Set(flight.containers.map((c) => `${c.namespace}/${c.pod}`))], push: result}
      summary.transfers.push(t)
      opts.onTransfer?.(t)
      for (const c of flight.containers) await settle(c, result)
      if (result.status === 'failed' && result.error !== 'cancelled') scheduleRetry(key, flight.containers)
      else failures.delete(key)
    })())
    return flight
  }

  /**
   * A failed transfer (node unreachable, image not built yet) is tried again with back-off, for
   * the pods still stuck: their status may not change, so no watch event would bring them back.
   */
  const scheduleRetry = (key: string, containers: StuckContainer[]): void => {
    if (abort.signal.aborted) return
    const n = (failures.get(key) ?? 0) + 1
    failures.set(key, n)
    const delay = Math.min(retryMs * 2 ** (n - 1), 60_000)
    const timer = setTimeout(() => {
      retryTimers.delete(timer)
      track((async () => {
        for (const {namespace: ns, pod: name} of uniquePods(containers)) {
          if (abort.signal.aborted) return
          const pod = await client.getPod(name, ns).catch(() => undefined)
          if (!pod) continue
          for (const k of [...handled.keys()]) if (k.startsWith(`${pod.metadata?.uid ?? ''}/`)) handled.delete(k)
          finished.delete(key)
          onPod(pod)
        }
      })())
    }, delay)
    retryTimers.add(timer)
  }

  /** after a transfer: nudge the pod and report it */
  const settle = async (c: StuckContainer, result: NodeImageResult): Promise<void> => {
    if (abort.signal.aborted) return
    const ok = result.status !== 'failed'
    if (ok && opts.annotate !== false) await annotate(client, c).catch(() => undefined)
    emit({namespace: c.namespace, pod: c.pod, container: c.container, node: c.node ?? '', image: c.image,
      action: result.status !== 'failed' ? result.status : result.error === 'cancelled' ? 'cancelled' : result.error === 'image not in the source' ? 'not pushed' : 'push failed',
      result: ok ? 'image on the node; kubelet nudged' : result.error ?? 'failed', ok, hint: result.hint})
  }

  const onPod = (pod: V1Pod): void => {
    if (abort.signal.aborted) return
    const plan = planFix([pod], normalizeImageName)
    for (const d of plan.diagnoses) {
      if (d.kind !== 'pull-policy-always') continue // unscheduled pods come back when they are scheduled
      const key = `${pod.metadata?.uid ?? podKey(pod)}/${d.container.container}`
      if (diagnosed.has(key)) continue
      diagnosed.add(key)
      for (const row of diagnosisRows(d)) emit(row)
    }
    for (const t of plan.transfers) {
      const key = `${t.image}\u0000${t.node}`
      for (const c of t.containers) {
        const podId = `${pod.metadata?.uid ?? podKey(pod)}/${c.container}`
        const flight = inFlight.get(key)
        if (flight) {
          // coalesce: this pod waits for the transfer already running for its (image, node)
          if (!flight.containers.some((x) => x.namespace === c.namespace && x.pod === c.pod && x.container === c.container)) flight.containers.push(c)
          handled.set(podId, Date.now())
          continue
        }
        const last = handled.get(podId)
        if (last !== undefined && Date.now() - last < settleMs) continue
        handled.set(podId, Date.now())
        const done = finished.get(key)
        if (done && done.result.status !== 'failed' && Date.now() - done.at < settleMs) {
          track(settle(c, done.result))
          continue
        }
        inFlight.set(key, transfer(key, t.image, t.node, c))
      }
    }
  }

  await new Promise<void>((resolve) => {
    const watch = client.watchPods({
      namespace,
      // --pod: follow just this one (it may be recreated under the same name)
      fieldSelector: opts.pod ? `metadata.name=${opts.pod}` : undefined,
      onEvent(type, pod) {
        if (type === 'DELETED') {
          for (const k of [...handled.keys()]) if (k.startsWith(`${pod.metadata?.uid ?? ''}/`)) handled.delete(k)
          return
        }
        onPod(pod)
      },
      onError(err) {
        fatal = err
        opts.onError?.(err)
        abort.abort()
      },
    })
    abort.signal.addEventListener('abort', () => {
      watch.stop()
      resolve()
    }, {once: true})
    if (abort.signal.aborted) {
      watch.stop()
      resolve()
    }
  })
  opts.signal?.removeEventListener('abort', onAbort)
  for (const t of retryTimers) clearTimeout(t)
  while (tasks.size > 0) await Promise.allSettled([...tasks])
  if (!opts.pool) await pool.closeAll()
  if (fatal) throw fatal
  return summary
}

