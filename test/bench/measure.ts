// Timing helpers for the benchmark: run a process (its stdin from a file descriptor, so no
// JavaScript sits in the data path of a baseline), time it wall-clock, and read its peak RSS and
// CPU time (user + sys) from GNU time. Every helper throws with the command and its stderr when the command fails: a
// baseline that silently failed would make every ratio a lie.
import {spawn} from 'node:child_process'
import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import * as os from 'node:os'
import * as path from 'node:path'

export interface RunResult {
  /** Wall-clock milliseconds from spawn to exit. */
  ms: number
  code: number
  stdout: string
  stderr: string
  /** Peak resident set size in bytes (only with `usage: true`). */
  maxRssBytes?: number
  /** CPU time of the process and the children it waited for, user + sys, in ms (only with `usage: true`). */
  cpuMs?: number
  /** user + sys of the process's busiest thread, in ms (only with `threads: true`; see ThreadCpu) */
  busiestThreadCpuMs?: number
}

export interface RunOptions {
  /** A file to connect to the process's stdin (opened read-only, passed as a descriptor). */
  stdinFile?: string
  /** Wrap in /usr/bin/time to report the peak RSS and the CPU time of the process. */
  usage?: boolean
  /** Do not throw on a non-zero exit. */
  allowFailure?: boolean
  timeoutMs?: number
  env?: NodeJS.ProcessEnv
  /** Sample the CPU time of every thread of the process (and of its children: under GNU time, the command) while it runs. */
  threads?: boolean
}

/** Clock ticks per second of /proc's CPU times (USER_HZ: 100 on Linux). */
const TICKS_PER_S = 100

/**
 * The CPU time of each thread of a process tree, sampled from /proc/<pid>/task/<tid>/stat every
 * 50 ms while it runs (the last sample of a thread counts: a thread that ends loses at most its last
 * 50 ms). What a client's fan-out over threads shows: its busiest thread bounds its throughput on a
 * machine with a core for each thread, where the sum (GNU time's) does not.
 */
class ThreadCpu {
  private readonly ticks = new Map<string, number>()
  private readonly timer: NodeJS.Timeout
  constructor(private readonly pid: number) {
    this.timer = setInterval(() => this.sample(), 50)
  }
  private sample(): void {
    const pids = [this.pid]
    for (let i = 0; i < pids.length; i++) {
      const pid = pids[i]
      let tids: string[] = []
      try {
        tids = fs.readdirSync(`/proc/${pid}/task`)
        pids.push(...fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number))
      } catch {
        continue // gone meanwhile
      }
      for (const tid of tids) {
        try {
          // the fields after the command name (which may hold spaces): state is 3rd, utime 14th, stime 15th
          const fields = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8').split(')').pop()!.trim().split(' ')
          this.ticks.set(`${pid}/${tid}`, Number(fields[11]) + Number(fields[12]))
        } catch {
          // the thread ended meanwhile
        }
      }
    }
  }
  stop(): number {
    clearInterval(this.timer)
    return (Math.max(0, ...this.ticks.values()) * 1000) / TICKS_PER_S
  }
}

const TIME_BIN = '/usr/bin/time'

/** Runs argv, returns its wall time (and peak RSS); throws when it fails, saying which command. */
export async function run(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
  let usageFile: string | undefined
  let cmd = argv
  if (opts.usage) {
    usageFile = path.join(os.tmpdir(), `slbench-usage-${process.pid}-${Math.random().toString(36).slice(2)}`)
    cmd = [TIME_BIN, '-f', '%M %U %S', '-o', usageFile, ...argv]
  }
  const stdinFd = opts.stdinFile ? fs.openSync(opts.stdinFile, 'r') : undefined
  let threads: ThreadCpu | undefined
  try {
    const started = performance.now()
    const child = spawn(cmd[0], cmd.slice(1), {stdio: [stdinFd ?? 'ignore', 'pipe', 'pipe'], env: opts.env ?? process.env})
    threads = opts.threads && child.pid ? new ThreadCpu(child.pid) : undefined
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout?.on('data', (c: Buffer) => out.push(c))
    child.stderr?.on('data', (c: Buffer) => err.push(c))
    let timer: NodeJS.Timeout | undefined
    const code = await new Promise<number>((resolve, reject) => {
      child.once('error', reject)
      child.once('close', (c, signal) => resolve(c ?? (signal ? 128 : 1)))
      if (opts.timeoutMs) timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs)
    })
    const ms = performance.now() - started
    if (timer) clearTimeout(timer)
    const result: RunResult = {ms, code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString()}
    if (threads) result.busiestThreadCpuMs = threads.stop()
    if (usageFile) Object.assign(result, parseUsage(await fsp.readFile(usageFile, 'utf8').catch(() => '')))
    if (code !== 0 && !opts.allowFailure) {
      throw new Error(`benchmark step failed (exit ${code}): ${argv.join(' ')}\n${(result.stderr || result.stdout).trim().slice(-2000)}`)
    }
    return result
  } finally {
    threads?.stop()
    if (stdinFd !== undefined) fs.closeSync(stdinFd)
    if (usageFile) await fsp.rm(usageFile, {force: true})
  }
}

/**
 * GNU time's `%M %U %S` line (peak RSS in KiB, user and sys CPU seconds); it is the last line
 * (a command that failed gets a "Command exited with non-zero status" line before it).
 */
export function parseUsage(text: string): {maxRssBytes?: number; cpuMs?: number} {
  const m = /^(\d+) (\d+(?:\.\d+)?) (\d+(?:\.\d+)?)$/.exec(text.trim().split('\n').pop() ?? '')
  if (!m) return {}
  const kb = Number(m[1])
  return {...(kb > 0 ? {maxRssBytes: kb * 1024} : {}), cpuMs: (Number(m[2]) + Number(m[3])) * 1000}
}

/** Runs several commands at once; the time is until the last one exits. */
export async function runParallel(steps: Array<{argv: string[]; opts?: RunOptions}>): Promise<{ms: number; results: RunResult[]}> {
  const started = performance.now()
  const results = await Promise.all(steps.map((s) => run(s.argv, s.opts)))
  return {ms: performance.now() - started, results}
}

/** Times an async function (for steps made of several commands, e.g. copy then import). */
export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now()
  await fn()
  return performance.now() - started
}

export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN
  const s = [...values].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}
