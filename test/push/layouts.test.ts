// Nodes laid out as a distribution lays them out (issue 30, a first layout): RKE2 keeps ctr in
// /var/lib/rancher/rke2/bin, on no PATH (sudo's neither), and its sudoers line names that path. The
// bed node gets that layout in its own mount namespace: /var/lib/rancher a tmpfs of its own with the
// node's ctr copied there, /usr/bin/ctr hidden under a file that cannot be run. As root nothing
// changes (sideload talks to the socket itself); as the non-root user sideload finds that ctr, says
// the sudoers line with its path when sudo refuses, and pushes once it is allowed.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startBed, type Bed, type BedNode} from '../bed/bed.js'
import {makeImage} from '../bed/images.js'
import {runCli} from './cli.js'

const RKE2_CTR = '/var/lib/rancher/rke2/bin/ctr'
const SUDOERS = '/etc/sudoers.d/sideload-test-rke2'
const IMAGE = 'docker.io/sl-layout/app:1'

let bed: Bed
let node: BedNode
let dir: string
let archive: string

async function inNode(argv: string[]): Promise<string> {
  const r = await bed.exec(node, argv)
  if (r.code !== 0) throw new Error(`${argv.join(' ')} on ${node.name}: exit ${r.code}: ${r.stderr || r.stdout}`)
  return r.stdout
}

