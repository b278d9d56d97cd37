// A test bed of real "nodes" on this machine: each node is a network namespace with its own IP on a
// per-bed bridge, plus a persistent private mount namespace in which the node's own directories are
// bind-mounted over /run/containerd, /var/lib/containerd, /etc/containerd and /etc/ssh. Every node
// runs its own sshd (key-only) and its own containerd, so `ssh root@IP ctr -n k8s.io …` reaches that
// node's image store and nothing else.
//
// Naming (everything the bed creates carries one of these, nothing else is ever touched):
//   /run/sideload-bed/beds/<name>/        bed dir: key, known_hosts, ssh_config, state, node dirs
//   /run/sideload-bed/index/<k>/          claim on bed index k (bridge slbr<k>, subnet 198.18.<k>.0/24)
//   netns slbed-<name>-<i>, bridge slbr<k>, host veth slb<k>n<i>, node IP 198.18.<k>.<10+i>
import {spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import * as net from 'node:net'
import * as path from 'node:path'
import {daemonBinary} from '../daemons/daemons.js'

export interface BedNode {
  name: string
  index: number
  ip: string
  sshPort: number
  hostKeyPub: string
  containerdSocket: string
  hostSocketPath: string
  snapshotter: string
  /** Which containerd runs on this node: Debian's 1.6 or the 2.x built from its Go module. */
  containerdLine: ContainerdLine
}

/** `1.6`: Debian's containerd 1.6.20; `2`: containerd 2.x built by scripts/build-daemons.sh. */
export type ContainerdLine = '1.6' | '2'

/** The version a node of this line reports (`1.6.20~ds1`, `v2.3.7`), as a pattern source (no anchors). */
export function containerdVersionPattern(line: ContainerdLine): string {
  return line === '2' ? 'v?2\\.\\d+\\.\\d+\\S*' : 'v?1\\.6\\.\\d+\\S*'
}

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

export interface NodeOptions {
  rootSizeMb?: number
  noContainerd?: boolean
  /** This node's containerd line (default: the bed's). */
  containerd?: ContainerdLine
  /** The CRI snapshotter (default: overlayfs where overlay mounts, else native). */
  snapshotter?: 'overlayfs' | 'native'
}

export interface StartBedOptions {
  name: string
  nodes: number
  nodeOptions?: Record<number, NodeOptions>
  /**
   * The nodes' containerd: `1.6`, `2`, or `mixed` (odd nodes 2.x, even nodes 1.6: a cluster
   * mid-upgrade). Default: $SIDELOAD_BED_CONTAINERD, else `2`.
   */
  containerd?: ContainerdLine | 'mixed'
  /** Extra: a bed for humans (CLI); `cleanAll({onlyDead: true})` never removes it. */
  persistent?: boolean
}

export interface Bed {
  name: string
  nodes: BedNode[]
  keyPath: string
  knownHostsPath: string
  nonRootUser: string
  /** Extra members (not in the contract). */
  dir: string
  /** The bed's index k: subnet 198.18.<k>.0/24, bridge slbr<k>. */
  index: number
  /** The host's own address on the bed bridge (nodes can reach the host there). */
  hostIp: string
  /** OpenSSH client config snippet: `Host <node name>` blocks with HostName, key, known_hosts. */
  sshConfigPath: string
  /** argv for the OpenSSH client (without the remote command): `ssh ...sshArgs(node) cmd`. */
  sshArgs(node: BedNode, user?: string): string[]
  exec(node: BedNode, argv: string[], opts?: ExecOptions): Promise<ExecResult>
  ctr(node: BedNode, args: string[]): Promise<string>
  /**
   * Starts another daemon inside the node (its network and mount namespaces), logging to
   * `n<i>/log/<name>.log`; resolves once `ready()` says so. It goes with the bed.
   */
  startDaemon(node: BedNode, name: string, argv: string[], ready: () => Promise<boolean>): Promise<void>
  /** The node's own folder on the host (visible inside the node too). */
  nodeDir(node: BedNode): string
  /** The command lines of the processes running in the node (its network namespace); pgrep would list the whole host's. */
  processes(node: BedNode): string[]
  stopSshd(node: BedNode): Promise<void>
  startSshd(node: BedNode): Promise<void>
  stopContainerd(node: BedNode): Promise<void>
  startContainerd(node: BedNode): Promise<void>
  regenerateHostKey(node: BedNode): Promise<void>
  killSshSessions(node: BedNode): Promise<void>
  shape(node: BedNode, opts: {rateMbit: number; delayMs?: number}): Promise<void>
  unshape(node: BedNode): Promise<void>
  down(): Promise<void>
}

export const BED_ROOT = '/run/sideload-bed'
const BEDS_DIR = `${BED_ROOT}/beds`
const INDEX_DIR = `${BED_ROOT}/index`
export const NON_ROOT_USER = 'sluser'
const SUDOERS_FILE = '/etc/sudoers.d/sideload-bed'
const NETNS_PREFIX = 'slbed-'
const MAX_INDEX = 250
const CONTAINERD_SOCKET = '/run/containerd/containerd.sock'
const PATH_ENV = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

// ---------------------------------------------------------------------------------------------
// process helpers

function runCommand(cmd: string, args: string[], opts: ExecOptions & {env?: NodeJS.ProcessEnv} = {}): Promise<ExecResult> {
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

function signalNumber(signal: NodeJS.Signals): number | undefined {
  const map: Partial<Record<NodeJS.Signals, number>> = {SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15, SIGPIPE: 13}
  return map[signal]
}

async function must(what: string, cmd: string, args: string[], opts: ExecOptions = {}): Promise<string> {
  const r = await runCommand(cmd, args, opts)
  if (r.code !== 0) {
    throw new Error(`${what} failed: \`${cmd} ${args.join(' ')}\` exited ${r.code}: ${(r.stderr || r.stdout).trim()}`)
  }
  return r.stdout
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

function listPids(): number[] {
  return fs
    .readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .map(Number)
}

/** State letter from /proc/<pid>/stat, or undefined when the process is gone. */
function processState(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]
  } catch {
    return undefined
  }
}

function isAlive(pid: number): boolean {
  const s = processState(pid)
  return s !== undefined && s !== 'Z' && s !== 'X'
}

function processStartTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
  } catch {
    return undefined
  }
}

