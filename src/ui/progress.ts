import {createRequire} from 'node:module'
import type cliProgressTypes from 'cli-progress'
import {formatBytes} from './format.js'

/** What an operation tells the user while it runs, per target (a node, a pod, a build step). */
export type ProgressEvent =
  | {type: 'start'; target: string; totalBytes?: number; message?: string}
  | {type: 'bytes'; target: string; doneBytes: number; totalBytes?: number}
  | {type: 'info'; target: string; message: string}
  | {type: 'done'; target: string; message: string}
  | {type: 'failed'; target: string; error: string}

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
        this.err.write(`${e.target}: FAILED: ${e.error}\n`)
        break
    }
  }
  close(): void {}
}

export class BarReporter implements Reporter {
  private readonly multi: cliProgressTypes.MultiBar
  private readonly bars = new Map<string, cliProgressTypes.SingleBar>()
  /** When each target's first bytes moved, for the transfer rate (connecting is not transfer time). */
  private readonly firstBytesAt = new Map<string, number>()
  constructor(stream: NodeJS.WritableStream) {
    // Loaded only for a terminal (plain and JSON output never draw bars).
    const cliProgress = createRequire(import.meta.url)('cli-progress') as typeof cliProgressTypes
    this.multi = new cliProgress.MultiBar(
      {
        stream: stream as NodeJS.WritableStream & {isTTY?: boolean},
        format: '{target} [{bar}] {doneBytes} / {totalBytes} | {speed} | ETA {eta_formatted} | {status}',
        hideCursor: true,
        clearOnComplete: false,
        autopadding: true,
      },
      cliProgress.Presets.shades_classic,
    )
  }
  private bar(target: string, total = 1): cliProgressTypes.SingleBar {
    let bar = this.bars.get(target)
    if (!bar) {
      bar = this.multi.create(total, 0, {target, doneBytes: formatBytes(0), totalBytes: formatBytes(total), speed: '', status: ''})
      this.bars.set(target, bar)
    }
    return bar
  }
  event(e: ProgressEvent): void {
    switch (e.type) {
      case 'start':
        this.bar(e.target, e.totalBytes ?? 1).update(0, {status: e.message ?? 'starting'})
        break
      case 'bytes': {
        const bar = this.bar(e.target, e.totalBytes ?? 1)
        if (e.totalBytes) bar.setTotal(Math.max(e.totalBytes, 1))
        if (!this.firstBytesAt.has(e.target)) this.firstBytesAt.set(e.target, Date.now())
        const elapsed = (Date.now() - (this.firstBytesAt.get(e.target) ?? Date.now())) / 1000
        bar.update(e.doneBytes, {
          doneBytes: formatBytes(e.doneBytes),
          totalBytes: formatBytes(e.totalBytes ?? e.doneBytes),
          speed: elapsed > 0 ? `${formatBytes(e.doneBytes / elapsed)}/s` : '',
          status: 'sending',
        })
        break
      }
      case 'info':
        this.bar(e.target).update({status: e.message})
        break
      case 'done': {
        const bar = this.bar(e.target)
        bar.update(bar.getTotal(), {status: e.message})
        bar.stop()
        break
      }
      case 'failed':
        this.bar(e.target).update({status: `FAILED: ${e.error}`})
        this.bar(e.target).stop()
        break
    }
  }
  close(): void {
    this.multi.stop()
  }
}
