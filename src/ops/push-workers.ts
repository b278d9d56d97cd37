// A push's fan-out over worker threads. Node.js runs a node's SSH encryption, HTTP/2 framing and
// protobuf work on the thread that owns its connection, so one thread feeds about one 1 Gbit/s
// link (README, Performance). Here each worker thread opens the image source itself, holds its
// own SSH connections and pushes the (image, node) pairs this thread hands it, one core each;
// this thread keeps the plan (seeds, waves, --jobs), the progress display and the results.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {Worker} from 'node:worker_threads'
import type {NodeTarget} from '../nodes/index.js'
import type {ProgressEvent} from '../ui/progress.js'
import {PACKAGE_ROOT} from '../util/package-root.js'
import type {Route} from './p2p.js'
import type {NodeImageResult, PushOptions} from './push-types.js'

/** The worker's script: the bundle's entry for src/ops/push-worker.ts (scripts/bundle.mjs). */
export const PUSH_WORKER_SCRIPT = path.join(PACKAGE_ROOT, 'dist', 'bundle', 'ops', 'push-worker.js')

/** What a worker needs to push as push() would: everything in PushOptions that is data. */
export type PushWorkerOptions = Pick<PushOptions, 'images' | 'source' | 'platform' | 'pin' | 'replace' | 'unpack' | 'retries' | 'ssh'>

export type ToWorker =
  | {type: 'push'; id: number; target: NodeTarget; image: string; route?: Route}
  | {type: 'cancel'}
  | {type: 'close'}

export type FromWorker =
  | {type: 'event'; event: ProgressEvent}
  | {type: 'result'; id: number; result: NodeImageResult}
  /** the source could not be opened, or a push threw (pushToNode reports a node's failure as a result) */
  | {type: 'failed'; id?: number; message: string}

/**
 * How many worker threads a push uses: `options.workers` when given (1 means none), else one per
 * core up to the (image, node) pairs that run at once (--jobs), when both are at least 4. One thread
 * feeds about one 1 Gbit/s link, so below that a thread more costs memory (~40 MB each) and CPU
 * (~10-20 % more in all, measured on the bed) and gains nothing where the uplink is the limit; on a
 * 2-core machine the nodes' share of the cores leaves nothing to gain (README, Performance). None
 * for a source only this thread can read (an archive on stdin, a Docker daemon's export) or a push
 * that shares the caller's connections.
 */
export function workerCount(options: Pick<PushOptions, 'workers' | 'source' | 'pool' | 'jobs' | 'nodes'>, imageCount: number, cores = os.availableParallelism()): number {
  if (options.pool || !reopenable(options.source)) return 0
  const pairs = Math.min(options.nodes.length * imageCount, options.jobs ?? 4)
  const wanted = options.workers ?? (cores >= AUTO_FROM && pairs >= AUTO_FROM ? cores : 0)
  const n = Math.min(wanted, pairs)
  return n >= 2 ? n : 0
}

/** Cores, and pairs at once, from which a push spreads over worker threads unless told (--workers). */
const AUTO_FROM = 4

/** Whether each worker thread can open the source again (not an archive on stdin, nor a Docker daemon's export). */
export function reopenable(source: PushOptions['source']): boolean {
  return (source.kind === 'archive' && source.path !== '-') || source.kind === 'archive-dir' || source.kind === 'containerd'
}

interface Slot {
  worker: Worker
  busy: number
  exited: Promise<void>
  /** why the worker is gone (it failed to start, or crashed): its pushes fail with this */
  gone?: string
}

interface Waiting {
  slot: Slot
  target: NodeTarget
  image: string
  resolve: (r: NodeImageResult) => void
}

/** The worker threads of one push. */
export class PushWorkers {
  private readonly slots: Slot[] = []
  private readonly waiting = new Map<number, Waiting>()
  private nextId = 1
  private readonly onAbort = (): void => this.post({type: 'cancel'})

