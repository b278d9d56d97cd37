// The local sandbox: the field's cluster on this machine. A bed of 3 nodes (real sshd + containerd
// each), the test API server with kubelet / kube-proxy / scheduler stand-ins running in a detached
// background process, and a "build machine": a containerd on the host holding the demo image in
// namespace k8s.io, as `nerdctl build` leaves it. Everything lives under /run/sideload-bed/sandbox/<name>/
// (plus the bed's own /run/sideload-bed/beds/<name>/), so `down` can remove every trace.
import {spawn} from 'node:child_process'
import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import * as path from 'node:path'
import {type Bed, BED_ROOT, destroyBed, openBed, startBed} from '../bed/bed.js'
import {makeImage} from '../bed/images.js'

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
  apiserverDir: string
  kubeconfig: string
  /** sideload's config file: SSH user, the bed key and known_hosts */
  sideloadConfig: string
  /** `source`-able: KUBECONFIG, SIDELOAD_CONFIG, PATH with kubectl and sideload */
  envFile: string
  binDir: string
  buildDir: string
  buildSocket: string
  buildAddress: string
  buildPid: string
  buildLog: string
}

export function sandboxPaths(name: string): SandboxPaths {
  const dir = path.join(SANDBOX_ROOT, name)
  const buildDir = path.join(dir, 'build')
  const buildSocket = path.join(buildDir, 'containerd.sock')
  return {
    name, dir,
    daemonPid: path.join(dir, 'daemon.pid'), daemonLog: path.join(dir, 'daemon.log'), ready: path.join(dir, 'ready'),
    apiserverDir: path.join(dir, 'apiserver'), kubeconfig: path.join(dir, 'kubeconfig'),
    sideloadConfig: path.join(dir, 'sideload.yaml'), envFile: path.join(dir, 'env'), binDir: path.join(dir, 'bin'),
    buildDir, buildSocket, buildAddress: `unix://${buildSocket}`,
    buildPid: path.join(buildDir, 'containerd.pid'), buildLog: path.join(buildDir, 'containerd.log'),
  }
}

