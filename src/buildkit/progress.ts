import {type StatusResponse, type Vertex, timestampMs} from './protos.js'

/** One build step as the daemon reported it, merged from incremental Status updates. */
export interface BuildStep {
  /** 1-based, in order of first appearance (buildx's `#N`). */
  index: number
  digest: string
  name: string
  cached: boolean
  startedMs?: number
  completedMs?: number
  error?: string
  /** Log lines (stdout and stderr interleaved), the last MAX_LOG_LINES kept. */
  logs: string[]
  /** Sub-progress (context transfer, layer pulls, export) by status ID. */
  statuses: Map<string, StepStatus>
  warnings: string[]
}

export interface StepStatus {
  name: string
  current: number
  total: number
  completed: boolean
}

/** 1.2MB / 34kB, as buildx prints sizes. */
export function formatSize(n: number): string {
  if (n < 1000) return `${n}B`
  const units = ['kB', 'MB', 'GB', 'TB']
  let v = n
  let u = -1
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000
    u++
  }
  return `${v.toFixed(2)}${units[u]}`
}

export function describeStatus(s: StepStatus): string {
  const amount = s.total > 0 ? `${formatSize(s.current)} / ${formatSize(s.total)}` : s.current > 0 ? formatSize(s.current) : ''
  return [s.name, amount, s.completed ? 'done' : ''].filter((x) => x !== '').join(' ')
}

const MAX_LOG_LINES = 200

/** Merges BuildKit's incremental Status updates into a list of steps (buildx's progressui model). */
export class BuildProgressModel {
  readonly steps = new Map<string, BuildStep>()
  private partial = new Map<string, string>()

  /** Apply one update; returns what changed, for streaming renderers. */
  apply(update: StatusResponse): {
    steps: BuildStep[]
    logs: {step: BuildStep; line: string; timeMs?: number}[]
    finishedStatuses: {step: BuildStep; status: StepStatus}[]
    warnings: {step: BuildStep; text: string}[]
  } {
    const changed = new Set<BuildStep>()
    for (const v of update.vertexes) changed.add(this.mergeVertex(v))
    const finishedStatuses: {step: BuildStep; status: StepStatus}[] = []
    for (const st of update.statuses) {
      const step = this.steps.get(st.vertex)
      if (!step) continue
      const prev = step.statuses.get(st.ID)
      const status: StepStatus = {
        name: st.name || st.ID,
        current: Number(st.current),
        total: Number(st.total),
        completed: timestampMs(st.completed) !== undefined,
      }
      step.statuses.set(st.ID, status)
      if (status.completed && !prev?.completed) finishedStatuses.push({step, status})
    }
    const warnings: {step: BuildStep; text: string}[] = []
    for (const w of update.warnings ?? []) {
      const step = this.steps.get(w.vertex)
      if (!step) continue
      const text = w.short.toString('utf8')
      step.warnings.push(text)
      warnings.push({step, text})
    }
    const logs: {step: BuildStep; line: string; timeMs?: number}[] = []
    for (const log of update.logs) {
      const step = this.steps.get(log.vertex)
      if (!step) continue
      const text = (this.partial.get(log.vertex) ?? '') + log.msg.toString('utf8')
      const lines = text.split('\n')
      this.partial.set(log.vertex, lines.pop() ?? '')
      for (const line of lines) {
        step.logs.push(line)
        if (step.logs.length > MAX_LOG_LINES) step.logs.shift()
        logs.push({step, line, timeMs: timestampMs(log.timestamp)})
      }
    }
    return {steps: [...changed], logs, finishedStatuses, warnings}
  }

  private mergeVertex(v: Vertex): BuildStep {
    let step = this.steps.get(v.digest)
    if (!step) {
      step = {index: this.steps.size + 1, digest: v.digest, name: v.name, cached: false, logs: [], statuses: new Map(), warnings: []}
      this.steps.set(v.digest, step)
    }
    if (v.name) step.name = v.name
    step.cached ||= v.cached
    step.startedMs = timestampMs(v.started) ?? step.startedMs
    step.completedMs = timestampMs(v.completed) ?? step.completedMs
    if (v.error) step.error = v.error
    return step
  }

  /** The step that failed (not just cancelled because another one did), if any. */
  failedStep(): BuildStep | undefined {
    const failed = [...this.steps.values()].filter((s) => s.error)
    return failed.find((s) => !/context canceled/.test(s.error ?? '')) ?? failed[0]
  }

  /** Flush partial log lines (a step's last line without a newline). */
  flush(): {step: BuildStep; line: string}[] {
    const out: {step: BuildStep; line: string}[] = []
    for (const [digest, rest] of this.partial) {
      const step = this.steps.get(digest)
      if (step && rest !== '') {
        step.logs.push(rest)
        out.push({step, line: rest})
      }
    }
    this.partial.clear()
    return out
  }
}

export type ProgressMode = 'auto' | 'plain' | 'tty' | 'json'

export interface ProgressOutput {
  write(text: string): unknown
  isTTY?: boolean
  columns?: number
  rows?: number
}

/** Renders a build's progress; `update` per Status message, `end` once the build is over. */
export interface ProgressRenderer {
  update(update: StatusResponse): void
  end(): void
  readonly model: BuildProgressModel
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`
}

function duration(step: BuildStep, now: number): number {
  return (step.completedMs ?? now) - (step.startedMs ?? now)
}

/** buildx's plain output: `#N [name]`, `#N 0.123 log line`, `#N DONE 0.4s` / `#N CACHED` / `#N ERROR: …`. */
export class PlainProgress implements ProgressRenderer {
  readonly model = new BuildProgressModel()
  private announced = new Set<BuildStep>()
  private done = new Set<BuildStep>()

