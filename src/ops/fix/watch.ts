// `sideload fix --watch`: keep repairing pods that get stuck later, one transfer per (image, node)
// at a time, until the signal aborts.
import type {V1Pod} from '@kubernetes/client-node'
import {normalizeImageName} from '../../image/index.js'
import {KubeClient} from '../../kube/client.js'
import {notInSourceHint, type SourceInventory, sourceInventory} from '../../sources/index.js'
import {SshPool} from '../../ssh/index.js'
import {errorInfo} from '../../ui/errors.js'
import type {NodeImageResult} from '../push.js'
import type {FixOptions} from './options.js'
import {planFix, type StuckContainer} from './plan.js'
import {annotate, podKey, uniquePods} from './pods.js'
import {containerRow, diagnosisRows, failedAction, type FixRow, IMAGE_NOT_IN_SOURCE, TRANSFER_CANCELLED, type TransferResult} from './result.js'
import {nodeTargets, pushOnce} from './transfer.js'

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
  return new FixWatcher(opts).run()
}

/** One watch: its state is its fields, each event handler a method. */
class FixWatcher {
  private readonly client: KubeClient
  private readonly inventory: SourceInventory
  private readonly summary: FixWatchSummary = {transfers: [], rows: []}
  /** (image, node) → the transfer running now */
  private readonly inFlight = new Map<string, InFlight>()
  /** (image, node) → the last transfer that ended, and when */
  private readonly finished = new Map<string, {at: number; result: NodeImageResult}>()
  /** pod uid + container → when it was last handled: one repair per stuck spell */
  private readonly handled = new Map<string, number>()
  /** pod uid + container diagnosed already (pull policy Always): said once */
  private readonly diagnosed = new Set<string>()
  /** (image, node) → failed transfers in a row, for the back-off */
  private readonly failures = new Map<string, number>()
  private readonly retryTimers = new Set<NodeJS.Timeout>()
  private readonly tasks = new Set<Promise<void>>()
  private readonly pool: SshPool
  private readonly abort = new AbortController()
  private readonly settleMs: number
  private readonly retryMs: number
  private fatal: Error | undefined

  constructor(private readonly opts: FixWatchOptions) {
    this.client = opts.client ?? KubeClient.load(opts)
    this.inventory = sourceInventory(opts.source)
    this.pool = opts.pool ?? new SshPool(opts.ssh)
    this.settleMs = opts.settleMs ?? 30_000
    this.retryMs = opts.retryMs ?? 5000
  }

  async run(): Promise<FixWatchSummary> {
    const onAbort = (): void => this.abort.abort()
    this.opts.signal?.addEventListener('abort', onAbort, {once: true})
    await this.watchUntilStopped()
    this.opts.signal?.removeEventListener('abort', onAbort)
    for (const t of this.retryTimers) clearTimeout(t)
    while (this.tasks.size > 0) await Promise.allSettled([...this.tasks])
    if (!this.opts.pool) await this.pool.closeAll().catch(() => undefined)
    if (this.fatal) throw this.fatal
    return this.summary
  }

  private watchUntilStopped(): Promise<void> {
    return new Promise<void>((resolve) => {
      const watch = this.client.watchPods({
        namespace: this.opts.allNamespaces ? undefined : this.client.namespace,
        // --pod: follow just this one (it may be recreated under the same name)
        fieldSelector: this.opts.pod ? `metadata.name=${this.opts.pod}` : undefined,
        onEvent: (type, pod) => {
          if (type === 'DELETED') this.forget(pod)
          else this.onPod(pod)
        },
        onError: (err) => {
          // stopping (Ctrl-C, SIGTERM) is a clean end: an error of the watch torn down by it is none
          if (this.abort.signal.aborted) return
          this.fatal = err
          this.opts.onError?.(err)
          this.abort.abort()
        },
      })
      this.abort.signal.addEventListener('abort', () => {
        watch.stop()
        resolve()
      }, {once: true})
      if (this.abort.signal.aborted) {
        watch.stop()
        resolve()
      }
    })
  }

  private track(p: Promise<void>): void {
    this.tasks.add(p)
    void p.finally(() => this.tasks.delete(p))
  }

  private emit(row: FixRow): void {
    this.summary.rows.push(row)
    this.opts.onRow?.(row)
  }

  /** A pod's containers count as not handled again (it was deleted, or its transfer is retried). */
  private forget(pod: V1Pod): void {
    for (const k of [...this.handled.keys()]) if (k.startsWith(`${pod.metadata?.uid ?? ''}/`)) this.handled.delete(k)
  }

  private onPod(pod: V1Pod): void {
    if (this.abort.signal.aborted) return
    const plan = planFix([pod], normalizeImageName)
    const podId = pod.metadata?.uid ?? podKey(pod)
    for (const d of plan.diagnoses) {
      if (d.kind !== 'pull-policy-always') continue // unscheduled pods come back when they are scheduled
      const key = `${podId}/${d.container.container}`
      if (this.diagnosed.has(key)) continue
      this.diagnosed.add(key)
      for (const row of diagnosisRows(d)) this.emit(row)
    }
    for (const t of plan.transfers) {
      for (const c of t.containers) this.repair(`${t.image}\u0000${t.node}`, t.image, t.node, c, `${podId}/${c.container}`)
    }
  }

