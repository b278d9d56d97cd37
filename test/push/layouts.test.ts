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