function readComm(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim()
  } catch {
    return ''
  }
}

function netnsInode(nsPath: string): number | undefined {
  try {
    return fs.statSync(nsPath).ino
  } catch {
    return undefined
  }
}

/** Every live process whose network namespace is the one bound at nsPath. */
function pidsInNetns(nsPath: string): number[] {
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
function pidsMentioning(dir: string): number[] {
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

async function waitGone(pids: number[], timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs
  let left = pids.filter(isAlive)
  while (left.length > 0 && Date.now() < deadline) {
    await sleep(20)
    left = left.filter(isAlive)
  }
  return left
}

function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal)
  } catch {
    // already gone
  }
}

async function waitFor(what: string, timeoutMs: number, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await probe()) return
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(25)
  }
}

/** The last lines of a daemon's log, for an error message (the log goes with the bed). */
async function logTail(file: string, lines = 5): Promise<string> {
  const text = await fsp.readFile(file, 'utf8').catch(() => '')
  return text.trim().split('\n').slice(-lines).join('\n') || `(${file} is empty)`
}

function tcpOpen(host: string, port: number): Promise<boolean> {
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

// ---------------------------------------------------------------------------------------------
// names and paths

function validateName(name: string): void {
  if (!/^[a-z0-9][a-z0-9-]{0,39}$/.test(name)) {
    throw new Error(`bed name '${name}' is invalid: use 1-40 characters a-z, 0-9, '-' (it becomes node, netns and dir names)`)
  }
}

const bedDirOf = (name: string) => path.join(BEDS_DIR, name)
const nodeDirOf = (name: string, i: number) => path.join(bedDirOf(name), `n${i}`)
const netnsName = (name: string, i: number) => `${NETNS_PREFIX}${name}-${i}`
const netnsPath = (name: string, i: number) => `/run/netns/${netnsName(name, i)}`
const bridgeName = (k: number) => `slbr${k}`
const vethName = (k: number, i: number) => `slb${k}n${i}`
const nodeIp = (k: number, i: number) => `198.18.${k}.${10 + i}`
const hostIpOf = (k: number) => `198.18.${k}.1`

interface NodePaths {
  dir: string
  mntNs: string
  etcSsh: string
  etcContainerd: string
  runContainerd: string
  varLibContainerd: string
  /** root's home inside the node (a real node's own, not this host's: its .bashrc runs on every ssh command) */
  rootHome: string
  logDir: string
  containerdPid: string
  sshdPid: string
}

function nodePaths(bedName: string, i: number): NodePaths {
  const dir = nodeDirOf(bedName, i)
  return {
    dir,
    mntNs: path.join(dir, 'mnt.ns'),
    etcSsh: path.join(dir, 'etc-ssh'),
    etcContainerd: path.join(dir, 'etc-containerd'),
    runContainerd: path.join(dir, 'run-containerd'),
    varLibContainerd: path.join(dir, 'var-lib-containerd'),
    rootHome: path.join(dir, 'root-home'),
    logDir: path.join(dir, 'log'),
    containerdPid: path.join(dir, 'containerd.pid'),
    sshdPid: path.join(dir, 'sshd.pid'),
  }
}

interface Owner {
  pid: number
  startTime: string
  /** Started by the CLI for humans (`npm run bed -- up`): test-run cleanup leaves it alone. */
  persistent?: boolean
}

interface BedState {
  name: string
  index: number
  nodes: BedNode[]
  nodeOptions: Record<number, NodeOptions>
}

function readOwner(name: string): Owner | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(bedDirOf(name), 'owner.json'), 'utf8')) as Owner
  } catch {
    return undefined
  }
}

function ownerAlive(owner: Owner | undefined): boolean {
  return owner !== undefined && isAlive(owner.pid) && processStartTime(owner.pid) === owner.startTime
}

function readIndex(name: string): number | undefined {
  try {
    const k = Number(fs.readFileSync(path.join(bedDirOf(name), 'index'), 'utf8').trim())
    return Number.isInteger(k) && k > 0 ? k : undefined
  } catch {
    return undefined
  }
}

// ---------------------------------------------------------------------------------------------
// host preparation (idempotent, shared by all beds)

let hostPrepared: Promise<void> | undefined