const rke2Ctr = (args: string[]): Promise<string> => inNode([RKE2_CTR, '-n', 'k8s.io', ...args])
const push = (user: string) => runCli(['push', '--archive', archive, '--host', `${user}@${node.ip}`, '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath, '--progress', 'plain'])

describe('an RKE2 node: ctr where RKE2 keeps it', () => {
  beforeAll(async () => {
    bed = await startBed({name: 'slbt-layout', nodes: 1})
    node = bed.nodes[0]
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sideload-layout-'))
    archive = path.join(dir, 'app.tar')
    await makeImage({name: IMAGE, layers: [{sizeBytes: 192 << 10, seed: 'layout'}], format: 'oci', out: archive})
    fs.mkdirSync('/var/lib/rancher', {recursive: true}) // the mount point; what is mounted there is the node's alone
    const blocker = path.join(bed.nodeDir(node), 'not-ctr')
    fs.writeFileSync(blocker, '', {mode: 0o644})
    await inNode(['sh', '-c', `mount -t tmpfs tmpfs /var/lib/rancher && mkdir -p ${path.dirname(RKE2_CTR)} && cp /usr/bin/ctr ${RKE2_CTR} && mount --bind "$1" /usr/bin/ctr`, 'layout', blocker])
  }, 120_000)
  afterAll(async () => {
    fs.rmSync(SUDOERS, {force: true})
    await bed?.down()
    if (dir) fs.rmSync(dir, {recursive: true, force: true})
    try {
      fs.rmdirSync('/var/lib/rancher') // the mount point, empty once the node is gone
    } catch {
      // not empty: not ours alone
    }
  })

  it('the layout holds: no ctr on the node\'s PATH, RKE2\'s answers', async () => {
    expect((await bed.exec(node, ['sh', '-c', 'command -v ctr'])).code).not.toBe(0)
    expect(await inNode([RKE2_CTR, '--version'])).toMatch(/ctr/)
  })

  it('as the non-root user sudo refuses: the error names RKE2\'s ctr and the sudoers line for it, never our script', async () => {
    const run = await push(bed.nonRootUser)
    expect(run.code).toBe(1)
    expect(run.stderr).toContain(`can neither open /run/containerd/containerd.sock nor run \`sudo -n ${RKE2_CTR}\``)
    expect(run.stderr).toContain(`"${bed.nonRootUser} ALL=(root) NOPASSWD: ${RKE2_CTR}"`)
    expect(run.stderr).not.toMatch(/sh -c|sideload-probe|command -v/)
  })

  it('with that sudoers line, the non-root user pushes through RKE2\'s ctr: complete, unpacked, pinned', async () => {
    fs.writeFileSync(SUDOERS, `${bed.nonRootUser} ALL=(root) NOPASSWD: ${RKE2_CTR}\n`, {mode: 0o440})
    const run = await push(bed.nonRootUser)
    expect(run.code, run.stderr).toBe(0)
    const check = (await rke2Ctr(['images', 'check', `name==${IMAGE}`])).split('\n').find((l) => l.startsWith(`${IMAGE} `))
    expect(check).toMatch(/complete .*true$/)
    expect(await rke2Ctr(['images', 'ls'])).toMatch(/io\.cri-containerd\.pinned=pinned/)
  })

  it('as root nothing changes: the socket, no ctr needed', async () => {
    await rke2Ctr(['images', 'rm', '--sync', IMAGE])
    const run = await push('root')
    expect(run.code, run.stderr).toBe(0)
    expect(await rke2Ctr(['images', 'ls', '-q'])).toContain(IMAGE)
  })
})

// k0s: containerd's socket at /run/k0s/containerd.sock, ctr only as `k0s ctr`. The k0s binary is a
// stand-in here (a script that runs the node's ctr for `k0s ctr …`): k0s itself is not built on
// this machine; the socket is the node's own containerd's, bound at k0s's path, the usual one hidden.
describe('a k0s node: its socket, and ctr as k0s ctr', () => {
  let k0s: Bed
  let n: BedNode
  let tar: string
  const K0S = '/usr/local/bin/k0s'
  const SUDOERS_K0S = '/etc/sudoers.d/sideload-test-k0s'
  const run = async (argv: string[]): Promise<string> => {
    const r = await k0s.exec(n, argv)
    if (r.code !== 0) throw new Error(`${argv.join(' ')}: exit ${r.code}: ${r.stderr || r.stdout}`)
    return r.stdout
  }
  const k0sCtr = (args: string[]): Promise<string> => run([K0S, 'ctr', '--address', '/run/k0s/containerd.sock', '-n', 'k8s.io', ...args])

  beforeAll(async () => {
    k0s = await startBed({name: 'slbt-layout-k0s', nodes: 1})
    n = k0s.nodes[0]
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'sideload-layout-k0s-'))
    tar = path.join(work, 'k0s.tar')
    await makeImage({name: 'docker.io/sl-layout/k0s:1', layers: [{sizeBytes: 128 << 10, seed: 'k0s'}], format: 'oci', out: tar})
    const own = k0s.nodeDir(n)
    fs.writeFileSync(path.join(own, 'not-ctr'), '', {mode: 0o644})
    fs.writeFileSync(path.join(own, 'not-a-socket'), '', {mode: 0o644})
    fs.mkdirSync(path.join(own, 'k0s-bin'))
    fs.copyFileSync('/usr/bin/ctr', path.join(own, 'k0s-bin', 'ctr')) // the host's; replaced by the node's below
    fs.writeFileSync(path.join(own, 'k0s-bin', 'k0s'), `#!/bin/sh\n# stand-in for k0s: only its ctr subcommand\n[ "$1" = ctr ] || { echo "k0s stand-in: only ctr" >&2; exit 2; }\nshift\nexec ${own}/k0s-bin/ctr "$@"\n`, {mode: 0o755})
    for (const d of ['/run/k0s', '/usr/local/bin']) fs.mkdirSync(d, {recursive: true})
    if (!fs.existsSync(K0S)) fs.writeFileSync(K0S, '', {mode: 0o644}) // a mount point only: outside the node it runs nothing
    fs.writeFileSync('/run/k0s/containerd.sock', '')
    await run(['sh', '-c', [
      `cp /usr/bin/ctr ${own}/k0s-bin/ctr`, // the node's own ctr (2.x or 1.6), before it is hidden
      `mount --bind ${own}/k0s-bin/k0s ${K0S}`,
      'mount --bind /run/containerd/containerd.sock /run/k0s/containerd.sock',
      `mount --bind ${own}/not-a-socket /run/containerd/containerd.sock`,
      `mount --bind ${own}/not-ctr /usr/bin/ctr`,
    ].join(' && ')])
    fs.writeFileSync(SUDOERS_K0S, `${k0s.nonRootUser} ALL=(root) NOPASSWD: ${K0S}\n`, {mode: 0o440})
  }, 120_000)
  afterAll(async () => {
    fs.rmSync(SUDOERS_K0S, {force: true})
    await k0s?.down()
    // the mount points made on the host, empty: gone with the node's mounts
    if (fs.existsSync(K0S) && fs.statSync(K0S).size === 0) fs.rmSync(K0S)
    fs.rmSync('/run/k0s', {recursive: true, force: true})
  })

  it('as root: found at /run/k0s/containerd.sock with no flag, pushed natively', async () => {
    const r = await runCli(['push', '--archive', tar, '--host', `root@${n.ip}`, '--ssh-key', k0s.keyPath, '--known-hosts', k0s.knownHostsPath, '--progress', 'plain'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/native/)
    expect(await k0sCtr(['images', 'ls', '-q'])).toContain('docker.io/sl-layout/k0s:1')
  })

  it('as the non-root user allowed `sudo k0s`: pushed through k0s ctr, complete and unpacked', async () => {
    await k0sCtr(['images', 'rm', '--sync', 'docker.io/sl-layout/k0s:1'])
    const r = await runCli(['push', '--archive', tar, '--host', `${k0s.nonRootUser}@${n.ip}`, '--ssh-key', k0s.keyPath, '--known-hosts', k0s.knownHostsPath, '--progress', 'plain'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/ctr/)
    const check = (await k0sCtr(['images', 'check', 'name==docker.io/sl-layout/k0s:1'])).split('\n').find((l) => l.startsWith('docker.io/sl-layout/k0s:1 '))
    expect(check).toMatch(/complete .*true$/)
  })
})
