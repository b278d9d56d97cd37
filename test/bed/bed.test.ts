import {execFile, spawn} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {cleanAll, destroyBed, removeEmptyBedDirs, startBed, type Bed, type BedNode} from './bed.js'
import {ctrErrorLines} from '../../src/nodes/ctr-output.js'
import {makeImage, type ImageInfo} from './images.js'

interface Run {
  code: number
  stdout: string
  stderr: string
}

function run(cmd: string, args: string[], timeoutMs = 30_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, {timeout: timeoutMs, maxBuffer: 64 << 20}, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0
      resolve({code, stdout: String(stdout), stderr: String(stderr)})
    })
  })
}

function ssh(bed: Bed, node: BedNode, command: string, user = 'root', timeoutMs?: number): Promise<Run> {
  return run('ssh', [...bed.sshArgs(node, user), command], timeoutMs)
}

/** ssh with a file streamed to the remote command's stdin (like `ssh node cmd < file`). */
function sshWithInput(bed: Bed, node: BedNode, command: string, file: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn('ssh', [...bed.sshArgs(node), command], {stdio: ['pipe', 'pipe', 'pipe']})
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()))
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
    child.on('error', reject)
    child.on('close', (code) => resolve({code: code ?? 1, stdout, stderr}))
    child.stdin.on('error', () => undefined) // ssh may exit before reading all input; its exit code tells
    fs.createReadStream(file).pipe(child.stdin)
  })
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'slbt-bed-'))
afterAll(() => fs.rmSync(tmp, {recursive: true, force: true}))

/** Every trace a bed leaves on the host, as text, for "nothing left behind" checks. */
async function traces(bed: {name: string; index: number; dir: string}): Promise<string[]> {
  const found: string[] = []
  const netns = (await run('ip', ['netns', 'list'])).stdout
  for (const l of netns.split('\n')) if (l.startsWith(`slbed-${bed.name}-`)) found.push(`netns ${l}`)
  const links = (await run('ip', ['-o', 'link', 'show'])).stdout
  for (const l of links.split('\n')) {
    const m = /^\d+:\s+([^:@\s]+)/.exec(l)
    if (m && (m[1] === `slbr${bed.index}` || m[1].startsWith(`slb${bed.index}n`))) found.push(`link ${m[1]}`)
  }
  for (const l of fs.readFileSync('/proc/mounts', 'utf8').split('\n')) {
    if (l.includes(bed.dir) || l.includes(`slbed-${bed.name}-`)) found.push(`mount ${l}`)
  }
  const procs = await run('pgrep', ['-a', '-f', `${bed.dir}/`])
  for (const l of procs.stdout.split('\n')) if (l.trim() && !l.includes('pgrep')) found.push(`process ${l}`)
  if (fs.existsSync(bed.dir)) found.push(`dir ${bed.dir}`)
  return found
}