function prepareHost(): Promise<void> {
  hostPrepared ??= (async () => {
    await fsp.mkdir(BEDS_DIR, {recursive: true})
    await fsp.mkdir(INDEX_DIR, {recursive: true})
    // Mount points the node namespaces bind over; empty on this host (no host containerd/sshd running).
    for (const d of ['/run/containerd', '/var/lib/containerd', '/etc/containerd', '/run/sshd']) {
      await fsp.mkdir(d, {recursive: true})
    }
    // The non-root user: key-only login (password '*' = no password, not "locked" for sshd).
    await must('creating the non-root bed user', 'flock', [
      path.join(BED_ROOT, '.user.lock'),
      'sh',
      '-c',
      `id -u ${NON_ROOT_USER} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash ${NON_ROOT_USER}; usermod -p '*' ${NON_ROOT_USER}`,
    ])
    const sudoers = `# sideload test bed: the non-root user may run ctr (only ctr) as root\n${NON_ROOT_USER} ALL=(root) NOPASSWD: /usr/bin/ctr\n`
    let current = ''
    try {
      current = await fsp.readFile(SUDOERS_FILE, 'utf8')
    } catch {
      // absent
    }
    if (current !== sudoers) {
      const tmp = `${SUDOERS_FILE}.${process.pid}.tmp`
      await fsp.writeFile(tmp, sudoers, {mode: 0o440})
      await fsp.rename(tmp, SUDOERS_FILE)
    }
  })()
  hostPrepared.catch(() => {
    hostPrepared = undefined
  })
  return hostPrepared
}

// ---------------------------------------------------------------------------------------------
// teardown

async function umountUnder(dir: string): Promise<void> {
  const mounts = fs
    .readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1])
    .filter((m): m is string => m !== undefined && (m === dir || m.startsWith(`${dir}/`)))
    .map((m) => m.replace(/\\040/g, ' '))
    .sort((a, b) => b.length - a.length)
  for (const m of mounts) await runCommand('umount', ['-l', m])
}

async function listNetns(): Promise<string[]> {
  try {
    return (await fsp.readdir('/run/netns')).filter((n) => n.startsWith(NETNS_PREFIX))
  } catch {
    return []
  }
}

async function listLinks(): Promise<string[]> {
  const r = await runCommand('ip', ['-o', 'link', 'show'])
  return r.stdout
    .split('\n')
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1])
    .filter((n): n is string => n !== undefined)
}

async function killAll(pids: number[]): Promise<void> {
  for (const pid of pids) kill(pid, 'SIGKILL')
  const left = await waitGone(pids, 5000)
  if (left.length > 0) throw new Error(`test bed teardown: processes ${left.join(', ')} did not die after SIGKILL`)
}

/** Removes every trace of bed `name` (processes, mounts, netns, links, dirs, index claim); no-op if absent. */
export async function destroyBed(name: string): Promise<void> {
  const dir = bedDirOf(name)
  // the bed's index: from its dir, and from any claim naming it (a run killed between claim and dir write)
  const indexes = new Set<number>(await claimsOf(name))
  const recorded = readIndex(name)
  if (recorded !== undefined) indexes.add(recorded)
  const nsRe = new RegExp(`^${NETNS_PREFIX}${name.replace(/-/g, '\\-')}-(\\d+)$`)
  const namespaces = (await listNetns()).filter((n) => nsRe.test(n))
  // 1. processes: everything in the node network namespaces, and any daemon started from the bed dir
  const pids = new Set<number>(pidsMentioning(dir))
  for (const ns of namespaces) for (const pid of pidsInNetns(`/run/netns/${ns}`)) pids.add(pid)
  await killAll([...pids])
  // 2. links: the host veth ends (their peers die with them) and the bridge
  const links = indexes.size > 0 ? await listLinks() : []
  for (const k of indexes) {
    const vethRe = new RegExp(`^slb${k}n\\d+$`)
    for (const l of links.filter((l) => vethRe.test(l))) await runCommand('ip', ['link', 'del', l])
    if (links.includes(bridgeName(k))) await runCommand('ip', ['link', 'del', bridgeName(k)])
  }
  // 3. namespaces and mounts
  for (const ns of namespaces) {
    const r = await runCommand('ip', ['netns', 'del', ns])
    if (r.code !== 0 && fs.existsSync(`/run/netns/${ns}`)) {
      await runCommand('umount', ['-l', `/run/netns/${ns}`])
      await fsp.rm(`/run/netns/${ns}`, {force: true})
    }
  }
  await umountUnder(dir)
  // 4. dirs and the index claim
  await fsp.rm(dir, {recursive: true, force: true})
  for (const k of await claimsOf(name)) await fsp.rm(path.join(INDEX_DIR, String(k)), {recursive: true, force: true})
}

/** Index claims whose name file names this bed. */
async function claimsOf(name: string): Promise<number[]> {
  const out: number[] = []
  let entries: string[] = []
  try {
    entries = await fsp.readdir(INDEX_DIR)
  } catch {
    return out
  }
  for (const k of entries) {
    try {
      if ((await fsp.readFile(path.join(INDEX_DIR, k, 'name'), 'utf8')).trim() === name) out.push(Number(k))
    } catch {
      // a claim without a name (being written)
    }
  }
  return out
}

/** Names of every bed that has any trace on this machine (dir, netns, index claim). */
async function knownBedNames(): Promise<string[]> {
  const names = new Set<string>()
  try {
    for (const n of await fsp.readdir(BEDS_DIR)) names.add(n)
  } catch {
    // none
  }
  for (const ns of await listNetns()) {
    const m = /^slbed-(.+)-\d+$/.exec(ns)
    if (m) names.add(m[1])
  }
  try {
    for (const k of await fsp.readdir(INDEX_DIR)) {
      try {
        names.add((await fsp.readFile(path.join(INDEX_DIR, k, 'name'), 'utf8')).trim())
      } catch {
        // claim without a name yet
      }
    }
  } catch {
    // none
  }
  return [...names].filter((n) => n !== '')
}

