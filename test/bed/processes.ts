// Process helpers of the test bed: commands, pids (per network namespace), waiting, ports.
import {spawn} from 'node:child_process'
import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import * as net from 'node:net'

export interface ExecResult {
  code: number
  stdout: string
  stderr: string
}

export interface ExecOptions {
  input?: Buffer | string
  timeoutMs?: number
  /** Extra environment for a command run inside a node (bed.exec). */
  env?: Record<string, string>
}

export const PATH_ENV = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

// ---------------------------------------------------------------------------------------------
// process helpers

export function runCommand(cmd: string, args: string[], opts: ExecOptions & {env?: NodeJS.ProcessEnv} = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? {...process.env, PATH: PATH_ENV}})
    const out: Buffer[] = []
    const err: Buffer[] = []
    let timer: NodeJS.Timeout | undefined
    let timedOut = false
    if (opts.timeoutMs !== undefined) {
      timer = setTimeout(() => {
        timedOut = true
        child.kill('SIGKILL')
      }, opts.timeoutMs)
    }
    child.stdout.on('data', (b: Buffer) => out.push(b))
    child.stderr.on('data', (b: Buffer) => err.push(b))
    child.stdin.on('error', () => undefined) // the command may exit without reading its input
    child.on('error', (e) => {
      if (timer) clearTimeout(timer)
      reject(new Error(`could not run ${cmd}: ${e.message}`))
    })
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer)
      const stdout = Buffer.concat(out).toString('utf8')
      const stderr = Buffer.concat(err).toString('utf8')
      if (timedOut) {
        reject(new Error(`${cmd} ${args.join(' ')} timed out after ${opts.timeoutMs} ms (stderr: ${stderr.trim()})`))
        return
      }
      resolve({code: code ?? (signal ? 128 + (signalNumber(signal) ?? 0) : 1), stdout, stderr})
    })
    if (opts.input !== undefined) child.stdin.end(opts.input)
    else child.stdin.end()
  })
}

export function signalNumber(signal: NodeJS.Signals): number | undefined {
  const map: Partial<Record<NodeJS.Signals, number>> = {SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15, SIGPIPE: 13}
  return map[signal]
}

export async function must(what: string, cmd: string, args: string[], opts: ExecOptions = {}): Promise<string> {
  const r = await runCommand(cmd, args, opts)
  if (r.code !== 0) {
    throw new Error(`${what} failed: \`${cmd} ${args.join(' ')}\` exited ${r.code}: ${(r.stderr || r.stdout).trim()}`)
  }
  return r.stdout
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

export function listPids(): number[] {
  return fs
    .readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .map(Number)
}

/** State letter from /proc/<pid>/stat, or undefined when the process is gone. */
export function processState(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]
  } catch {
    return undefined
  }
}

export function isAlive(pid: number): boolean {
  const s = processState(pid)
  return s !== undefined && s !== 'Z' && s !== 'X'
}

export function processStartTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
  } catch {
    return undefined
  }
}

export function readComm(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim()
  } catch {
    return ''
  }
}

export function netnsInode(nsPath: string): number | undefined {
  try {
    return fs.statSync(nsPath).ino
  } catch {
    return undefined
  }
}

/** Every live process whose network namespace is the one bound at nsPath. */
export function pidsInNetns(nsPath: string): number[] {
  const ino = netnsInode(nsPath)
  if (ino === undefined) return []
  const want = `net:[${ino}]`
  return listPids().filter((pid) => {
    if (pid === process.pid) return false
    try {
      return fs.readlinkSync(`/proc/${pid}/ns/net`) === want && isAlive(pid)
    } catch {
      return false
    }
  })
}

/** Every live process whose command line mentions the given bed directory. */
export function pidsMentioning(dir: string): number[] {
  const needle = Buffer.from(`${dir}/`)
  return listPids().filter((pid) => {
    if (pid === process.pid) return false
    try {
      return fs.readFileSync(`/proc/${pid}/cmdline`).includes(needle) && isAlive(pid)
    } catch {
      return false
    }
  })
}

export async function waitGone(pids: number[], timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs
  let left = pids.filter(isAlive)
  while (left.length > 0 && Date.now() < deadline) {
    await sleep(20)
    left = left.filter(isAlive)
  }
  return left
}

export function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal)
  } catch {
    // already gone
  }
}

export async function waitFor(what: string, timeoutMs: number, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await probe()) return
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(25)
  }
}

/** The last lines of a daemon's log, for an error message (the log goes with the bed). */
export async function logTail(file: string, lines = 5): Promise<string> {
  const text = await fsp.readFile(file, 'utf8').catch(() => '')
  return text.trim().split('\n').slice(-lines).join('\n') || `(${file} is empty)`
}

export function tcpOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({host, port})
    const done = (ok: boolean) => {
      s.destroy()
      resolve(ok)
    }
    s.setTimeout(500, () => done(false))
    s.once('data', () => done(true)) // the SSH banner: sshd is really answering
    s.once('error', () => done(false))
  })
}