  /** One stuck container: joins the transfer running for its (image, node), reuses one just done, or starts one. */
  private repair(key: string, image: string, node: string, c: StuckContainer, containerId: string): void {
    const flight = this.inFlight.get(key)
    if (flight) {
      // coalesce: this pod waits for the transfer already running for its (image, node)
      if (!flight.containers.some((x) => x.namespace === c.namespace && x.pod === c.pod && x.container === c.container)) flight.containers.push(c)
      this.handled.set(containerId, Date.now())
      return
    }
    const last = this.handled.get(containerId)
    if (last !== undefined && Date.now() - last < this.settleMs) return
    this.handled.set(containerId, Date.now())
    const done = this.finished.get(key)
    if (done && done.result.status !== 'failed' && Date.now() - done.at < this.settleMs) {
      this.track(this.settle(c, done.result))
      return
    }
    this.inFlight.set(key, this.transfer(key, image, node, c))
  }

  private transfer(key: string, image: string, node: string, first: StuckContainer): InFlight {
    const flight: InFlight = {image, node, containers: [first], done: this.send(image, node)}
    this.track(this.afterTransfer(key, flight))
    return flight
  }

  /** The image to the node, if the source has it; every failure becomes a result. */
  private async send(image: string, node: string): Promise<NodeImageResult> {
    const base = {node, image, sentBytes: 0, skippedBytes: 0, durationMs: 0, attempts: 0}
    try {
      if (!(await this.inventory.has(image))) {
        const names = await this.inventory.names().catch(() => undefined)
        return {...base, status: 'failed', error: 'image not in the source', reason: IMAGE_NOT_IN_SOURCE, hint: notInSourceHint(image, this.inventory, names)}
      }
      const targets = await nodeTargets(this.client, [node], this.opts)
      const [result] = await pushOnce({...this.opts, signal: this.abort.signal}, this.pool, image, [...targets.values()])
      if (result) return result
      return {...base, status: 'failed', ...(this.abort.signal.aborted ? {error: 'cancelled', reason: TRANSFER_CANCELLED} : {error: 'push reported nothing for the node'})}
    } catch (err) {
      return {...base, status: 'failed', error: (err as Error).message}
    }
  }

  private async afterTransfer(key: string, flight: InFlight): Promise<void> {
    const result = await flight.done
    this.inFlight.delete(key)
    this.finished.set(key, {at: Date.now(), result})
    const t: TransferResult = {image: flight.image, node: flight.node, pods: [...new Set(flight.containers.map((c) => `${c.namespace}/${c.pod}`))], push: result}
    this.summary.transfers.push(t)
    this.opts.onTransfer?.(t)
    for (const c of flight.containers) await this.settle(c, result)
    if (result.status === 'failed' && result.reason !== TRANSFER_CANCELLED) this.scheduleRetry(key, flight.containers)
    else this.failures.delete(key)
  }

  /**
   * A failed transfer (node unreachable, image not built yet) is tried again with back-off, for
   * the pods still stuck: their status may not change, so no watch event would bring them back.
   */
  private scheduleRetry(key: string, containers: StuckContainer[]): void {
    if (this.abort.signal.aborted) return
    const n = (this.failures.get(key) ?? 0) + 1
    this.failures.set(key, n)
    const delay = Math.min(this.retryMs * 2 ** (n - 1), 60_000)
    const timer = setTimeout(() => {
      this.retryTimers.delete(timer)
      this.track(this.retry(key, containers))
    }, delay)
    this.retryTimers.add(timer)
  }

  private async retry(key: string, containers: StuckContainer[]): Promise<void> {
    for (const {namespace, pod: name} of uniquePods(containers)) {
      if (this.abort.signal.aborted) return
      const pod = await this.client.getPod(name, namespace).catch(() => undefined)
      if (!pod) continue
      this.forget(pod)
      this.finished.delete(key)
      this.onPod(pod)
    }
  }

  /** After a transfer: nudge the pod and report it. */
  private async settle(c: StuckContainer, result: NodeImageResult): Promise<void> {
    if (this.abort.signal.aborted) return
    const ok = result.status !== 'failed'
    const nudge = ok && this.opts.annotate !== false
    const refused = nudge ? await annotate(this.client, c).catch((err: unknown) => ({message: `the nudge failed: ${errorInfo(err).message}`, hint: 'the kubelet finds the image on its next retry'})) : undefined
    const said = !ok ? result.error ?? 'failed' : refused ? `image on the node; ${refused.message}` : nudge ? 'image on the node; kubelet nudged' : 'image on the node'
    this.emit(containerRow(c, c.node ?? '', {action: result.status !== 'failed' ? result.status : failedAction(result), result: said, ok, hint: refused?.hint ?? result.hint}))
  }
}