export interface CleanOptions {
  /** Bed names to leave alone (e.g. 'sandbox'). */
  keep?: string[]
  /** Only remove beds whose owning process is dead and that are not persistent (CLI) beds:
   *  safe while other test runs are going on. */
  onlyDead?: boolean
}

/** Removes beds (all of them by default) and stray bed links / index claims. Returns the names removed. */
export async function cleanAll(opts: CleanOptions = {}): Promise<string[]> {
  const keep = new Set(opts.keep ?? [])
  const removed: string[] = []
  for (const name of await knownBedNames()) {
    if (keep.has(name)) continue
    const owner = readOwner(name)
    if (opts.onlyDead && (ownerAlive(owner) || owner?.persistent)) continue
    await destroyBed(name)
    removed.push(name)
  }
  // stray index claims and links whose bed is gone
  const liveIndexes = new Set<number>()
  try {
    for (const k of await fsp.readdir(INDEX_DIR)) {
      const claim = path.join(INDEX_DIR, k)
      let owner = ''
      try {
        owner = (await fsp.readFile(path.join(claim, 'name'), 'utf8')).trim()
      } catch {
        // a claim being written right now, or a crash between mkdir and write
      }
      const young = Date.now() - (await fsp.stat(claim)).mtimeMs < 30_000
      if ((owner && fs.existsSync(bedDirOf(owner))) || (!owner && young)) liveIndexes.add(Number(k))
      else await fsp.rm(claim, {recursive: true, force: true})
    }
  } catch {
    // none
  }
  for (const l of await listLinks()) {
    const m = /^slbr(\d+)$/.exec(l) ?? /^slb(\d+)n\d+$/.exec(l)
    if (m && !liveIndexes.has(Number(m[1]))) await runCommand('ip', ['link', 'del', l])
  }
  return removed
}

// ---------------------------------------------------------------------------------------------
// bring-up

async function claimIndex(name: string): Promise<number> {
  for (let k = 1; k <= MAX_INDEX; k++) {
    const claim = path.join(INDEX_DIR, String(k))
    try {
      await fsp.mkdir(claim)
    } catch {
      continue
    }
    await fsp.writeFile(path.join(claim, 'name'), name)
    return k
  }
  throw new Error(`no free test bed index (1-${MAX_INDEX} all claimed under ${INDEX_DIR}); run \`npm run bed -- down\` or remove stale beds`)
}

/** The containerd line of node i under a bed-wide choice (`mixed`: odd nodes 2.x, even 1.6). */
export function containerdLineOf(choice: ContainerdLine | 'mixed' | undefined, i: number): ContainerdLine {
  const c = choice ?? bedContainerdDefault()
  if (c === 'mixed') return i % 2 === 1 ? '2' : '1.6'
  return c
}

export function bedContainerdDefault(env = process.env): ContainerdLine | 'mixed' {
  const v = env.SIDELOAD_BED_CONTAINERD
  if (v === undefined || v === '') return '2'
  if (v === '1.6' || v === '2' || v === 'mixed') return v
  throw new Error(`SIDELOAD_BED_CONTAINERD=${v} is not one of 1.6, 2, mixed`)
}

/** The CRI's CNI config dir, inside the node's own /etc/containerd (the default, /etc/cni/net.d, is created on the host). */
const NODE_CNI_CONF_DIR = '/etc/containerd/cni/net.d'

/** The binaries a 2.x node runs, bind-mounted over Debian's in the node's mount namespace. */
const CONTAINERD2_BINARIES = ['containerd', 'ctr', 'containerd-shim-runc-v2']

function containerdConfig(p: NodePaths, snapshotter: string, line: ContainerdLine): string {
  // containerd 2.3 reads a version 4 config (its own; no migration at start), 1.6 version 2
  const head = `version = ${line === '2' ? 4 : 2}
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "${CONTAINERD_SOCKET}"

[ttrpc]
  address = "${CONTAINERD_SOCKET}.ttrpc"

[plugins]`
  if (line === '2') {
    // the CRI image settings live in their own plugin on 2.x (io.containerd.cri.v1.images)
    return `${head}
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "${snapshotter}"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = "registry.k8s.io/pause:3.10"
  [plugins.'io.containerd.cri.v1.runtime']
    netns_mounts_under_state_dir = true
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      conf_dir = "${NODE_CNI_CONF_DIR}"
  # NRI's socket defaults to /var/run/nri/nri.sock, one path for every node on this host: each
  # node's own run dir instead (two nodes on one socket: the second containerd exits at start)
  [plugins.'io.containerd.nri.v1.nri']
    socket_path = "/run/containerd/nri.sock"
# node dir on the host: ${p.dir}
`
  }
  return `${head}
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.6"
    netns_mounts_under_state_dir = true
    [plugins."io.containerd.grpc.v1.cri".cni]
      conf_dir = "${NODE_CNI_CONF_DIR}"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "${snapshotter}"
  [plugins."io.containerd.internal.v1.opt"]
    path = "/var/lib/containerd/opt"
# node dir on the host: ${p.dir}
`
}

