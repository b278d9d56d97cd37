// The local sandbox: the field's cluster on this machine. A bed of 3 nodes (real sshd + containerd
// each), the real kube-apiserver and kube-scheduler with kubelet / kube-proxy stand-ins running in a detached
// background process, and a build machine (buildmachine.ts): containerd 2.x with a standalone
// buildkitd building into namespace k8s.io, and nerdctl. Everything lives under
// /run/sideload-bed/sandbox/<name>/ (plus the beds' own /run/sideload-bed/beds/<name>/ and
// /run/sideload-bed/beds/<name>-build/), so `down` can remove every trace.
import {spawn} from 'node:child_process'
import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import * as path from 'node:path'
import {type Bed, BED_ROOT, destroyBed, openBed, removeEmptyBedDirs, startBed} from '../bed/bed.js'
import {sweepDeadServers} from '../kube-real/apiserver.js'
import {buildMachineState, startSandboxBuildMachine} from './buildmachine.js'

export const REPO = path.resolve(import.meta.dirname, '..', '..')
export const SANDBOX_ROOT = path.join(BED_ROOT, 'sandbox')
export const DEFAULT_SANDBOX = 'sandbox'
export const KUBECTL = path.join(REPO, '.cache', 'kubectl', 'usr', 'bin', 'kubectl')
export const SIDELOAD_BIN = path.join(REPO, 'bin', 'run.js')
/** The image of the field's pod (manifests/example-pod.yaml), as the build machine's containerd names it. */
export const DEMO_IMAGE = 'docker.io/local/centos-stream-8-systemd:latest'
/** The demo image serves HTTP here (the pods share their node's network, where sshd already holds 22). */
export const DEMO_PORT = 8080
export const DEMO_PAGE = 'centos-stream-8: up and running, sideloaded without a registry'
const NODES = 3
const PATH_ENV = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

export interface SandboxPaths {
  name: string
  dir: string
  /** the background process (API server, kubelet, kube-proxy, scheduler) */
  daemonPid: string
  daemonLog: string
  /** written by the background process once the API server answers */
  ready: string
  kubeconfig: string
  /** sideload's config file: SSH user, the bed key and known_hosts */
  sideloadConfig: string
  /** `source`-able: KUBECONFIG, SIDELOAD_CONFIG, CONTAINERD_ADDRESS, BUILDKIT_HOST, PATH with kubectl, sideload, nerdctl */
  envFile: string
  binDir: string
  /** the build machine's one-node bed (persistent, like the nodes' bed) */
  buildBed: string
  buildDir: string
  /** the build machine's containerd, as the host reaches it (a link to its node's socket) */
  buildSocket: string
  buildAddress: string
  buildkitSocket: string
  buildkitAddress: string
  /** nerdctl's data root (the wrapper in binDir) */
  nerdctlRoot: string
  /** the demo image's build context: Dockerfile, index.html */
  demoContext: string
}

/** The folder name of the sandbox's API server under REAL_KUBE_ROOT (one per daemon process). */
export function sandboxServerName(name: string, daemonPid: number): string {
  return `sandbox-${name}-${daemonPid}`
}

export function sandboxPaths(name: string): SandboxPaths {
  const dir = path.join(SANDBOX_ROOT, name)
  const buildDir = path.join(dir, 'build')
  const buildSocket = path.join(buildDir, 'containerd.sock')
  const buildkitSocket = path.join(buildDir, 'buildkitd.sock')
  return {
    name, dir,
    daemonPid: path.join(dir, 'daemon.pid'), daemonLog: path.join(dir, 'daemon.log'), ready: path.join(dir, 'ready'),
    kubeconfig: path.join(dir, 'kubeconfig'),
    sideloadConfig: path.join(dir, 'sideload.yaml'), envFile: path.join(dir, 'env'), binDir: path.join(dir, 'bin'),
    buildBed: `${name}${BUILD_BED_SUFFIX}`,
    buildDir, buildSocket, buildAddress: `unix://${buildSocket}`,
    buildkitSocket, buildkitAddress: `unix://${buildkitSocket}`,
    nerdctlRoot: path.join(buildDir, 'nerdctl'), demoContext: path.join(dir, 'centos-stream-8'),
  }
}

/** The build machine's bed is `<sandbox>-build`: no sandbox may be called so (it would share it). */
const BUILD_BED_SUFFIX = '-build'

export function validateSandboxName(name: string): void {
  if (!/^[a-z][a-z0-9-]{0,19}$/.test(name) || name.endsWith(BUILD_BED_SUFFIX)) {
    throw new Error(`sandbox name '${name}' is invalid: use 1-20 characters a-z, 0-9, '-', starting with a letter, not ending in '${BUILD_BED_SUFFIX}'`)
  }
}

// ---------------------------------------------------------------------------------------------
// processes

export interface RunResult {
  code: number
  stdout: string
  stderr: string
}

