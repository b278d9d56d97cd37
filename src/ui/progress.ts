import {createRequire} from 'node:module'
import type cliProgressTypes from 'cli-progress'
import {renderError} from './errors.js'
import {formatBytes} from './format.js'

/** What an operation tells the user while it runs, per target (a node, a pod, a build step). */
export type ProgressEvent =
  | {type: 'start'; target: string; totalBytes?: number; message?: string}
  | {type: 'bytes'; target: string; doneBytes: number; totalBytes?: number}
  | {type: 'info'; target: string; message: string}
  | {type: 'done'; target: string; message: string}
  /** `error` is the message only: the hint is printed once, with the final result */
  | {type: 'failed'; target: string; error: string; reason?: string}

export interface Reporter {
  event(e: ProgressEvent): void
  /** Stop live rendering (bars) so that a final table prints cleanly. */
  close(): void
}

export type ProgressMode = 'auto' | 'tty' | 'plain' | 'json' | 'quiet'

/**
 * Progress bars on a terminal (one per target: bytes, rate, ETA), plain lines otherwise,
 * NDJSON with --json. Everything but JSON goes to stderr so stdout stays for results.
 */
export function createReporter(mode: ProgressMode, streams = {out: process.stdout, err: process.stderr}): Reporter {
  const resolved = mode === 'auto' ? (streams.err.isTTY ? 'tty' : 'plain') : mode
  switch (resolved) {
    case 'tty':
      return new BarReporter(streams.err)
    case 'json':
      return new JsonReporter(streams.out)
    case 'quiet':
      return {event() {}, close() {}}
    default:
      return new PlainReporter(streams.err)
  }
}

export class JsonReporter implements Reporter {
  constructor(private readonly out: NodeJS.WritableStream) {}
  event(e: ProgressEvent): void {
    this.out.write(JSON.stringify({time: new Date().toISOString(), ...e}) + '\n')
  }
  close(): void {}
}

/** One line per state change; byte progress at most every 2 s per target so logs stay readable. */
export class PlainReporter implements Reporter {
  private readonly lastBytesLine = new Map<string, number>()
  constructor(private readonly err: NodeJS.WritableStream, private readonly intervalMs = 2000) {}
  event(e: ProgressEvent): void {
    switch (e.type) {
      case 'start':
        this.err.write(`${e.target}: ${e.message ?? 'started'}${e.totalBytes ? ` (${formatBytes(e.totalBytes)})` : ''}\n`)
        break
      case 'bytes': {
        const now = Date.now()
        if (now - (this.lastBytesLine.get(e.target) ?? 0) < this.intervalMs) return
        this.lastBytesLine.set(e.target, now)
        const total = e.totalBytes ? ` / ${formatBytes(e.totalBytes)}` : ''
        this.err.write(`${e.target}: ${formatBytes(e.doneBytes)}${total}\n`)
        break
      }
      case 'info':
      case 'done':
        this.err.write(`${e.target}: ${e.message}\n`)
        break
      case 'failed':
        this.err.write(`${renderError({subject: e.target, message: e.error}, 'FAILED')}\n`)
        break
    }
  }
  close(): void {}
}

interface BarPayload {
  target: string
  /** the bytes to send are known (a start event with totalBytes > 0) */
  sized: boolean
  /** done or failed: no ETA any more */
  ended: boolean
  speed: string
  status: string
}

/**
 * One bar per target: `target [bar] done / total | speed | ETA | status`, each part only once it is
 * known (before the node says what it lacks there is no size, no rate and no ETA to show).
 */
export class BarReporter implements Reporter {
  private readonly multi: cliProgressTypes.MultiBar
  private readonly bars = new Map<string, cliProgressTypes.SingleBar>()
  /** When each target's first bytes moved, for the transfer rate (connecting is not transfer time). */
  private readonly firstBytesAt = new Map<string, number>()
  constructor(stream: NodeJS.WritableStream) {
    // Loaded only for a terminal (plain and JSON output never draw bars).
    const cliProgress = createRequire(import.meta.url)('cli-progress') as typeof cliProgressTypes
    const format: cliProgressTypes.GenericFormatter = (options, params, payload: BarPayload) => {
      const head = payload.sized
        ? `${payload.target} [${cliProgress.Format.BarFormat(params.progress, options)}] ${formatBytes(params.value)} / ${formatBytes(params.total)}`
        : payload.target
      const running = payload.sized && !payload.ended && params.value > 0 && params.value < params.total
      const eta = running && Number.isFinite(params.eta) && params.eta > 0 ? `ETA ${cliProgress.Format.TimeFormat(params.eta, options, 5).trim()}` : ''
      return [head, payload.speed, eta, payload.status].filter(Boolean).join(' | ')
    }
    this.multi = new cliProgress.MultiBar(
      {
        stream: stream as NodeJS.WritableStream & {isTTY?: boolean},
        format,
        hideCursor: true,
        clearOnComplete: false,
        autopadding: true,
      },
      cliProgress.Presets.shades_classic,
    )
  }
  private bar(target: string): cliProgressTypes.SingleBar {
    let bar = this.bars.get(target)
    if (!bar) {
      const payload: BarPayload = {target, sized: false, ended: false, speed: '', status: ''}
      bar = this.multi.create(1, 0, payload)
      this.bars.set(target, bar)
    }
    return bar
  }
  private size(bar: cliProgressTypes.SingleBar, totalBytes: number | undefined): {sized?: true} {
    if (!totalBytes) return {}
    bar.setTotal(totalBytes)
    return {sized: true}
  }
  event(e: ProgressEvent): void {
    switch (e.type) {
      case 'start': {
        const bar = this.bar(e.target)
        bar.update(0, {...this.size(bar, e.totalBytes), status: e.message ?? 'starting'})
        break
      }
      case 'bytes': {
        const bar = this.bar(e.target)
        const sized = this.size(bar, e.totalBytes)
        if (!this.firstBytesAt.has(e.target)) this.firstBytesAt.set(e.target, Date.now())
        const elapsed = (Date.now() - (this.firstBytesAt.get(e.target) ?? Date.now())) / 1000
        bar.update(e.doneBytes, {...sized, speed: elapsed > 0 ? `${formatBytes(e.doneBytes / elapsed)}/s` : '', status: 'sending'})
        break
      }
      case 'info':
        this.bar(e.target).update({status: e.message})
        break
      case 'done': {
        const bar = this.bar(e.target)
        bar.update(bar.getTotal(), {ended: true, speed: '', status: e.message})
        bar.stop()
        break
      }
      case 'failed': {
        const bar = this.bar(e.target)
        bar.update({ended: true, speed: '', status: renderError({message: e.error}, 'FAILED')})
        bar.stop()
        break
      }
    }
  }
  close(): void {
    this.multi.stop()
  }
}