function sshdConfig(ip: string, snapshotter: string): string {
  return [
    `ListenAddress ${ip}:22`,
    'HostKey /etc/ssh/ssh_host_ed25519_key',
    'PermitRootLogin prohibit-password',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'AuthorizedKeysFile /etc/ssh/authorized_keys/%u',
    'AllowStreamLocalForwarding yes',
    'AllowTcpForwarding yes',
    'Ciphers aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr,aes256-ctr',
    'MaxStartups 100:30:200',
    'MaxSessions 100',
    'PrintMotd no',
    'Subsystem sftp internal-sftp',
    'LogLevel VERBOSE',
    ...(snapshotter === 'overlayfs' ? [] : [`SetEnv CONTAINERD_SNAPSHOTTER=${snapshotter}`]),
    '',
  ].join('\n')
}

async function readPub(file: string): Promise<string> {
  const [type, key] = (await fsp.readFile(file, 'utf8')).trim().split(/\s+/)
  return `${type} ${key}`
}

async function newHostKey(p: NodePaths, comment: string): Promise<string> {
  const key = path.join(p.etcSsh, 'ssh_host_ed25519_key')
  await fsp.rm(key, {force: true})
  await fsp.rm(`${key}.pub`, {force: true})
  await must('generating a node host key', 'ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', key])
  return readPub(`${key}.pub`)
}

function nsenterArgs(bedName: string, i: number): string[] {
  return [`--net=${netnsPath(bedName, i)}`, `--mount=${nodePaths(bedName, i).mntNs}`, '--']
}

/** Starts a long-running daemon inside node i, detached, stdout+stderr to a log file. Returns its pid. */
async function spawnDaemon(bedName: string, i: number, logFile: string, argv: string[]): Promise<number> {
  const log = fs.openSync(logFile, 'a')
  try {
    const child = spawn('nsenter', [...nsenterArgs(bedName, i), ...argv], {
      detached: true,
      stdio: ['ignore', log, log],
      env: {PATH: PATH_ENV, HOME: '/root', LANG: 'C.UTF-8'},
    })
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('error', (e) => reject(new Error(`could not start ${argv[0]} on node ${bedName}-${i}: ${e.message}`)))
      child.once('spawn', () => resolve(child.pid ?? -1))
    })
    child.unref()
    return pid
  } finally {
    fs.closeSync(log)
  }
}

async function stopDaemon(pidFile: string, what: string): Promise<void> {
  let pid: number
  try {
    pid = Number((await fsp.readFile(pidFile, 'utf8')).trim())
  } catch {
    return
  }
  if (!Number.isInteger(pid) || pid <= 0) return
  kill(pid, 'SIGTERM')
  if ((await waitGone([pid], 10_000)).length > 0) {
    kill(pid, 'SIGKILL')
    if ((await waitGone([pid], 5000)).length > 0) throw new Error(`${what} (pid ${pid}) did not stop`)
  }
  await fsp.rm(pidFile, {force: true})
}

async function detectSnapshotter(bedName: string, i: number): Promise<string> {
  const probe = `/var/lib/containerd/.overlay-probe-${randomBytes(4).toString('hex')}`
  const script = [
    `mkdir -p ${probe}/l ${probe}/u ${probe}/w ${probe}/m`,
    `echo x > ${probe}/l/f`,
    `mount -t overlay overlay -o lowerdir=${probe}/l,upperdir=${probe}/u,workdir=${probe}/w ${probe}/m`,
    `ok=$?`,
    `[ $ok = 0 ] && { test -f ${probe}/m/f || ok=1; umount ${probe}/m; }`,
    `rm -rf ${probe}`,
    `exit $ok`,
  ].join('\n')
  const r = await runCommand('nsenter', [...nsenterArgs(bedName, i), 'sh', '-c', script])
  return r.code === 0 ? 'overlayfs' : 'native'
}

class TestBed implements Bed {
  readonly nonRootUser = NON_ROOT_USER
  readonly dir: string
  readonly keyPath: string
  readonly knownHostsPath: string
  readonly sshConfigPath: string
  readonly hostIp: string

  constructor(
    readonly name: string,
    readonly index: number,
    readonly nodes: BedNode[],
    private readonly nodeOptions: Record<number, NodeOptions>,
  ) {
    this.dir = bedDirOf(name)
    this.keyPath = path.join(this.dir, 'id_ed25519')
    this.knownHostsPath = path.join(this.dir, 'known_hosts')
    this.sshConfigPath = path.join(this.dir, 'ssh_config')
    this.hostIp = hostIpOf(index)
  }

  private paths(node: BedNode): NodePaths {
    return nodePaths(this.name, node.index)
  }

  sshArgs(node: BedNode, user = 'root'): string[] {
    return [
      '-i', this.keyPath,
      '-o', `UserKnownHostsFile=${this.knownHostsPath}`,
      '-o', 'StrictHostKeyChecking=yes',
      '-o', 'IdentitiesOnly=yes',
      '-o', 'BatchMode=yes',
      '-o', 'ConnectTimeout=5',
      '-p', String(node.sshPort),
      `${user}@${node.ip}`,
    ]
  }

  exec(node: BedNode, argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    return runCommand('nsenter', [...nsenterArgs(this.name, node.index), ...argv], {
      ...opts,
      env: {PATH: PATH_ENV, HOME: '/root', LANG: 'C.UTF-8', ...(node.snapshotter === 'overlayfs' ? {} : {CONTAINERD_SNAPSHOTTER: node.snapshotter}), ...opts.env},
    })
  }

