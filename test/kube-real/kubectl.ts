// Runs Debian's real kubectl (scripts/fetch-debian-kubectl.sh) against a test API server, with a
// private HOME so its discovery cache cannot leak between test files.
import {execFileSync, spawn, type ChildProcessWithoutNullStreams} from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

const ROOT = path.resolve(import.meta.dirname, '..', '..')

let cached: string | undefined
export function kubectlPath(): string {
  cached ??= execFileSync(path.join(ROOT, 'scripts', 'fetch-debian-kubectl.sh'), {encoding: 'utf8'}).trim()
  return cached
}

export interface KubectlResult {
  code: number
  stdout: string
  stderr: string
}

export function kubectlEnv(kubeconfigPath: string): NodeJS.ProcessEnv {
  const home = path.join(path.dirname(kubeconfigPath), 'kubectl-home')
  fs.mkdirSync(home, {recursive: true})
  return {PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, KUBECONFIG: kubeconfigPath}
}

/** Runs kubectl with `args`; never throws on a non-zero exit (the result carries the code). */
export async function kubectl(kubeconfigPath: string, args: string[], opts: {cwd?: string} = {}): Promise<KubectlResult> {
  const child = spawn(kubectlPath(), args, {env: kubectlEnv(kubeconfigPath), cwd: opts.cwd ?? ROOT})
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  const code = await new Promise<number>(resolve => child.on('close', c => resolve(c ?? -1)))
  return {code, stdout, stderr}
}

/** Starts a long-running kubectl (e.g. `get pods -w`); the caller kills it. */
export function kubectlSpawn(kubeconfigPath: string, args: string[]): ChildProcessWithoutNullStreams {
  return spawn(kubectlPath(), args, {env: kubectlEnv(kubeconfigPath), cwd: ROOT})
}

export const REPO_ROOT = ROOT