export function run(cmd: string, args: string[], opts: {env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number; onOutput?: (text: string) => void} = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? {...process.env, PATH: `${process.env.PATH ?? ''}:${PATH_ENV}`}, cwd: REPO})
    const out: Buffer[] = []
    const err: Buffer[] = []
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000)
    child.stdout.on('data', (b: Buffer) => {
      out.push(b)
      opts.onOutput?.(b.toString('utf8'))
    })
    child.stderr.on('data', (b: Buffer) => {
      err.push(b)
      opts.onOutput?.(b.toString('utf8'))
    })
    child.stdin.on('error', () => undefined)
    child.on('error', (e) => {
      clearTimeout(timer)
      reject(new Error(`could not run ${cmd}: ${e.message}`))
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({code: code ?? (signal ? 128 : 1), stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8')})
    })
    child.stdin.end(opts.input ?? '')
  })
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    // a zombie is not alive
    return !/\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return false
  }
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(file, 'utf8').trim())
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

/** Processes whose command line mentions the sandbox dir (its daemons, even without a pid file). */
function pidsMentioning(dir: string): number[] {
  const needle = Buffer.from(`${dir}/`)
  const out: number[] = []
  for (const e of fs.readdirSync('/proc')) {
    const pid = Number(e)
    if (!Number.isInteger(pid) || pid === process.pid) continue
    try {
      if (fs.readFileSync(`/proc/${pid}/cmdline`).includes(needle)) out.push(pid)
    } catch {
      // gone
    }
  }
  return out
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

async function stopPids(pids: number[], what: string): Promise<void> {
  const live = pids.filter(isAlive)
  for (const pid of live) process.kill(pid, 'SIGTERM')
  const deadline = Date.now() + 5000
  while (live.some(isAlive) && Date.now() < deadline) await sleep(50)
  for (const pid of live.filter(isAlive)) process.kill(pid, 'SIGKILL')
  const killDeadline = Date.now() + 5000
  while (live.some(isAlive) && Date.now() < killDeadline) await sleep(50)
  const left = live.filter(isAlive)
  if (left.length > 0) throw new Error(`${what}: processes ${left.join(', ')} did not exit after SIGKILL`)
}

// ---------------------------------------------------------------------------------------------
// up / down / status

export interface SandboxInfo {
  paths: SandboxPaths
  bed: Bed
  /** lines a user puts in a shell: export KUBECONFIG=… etc. */
  exports: string[]
}

/** What the env file sets (PATH: the bin dir goes first). */
export function sandboxVars(p: SandboxPaths): Record<string, string> {
  return {
    KUBECONFIG: p.kubeconfig,
    SIDELOAD_CONFIG: p.sideloadConfig,
    // the build machine, for sideload build / push / fix, nerdctl and buildctl (CONTAINERD_ADDRESS
    // is a bare socket path, as ctr reads it; sideload and nerdctl take that too)
    CONTAINERD_ADDRESS: p.buildSocket,
    BUILDKIT_HOST: p.buildkitAddress,
  }
}

/** The environment of a shell that sourced the env file. */
export function sandboxEnv(p: SandboxPaths, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return {...base, ...sandboxVars(p), PATH: `${p.binDir}:${base.PATH ?? PATH_ENV}`}
}

function exportsOf(p: SandboxPaths): string[] {
  return [...Object.entries(sandboxVars(p)).map(([k, v]) => `export ${k}=${v}`), `export PATH=${p.binDir}:$PATH`]
}

/** Whether every part of the sandbox is running (then `up` has nothing to do). */
export async function sandboxHealthy(p: SandboxPaths): Promise<boolean> {
  const daemon = readPid(p.daemonPid)
  if (!daemon || !isAlive(daemon) || !fs.existsSync(p.ready) || !fs.existsSync(p.kubeconfig) || !fs.existsSync(p.envFile)) return false
  const build = await buildMachineState(p)
  if (!build.containerd || !build.buildkitd || !build.baseImage) return false
  try {
    const bed = await openBed(p.name)
    for (const n of bed.nodes) if ((await bed.exec(n, ['ctr', 'version'], {timeoutMs: 5000})).code !== 0) return false
  } catch {
    return false
  }
  return true
}

/** Removes every trace of sandbox `name`: its processes, its bed, its dir. No-op when absent. */
export async function sandboxDown(name: string): Promise<void> {
  validateSandboxName(name)
  const p = sandboxPaths(name)
  const pids = new Set<number>()
  const daemon = readPid(p.daemonPid)
  if (daemon) pids.add(daemon)
  // buildkitd (its socket is in the sandbox dir), and nerdctl / buildctl / sideload a demo left running
  if (fs.existsSync(p.dir)) for (const pid of pidsMentioning(p.dir)) pids.add(pid)
  await stopPids([...pids], `stopping sandbox '${name}'`)
  // the API server's etcd and kube-apiserver die with the daemon; sweep their folder now, not in a second
  await sweepDeadServers()
  await destroyBed(name)
  await destroyBed(p.buildBed)
  // mounts that anything started from the sandbox dir may leave
  const mounts = (await fsp.readFile('/proc/self/mounts', 'utf8')).split('\n').map((l) => l.split(' ')[1]).filter((m) => m?.startsWith(`${p.dir}/`))
  for (const m of mounts.reverse()) await run('umount', ['-l', m])
  await fsp.rm(p.dir, {recursive: true, force: true})
  await fsp.rmdir(SANDBOX_ROOT).catch(() => undefined) // only when no other sandbox is left
  await removeEmptyBedDirs()
}

/** Brings the sandbox up from any state; does nothing when it already runs. */
export async function sandboxUp(name: string, log: (line: string) => void = () => undefined): Promise<SandboxInfo> {
  validateSandboxName(name)
  const p = sandboxPaths(name)
  if (await sandboxHealthy(p)) {
    log(`sandbox '${name}' is already up`)
    await fsp.writeFile(p.envFile, `${exportsOf(p).join('\n')}\n`) // as this version writes it
    return {paths: p, bed: await openBed(name), exports: exportsOf(p)}
  }
  if (fs.existsSync(p.dir) || fs.existsSync(path.join(BED_ROOT, 'beds', name))) log(`clearing what an earlier sandbox '${name}' left behind`)
  await sandboxDown(name)
  await fsp.mkdir(p.binDir, {recursive: true})
  try {
    log(`starting ${NODES} nodes (sshd + containerd each) and the build machine (containerd 2.x, buildkitd, nerdctl)`)
    // both finish (or fail) before anything is cleared away
    const [nodes, build] = await Promise.allSettled([startBed({name, nodes: NODES, persistent: true}), startSandboxBuildMachine(p)])
    if (nodes.status === 'rejected') throw nodes.reason
    if (build.status === 'rejected') throw build.reason
    const bed = nodes.value
    await fsp.writeFile(p.sideloadConfig, [
      `# sideload settings for the sandbox '${name}': every node is reached as root with the bed key`,
      'defaults:',
      '  sshUser: root',
      `  sshKey: ${bed.keyPath}`,
      `  knownHosts: ${bed.knownHostsPath}`,
      '',
    ].join('\n'))
    if (fs.existsSync(KUBECTL)) await fsp.symlink(KUBECTL, path.join(p.binDir, 'kubectl'))
    await fsp.writeFile(path.join(p.binDir, 'sideload'), `#!/bin/sh\nexec "${process.execPath}" "${SIDELOAD_BIN}" "$@"\n`, {mode: 0o755})
    await fsp.writeFile(p.envFile, `${exportsOf(p).join('\n')}\n`)
    log('starting kube-apiserver, etcd and kube-scheduler with kubelet and kube-proxy stand-ins (background)')
    await startDaemon(p)
    return {paths: p, bed, exports: exportsOf(p)}
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e)
    await sandboxDown(name).catch(() => undefined)
    throw new Error(`sandbox '${name}' did not come up: ${why}`)
  }
}