  async startDaemon(node: BedNode, name: string, argv: string[], ready: () => Promise<boolean>): Promise<void> {
    const p = this.paths(node)
    const log = path.join(p.logDir, `${name}.log`)
    const pid = await spawnDaemon(this.name, node.index, log, argv)
    await fsp.writeFile(path.join(p.dir, `${name}.pid`), `${pid}\n`)
    await waitFor(`${name} of node ${node.name} (log: ${log})`, 30_000, async () => {
      if (!isAlive(pid)) throw new Error(`${name} of node ${node.name} exited at start: ${await logTail(log)}`)
      return ready()
    })
  }

  nodeDir(node: BedNode): string {
    return this.paths(node).dir
  }

  processes(node: BedNode): string[] {
    return pidsInNetns(netnsPath(this.name, node.index)).map((pid) => {
      try {
        return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ')
      } catch {
        return ''
      }
    }).filter(Boolean)
  }

  async ctr(node: BedNode, args: string[]): Promise<string> {
    const r = await this.exec(node, ['ctr', '-n', 'k8s.io', ...args], {timeoutMs: 300_000})
    if (r.code !== 0) throw new Error(`ctr -n k8s.io ${args.join(' ')} failed on node ${node.name} (exit ${r.code}): ${(r.stderr || r.stdout).trim()}`)
    return r.stdout
  }

  async startSshd(node: BedNode): Promise<void> {
    const p = this.paths(node)
    const pid = await spawnDaemon(this.name, node.index, path.join(p.logDir, 'sshd.log'), [
      '/usr/sbin/sshd', '-D', '-e', '-f', path.join(p.etcSsh, 'sshd_config'),
    ])
    await fsp.writeFile(p.sshdPid, `${pid}\n`)
    await waitFor(`sshd of node ${node.name} on ${node.ip}:22 (log: ${p.logDir}/sshd.log)`, 10_000, async () => {
      if (!isAlive(pid)) throw new Error(`sshd of node ${node.name} exited at start; see ${p.logDir}/sshd.log`)
      return tcpOpen(node.ip, node.sshPort)
    })
  }

  async stopSshd(node: BedNode): Promise<void> {
    await stopDaemon(this.paths(node).sshdPid, `sshd of node ${node.name}`)
  }

  async startContainerd(node: BedNode): Promise<void> {
    const p = this.paths(node)
    const pid = await spawnDaemon(this.name, node.index, path.join(p.logDir, 'containerd.log'), [
      '/usr/bin/containerd', '--config', path.join(p.etcContainerd, 'config.toml'),
    ])
    await fsp.writeFile(p.containerdPid, `${pid}\n`)
    await waitFor(`containerd of node ${node.name} (log: ${p.logDir}/containerd.log)`, 20_000, async () => {
      if (!isAlive(pid)) throw new Error(`containerd of node ${node.name} exited at start: ${await logTail(path.join(p.logDir, 'containerd.log'))}`)
      if (!fs.existsSync(node.hostSocketPath)) return false
      const r = await runCommand('ctr', ['-a', node.hostSocketPath, 'version'], {timeoutMs: 5000})
      return r.code === 0
    })
  }

  async stopContainerd(node: BedNode): Promise<void> {
    await stopDaemon(this.paths(node).containerdPid, `containerd of node ${node.name}`)
    // a clean stop unlinks the socket; make sure of it even after a forced kill
    await fsp.rm(node.hostSocketPath, {force: true})
    await fsp.rm(`${node.hostSocketPath}.ttrpc`, {force: true})
  }

  async regenerateHostKey(node: BedNode): Promise<void> {
    await this.stopSshd(node)
    node.hostKeyPub = await newHostKey(this.paths(node), `${node.name}-regenerated`)
    await this.startSshd(node)
    await this.saveState()
  }

  async killSshSessions(node: BedNode): Promise<void> {
    const listener = Number((await fsp.readFile(this.paths(node).sshdPid, 'utf8').catch(() => '0')).trim())
    const sessions = pidsInNetns(netnsPath(this.name, node.index)).filter((pid) => pid !== listener && readComm(pid) === 'sshd')
    for (const pid of sessions) kill(pid, 'SIGKILL')
    await waitGone(sessions, 5000)
  }

  async shape(node: BedNode, opts: {rateMbit: number; delayMs?: number}): Promise<void> {
    const devices: Array<{where: 'host' | 'node'; dev: string}> = [
      {where: 'host', dev: vethName(this.index, node.index)},
      {where: 'node', dev: 'eth0'},
    ]
    for (const {where, dev} of devices) {
      let args: string[]
      if (opts.delayMs) {
        args = ['qdisc', 'replace', 'dev', dev, 'root', 'netem', 'delay', `${opts.delayMs}ms`, 'rate', `${opts.rateMbit}mbit`, 'limit', '100000']
      } else {
        // token bucket: burst must hold at least one timer tick worth of bytes (and one 64 KiB GSO segment)
        const burst = Math.max(65_536 + 1514, Math.ceil((opts.rateMbit * 1e6) / 8 / 250))
        args = ['qdisc', 'replace', 'dev', dev, 'root', 'tbf', 'rate', `${opts.rateMbit}mbit`, 'burst', String(burst), 'latency', '200ms']
      }
      const r = where === 'host' ? await runCommand('tc', args) : await this.exec(node, ['tc', ...args])
      if (r.code !== 0) {
        const hint = /unknown/i.test(r.stderr) && opts.delayMs ? ' (this kernel lacks the netem qdisc: shape with rateMbit only)' : ''
        throw new Error(`shaping node ${node.name} (${where} ${dev}) failed: ${r.stderr.trim()}${hint}`)
      }
    }
  }

