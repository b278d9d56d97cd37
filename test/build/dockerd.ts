// A private, real dockerd (Debian's docker.io 20.10, embedded BuildKit v0.8) for one test file:
// its own --data-root, --exec-root, --pidfile and unix socket under a unique temp dir, no iptables,
// own network namespace (unshare --net) for its default bridge, vfs storage; its managed containerd lives under the exec-root. stop() ends it (TERM,
// then KILL) and removes everything, also when a test failed.
import {execFile, spawn, type ChildProcess} from 'node:child_process'
import {createHash} from 'node:crypto'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as os from 'node:os'
import * as path from 'node:path'
import {promisify} from 'node:util'
import {pack as tarPack} from 'tar-stream'

const run = promisify(execFile)

export interface TestDockerd {
  /** DOCKER_HOST value: unix://…/docker.sock */
  host: string
  dir: string
  /** Run the docker CLI against this daemon. */
  docker(args: string[], opts?: {env?: NodeJS.ProcessEnv; input?: string}): Promise<{stdout: string; stderr: string}>
  stop(): Promise<void>
}

function ping(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.request({socketPath, path: '/_ping', method: 'GET', timeout: 1000}, (res) => {
      res.resume()
      resolve(res.statusCode === 200)
    })
    req.on('error', () => resolve(false))
    req.on('timeout', () => {
      req.destroy()
      resolve(false)
    })
    req.end()
  })
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if (!pidAlive(pid)) return true
    await new Promise((r) => setTimeout(r, 100))
  }
  return !pidAlive(pid)
}

/**
 * Remove what an earlier, killed run of the same test file left behind: dockerds whose owning
 * test process is gone (their dir records the owner's pid), their managed containerd, their dir.
 */
async function sweepDead(name: string): Promise<void> {
  for (const entry of fs.readdirSync(os.tmpdir())) {
    if (!entry.startsWith(`sl-${name}-`)) continue
    const dir = path.join(os.tmpdir(), entry)
    const ownerFile = path.join(dir, 'owner.pid')
    if (!fs.existsSync(ownerFile)) {
      // Being created right now by another run, unless it is old.
      if (Date.now() - fs.statSync(dir).mtimeMs < 10 * 60_000) continue
    } else {
      const owner = Number(fs.readFileSync(ownerFile, 'utf8').trim())
      if (owner > 0 && pidAlive(owner)) continue
    }
    for (const pidFile of [path.join(dir, 'dockerd.pid'), path.join(dir, 'exec', 'containerd', 'containerd.pid')]) {
      const pid = fs.existsSync(pidFile) ? Number(fs.readFileSync(pidFile, 'utf8').trim()) : 0
      if (pid > 0 && pidAlive(pid)) {
        process.kill(pid, 'SIGKILL')
        await waitGone(pid, 5000)
      }
    }
    await unmountUnder(dir)
    fs.rmSync(dir, {recursive: true, force: true})
  }
}

async function unmountUnder(dir: string): Promise<void> {
  const mounts = fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => m !== undefined && m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length)
  for (const m of mounts) await run('umount', ['-l', m]).catch(() => undefined)
}

