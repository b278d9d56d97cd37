import {execFileSync, spawn} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import {Readable} from 'node:stream'
import {fileURLToPath} from 'node:url'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {type Bed, type BedNode, containerdVersionPattern, startBed} from '../bed/bed.js'
import {connectNode, type SshConnection} from '../../src/ssh/connection.js'
import {SshError} from '../../src/ssh/errors.js'
import {fingerprint} from '../../src/ssh/known-hosts.js'
import {SshPool} from '../../src/ssh/pool.js'
import {openNode} from '../../src/nodes/open.js'
import {makeImage} from '../bed/images.js'
import {jsonResult, runCli} from '../push/cli.js'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const BED_NAME = 'slbt-ssh'

let bed: Bed
let tmp: string
let n1: BedNode
let n2: BedNode
let otherKey: string
const open: SshConnection[] = []

function fp(pub: string): string {
  const [type, base64] = pub.split(' ')
  return fingerprint({type, base64})
}

/** Connect as root with the bed's key and known_hosts, remembering the connection for cleanup. */
async function connect(node: BedNode | string, extra: Partial<Parameters<typeof connectNode>[0]> = {}): Promise<SshConnection> {
  const conn = await connectNode({
    target: typeof node === 'string' ? node : `root@${node.ip}`,
    identityFiles: [bed.keyPath],
    agent: false,
    knownHostsPath: bed.knownHostsPath,
    resolve: {configPath: null},
    readyTimeoutMs: 10_000,
    ...extra,
  })
  open.push(conn)
  return conn
}

async function expectSshError(p: Promise<unknown>, code: string): Promise<SshError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(SshError)
  expect((err as SshError).code).toBe(code)
  return err as SshError
}

beforeAll(async () => {
  bed = await startBed({name: BED_NAME, nodes: 2})
  ;[n1, n2] = bed.nodes
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), `${BED_NAME}-`))
  otherKey = path.join(tmp, 'other_key')
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', otherKey])
})

afterAll(async () => {
  await Promise.allSettled(open.map((c) => c.close()))
  await bed?.down()
  if (tmp) fs.rmSync(tmp, {recursive: true, force: true})
})

