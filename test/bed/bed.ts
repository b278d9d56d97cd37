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
//
// Its parts: processes.ts, layout.ts (names and paths), teardown.ts, node-files.ts.
import {spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import * as net from 'node:net'
import * as path from 'node:path'
import {daemonBinary} from '../daemons/daemons.js'
import {BEDS_DIR, BED_ROOT, BedState, CONTAINERD_SOCKET, INDEX_DIR, MAX_INDEX, NON_ROOT_USER, NodePaths, Owner, SUDOERS_FILE, bedDirOf, bridgeName, hostIpOf, netnsName, netnsPath, nodeDirOf, nodeIp, nodePaths, ownerAlive, readIndex, readOwner, validateName, vethName} from './layout.js'
import {CONTAINERD2_BINARIES, containerdConfig, newHostKey, readPub, sshdConfig} from './node-files.js'
import {ExecOptions, ExecResult, PATH_ENV, isAlive, kill, logTail, must, pidsInNetns, processStartTime, readComm, runCommand, sleep, tcpOpen, waitFor, waitGone} from './processes.js'
import {cleanAll, destroyBed, knownBedNames} from './teardown.js'

export {BED_ROOT, NON_ROOT_USER} from './layout.js'

/** Serialises creating the bed user across concurrent test processes. */
const USER_LOCK = '/run/lock/sideload-bed-user.lock'
export {type CleanOptions, cleanAll, destroyBed, removeEmptyBedDirs} from './teardown.js'
export type {ExecOptions, ExecResult} from './processes.js'

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


export interface NodeOptions {
  rootSizeMb?: number
  noContainerd?: boolean
  /** This node's containerd line (default: the bed's). */
  containerd?: ContainerdLine
  /** The CRI snapshotter (default: overlayfs where overlay mounts, else native). */
  snapshotter?: 'overlayfs' | 'native'
  /**
   * The CRI reads registry hosts from /etc/containerd/certs.d (`config_path`; the node's own
   * folder: write `<registry>/hosts.toml` there) and keeps layers after unpacking
   * (`discard_unpacked_layers = false`): what a node-to-node mirror (Spegel) needs. Default off.
   */
  registryConfigPath?: boolean
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
    // the lock lives where locks do, not in BED_ROOT: `down` removes that folder once no bed is left
    await fsp.mkdir(path.dirname(USER_LOCK), {recursive: true})
    await must('creating the non-root bed user', 'flock', [
      USER_LOCK,
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
// bring-up

async function claimIndex(name: string): Promise<number> {
  for (let k = 1; k <= MAX_INDEX; k++) {
    const claim = path.join(INDEX_DIR, String(k))
    try {
      await fsp.mkdir(claim)
    } catch (err) {
      // the index dir itself went (a `down` elsewhere removes it once empty): again, with it
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        await fsp.mkdir(INDEX_DIR, {recursive: true})
        k--
      }
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
  await fsp.writeFile(path.join(p.etcContainerd, 'config.toml'), containerdConfig(p, snapshotter, line, {registryConfigPath: opts.registryConfigPath}))
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