/** Start a private dockerd; `name` must be unique to the test file (it names dirs and namespaces). */
export async function startDockerd(name: string): Promise<TestDockerd> {
  if (process.getuid?.() !== 0) throw new Error('the dockerd tests need root (they start their own dockerd)')
  await sweepDead(name).catch(() => undefined)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `sl-${name}-`))
  fs.writeFileSync(path.join(dir, 'owner.pid'), String(process.pid))
  const socketPath = path.join(dir, 'docker.sock')
  const logPath = path.join(dir, 'dockerd.log')
  const log = fs.openSync(logPath, 'a')
  // Its own network namespace: the default bridge (docker0) that BuildKit's RUN steps need is
  // created there, out of the way of the host and of other tests.
  const child: ChildProcess = spawn(
    'unshare',
    [
      '--net',
      'dockerd',
      '--data-root', path.join(dir, 'data'),
      '--exec-root', path.join(dir, 'exec'),
      '--pidfile', path.join(dir, 'dockerd.pid'),
      '-H', `unix://${socketPath}`,
      '--iptables=false',
      '--ip-masq=false',
      '--ip-forward=false',
      '--storage-driver=vfs',
      '--containerd-namespace', `sl-${name}`,
      '--containerd-plugins-namespace', `sl-${name}-plugins`,
    ],
    {stdio: ['ignore', log, log], detached: true},
  )
  fs.closeSync(log)
  const pid = child.pid as number
  const killOnExit = (): void => {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
  process.once('exit', killOnExit)

  const stop = async (): Promise<void> => {
    process.removeListener('exit', killOnExit)
    if (pidAlive(pid)) {
      process.kill(pid, 'SIGTERM')
      if (!(await waitGone(pid, 20_000))) process.kill(pid, 'SIGKILL')
      await waitGone(pid, 5000)
    }
    // dockerd's managed containerd normally exits with it; make sure.
    const ctdPidFile = path.join(dir, 'exec', 'containerd', 'containerd.pid')
    if (fs.existsSync(ctdPidFile)) {
      const ctdPid = Number(fs.readFileSync(ctdPidFile, 'utf8').trim())
      if (ctdPid > 0 && pidAlive(ctdPid)) {
        process.kill(ctdPid, 'SIGTERM')
        if (!(await waitGone(ctdPid, 5000))) process.kill(ctdPid, 'SIGKILL')
      }
    }
    await unmountUnder(dir)
    fs.rmSync(dir, {recursive: true, force: true})
  }

  const until = Date.now() + 60_000
  while (!(await ping(socketPath))) {
    if (!pidAlive(pid) || Date.now() > until) {
      const tail = fs.existsSync(logPath) ? fs.readFileSync(logPath, 'utf8').split('\n').slice(-15).join('\n') : ''
      await stop()
      throw new Error(`test dockerd did not come up:\n${tail}`)
    }
    await new Promise((r) => setTimeout(r, 200))
  }
  const host = `unix://${socketPath}`
  return {
    host,
    dir,
    docker: async (args, opts = {}) => {
      const p = run('docker', ['-H', host, ...args], {
        env: {...process.env, DOCKER_CONFIG: path.join(dir, 'cli-config'), ...opts.env},
        maxBuffer: 64 * 1024 * 1024,
      })
      if (opts.input !== undefined) p.child.stdin?.end(opts.input)
      return p
    },
    stop,
  }
}

/**
 * Write a docker-archive (`docker save` format) of a busybox image: one layer with the static
 * /usr/bin/busybox as /bin/busybox and applet symlinks, Cmd ["sh"].
 */
export async function writeBusyboxArchive(out: string, tag: string): Promise<void> {
  const busybox = fs.readFileSync('/usr/bin/busybox')
  const layer = tarPack()
  const mtime = new Date('2024-01-01T00:00:00Z')
  const chunks: Buffer[] = []
  layer.on('data', (c: Buffer) => chunks.push(c))
  const layerDone = new Promise((r) => layer.on('end', r))
  for (const d of ['bin', 'tmp', 'etc']) layer.entry({name: `${d}/`, type: 'directory', mode: d === 'tmp' ? 0o1777 : 0o755, mtime})
  layer.entry({name: 'bin/busybox', mode: 0o755, mtime}, busybox)
  for (const applet of ['sh', 'ls', 'cat', 'echo', 'find', 'sort', 'stat', 'test', 'true', 'false', 'mkdir', 'wc', 'env']) {
    layer.entry({name: `bin/${applet}`, type: 'symlink', linkname: 'busybox', mode: 0o777, mtime})
  }
  layer.finalize()
  await layerDone
  const layerTar = Buffer.concat(chunks)
  const diffId = `sha256:${createHash('sha256').update(layerTar).digest('hex')}`
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      created: mtime.toISOString(),
      config: {Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh']},
      rootfs: {type: 'layers', diff_ids: [diffId]},
      history: [{created: mtime.toISOString(), created_by: 'sideload test busybox'}],
    }),
  )
  const configName = `${createHash('sha256').update(config).digest('hex')}.json`
  const archive = tarPack()
  const file = fs.createWriteStream(out)
  archive.pipe(file)
  archive.entry({name: configName, mtime}, config)
  archive.entry({name: 'layer/layer.tar', mtime}, layerTar)
  archive.entry({name: 'manifest.json', mtime}, JSON.stringify([{Config: configName, RepoTags: [tag], Layers: ['layer/layer.tar']}]))
  archive.finalize()
  await new Promise<void>((resolve, reject) => {
    file.on('finish', () => resolve())
    file.on('error', reject)
  })
}