  async unshape(node: BedNode): Promise<void> {
    await runCommand('tc', ['qdisc', 'del', 'dev', vethName(this.index, node.index), 'root'])
    await this.exec(node, ['tc', 'qdisc', 'del', 'dev', 'eth0', 'root'])
  }

  async down(): Promise<void> {
    await destroyBed(this.name)
  }

  async saveState(): Promise<void> {
    const state: BedState = {name: this.name, index: this.index, nodes: this.nodes, nodeOptions: this.nodeOptions}
    await fsp.writeFile(path.join(this.dir, 'state.json'), `${JSON.stringify(state, null, 2)}\n`)
  }

  async writeClientFiles(): Promise<void> {
    const kh = this.nodes.map((n) => `${n.ip},${n.name} ${n.hostKeyPub}\n`).join('')
    await fsp.writeFile(this.knownHostsPath, kh)
    const cfg = this.nodes
      .map((n) =>
        [
          `Host ${n.name} ${n.ip}`,
          `  HostName ${n.ip}`,
          `  Port ${n.sshPort}`,
          '  User root',
          `  IdentityFile ${this.keyPath}`,
          '  IdentitiesOnly yes',
          `  UserKnownHostsFile ${this.knownHostsPath}`,
          '  StrictHostKeyChecking yes',
          '',
        ].join('\n'),
      )
      .join('\n')
    await fsp.writeFile(this.sshConfigPath, `# sideload test bed '${this.name}': ssh -F ${this.sshConfigPath} <node>\n${cfg}`)
  }
}

