import {spawn} from 'node:child_process'
import * as path from 'node:path'

export const BIN = path.resolve(__dirname, '..', '..', 'bin', 'run.js')

export interface CliRun {
  code: number | null
  stdout: string
  stderr: string
}

/** Run the built CLI as a user would (no terminal), optionally feeding stdin. */
export function runCli(args: string[], opts: {input?: Buffer | string; env?: NodeJS.ProcessEnv; timeoutMs?: number} = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {env: {...process.env, HOME: process.env.HOME, ...opts.env}, stdio: ['pipe', 'pipe', 'pipe']})
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (b) => (stdout += b))
    child.stderr.on('data', (b) => (stderr += b))
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({code, stdout, stderr})
    })
    child.stdin.on('error', () => undefined)
    child.stdin.end(opts.input ?? '')
  })
}

/** The final {"type":"result"} line of `push --json`. */
export function jsonResult(stdout: string): {ok: boolean; results: Array<{node: string; image: string; status: string; sentBytes: number; skippedBytes: number; mode?: string; digest?: string; error?: string; hint?: string}>} {
  const line = stdout.trim().split('\n').reverse().find((l) => l.includes('"type":"result"'))
  if (!line) throw new Error(`no result line in:\n${stdout}`)
  return JSON.parse(line)
}
