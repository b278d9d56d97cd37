// Runs `sideload push --json` as a user would and lets a test act on the NDJSON progress events
// while the push is under way (cut the connection after N bytes, send SIGINT, restart containerd).
import {spawn, type ChildProcess} from 'node:child_process'
import * as path from 'node:path'
import {fileURLToPath} from 'node:url'

export const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'run.js')

export interface PushEvent {
  time?: string
  type: string
  target?: string
  doneBytes?: number
  totalBytes?: number
  message?: string
  error?: string
}

export interface NodeResult {
  node: string
  image: string
  status: 'pushed' | 'up to date' | 'failed'
  sentBytes: number
  skippedBytes: number
  durationMs: number
  attempts?: number
  mode?: 'native' | 'ctr'
  error?: string
  hint?: string
  reason?: string
}

export interface PushRun {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  events: PushEvent[]
  /** The final {"type":"result"} line, when the process printed one. */
  result?: {ok: boolean; results: NodeResult[]}
}

export interface RunningPush {
  child: ChildProcess
  done: Promise<PushRun>
}

/** Starts the CLI; onEvent sees every NDJSON progress event as it arrives. */
export function startPush(args: string[], onEvent?: (e: PushEvent, child: ChildProcess) => void, timeoutMs = 90_000): RunningPush {
  const child = spawn(process.execPath, [BIN, 'push', ...args, '--json'], {stdio: ['ignore', 'pipe', 'pipe']})
  let stdout = ''
  let stderr = ''
  let partial = ''
  const events: PushEvent[] = []
  let result: PushRun['result']
  child.stdout?.on('data', (b: Buffer) => {
    stdout += b.toString()
    partial += b.toString()
    const lines = partial.split('\n')
    partial = lines.pop() ?? ''
    for (const line of lines) {
      if (!line.trim()) continue
      let parsed: unknown
      try {
        parsed = JSON.parse(line)
      } catch {
        continue
      }
      const e = parsed as PushEvent & {results?: NodeResult[]; ok?: boolean}
      if (e.type === 'result') result = {ok: Boolean(e.ok), results: e.results ?? []}
      else {
        events.push(e)
        onEvent?.(e, child)
      }
    }
  })
  child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()))
  const done = new Promise<PushRun>((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('error', reject)
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      resolve({code, signal, stdout, stderr, events, result})
    })
  })
  return {child, done}
}

/** Fires fn once, the first time a node has had at least `bytes` sent to it. */
export function afterBytes(target: string, bytes: number, fn: (child: ChildProcess) => void): (e: PushEvent, child: ChildProcess) => void {
  let fired = false
  return (e, child) => {
    if (!fired && e.type === 'bytes' && e.target === target && (e.doneBytes ?? 0) >= bytes) {
      fired = true
      fn(child)
    }
  }
}