async function setupNode(bedName: string, k: number, i: number, bedPub: string, opts: NodeOptions, line: ContainerdLine): Promise<BedNode> {
  const p = nodePaths(bedName, i)
  const name = `${bedName}-${i}`
  const ip = nodeIp(k, i)
  for (const d of [p.etcSsh, path.join(p.etcSsh, 'authorized_keys'), p.etcContainerd, p.runContainerd, p.varLibContainerd, p.logDir]) {
    await fsp.mkdir(d, {recursive: true, mode: 0o755})
  }
  await fsp.mkdir(p.rootHome, {recursive: true, mode: 0o700})
  const hostKeyPub = await newHostKey(p, name)
  for (const user of ['root', NON_ROOT_USER]) {
    await fsp.writeFile(path.join(p.etcSsh, 'authorized_keys', user), `${bedPub}\n`, {mode: 0o644})
  }

  // network: own netns, veth to the bed bridge
  const ns = netnsName(bedName, i)
  await must(`creating netns for node ${name}`, 'ip', ['netns', 'add', ns])
  const veth = vethName(k, i)
  await must(`creating veth for node ${name}`, 'ip', ['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
  await must(`attaching node ${name} to the bridge`, 'ip', ['link', 'set', veth, 'master', bridgeName(k), 'up'])
  await must(`configuring the network of node ${name}`, 'ip', [
    '-n', ns, '-batch', '-',
  ], {input: [`addr add ${ip}/24 dev eth0`, 'link set eth0 up', 'link set lo up', `route add default via ${hostIpOf(k)}`, ''].join('\n')})

  // mount namespace: private, persistent, node dirs over the well-known paths
  await fsp.writeFile(p.mntNs, '')
  await must(`creating the mount namespace of node ${name}`, 'unshare', [`--mount=${p.mntNs}`, '--propagation', 'private', 'true'])
  const binds: Array<[string, string]> = [
    [p.etcSsh, '/etc/ssh'],
    [p.etcContainerd, '/etc/containerd'],
    [p.runContainerd, '/run/containerd'],
    [p.varLibContainerd, '/var/lib/containerd'],
    // the host's /root/.bashrc (pyenv and the like, run by every ssh command: Debian's bash reads
    // it for sshd's commands) is not a node's: an empty home of its own
    [p.rootHome, '/root'],
    // a 2.x node: its containerd, ctr (what `sudo ctr` runs there) and shim over Debian's
    ...(line === '2' ? CONTAINERD2_BINARIES.map((b): [string, string] => [daemonBinary('containerd', b), `/usr/bin/${b}`]) : []),
  ]
  const script = [
    // copies of the host's netns mounts would keep other beds' namespaces alive: drop them here
    'umount -l /run/netns 2>/dev/null || true',
    ...binds.map(([src, dst]) => `mount --bind ${src} ${dst}`),
    ...(opts.rootSizeMb ? [`mount -t tmpfs -o size=${opts.rootSizeMb}m,mode=0711 sideload-bed-root /var/lib/containerd`] : []),
  ].join(' && ')
  await must(`mounting the node dirs of node ${name}`, 'nsenter', [`--mount=${p.mntNs}`, '--', 'sh', '-c', script])

  const snapshotter = opts.snapshotter ?? (await detectSnapshotter(bedName, i))
  await fsp.writeFile(path.join(p.etcContainerd, 'config.toml'), containerdConfig(p, snapshotter, line))
  await fsp.writeFile(path.join(p.etcSsh, 'sshd_config'), sshdConfig(ip, snapshotter))
  return {
    name,
    index: i,
    ip,
    sshPort: 22,
    hostKeyPub,
    containerdSocket: CONTAINERD_SOCKET,
    hostSocketPath: path.join(p.runContainerd, 'containerd.sock'),
    snapshotter,
    containerdLine: line,
  }
}

/** Waits while another live process owns a bed of this name (e.g. the same test file in a concurrent run). */
async function waitForOtherOwner(name: string): Promise<void> {
  const deadline = Date.now() + 100_000
  for (;;) {
    const owner = readOwner(name)
    if (!ownerAlive(owner) || owner?.pid === process.pid) return
    if (Date.now() > deadline) {
      throw new Error(`test bed '${name}' is in use by live process ${owner?.pid}; stop it or pick another bed name`)
    }
    await sleep(500)
  }
}

export async function startBed(opts: StartBedOptions): Promise<Bed> {
  validateName(opts.name)
  if (!Number.isInteger(opts.nodes) || opts.nodes < 1 || opts.nodes > 200) {
    throw new Error(`startBed '${opts.name}': nodes must be 1-200, got ${opts.nodes}`)
  }
  await prepareHost()
  await waitForOtherOwner(opts.name)
  await destroyBed(opts.name)

  const dir = bedDirOf(opts.name)
  await fsp.mkdir(dir, {recursive: true})
  const owner: Owner = {pid: process.pid, startTime: processStartTime(process.pid) ?? '', persistent: opts.persistent}
  await fsp.writeFile(path.join(dir, 'owner.json'), JSON.stringify(owner))
  const k = await claimIndex(opts.name)
  await fsp.writeFile(path.join(dir, 'index'), `${k}\n`)
  try {
    const hostSock = path.join(nodeDirOf(opts.name, opts.nodes), 'run-containerd', 'containerd.sock')
    if (hostSock.length > 100) throw new Error(`bed name '${opts.name}' makes socket paths too long (${hostSock})`)
    const keyPath = path.join(dir, 'id_ed25519')
    await must('generating the bed key', 'ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `sideload-bed-${opts.name}`, '-f', keyPath])
    const bedPub = await readPub(`${keyPath}.pub`)

    await must(`creating bridge ${bridgeName(k)}`, 'ip', ['link', 'add', bridgeName(k), 'type', 'bridge'])
    await must(`configuring bridge ${bridgeName(k)}`, 'ip', ['-batch', '-'], {
      input: `addr add ${hostIpOf(k)}/24 dev ${bridgeName(k)}\nlink set ${bridgeName(k)} up\n`,
    })

    const nodeOptions = opts.nodeOptions ?? {}
    const indexes = Array.from({length: opts.nodes}, (_, j) => j + 1)
    const nodes = await Promise.all(
      indexes.map((i) => setupNode(opts.name, k, i, bedPub, nodeOptions[i] ?? {}, nodeOptions[i]?.containerd ?? containerdLineOf(opts.containerd, i))),
    )
    const bed = new TestBed(opts.name, k, nodes, nodeOptions)
    await bed.writeClientFiles()
    await bed.saveState()
    await Promise.all(
      nodes.map(async (n) => {
        await bed.startSshd(n)
        if (!nodeOptions[n.index]?.noContainerd) await bed.startContainerd(n)
      }),
    )
    return bed
  } catch (e) {
    await destroyBed(opts.name).catch(() => undefined)
    throw e
  }
}

/** Attaches to a bed started earlier (e.g. by `npm run bed -- up`) from another process. */
export async function openBed(name: string): Promise<Bed> {
  validateName(name)
  let state: BedState
  try {
    state = JSON.parse(await fsp.readFile(path.join(bedDirOf(name), 'state.json'), 'utf8')) as BedState
  } catch {
    throw new Error(`no test bed '${name}' is up (no ${bedDirOf(name)}/state.json); start one with \`npm run bed -- up\``)
  }
  return new TestBed(state.name, state.index, state.nodes, state.nodeOptions)
}

export interface BedStatus {
  name: string
  index?: number
  ownerPid?: number
  ownerAlive: boolean
  nodes: Array<BedNode & {sshdUp: boolean; containerdUp: boolean}>
}

/** What beds exist on this machine and whether their daemons run. */
export async function bedStatus(): Promise<BedStatus[]> {
  const out: BedStatus[] = []
  for (const name of await knownBedNames()) {
    const owner = readOwner(name)
    let nodes: BedNode[] = []
    try {
      nodes = (JSON.parse(await fsp.readFile(path.join(bedDirOf(name), 'state.json'), 'utf8')) as BedState).nodes
    } catch {
      // a bed killed while starting: no state
    }
    const pidAlive = async (file: string) => {
      const pid = Number((await fsp.readFile(file, 'utf8').catch(() => '0')).trim())
      return pid > 0 && isAlive(pid)
    }
    out.push({
      name,
      index: readIndex(name),
      ownerPid: owner?.pid,
      ownerAlive: ownerAlive(owner),
      nodes: await Promise.all(
        nodes.map(async (n) => ({
          ...n,
          sshdUp: await pidAlive(nodePaths(name, n.index).sshdPid),
          containerdUp: await pidAlive(nodePaths(name, n.index).containerdPid),
        })),
      ),
    })
  }
  return out
}