describe('test bed', () => {
  let bed: Bed
  beforeAll(async () => {
    bed = await startBed({name: 'slbt-bed', nodes: 2})
  })
  afterAll(async () => {
    await bed?.down()
  })

  it('gives every node its own sshd and containerd, reachable with the bed key', async () => {
    expect(bed.nodes.map((n) => n.name)).toEqual(['slbt-bed-1', 'slbt-bed-2'])
    const uuids: string[] = []
    for (const node of bed.nodes) {
      const r = await ssh(bed, node, 'ctr -n k8s.io version')
      expect(r.stderr).not.toMatch(/error/i)
      expect(r.code).toBe(0)
      const uuid = /UUID:\s+(\S+)/.exec(r.stdout)?.[1]
      expect(uuid).toBeDefined()
      uuids.push(uuid ?? '')
      // the same daemon answers on the host-side socket path
      const direct = await run('ctr', ['-a', node.hostSocketPath, 'version'])
      expect(direct.stdout).toContain(`UUID: ${uuid}`)
      expect(fs.readFileSync(bed.knownHostsPath, 'utf8')).toContain(`${node.ip},${node.name} ${node.hostKeyPub}`)
    }
    expect(new Set(uuids).size).toBe(2)
  })

  it('exec runs inside the node (its mounts, its network) with stdin and a timeout', async () => {
    const node = bed.nodes[1]
    const r = await bed.exec(node, ['sh', '-c', 'cat; ip -4 -o addr show dev eth0; grep -c " /var/lib/containerd " /proc/self/mounts'], {input: 'from-stdin\n'})
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(new RegExp(`^from-stdin\n.*inet ${node.ip.replace(/\./g, '\\.')}/24.*\n1\n$`))
    await expect(bed.exec(node, ['sleep', '5'], {timeoutMs: 200})).rejects.toThrow(/timed out/)
    // the ssh_config snippet reaches the node by name
    const byName = await run('ssh', ['-F', bed.sshConfigPath, '-o', 'BatchMode=yes', node.name, 'ip -4 -o addr show dev eth0'])
    expect(byName.code).toBe(0)
    expect(byName.stdout).toContain(`inet ${node.ip}/24`)
  })

  it('rejects a key that is not the bed key', async () => {
    const other = `${bed.dir}/other_key`
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other])
    const args = bed.sshArgs(bed.nodes[0]).map((a) => (a === bed.keyPath ? other : a))
    const r = await run('ssh', [...args, 'true'])
    expect(r.code).toBe(255)
    expect(r.stderr).toMatch(/Permission denied/)
  })

  it('reaches THAT node: an image imported on node 1 is not on node 2', async () => {
    const [n1, n2] = bed.nodes
    const out = path.join(tmp, 'only-n1.tar')
    const img = await makeImage({name: 'slbt-only-n1:1', layers: [{sizeBytes: 200_000, seed: 'only-n1'}], format: 'oci', out})
    await bed.ctr(n1, ['images', 'import', out])
    expect(await bed.ctr(n1, ['images', 'ls', '-q'])).toContain(img.name)
    const onN2 = await ssh(bed, n2, 'ctr -n k8s.io images ls -q')
    expect(onN2.code).toBe(0)
    expect(onN2.stdout).not.toContain(img.name)
    const onN1 = await ssh(bed, n1, 'ctr -n k8s.io images ls -q')
    expect(onN1.stdout).toContain(img.name)
  })

  it('imports generated OCI and docker archives completely (ctr images import over ssh, then check)', async () => {
    const node = bed.nodes[1]
    const archives: Array<{out: string; info: ImageInfo}> = []
    for (const format of ['oci', 'docker'] as const) {
      const out = path.join(tmp, `check-${format}.tar`)
      const info = await makeImage({name: `slbt-check-${format}:1`, layers: [{busybox: true}, {sizeBytes: 1_000_000, seed: `check-${format}`}], format, out})
      archives.push({out, info})
      const r = await sshWithInput(bed, node, 'ctr -n k8s.io images import -', out)
      expect(ctrErrorLines(r.stderr)).toEqual([])
      expect(r.code).toBe(0)
      const check = await bed.ctr(node, ['images', 'check', `name==${info.name}`])
      expect(check).toMatch(new RegExp(`${info.name.replace(/[.:/]/g, '\\$&')}\\s.*complete \\(\\d+/\\d+\\)`))
      expect(check).not.toMatch(/incomplete|missing/)
      // the config blob of the image is what we generated
      const config = await bed.ctr(node, ['content', 'get', info.configDigest])
      expect(JSON.parse(config).rootfs.diff_ids).toEqual(info.diffIds)
    }
    // busybox layer is runnable: its /bin/sh is a symlink to a real busybox
    const mnt = `/tmp/slbt-mnt-${process.pid}`
    const mounted = await bed.exec(node, ['sh', '-c', `mkdir -p ${mnt} && ctr -n k8s.io images mount ${archives[0].info.name} ${mnt} >/dev/null && ${mnt}/bin/busybox echo ok-from-image && readlink ${mnt}/bin/sh; ctr -n k8s.io images unmount --rm ${mnt} >/dev/null; rmdir ${mnt}`])
    expect(mounted.stdout).toBe('ok-from-image\nbusybox\n')
  })

  it('denies the non-root user the socket but allows sudo -n ctr (and only ctr)', async () => {
    const node = bed.nodes[0]
    const direct = await ssh(bed, node, 'ctr -n k8s.io version', bed.nonRootUser)
    expect(direct.code).not.toBe(0)
    expect(direct.stderr).toMatch(/connect: permission denied/)
    const sudo = await ssh(bed, node, 'sudo -n ctr -n k8s.io version', bed.nonRootUser)
    expect(sudo.code).toBe(0)
    expect(sudo.stdout).toMatch(/Server:/)
    const other = await ssh(bed, node, 'sudo -n id', bed.nonRootUser)
    expect(other.code).not.toBe(0)
    const who = await ssh(bed, node, 'id -un', bed.nonRootUser)
    expect(who.stdout.trim()).toBe(bed.nonRootUser)
  })

  it('offers aes128-gcm and stream-local forwarding', async () => {
    const node = bed.nodes[0]
    const r = await run('ssh', ['-o', 'Ciphers=aes128-gcm@openssh.com', '-v', ...bed.sshArgs(node), 'true'])
    expect(r.code).toBe(0)
    expect(r.stderr).toMatch(/cipher: aes128-gcm@openssh.com/)
    // forward a local unix socket to the node's containerd socket and talk to it
    const local = path.join(tmp, 'fwd.sock')
    const fwd = spawn('ssh', ['-N', '-L', `${local}:${node.containerdSocket}`, ...bed.sshArgs(node)], {stdio: 'ignore'})
    try {
      const deadline = Date.now() + 10_000
      while (!fs.existsSync(local) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
      const v = await run('ctr', ['-a', local, 'version'])
      expect(v.code).toBe(0)
      const uuid = /UUID:\s+(\S+)/.exec((await run('ctr', ['-a', node.hostSocketPath, 'version'])).stdout)?.[1]
      expect(v.stdout).toContain(`UUID: ${uuid}`)
    } finally {
      fwd.kill()
    }
  })

  it('regenerateHostKey gives the node a new host key that known_hosts no longer matches', async () => {
    const node = bed.nodes[1]
    const before = node.hostKeyPub
    await bed.regenerateHostKey(node)
    expect(node.hostKeyPub).not.toBe(before)
    expect(node.hostKeyPub).toMatch(/^ssh-ed25519 AAAA/)
    const scan = await run('ssh-keyscan', ['-t', 'ed25519', node.ip])
    expect(scan.stdout).toContain(node.hostKeyPub)
    const r = await ssh(bed, node, 'true')
    expect(r.code).toBe(255)
    expect(r.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/)
    expect(fs.readFileSync(bed.knownHostsPath, 'utf8')).toContain(before)
  })

  it('killSshSessions cuts a running session', async () => {
    const node = bed.nodes[0]
    const started = Date.now()
    const session = run('ssh', [...bed.sshArgs(node), 'sleep 30'], 60_000)
    // wait until the remote command runs
    const deadline = Date.now() + 10_000
    for (;;) {
      const p = await bed.exec(node, ['pgrep', '-x', 'sleep'])
      if (p.code === 0) break
      if (Date.now() > deadline) throw new Error('remote sleep never started')
      await new Promise((r) => setTimeout(r, 50))
    }
    await bed.killSshSessions(node)
    const r = await session
    expect(r.code).toBe(255)
    expect(Date.now() - started).toBeLessThan(15_000)
    // sshd itself still accepts new connections
    expect((await ssh(bed, node, 'true')).code).toBe(0)
  })

  it('stopContainerd removes the socket; startContainerd brings the same store back', async () => {
    const node = bed.nodes[0]
    const before = await bed.ctr(node, ['images', 'ls', '-q'])
    await bed.stopContainerd(node)
    expect(fs.existsSync(node.hostSocketPath)).toBe(false)
    const r = await ssh(bed, node, 'ctr --connect-timeout 1s -n k8s.io version')
    expect(r.code).not.toBe(0)
    // 1.6: failed to dial "…"; 2.x: cannot access socket …
    expect(r.stderr).toMatch(/(failed to dial "|cannot access socket )\/run\/containerd\/containerd.sock/)
    await bed.startContainerd(node)
    expect(fs.existsSync(node.hostSocketPath)).toBe(true)
    expect(await bed.ctr(node, ['images', 'ls', '-q'])).toBe(before)
  })

  it('shape limits the rate to the node, unshape lifts it', async () => {
    const node = bed.nodes[0]
    const file = path.join(tmp, 'shape.bin')
    fs.writeFileSync(file, Buffer.alloc(4 << 20, 7))
    await bed.shape(node, {rateMbit: 16})
    try {
      const t0 = Date.now()
      const slow = await sshWithInput(bed, node, 'cat > /dev/null', file)
      expect(slow.code).toBe(0)
      // 4 MiB at 16 Mbit/s is ~2.1 s
      expect(Date.now() - t0).toBeGreaterThan(1500)
    } finally {
      await bed.unshape(node)
    }
    const t1 = Date.now()
    expect((await sshWithInput(bed, node, 'cat > /dev/null', file)).code).toBe(0)
    expect(Date.now() - t1).toBeLessThan(1500)
  })

  it('shape with a delay needs netem: it either delays or says why it cannot', async () => {
    const node = bed.nodes[0]
    const rtt = async () => {
      const t0 = Date.now()
      await run('ssh-keyscan', ['-t', 'ed25519', node.ip])
      return Date.now() - t0
    }
    const plain = await rtt()
    try {
      await bed.shape(node, {rateMbit: 100, delayMs: 200})
      expect(await rtt()).toBeGreaterThan(plain + 300) // several round trips, each 200 ms later
    } catch (e) {
      expect(String(e)).toMatch(/netem/)
    } finally {
      await bed.unshape(node)
    }
  })

  it('leaves nothing behind after down', async () => {
    const probe = {name: bed.name, index: bed.index, dir: bed.dir}
    expect(await traces(probe)).not.toEqual([])
    await bed.down()
    expect(await traces(probe)).toEqual([])
  })
})

describe('test bed node options', () => {
  let bed: Bed
  beforeAll(async () => {
    bed = await startBed({name: 'slbt-opts', nodes: 2, nodeOptions: {1: {rootSizeMb: 24}, 2: {noContainerd: true}}})
  })
  afterAll(async () => {
    await bed?.down()
  })

  it('rootSizeMb puts /var/lib/containerd on a small filesystem: writing beyond it fails', async () => {
    const node = bed.nodes[0]
    const df = await bed.exec(node, ['df', '-k', '/var/lib/containerd'])
    const sizeKb = Number(df.stdout.trim().split('\n')[1]?.split(/\s+/)[1])
    expect(sizeKb).toBe(24 * 1024)
    const small = await bed.exec(node, ['dd', 'if=/dev/zero', 'of=/var/lib/containerd/fill', 'bs=1M', 'count=8'])
    expect(small.code).toBe(0)
    const big = await bed.exec(node, ['dd', 'if=/dev/zero', 'of=/var/lib/containerd/fill2', 'bs=1M', 'count=40'])
    expect(big.code).not.toBe(0)
    expect(big.stderr).toMatch(/No space left on device/)
    await bed.exec(node, ['rm', '-f', '/var/lib/containerd/fill', '/var/lib/containerd/fill2'])
    // an image larger than the filesystem fails to import
    const out = path.join(tmp, 'too-big.tar')
    await makeImage({name: 'slbt-too-big:1', layers: [{sizeBytes: 40_000_000, seed: 'too-big'}], format: 'oci', compress: 'none', out})
    await expect(bed.ctr(node, ['images', 'import', out])).rejects.toThrow(/no space left on device/i)
  })

  it('noContainerd starts no containerd: the socket path is absent', async () => {
    const node = bed.nodes[1]
    expect(fs.existsSync(node.hostSocketPath)).toBe(false)
    const r = await ssh(bed, node, 'test -S /run/containerd/containerd.sock; echo $?')
    expect(r.stdout.trim()).toBe('1')
  })
})

describe('test bed recovery', () => {
  it('beds started at the same time get distinct subnets and work side by side', async () => {
    const beds = await Promise.all(['slbt-par-a', 'slbt-par-b', 'slbt-par-c'].map((name) => startBed({name, nodes: 2})))
    try {
      expect(new Set(beds.map((b) => b.index)).size).toBe(3)
      expect(new Set(beds.flatMap((b) => b.nodes.map((n) => n.ip))).size).toBe(6)
      for (const b of beds) {
        for (const n of b.nodes) expect((await ssh(b, n, 'ctr -n k8s.io version')).code).toBe(0)
      }
    } finally {
      await Promise.all(beds.map((b) => b.down()))
    }
    for (const b of beds) expect(await traces({name: b.name, index: b.index, dir: b.dir})).toEqual([])
  })

  it('cleanAll({onlyDead}) spares a bed whose owner runs and removes it once the owner is killed', async () => {
    const bedTs = path.join(__dirname, 'bed.ts')
    const code = `import(${JSON.stringify(bedTs)}).then(async (m) => { const b = await m.startBed({name: 'slbt-orphan', nodes: 1}); console.log('UP ' + b.index + ' ' + b.dir); setInterval(() => {}, 1000) })`
    const child = spawn(process.execPath, ['--import', 'tsx', '-e', code], {stdio: ['ignore', 'pipe', 'inherit']})
    const up = await new Promise<string>((resolve, reject) => {
      let out = ''
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString()
        const m = /UP .*\n/.exec(out)
        if (m) resolve(m[0])
      })
      child.on('exit', (c) => reject(new Error(`bed owner exited early (${c}): ${out}`)))
    })
    const [, index, dir] = up.trim().split(' ')
    const probe = {name: 'slbt-orphan', index: Number(index), dir}
    try {
      expect(await cleanAll({onlyDead: true})).not.toContain('slbt-orphan')
      expect(await traces(probe)).not.toEqual([])
    } finally {
      child.kill('SIGKILL')
      await new Promise((r) => child.once('exit', r))
    }
    expect(await cleanAll({onlyDead: true})).toContain('slbt-orphan')
    expect(await traces(probe)).toEqual([])
  })

  it('starts again over a crashed bed (daemons killed, mounts and netns left)', async () => {
    const first = await startBed({name: 'slbt-crash', nodes: 2})
    const probe = {name: first.name, index: first.index, dir: first.dir}
    // simulate a crash: kill -9 every daemon of the bed, leave everything else
    const pids = (await run('pgrep', ['-f', `${first.dir}/`])).stdout.split('\n').filter(Boolean)
    expect(pids.length).toBe(4)
    await run('kill', ['-9', ...pids])
    const second = await startBed({name: 'slbt-crash', nodes: 2})
    try {
      for (const node of second.nodes) {
        const r = await ssh(second, node, 'ctr -n k8s.io version')
        expect(r.code).toBe(0)
      }
    } finally {
      await second.down()
    }
    expect(await traces(probe)).toEqual([])
    expect(await traces({name: second.name, index: second.index, dir: second.dir})).toEqual([])
  })
})

