// A private containerd for tests, of the bed's line (2.3.7 built from its module by default, Debian's
// 1.6 with SIDELOAD_BED_CONTAINERD=1.6): own root/state/socket under a unique temp dir, CRI and NRI
// disabled (not needed to exercise content/images/snapshots/diff). Optionally its root is a
// small tmpfs, to test a full disk. stop() kills it and removes everything, also after failures.
import {spawn, execFile, type ChildProcess} from 'node:child_process'
import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import {promisify} from 'node:util'
import {bedContainerdDefault, type ContainerdLine} from '../bed/bed.js'
import {daemonBinary} from '../daemons/daemons.js'
import {ContainerdClient} from '../../src/containerd/index.js'

const run = promisify(execFile)

export interface TestContainerd {
  /** which containerd runs: '2' (2.3.7) or '1.6' */
  line: ContainerdLine
  dir: string
  socket: string
  address: string
  root: string
  /** SIGKILL the daemon (a crash: connections drop mid-call); restart() brings it back on the same root. */
  kill(): Promise<void>
  restart(): Promise<void>
  /** `ctr -a <socket> -n k8s.io <args>`; throws with stderr on failure. */
  ctr(args: string[], namespace?: string): Promise<string>
  stop(): Promise<void>
}

export async function startContainerd(name: string, opts: {rootSizeMb?: number; line?: ContainerdLine} = {}): Promise<TestContainerd> {
  const bedLine = bedContainerdDefault()
  const line: ContainerdLine = opts.line ?? (bedLine === 'mixed' ? '2' : bedLine)
  const containerdBin = line === '2' ? daemonBinary('containerd', 'containerd') : 'containerd'
  const ctrBin = line === '2' ? daemonBinary('containerd', 'ctr') : 'ctr'
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `slctd-${name}-`))
  const root = path.join(dir, 'root')
  const state = path.join(dir, 'state')
  const socket = path.join(dir, 'c.sock')
  await fsp.mkdir(root)
  await fsp.mkdir(state)
  let mounted = false
  let child: ChildProcess | undefined
  const stop = async (): Promise<void> => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child!.once('exit', r))
      child.kill('SIGTERM')
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))])
      if (child.exitCode === null) child.kill('SIGKILL')
    }
    // snapshot mounts left by a killed daemon
    const mounts = (await fsp.readFile('/proc/self/mounts', 'utf8')).split('\n').map((l) => l.split(' ')[1]).filter((m) => m && m.startsWith(dir + '/'))
    for (const m of mounts.reverse()) await run('umount', ['-l', m]).catch(() => undefined)
    if (mounted) await run('umount', ['-l', root]).catch(() => undefined)
    await fsp.rm(dir, {recursive: true, force: true})
  }
  try {
    if (opts.rootSizeMb) {
      await run('mount', ['-t', 'tmpfs', '-o', `size=${opts.rootSizeMb}m`, 'tmpfs', root])
      mounted = true
    }
    const config = [
      `version = ${line === '2' ? 4 : 2}`,
      `root = "${root}"`,
      `state = "${state}"`,
      `disabled_plugins = ${JSON.stringify([
        'io.containerd.grpc.v1.cri', 'io.containerd.snapshotter.v1.btrfs', 'io.containerd.snapshotter.v1.zfs', 'io.containerd.snapshotter.v1.devmapper',
        'io.containerd.internal.v1.tracing', 'io.containerd.tracing.processor.v1.otlp',
        // 2.x: the CRI is three plugins; NRI's socket is one host-wide path
        ...(line === '2' ? ['io.containerd.cri.v1.runtime', 'io.containerd.cri.v1.images', 'io.containerd.nri.v1.nri'] : ['io.containerd.snapshotter.v1.aufs']),
      ])}`,
      // 2.3's version 4 config names the servers as plugins; [grpc] and friends are version 2's
      ...(line === '2'
        ? [`[plugins.'io.containerd.server.v1.grpc']`, `  address = "${socket}"`, `[plugins.'io.containerd.server.v1.ttrpc']`, `  address = "${socket}.ttrpc"`,
          `[plugins.'io.containerd.server.v1.debug']`, `  address = "${socket}.debug"`, `[plugins.'io.containerd.server.v1.metrics']`, `  address = ""`]
        : ['[grpc]', `  address = "${socket}"`, '[ttrpc]', `  address = "${socket}.ttrpc"`, '[debug]', `  address = "${socket}.debug"`, '[metrics]', '  address = ""']),
      '[plugins."io.containerd.gc.v1.scheduler"]',
      '  deletion_threshold = 1',
      '  schedule_delay = "0ms"',
      '',
    ].join('\n')
    await fsp.writeFile(path.join(dir, 'config.toml'), config)
    await launch()
  } catch (err) {
    await stop()
    throw err
  }
  async function launch(): Promise<void> {
    const log = fs.openSync(path.join(dir, 'containerd.log'), 'a')
    const proc = spawn(containerdBin, ['-c', path.join(dir, 'config.toml')], {stdio: ['ignore', log, log]})
    child = proc
    fs.closeSync(log)
    const deadline = Date.now() + 20_000
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`containerd exited: ${await fsp.readFile(path.join(dir, 'containerd.log'), 'utf8').catch(() => '')}`)
      const ok = await new Promise<boolean>((resolve) => {
        const s = net.connect(socket, () => {
          s.destroy()
          resolve(true)
        })
        s.on('error', () => resolve(false))
      })
      if (ok) break
      if (Date.now() > deadline) throw new Error('containerd did not open its socket within 20 s')
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  return {
    line,
    dir,
    socket,
    address: `unix://${socket}`,
    root,
    async ctr(args, namespace = 'k8s.io') {
      try {
        const {stdout} = await run(ctrBin, ['-a', socket, '-n', namespace, ...args], {maxBuffer: 64 * 1024 * 1024})
        return stdout
      } catch (err) {
        const e = err as {stderr?: string; message: string}
        throw new Error(`ctr ${args.join(' ')} failed: ${e.stderr || e.message}`)
      }
    },
    stop,
    async kill() {
      const proc = child
      if (!proc || proc.exitCode !== null) return
      const exited = new Promise((r) => proc.once('exit', r))
      proc.kill('SIGKILL')
      await exited
    },
    async restart() {
      await fsp.rm(socket, {force: true})
      await launch()
    },
  }
}

/** What most tests of this folder start from: a test containerd, a client of it, a work directory. */
export interface ContainerdWithClient {
  ctd: TestContainerd
  client: ContainerdClient
  work: string
}

/** Starts them (work directory `sl-<name>-test-*`); on failure nothing is left behind. */
export async function startContainerdWithClient(name: string, opts: {displayName: string; rootSizeMb?: number}): Promise<ContainerdWithClient> {
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), `sl-${name}-test-`))
  try {
    const ctd = await startContainerd(name, {rootSizeMb: opts.rootSizeMb})
    return {ctd, client: new ContainerdClient(ctd.address, {displayName: opts.displayName}), work}
  } catch (err) {
    await fsp.rm(work, {recursive: true, force: true})
    throw err
  }
}

/** Closes the client, stops containerd, removes the work directory (whatever of them was started). */
export async function stopContainerdWithClient(s: Partial<ContainerdWithClient>): Promise<void> {
  s.client?.close()
  await s.ctd?.stop()
  if (s.work) await fsp.rm(s.work, {recursive: true, force: true})
}