  constructor(count: number, options: PushWorkerOptions, private readonly caller: Pick<PushOptions, 'reporter' | 'signal'>) {
    for (let i = 0; i < count; i++) {
      const worker = new Worker(PUSH_WORKER_SCRIPT, {workerData: options, stdout: false, stderr: false})
      const slot: Slot = {worker, busy: 0, exited: new Promise((resolve) => worker.once('exit', () => resolve()))}
      worker.on('message', (m: FromWorker) => this.received(slot, m))
      worker.on('error', (err) => this.lost(slot, `worker thread failed: ${err.message}`))
      worker.once('exit', (code) => this.lost(slot, `worker thread exited (${code}) before it finished`))
      this.slots.push(slot)
    }
    caller.signal?.addEventListener('abort', this.onAbort, {once: true})
    if (caller.signal?.aborted) this.onAbort()
  }

  get count(): number {
    return this.slots.length
  }

  /** One image to one node on the least busy worker; a worker that fails makes the pair's result a failure that says so. */
  push(target: NodeTarget, image: string, route?: Route): Promise<NodeImageResult> {
    const slot = this.slots.filter((s) => !s.gone).sort((a, b) => a.busy - b.busy)[0]
    if (!slot) return Promise.resolve(failedResult(target, image, this.slots[0]?.gone ?? 'no worker thread'))
    const id = this.nextId++
    slot.busy++
    return new Promise((resolve) => {
      this.waiting.set(id, {slot, target, image, resolve})
      slot.worker.postMessage({type: 'push', id, target, image, route} satisfies ToWorker)
    })
  }

  /** Every worker closes its connections and source, and ends. */
  async close(): Promise<void> {
    this.caller.signal?.removeEventListener('abort', this.onAbort)
    this.post({type: 'close'})
    await Promise.all(this.slots.map(async (s) => {
      const timer = setTimeout(() => void s.worker.terminate(), 10_000)
      await s.exited
      clearTimeout(timer)
    }))
  }

  private post(message: ToWorker): void {
    for (const s of this.slots) if (!s.gone) s.worker.postMessage(message)
  }

  private received(slot: Slot, m: FromWorker): void {
    if (m.type === 'event') {
      this.caller.reporter?.event(m.event)
    } else if (m.type === 'result') {
      this.settle(m.id, m.result)
    } else if (m.id !== undefined) {
      const w = this.waiting.get(m.id)
      if (w) this.settle(m.id, failedResult(w.target, w.image, m.message))
    } else {
      this.lost(slot, m.message)
      void slot.worker.terminate()
    }
  }

  private settle(id: number, result: NodeImageResult): void {
    const w = this.waiting.get(id)
    if (!w) return
    this.waiting.delete(id)
    w.slot.busy--
    w.resolve(result)
  }

  private lost(slot: Slot, why: string): void {
    slot.gone ??= why
    for (const [id, w] of this.waiting) if (w.slot === slot) this.settle(id, failedResult(w.target, w.image, slot.gone))
  }
}

function failedResult(target: NodeTarget, image: string, error: string): NodeImageResult {
  return {node: target.name, image, status: 'failed', sentBytes: 0, skippedBytes: 0, durationMs: 0, attempts: 0, error}
}

/** The push's worker threads, or undefined for none (`count` < 2: workerCount). */
export function startPushWorkers(options: PushOptions, count: number): PushWorkers | undefined {
  if (count < 2) return undefined
  if (!fs.existsSync(PUSH_WORKER_SCRIPT)) {
    if (options.workers === undefined) return undefined // a source checkout without `npm run build`: in this thread
    throw Object.assign(new Error(`--workers needs ${PUSH_WORKER_SCRIPT}, which this installation lacks`), {hint: 'run `npm run build` in sideload\'s directory, or push without --workers'})
  }
  const {images, source, platform, pin, replace, unpack, retries, ssh} = options
  return new PushWorkers(count, {images, source, platform, pin, replace, unpack, retries, ssh}, options)
}