describe('SSH connection to a real node', () => {
  it('runs commands, returns exit codes and output, negotiates AES-GCM, verifies the host key', async () => {
    const conn = await connect(n1)
    expect(conn.negotiated?.cs.cipher).toBe('aes128-gcm@openssh.com')
    expect(conn.negotiated?.sc.cipher).toBe('aes128-gcm@openssh.com')
    expect(conn.hostKey).toMatchObject({type: 'ssh-ed25519', fingerprint: fp(n1.hostKeyPub), recorded: false, file: bed.knownHostsPath})

    const r = await conn.execCapture(['sh', '-c', 'echo out; echo err >&2; exit 3'])
    expect(r).toEqual({code: 3, stdout: 'out\n', stderr: 'err\n'})
    // the command ran on the node: it sees the node's own address
    const ip = await conn.execCapture(['ip', '-o', '-4', 'addr', 'show', 'eth0'], {check: true})
    expect(ip.stdout).toContain(n1.ip)
    await expect(conn.execCapture(['sh', '-c', 'echo broken >&2; exit 7'], {check: true})).rejects.toThrow(/exited with code 7: broken/)
    // what failed in words and what it said, never our script (issue 30): a missing program is named as such
    const failed = await conn.execCapture(['sh', '-c', 'printf "one\\ntwo\\n" >&2; no-such-program-sideload', 'sideload-probe'], {check: true, what: 'probing the node'}).catch((e: Error) => e)
    expect((failed as Error).message).toMatch(new RegExp(`^probing the node on \\S*${n1.ip.replace(/\./g, '\\.')}\\S* found no such command \\(exit code 127\\): one; two; .*no-such-program-sideload`))
    expect((failed as Error).message).not.toContain('printf')
    const unnamed = await conn.execCapture(['sh', '-c', 'exit 4', 'sideload-step'], {check: true}).catch((e: Error) => e)
    expect((unnamed as Error).message).toMatch(/^sideload-step on \S+ exited with code 4$/)
  })

  it('streams ~50 MB of stdin intact (sha256 on the node)', async () => {
    const conn = await connect(n1)
    const hash = createHash('sha256')
    let sent = 0
    const source = Readable.from(
      (function* () {
        for (let i = 0; i < 50; i++) {
          const chunk = randomBytes(1024 * 1024 + i) // odd sizes on purpose
          hash.update(chunk)
          sent += chunk.length
          yield chunk
        }
      })(),
    )
    const r = await conn.execCapture(['sha256sum'], {stdin: source, check: true})
    expect(r.stdout).toBe(`${hash.digest('hex')}  -\n`)
    expect(sent).toBeGreaterThan(50 * 1024 * 1024)
  })

  it('passes hostile arguments literally', async () => {
    const conn = await connect(n1)
    const marker = `/tmp/${BED_NAME}-pwned-${process.pid}`
    const arg = `$(touch ${marker}); x \`touch ${marker}\` '"; touch ${marker}`
    const r = await conn.execCapture(['printf', '%s', arg], {check: true})
    expect(r.stdout).toBe(arg)
    expect((await bed.exec(n1, ['test', '-e', marker])).code).toBe(1)
    // control: the same probe does see a file when one is really created
    await conn.execCapture(['touch', marker], {check: true})
    expect((await bed.exec(n1, ['test', '-e', marker])).code).toBe(0)
    await conn.execCapture(['rm', '-f', marker], {check: true})
    await expect(conn.exec(['echo', 'a\nb'])).rejects.toThrow(/NUL or newline/)
  })

  it('forwards the node containerd socket to a local unix socket that grpc-js can dial', async () => {
    const conn = await connect(n1)
    const local = await conn.forwardUnixSocket(n1.containerdSocket)
    expect(fs.statSync(path.dirname(local)).mode & 0o777).toBe(0o700)
    const client = versionClient(local)
    const call = () => callVersion(client)
    const [a, b] = await Promise.all([call(), call()])
    const direct = execFileSync('ctr', ['-a', n1.hostSocketPath, 'version'], {encoding: 'utf8'})
    expect(direct).toContain(`Revision: ${a.revision ?? ""}`)
    expect(a.version).toMatch(new RegExp(containerdVersionPattern(n1.containerdLine)))
    expect(b).toEqual(a)
    client.close()

    // a plain client too: the node's containerd answers the HTTP/2 preface with a SETTINGS frame
    const raw = net.connect(local)
    raw.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')
    raw.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]))
    const first = await new Promise<Buffer>((resolve) => raw.once('data', resolve))
    raw.destroy()
    expect(first[3]).toBe(4) // frame type SETTINGS

    await conn.close()
    expect(fs.existsSync(path.dirname(local))).toBe(false)
  })

  it('refuses an unknown host key with its fingerprint and records nothing', async () => {
    const kh = path.join(tmp, 'known_hosts_empty')
    fs.writeFileSync(kh, '')
    const err = await expectSshError(connect(n2, {knownHostsPath: kh}), 'host-key-unknown')
    expect(err.message).toContain(fp(n2.hostKeyPub))
    expect(err.hint).toContain('--trust-new-host-keys')
    expect(fs.readFileSync(kh, 'utf8')).toBe('')
  })

  it('records an unknown key on first use when asked, and matches it next time', async () => {
    const kh = path.join(tmp, 'known_hosts_tofu')
    const first = await connect(n2, {knownHostsPath: kh, trustOnFirstUse: true})
    expect(first.hostKey).toMatchObject({recorded: true, fingerprint: fp(n2.hostKeyPub)})
    expect(fs.readFileSync(kh, 'utf8')).toBe(`${n2.ip} ${n2.hostKeyPub}\n`)
    const again = await connect(n2, {knownHostsPath: kh})
    expect(again.hostKey).toMatchObject({recorded: false, file: kh})
    // ssh(1) agrees with what was recorded
    const out = execFileSync('ssh-keygen', ['-F', n2.ip, '-f', kh], {encoding: 'utf8'})
    expect(out).toContain(n2.hostKeyPub)
  })

  it('refuses a host key of another type than the ones known for the node, even with trust on first use', async () => {
    // known_hosts has an ecdsa key for node 2 (not its own); node 2's sshd has only an ed25519 key
    const kh = path.join(tmp, 'known_hosts_other_type')
    const ecdsa = path.join(tmp, 'other_ecdsa_host_key')
    execFileSync('ssh-keygen', ['-q', '-t', 'ecdsa', '-N', '', '-f', ecdsa])
    const known = fs.readFileSync(`${ecdsa}.pub`, 'utf8').split(' ').slice(0, 2).join(' ')
    fs.writeFileSync(kh, `${n2.ip} ${known}\n`)
    const err = await expectSshError(connect(n2, {knownHostsPath: kh, trustOnFirstUse: true}), 'host-key-changed')
    expect(err.message).toContain(`ssh-ed25519 key now ${fp(n2.hostKeyPub)}`)
    expect(err.message).toContain(`known_hosts has ecdsa-sha2-nistp256 key ${fp(known)} (${kh}:1), and no ssh-ed25519 key for it`)
    expect(err.hint).toContain(`ssh-keygen -R '${n2.ip}'`)
    expect(fs.readFileSync(kh, 'utf8')).toBe(`${n2.ip} ${known}\n`)
  })

  it('asks a node with several host keys for the type known_hosts has, and refuses it when it has none of that type', async () => {
    // a second sshd on node 1 (port 2222) with an ed25519 and an ecdsa host key; ssh2 would take ed25519 first
    const dir = path.join(bed.nodeDir(n1), 'sshd-two-keys')
    fs.mkdirSync(dir, {recursive: true})
    const pub: Record<string, string> = {}
    for (const type of ['ed25519', 'ecdsa']) {
      const key = path.join(dir, `ssh_host_${type}_key`)
      fs.rmSync(key, {force: true})
      fs.rmSync(`${key}.pub`, {force: true})
      execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-f', key])
      pub[type] = fs.readFileSync(`${key}.pub`, 'utf8').split(' ').slice(0, 2).join(' ')
    }
    const config = path.join(dir, 'sshd_config')
    fs.writeFileSync(config, [`ListenAddress ${n1.ip}:2222`, `HostKey ${dir}/ssh_host_ed25519_key`, `HostKey ${dir}/ssh_host_ecdsa_key`, 'PermitRootLogin prohibit-password',
      'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'UsePAM no', 'AuthorizedKeysFile /etc/ssh/authorized_keys/%u', 'PidFile none', ''].join('\n'))
    await bed.startDaemon(n1, 'sshd-two-keys', ['/usr/sbin/sshd', '-D', '-e', '-f', config], () => new Promise<boolean>((resolve) => {
      const s = net.connect(2222, n1.ip, () => (s.destroy(), resolve(true)))
      s.on('error', () => resolve(false))
    }))
    const knownHosts = (name: string, key: string): string => {
      const kh = path.join(tmp, `known_hosts_two_keys_${name}`)
      fs.writeFileSync(kh, `[${n1.ip}]:2222 ${key}\n`)
      return kh
    }
    for (const [type, name] of [['ecdsa', 'ecdsa-sha2-nistp256'], ['ed25519', 'ssh-ed25519']]) {
      const conn = await connect(`root@${n1.ip}:2222`, {knownHostsPath: knownHosts(type, pub[type])})
      expect(conn.hostKey).toMatchObject({type: name, fingerprint: fp(pub[type]), recorded: false})
      await conn.close()
    }
    // known_hosts has an rsa key for it, which the node does not have: refused, recorded nothing
    const rsa = path.join(tmp, 'other_rsa_host_key')
    execFileSync('ssh-keygen', ['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-f', rsa])
    const kh = knownHosts('rsa', fs.readFileSync(`${rsa}.pub`, 'utf8').split(' ').slice(0, 2).join(' '))
    const before = fs.readFileSync(kh, 'utf8')
    const err = await expectSshError(connect(`root@${n1.ip}:2222`, {knownHostsPath: kh, trustOnFirstUse: true}), 'host-key-changed')
    expect(err.message).toContain('known_hosts has ssh-rsa key')
    expect(fs.readFileSync(kh, 'utf8')).toBe(before)
  })

  it('fails authentication clearly, naming the user and the keys tried', async () => {
    const err = await expectSshError(connect(n1, {identityFiles: [otherKey]}), 'auth')
    expect(err.message).toContain('authentication as root')
    expect(err.message).toContain(otherKey)
    expect(err.hint).toContain('--ssh-key')
  })

  it('reaches node 2 through node 1 with ProxyJump from ssh_config', async () => {
    const cfg = path.join(tmp, 'ssh_config')
    fs.writeFileSync(
      cfg,
      [
        `Host jump-1`,
        `  HostName ${n1.ip}`,
        '  User root',
        `  IdentityFile ${bed.keyPath}`,
        `Host inner-2`,
        `  HostName ${n2.ip}`,
        '  User root',
        `  IdentityFile ${bed.keyPath}`,
        '  ProxyJump jump-1',
        '',
      ].join('\n'),
    )
    const conn = await connectNode({target: 'inner-2', resolve: {configPath: cfg}, agent: false, knownHostsPath: bed.knownHostsPath})
    open.push(conn)
    expect(conn.target.via?.host).toBe(n1.ip)
    const r = await conn.execCapture(['sh', '-c', 'echo "$SSH_CONNECTION"'], {check: true})
    // seen from node 2, the client is node 1 (the jump host), not this machine
    const [clientIp, , serverIp] = r.stdout.trim().split(' ')
    expect(serverIp).toBe(n2.ip)
    expect(clientIp).toBe(n1.ip)
    await conn.close()
    // a node opened through the jump host speaks gRPC to its containerd (the corked transport is the jump channel)
    const pool = new SshPool({resolve: {configPath: cfg}, agent: false, knownHostsPath: bed.knownHostsPath})
    try {
      const node = await openNode({name: 'inner-2', sshTarget: 'inner-2'}, pool)
      expect(node.facts).toMatchObject({mode: 'native', socket: n2.containerdSocket})
      expect(node.facts.containerdVersion).toMatch(new RegExp(containerdVersionPattern(n2.containerdLine)))
      await node.close()
    } finally {
      await pool.closeAll()
    }
  })

  it('shares one connection per node in a pool', async () => {
    const pool = new SshPool({identityFiles: [bed.keyPath], agent: false, knownHostsPath: bed.knownHostsPath, resolve: {configPath: null}})
    try {
      const [a, b] = await Promise.all([pool.get(`root@${n1.ip}`), pool.get(`root@${n1.ip}:22`)])
      expect(a).toBe(b)
      const c = await pool.get(`root@${n2.ip}`)
      expect(c).not.toBe(a)
      expect(pool.size).toBe(2)
      const outs = await Promise.all(Array.from({length: 12}, (_, i) => a.execCapture(['echo', String(i)])))
      expect(outs.map((o) => o.stdout)).toEqual(Array.from({length: 12}, (_, i) => `${i}\n`))
      await a.close()
      const fresh = await pool.get(`root@${n1.ip}`)
      expect(fresh).not.toBe(a)
      expect((await fresh.execCapture(['true'])).code).toBe(0)
    } finally {
      await pool.closeAll()
    }
    expect(pool.size).toBe(0)
  })

  it('removes forwarded sockets of pooled connections when the process exits', async () => {
    const tsx = path.join(HERE, '..', '..', 'node_modules', '.bin', 'tsx')
    const out = execFileSync(
      tsx,
      [path.join(HERE, 'fixtures', 'pool-exit.ts'), `root@${n1.ip}`, bed.keyPath, bed.knownHostsPath, n1.containerdSocket],
      {encoding: 'utf8', timeout: 30_000},
    )
    const local = out.trim()
    expect(local).toMatch(/sideload-ssh-.*\/containerd\.sock$/)
    expect(fs.existsSync(path.dirname(local))).toBe(false)
  })

  it('authenticates through a real ssh-agent, honouring IdentitiesOnly', async () => {
    const sock = path.join(tmp, 'agent.sock')
    const agent = spawn('ssh-agent', ['-D', '-a', sock], {stdio: 'ignore'})
    try {
      for (let i = 0; i < 100 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50))
      execFileSync('ssh-add', [bed.keyPath], {env: {...process.env, SSH_AUTH_SOCK: sock}, stdio: 'pipe'})
      const viaAgent = await connect(n1, {identityFiles: [], agent: sock})
      expect((await viaAgent.execCapture(['id', '-un'])).stdout).toBe('root\n')

      // IdentitiesOnly with an identity the agent does not hold: the agent's key must not be offered
      const cfg = path.join(tmp, 'ssh_config_identities_only')
      fs.writeFileSync(cfg, `Host only-other\n  HostName ${n1.ip}\n  User root\n  IdentityFile ${otherKey}\n  IdentitiesOnly yes\n`)
      const err = await expectSshError(
        connect('only-other', {identityFiles: [], agent: sock, resolve: {configPath: cfg}}),
        'auth',
      )
      expect(err.message).toContain(`only keys of ${otherKey}`)
      // control: the same config without IdentitiesOnly gets in with the agent's key
      fs.writeFileSync(cfg, `Host only-other\n  HostName ${n1.ip}\n  User root\n  IdentityFile ${otherKey}\n`)
      await connect('only-other', {identityFiles: [], agent: sock, resolve: {configPath: cfg}})
    } finally {
      agent.kill()
    }
  })

  it('explains when the SSH user may not open the containerd socket', async () => {
    const conn = await connect(`${bed.nonRootUser}@${n1.ip}`)
    expect((await conn.execCapture(['id', '-un'])).stdout).toBe(`${bed.nonRootUser}\n`)
    const err = await expectSshError(conn.forwardUnixSocket(n1.containerdSocket), 'channel')
    expect(err.message).toContain(n1.containerdSocket)
    expect(err.hint).toContain(`${bed.nonRootUser} may not open ${n1.containerdSocket}`)
    expect(err.message).toContain('Permission denied')
  })

  it('falls back to socat on the node when sshd prohibits stream-local forwarding', async () => {
    const sshdConfig = '/etc/ssh/sshd_config'
    const sed = (from: string, to: string) => bed.exec(n1, ['sed', '-i', `s/^AllowStreamLocalForwarding ${from}$/AllowStreamLocalForwarding ${to}/`, sshdConfig])
    await sed('yes', 'no')
    await bed.stopSshd(n1)
    await bed.startSshd(n1)
    try {
      expect((await bed.exec(n1, ['grep', '-c', '^AllowStreamLocalForwarding no', sshdConfig])).stdout.trim()).toBe('1')
      const conn = await connect(n1)
      const local = await conn.forwardUnixSocket(n1.containerdSocket)
      const client = versionClient(local)
      const reply = await callVersion(client)
      expect(reply.version).toMatch(new RegExp(containerdVersionPattern(n1.containerdLine)))
      // the bridge really runs through socat on the node
      const ps = await bed.exec(n1, ['pgrep', '-a', 'socat'])
      expect(ps.stdout).toContain(`UNIX-CONNECT:${n1.containerdSocket}`)
      client.close()
      await conn.close()
      // and a push's node opens the same way: no stream-local socket opens, the probe finds the
      // socket, and the gRPC channel runs over socat
      const pool = new SshPool({identityFiles: [bed.keyPath], agent: false, knownHostsPath: bed.knownHostsPath, resolve: {configPath: null}})
      try {
        const node = await openNode({name: n1.name, sshTarget: `root@${n1.ip}`}, pool)
        expect(node.facts).toMatchObject({mode: 'native', socket: n1.containerdSocket})
        expect(node.facts.containerdVersion).toMatch(new RegExp(containerdVersionPattern(n1.containerdLine)))
        await node.close()
      } finally {
        await pool.closeAll()
      }
      // and a push: each blob from 1 MiB goes over a stream of its own (direct-write.ts), here
      // each through a socat of its own; the image lands whole, and no socat is left behind
      const name = 'docker.io/slbt-ssh/socat:1'
      const archive = path.join(tmp, 'socat.tar')
      const image = await makeImage({name, format: 'oci', out: archive, layers: [{sizeBytes: 3 << 20, seed: 'socat-1'}, {sizeBytes: 5 << 20, seed: 'socat-2'}]})
      const run = await runCli(['push', '--archive', archive, '--host', `root@${n1.ip}`, '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath, '--json'])
      expect(run.code, run.stderr).toBe(0)
      expect(jsonResult(run.stdout).results[0]).toMatchObject({status: 'pushed', mode: 'native', digest: image.targetDigest})
      const check = (await bed.ctr(n1, ['images', 'check'])).split('\n').find((l) => l.startsWith(`${name} `))
      expect(check).toMatch(/complete \((\d+)\/\1\)\s.*true/)
      let left = 'socat'
      for (const deadline = Date.now() + 10_000; left && Date.now() < deadline; ) {
        await new Promise((r) => setTimeout(r, 100))
        left = (await bed.exec(n1, ['pgrep', '-a', 'socat'])).stdout.trim()
      }
      expect(left, 'socat processes left on the node').toBe('')
      await bed.ctr(n1, ['images', 'rm', '--sync', name])
    } finally {
      await sed('no', 'yes')
      await bed.stopSshd(n1)
      await bed.startSshd(n1)
    }
  })

  it('notices a connection cut under a running command', async () => {
    const conn = await connect(n1)
    const proc = await conn.exec(['sleep', '60'])
    proc.stdout.resume()
    proc.stderr.resume()
    await bed.killSshSessions(n1)
    const err = await expectSshError(proc.wait(), 'closed')
    expect(err.message).toContain('sleep')
    await conn.closed
    expect(conn.isOpen).toBe(false)
    await expectSshError(conn.exec(['true']), 'closed')
  })

  it('reports a failing stdin source instead of a truncated success', async () => {
    const conn = await connect(n1)
    const source = new Readable({
      read() {
        this.push(Buffer.alloc(256 * 1024, 1))
        setTimeout(() => this.destroy(new Error('disk read failed')), 20)
      },
    })
    const err = await expectSshError(conn.execCapture(['cat'], {stdin: source}), 'channel')
    expect(err.message).toContain('disk read failed')
  })

  it('returns the exit code of a command that stops reading its stdin early', async () => {
    const conn = await connect(n1)
    let produced = 0
    const endless = new Readable({
      read() {
        produced += 64 * 1024
        this.push(Buffer.alloc(64 * 1024, 2))
      },
    })
    const r = await conn.execCapture(['sh', '-c', 'head -c 1000 >/dev/null; exit 5'], {stdin: endless})
    expect(r.code).toBe(5)
    expect(endless.destroyed).toBe(true)
    expect(produced).toBeLessThan(512 * 1024 * 1024)
    const big = await conn.execCapture(['true'], {stdin: Buffer.alloc(8 * 1024 * 1024)})
    expect(big.code).toBe(0)
  })

  it('times out on a server that never speaks SSH', async () => {
    const silent = net.createServer(() => undefined)
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r))
    const port = (silent.address() as net.AddressInfo).port
    try {
      const started = Date.now()
      const err = await expectSshError(connect(`root@127.0.0.1:${port}`, {readyTimeoutMs: 1000}), 'timeout')
      expect(Date.now() - started).toBeLessThan(4000)
      expect(err.message).toContain(`127.0.0.1:${port}`)
    } finally {
      silent.close()
    }
  })

  it('says which jump host could not reach the target', async () => {
    const cfg = path.join(tmp, 'ssh_config_bad_jump')
    fs.writeFileSync(
      cfg,
      `Host jump-1\n  HostName ${n1.ip}\n  User root\n  IdentityFile ${bed.keyPath}\nHost bad-2\n  HostName ${n2.ip}\n  Port 2999\n  User root\n  ProxyJump jump-1\n`,
    )
    const err = await expectSshError(connect('bad-2', {identityFiles: [], resolve: {configPath: cfg}}), 'unreachable')
    expect(err.message).toContain('through jump host jump-1')
    expect(err.message).toContain(`${n2.ip}:2999`)
  })

  it('runs ProxyCommand from ssh_config (OpenSSH ssh -W through node 1)', async () => {
    const cfg = path.join(tmp, 'ssh_config_proxy_command')
    const jump = `ssh -F none -i ${bed.keyPath} -o UserKnownHostsFile=${bed.knownHostsPath} -o StrictHostKeyChecking=yes -o BatchMode=yes -W %h:%p root@${n1.ip}`
    fs.writeFileSync(
      cfg,
      `Host pc-2\n  HostName ${n2.ip}\n  User root\n  IdentityFile ${bed.keyPath}\n  ProxyCommand ${jump}\n` +
        `Host pc-broken\n  HostName ${n2.ip}\n  ProxyCommand sh -c "echo proxy-broken >&2; exit 3"\n`,
    )
    const conn = await connect('pc-2', {identityFiles: [], resolve: {configPath: cfg}})
    const r = await conn.execCapture(['sh', '-c', 'echo "$SSH_CONNECTION"'], {check: true})
    expect(r.stdout.split(' ')[0]).toBe(n1.ip)
    await conn.close()
    const err = await expectSshError(connect('pc-broken', {resolve: {configPath: cfg}}), 'unreachable')
    expect(err.message).toContain('proxy-broken')
  })

  it('records hashed entries when ssh_config says HashKnownHosts and accept-new', async () => {
    const kh = path.join(tmp, 'known_hosts_hashed')
    const cfg = path.join(tmp, 'ssh_config_hashed')
    fs.writeFileSync(
      cfg,
      `Host hashed-1\n  HostName ${n1.ip}\n  User root\n  IdentityFile ${bed.keyPath}\n  UserKnownHostsFile ${kh}\n  StrictHostKeyChecking accept-new\n  HashKnownHosts yes\n`,
    )
    const o = {identityFiles: [], knownHostsPath: undefined, resolve: {configPath: cfg}}
    const first = await connect('hashed-1', o)
    expect(first.hostKey?.recorded).toBe(true)
    const text = fs.readFileSync(kh, 'utf8')
    expect(text).toMatch(/^\|1\|/)
    expect(text).not.toContain(n1.ip)
    expect(execFileSync('ssh-keygen', ['-F', n1.ip, '-f', kh], {encoding: 'utf8'})).toContain(n1.hostKeyPub)
    const second = await connect('hashed-1', o)
    expect(second.hostKey).toMatchObject({recorded: false, file: kh})
  })

  it('uses ~/.ssh defaults like ssh: id_ed25519 and known_hosts, skipping encrypted keys with a reason', async () => {
    const home = path.join(tmp, 'home')
    fs.mkdirSync(path.join(home, '.ssh'), {recursive: true, mode: 0o700})
    fs.copyFileSync(bed.keyPath, path.join(home, '.ssh', 'id_ed25519'))
    fs.chmodSync(path.join(home, '.ssh', 'id_ed25519'), 0o600)
    fs.copyFileSync(bed.knownHostsPath, path.join(home, '.ssh', 'known_hosts'))
    const conn = await connect(n1, {identityFiles: [], knownHostsPath: undefined, resolve: {configPath: null, home}})
    expect(conn.hostKey?.file).toBe(path.join(home, '.ssh', 'known_hosts'))
    expect((await conn.execCapture(['true'])).code).toBe(0)

    const encrypted = path.join(tmp, 'encrypted_key')
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'secret-passphrase', '-f', encrypted])
    const err = await expectSshError(connect(n1, {identityFiles: [encrypted]}), 'auth')
    expect(err.message).toContain(`skipped ${encrypted} (encrypted, needs ssh-agent)`)
  })

  it('hops through two jump hosts (ProxyJump a,b)', async () => {
    const cfg = path.join(tmp, 'ssh_config_two_hops')
    const hostBlock = (alias: string, ip: string, extra = '') =>
      `Host ${alias}\n  HostName ${ip}\n  User root\n  IdentityFile ${bed.keyPath}\n${extra}`
    fs.writeFileSync(cfg, hostBlock('hop-1', n1.ip) + hostBlock('hop-2', n2.ip) + hostBlock('far-1', n1.ip, '  ProxyJump hop-1,hop-2\n'))
    const conn = await connect('far-1', {identityFiles: [], resolve: {configPath: cfg}})
    // this machine -> node 1 -> node 2 -> node 1: the last hop's sshd sees node 2 as the client
    const r = await conn.execCapture(['sh', '-c', 'echo "$SSH_CONNECTION"'], {check: true})
    const [clientIp, , serverIp] = r.stdout.trim().split(' ')
    expect([clientIp, serverIp]).toEqual([n2.ip, n1.ip])
    await conn.close()
  })

  it('fails fast with a clear error when sshd is down', async () => {
    await bed.stopSshd(n1)
    try {
      const started = Date.now()
      const err = await expectSshError(connect(n1), 'unreachable')
      expect(Date.now() - started).toBeLessThan(5000)
      expect(err.message).toContain(n1.ip)
      expect(err.message).toContain('ECONNREFUSED')
    } finally {
      await bed.startSshd(n1)
    }
  })

  it('refuses a changed host key, even with trust on first use', async () => {
    const before = fs.readFileSync(bed.knownHostsPath, 'utf8')
    const oldFp = fp(n2.hostKeyPub)
    await bed.regenerateHostKey(n2)
    const newFp = fp(n2.hostKeyPub)
    expect(newFp).not.toBe(oldFp)
    const err = await expectSshError(connect(n2, {trustOnFirstUse: true}), 'host-key-changed')
    expect(err.message).toContain(oldFp)
    expect(err.message).toContain(newFp)
    expect(err.message).toContain(`${bed.knownHostsPath}:2`)
    expect(err.hint).toContain(`ssh-keygen -R '${n2.ip}'`)
    expect(fs.readFileSync(bed.knownHostsPath, 'utf8')).toBe(before)
  })
})

type VersionReply = {version: string; revision: string}
type VersionClient = grpc.Client & {Version(req: object, cb: (err: grpc.ServiceError | null, res?: VersionReply) => void): void}

/** A grpc-js client for containerd's Version service (our test proto) on a local unix socket. */
function versionClient(socketPath: string): VersionClient {
  const def = protoLoader.loadSync(path.join(HERE, 'proto', 'version.proto'), {keepCase: true})
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    containerd: {services: {version: {v1: {Version: new (target: string, creds: grpc.ChannelCredentials) => VersionClient}}}}
  }
  return new pkg.containerd.services.version.v1.Version(`unix://${socketPath}`, grpc.credentials.createInsecure())
}

function callVersion(client: VersionClient): Promise<VersionReply> {
  return new Promise((resolve, reject) =>
    client.Version({}, (err, res) => (err || !res ? reject(err ?? new Error('no reply')) : resolve(res))),
  )
}