export function validateSandboxName(name: string): void {
  if (!/^[a-z][a-z0-9-]{0,19}$/.test(name)) {
    throw new Error(`sandbox name '${name}' is invalid: use 1-20 characters a-z, 0-9, '-', starting with a letter`)
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

async function must(what: string, cmd: string, args: string[], opts: {timeoutMs?: number} = {}): Promise<string> {
  const r = await run(cmd, args, opts)
  if (r.code !== 0) throw new Error(`${what} failed (${cmd} ${args.join(' ')}, exit ${r.code}): ${(r.stderr || r.stdout).trim()}`)
  return r.stdout
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
// the build machine: a containerd on the host with the image nerdctl build would have left

function buildContainerdConfig(p: SandboxPaths): string {
  return [
    'version = 2',
    `root = "${p.buildDir}/root"`,
    `state = "${p.buildDir}/state"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]',
    '[grpc]',
    `  address = "${p.buildSocket}"`,
    '[ttrpc]',
    `  address = "${p.buildSocket}.ttrpc"`,
    '[debug]',
    '  address = ""',
    '[metrics]',
    '  address = ""',
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = "${p.buildDir}/opt"`,
    '',
  ].join('\n')
}

async function startBuildMachine(p: SandboxPaths): Promise<void> {
  await fsp.mkdir(p.buildDir, {recursive: true})
  const config = path.join(p.buildDir, 'config.toml')
  await fsp.writeFile(config, buildContainerdConfig(p))
  const log = fs.openSync(p.buildLog, 'a')
  const child = spawn('/usr/bin/containerd', ['--config', config], {stdio: ['ignore', log, log], detached: true})
  fs.closeSync(log)
  child.unref()
  if (child.pid === undefined) throw new Error(`could not start the build machine's containerd (log: ${p.buildLog})`)
  await fsp.writeFile(p.buildPid, `${child.pid}\n`)
  const deadline = Date.now() + 20_000
  for (;;) {
    if (!isAlive(child.pid)) throw new Error(`the build machine's containerd exited at start; see ${p.buildLog}`)
    if (fs.existsSync(p.buildSocket) && (await run('ctr', ['-a', p.buildSocket, 'version'], {timeoutMs: 5000})).code === 0) break
    if (Date.now() > deadline) throw new Error(`the build machine's containerd did not answer on ${p.buildSocket} within 20 s; see ${p.buildLog}`)
    await sleep(100)
  }
  // what `nerdctl build -t local/centos-stream-8-systemd .` leaves in containerd (namespace k8s.io)
  const archive = path.join(p.buildDir, 'centos-stream-8-systemd.tar')
  await makeImage({
    name: DEMO_IMAGE,
    // busybox stands in for CentOS Stream 8 + systemd; a 24 MB layer makes the transfer visible
    layers: [{busybox: true}, {sizeBytes: 24 << 20, seed: 'centos-stream-8-systemd'}],
    format: 'oci',
    out: archive,
    cmd: ['sh', '-c', `mkdir -p /www && echo '${DEMO_PAGE}' > /www/index.html && exec httpd -f -p ${DEMO_PORT} -h /www`],
  })
  await must('importing the demo image into the build machine', 'ctr', ['-a', p.buildSocket, '-n', 'k8s.io', 'images', 'import', archive], {timeoutMs: 60_000})
  await fsp.rm(archive, {force: true})
}

// ---------------------------------------------------------------------------------------------
// up / down / status

export interface SandboxInfo {
  paths: SandboxPaths
  bed: Bed
  /** lines a user puts in a shell: export KUBECONFIG=… etc. */
  exports: string[]
}

function exportsOf(p: SandboxPaths): string[] {
  return [
    `export KUBECONFIG=${p.kubeconfig}`,
    `export SIDELOAD_CONFIG=${p.sideloadConfig}`,
    `export PATH=${p.binDir}:$PATH`,
  ]
}

/** Whether every part of the sandbox is running (then `up` has nothing to do). */
export async function sandboxHealthy(p: SandboxPaths): Promise<boolean> {
  const daemon = readPid(p.daemonPid)
  const build = readPid(p.buildPid)
  if (!daemon || !isAlive(daemon) || !build || !isAlive(build) || !fs.existsSync(p.ready) || !fs.existsSync(p.kubeconfig)) return false
  if ((await run('ctr', ['-a', p.buildSocket, '-n', 'k8s.io', 'images', 'ls', '-q'], {timeoutMs: 5000})).stdout.split('\n').indexOf(DEMO_IMAGE) < 0) return false
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
  for (const f of [p.daemonPid, p.buildPid]) {
    const pid = readPid(f)
    if (pid) pids.add(pid)
  }
  if (fs.existsSync(p.dir)) for (const pid of pidsMentioning(p.dir)) pids.add(pid)
  await stopPids([...pids], `stopping sandbox '${name}'`)
  await destroyBed(name)
  // mounts a killed containerd may leave (snapshots of the build machine)
  const mounts = (await fsp.readFile('/proc/self/mounts', 'utf8')).split('\n').map((l) => l.split(' ')[1]).filter((m) => m?.startsWith(`${p.dir}/`))
  for (const m of mounts.reverse()) await run('umount', ['-l', m])
  await fsp.rm(p.dir, {recursive: true, force: true})
  await fsp.rmdir(SANDBOX_ROOT).catch(() => undefined) // only when no other sandbox is left
}

/** Brings the sandbox up from any state; does nothing when it already runs. */
export async function sandboxUp(name: string, log: (line: string) => void = () => undefined): Promise<SandboxInfo> {
  validateSandboxName(name)
  const p = sandboxPaths(name)
  if (await sandboxHealthy(p)) {
    log(`sandbox '${name}' is already up`)
    return {paths: p, bed: await openBed(name), exports: exportsOf(p)}
  }
  if (fs.existsSync(p.dir) || fs.existsSync(path.join(BED_ROOT, 'beds', name))) log(`clearing what an earlier sandbox '${name}' left behind`)
  await sandboxDown(name)
  await fsp.mkdir(p.binDir, {recursive: true})
  try {
    log(`starting ${NODES} nodes (sshd + containerd each) and the build machine's containerd`)
    const [bed] = await Promise.all([startBed({name, nodes: NODES, persistent: true}), startBuildMachine(p)])
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
    log('starting the API server with kubelet, kube-proxy and scheduler stand-ins (background)')
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
  parts: {daemon: boolean; buildMachine: boolean; bed: boolean}
}

export async function sandboxStatus(name: string): Promise<SandboxState> {
  const p = sandboxPaths(name)
  const daemon = readPid(p.daemonPid)
  const build = readPid(p.buildPid)
  let bed = false
  try {
    await openBed(name)
    bed = true
  } catch {
    bed = false
  }
  return {
    name, up: await sandboxHealthy(p),
    parts: {daemon: daemon !== undefined && isAlive(daemon), buildMachine: build !== undefined && isAlive(build), bed},
  }
}