async function startDaemon(p: SandboxPaths): Promise<void> {
  const log = fs.openSync(p.daemonLog, 'a')
  const script = path.join(REPO, 'test', 'sandbox', 'daemon.ts')
  const child = spawn(process.execPath, ['--import', 'tsx', script, '--name', p.name, '--dir', `${p.dir}/`], {
    cwd: REPO, stdio: ['ignore', log, log], detached: true,
  })
  fs.closeSync(log)
  child.unref()
  if (child.pid === undefined) throw new Error(`could not start the background process (log: ${p.daemonLog})`)
  await fsp.writeFile(p.daemonPid, `${child.pid}\n`)
  const deadline = Date.now() + 30_000
  while (!fs.existsSync(p.ready)) {
    if (!isAlive(child.pid)) throw new Error(`the background process exited at start: ${(await fsp.readFile(p.daemonLog, 'utf8')).trim().split('\n').slice(-5).join(' | ')}`)
    if (Date.now() > deadline) throw new Error(`the API server did not come up within 30 s; see ${p.daemonLog}`)
    await sleep(100)
  }
}

export interface SandboxState {
  name: string
  up: boolean
  parts: {daemon: boolean; buildMachine: boolean; buildkitd: boolean; bed: boolean}
}

export async function sandboxStatus(name: string): Promise<SandboxState> {
  validateSandboxName(name)
  const p = sandboxPaths(name)
  const daemon = readPid(p.daemonPid)
  const build = await buildMachineState(p)
  let bed = false
  try {
    await openBed(name)
    bed = true
  } catch {
    bed = false
  }
  return {
    name, up: await sandboxHealthy(p),
    parts: {daemon: daemon !== undefined && isAlive(daemon), buildMachine: build.containerd, buildkitd: build.buildkitd, bed},
  }
}