  constructor(private readonly out: ProgressOutput) {}

  private announce(step: BuildStep): void {
    if (this.announced.has(step)) return
    this.announced.add(step)
    this.out.write(`#${step.index} ${step.name}\n`)
  }

  update(update: StatusResponse): void {
    const {steps, logs, finishedStatuses, warnings} = this.model.apply(update)
    for (const step of steps) if (step.startedMs !== undefined || step.cached) this.announce(step)
    for (const {step, line, timeMs} of logs) {
      this.announce(step)
      const at = timeMs !== undefined && step.startedMs !== undefined ? ((timeMs - step.startedMs) / 1000).toFixed(3) : ''
      this.out.write(`#${step.index} ${at} ${line}\n`)
    }
    for (const {step, status} of finishedStatuses) {
      this.announce(step)
      this.out.write(`#${step.index} ${describeStatus(status)}\n`)
    }
    for (const {step, text} of warnings) this.out.write(`#${step.index} WARNING: ${text}\n`)
    for (const step of steps) {
      if (this.done.has(step)) continue
      if (step.error) {
        this.announce(step)
        this.out.write(`#${step.index} ERROR: ${step.error}\n\n`)
        this.done.add(step)
      } else if (step.cached && step.completedMs !== undefined) {
        this.announce(step)
        this.out.write(`#${step.index} CACHED\n\n`)
        this.done.add(step)
      } else if (step.completedMs !== undefined) {
        this.announce(step)
        this.out.write(`#${step.index} DONE ${seconds(duration(step, Date.now()))}\n\n`)
        this.done.add(step)
      }
    }
  }

  end(): void {
    for (const {step, line} of this.model.flush()) this.out.write(`#${step.index} ${line}\n`)
  }
}

/** One JSON object per line: step changes and log lines. */
export class JsonProgress implements ProgressRenderer {
  readonly model = new BuildProgressModel()

  constructor(private readonly out: ProgressOutput) {}

  update(update: StatusResponse): void {
    const {steps, logs, warnings} = this.model.apply(update)
    for (const {step, text} of warnings) this.out.write(`${JSON.stringify({event: 'build.warning', step: step.index, message: text})}\n`)
    for (const s of steps) {
      this.out.write(
        `${JSON.stringify({
          event: 'build.step',
          step: s.index,
          name: s.name,
          cached: s.cached,
          started: s.startedMs !== undefined ? new Date(s.startedMs).toISOString() : undefined,
          completed: s.completedMs !== undefined ? new Date(s.completedMs).toISOString() : undefined,
          error: s.error,
        })}\n`,
      )
    }
    for (const {step, line} of logs) this.out.write(`${JSON.stringify({event: 'build.log', step: step.index, line})}\n`)
  }

  end(): void {
    for (const {step, line} of this.model.flush()) this.out.write(`${JSON.stringify({event: 'build.log', step: step.index, line})}\n`)
  }
}

/** A live view on a terminal: every step with its timing, CACHED marks, and the running steps' last log lines. */
export class TtyProgress implements ProgressRenderer {
  readonly model = new BuildProgressModel()
  private readonly startMs = Date.now()
  private lines = 0
  private timer: NodeJS.Timeout | undefined

  constructor(private readonly out: ProgressOutput) {
    this.timer = setInterval(() => this.render(), 150)
    this.timer.unref()
  }

  update(update: StatusResponse): void {
    this.model.apply(update)
  }

  private render(): void {
    const now = Date.now()
    const width = Math.max(40, this.out.columns ?? 100)
    const steps = [...this.model.steps.values()]
    const finished = steps.filter((s) => s.completedMs !== undefined).length
    const rows = [`[+] Building ${seconds(now - this.startMs)} (${finished}/${steps.length})${this.timer ? '' : ' FINISHED'}`]
    for (const s of steps) {
      const prefix = s.error ? ' => ERROR ' : s.cached ? ' => CACHED ' : ' => '
      const time = s.startedMs !== undefined && !s.cached ? seconds(duration(s, now)) : ''
      const name = `${prefix}${s.name}`
      rows.push(`${name.slice(0, width - time.length - 2).padEnd(width - time.length - 1)}${time}`)
      for (const st of s.statuses.values()) rows.push(` => => ${describeStatus(st)}`.slice(0, width - 1))
      if (s.completedMs === undefined && s.startedMs !== undefined) {
        for (const l of s.logs.slice(-6)) rows.push(` => => # ${l}`.slice(0, width - 1))
      }
      for (const w of s.warnings) rows.push(` => WARNING: ${w}`.slice(0, width - 1))
    }
    // Only what fits on the screen can be redrawn in place; keep the header and the newest rows.
    const height = this.out.rows ?? 0
    if (height > 2 && rows.length > height - 1 && this.timer) rows.splice(1, rows.length - (height - 1))
    const clear = this.lines > 0 ? `\x1b[${this.lines}F\x1b[J` : ''
    this.out.write(`${clear}${rows.join('\n')}\n`)
    this.lines = rows.length
  }

  end(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
    this.model.flush()
    this.render()
  }
}

export function createProgressRenderer(mode: ProgressMode, out: ProgressOutput): ProgressRenderer {
  if (mode === 'json') return new JsonProgress(out)
  if (mode === 'tty' || (mode === 'auto' && out.isTTY)) return new TtyProgress(out)
  return new PlainProgress(out)
}