describe('bed CLI', () => {
  const cli = (args: string[]) => run(process.execPath, ['--import', 'tsx', path.join(__dirname, 'cli.ts'), ...args], 60_000)
  afterAll(async () => {
    await destroyBed('slbt-cli') // CLI beds are persistent: the global sweep would not remove it
  })

  it('up prints nodes and working ssh commands, status lists them, down removes everything', async () => {
    const up = await cli(['up', '2', '--name', 'slbt-cli'])
    expect(up.stderr).not.toMatch(/bed:/)
    expect(up.code).toBe(0)
    expect(up.stdout).toMatch(/slbt-cli-1\s+198\.18\.\d+\.11/)
    expect(up.stdout).toMatch(/slbt-cli-2\s+198\.18\.\d+\.12/)
    const sshLine = up.stdout.split('\n').find((l) => l.trim().startsWith('ssh ') && l.includes('.12'))
    expect(sshLine).toBeDefined()
    const sshArgv = (sshLine ?? '').trim().split(/\s+/).slice(1)
    const r = await run('ssh', [...sshArgv, 'ctr -n k8s.io version'])
    expect(r.code).toBe(0)
    const status = await cli(['status'])
    expect(status.stdout).toMatch(/slbt-cli-2\s+198\.18\.\d+\.12\s+sshd=up\s+containerd=up/)
    const index = Number(/198\.18\.(\d+)\.11/.exec(up.stdout)?.[1])
    const down = await cli(['down', '--name', 'slbt-cli'])
    expect(down.code).toBe(0)
    expect(await traces({name: 'slbt-cli', index, dir: '/run/sideload-bed/beds/slbt-cli'})).toEqual([])
  })

  it('down removes the bed folders once they are empty, and only then (other beds keep theirs)', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sl-bed-root-'))
    const [beds, index] = [path.join(root, 'beds'), path.join(root, 'index')]
    fs.mkdirSync(path.join(beds, 'other'), {recursive: true})
    fs.mkdirSync(index)
    await removeEmptyBedDirs(root)
    // another bed is still there: its folder and the root stay, the empty index goes
    expect([fs.existsSync(path.join(beds, 'other')), fs.existsSync(index), fs.existsSync(root)]).toEqual([true, false, true])
    fs.rmdirSync(path.join(beds, 'other'))
    fs.mkdirSync(path.join(root, 'sandbox'))
    await removeEmptyBedDirs(root)
    // a sandbox's folder keeps the root
    expect([fs.existsSync(beds), fs.existsSync(root)]).toEqual([false, true])
    fs.rmdirSync(path.join(root, 'sandbox'))
    await removeEmptyBedDirs(root)
    expect(fs.existsSync(root)).toBe(false)
  })
})
