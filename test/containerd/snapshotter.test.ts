// Which snapshotter the kubelet's containerd unpacks into, on both containerd lines, told the way
// the kubelet sees it: pushes must unpack there, natively and through `sudo ctr`, and doctor
// must say it. The nodes here use the `native` snapshotter, so a silent fallback to containerd's
// default (overlayfs) shows up as images unpacked into the wrong place.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {ContainerdClient, CriClient, criSnapshotter} from '../../src/containerd/index.js'
import {criSnapshotterFromConfigDump} from '../../src/nodes/detect.js'
import {startBed, type Bed, type BedNode} from '../bed/bed.js'
import {makeImage} from '../bed/images.js'
import {jsonResult, runCli} from '../push/cli.js'

let bed: Bed
let dir: string

const sshArgs = () => ['--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath, '--progress', 'quiet']

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sideload-snap-'))
  bed = await startBed({
    name: 'slb-snap',
    nodes: 2,
    nodeOptions: {1: {containerd: '2', snapshotter: 'native'}, 2: {containerd: '1.6', snapshotter: 'native'}},
  })
}, 180_000)

afterAll(async () => {
  await bed?.down()
  fs.rmSync(dir, {recursive: true, force: true})
})

async function snapshots(node: BedNode, snapshotter: string): Promise<number> {
  const out = await bed.ctr(node, ['snapshots', '--snapshotter', snapshotter, 'ls'])
  return out.trim().split('\n').length - 1
}

async function unpackedFor(node: BedNode, name: string, snapshotter: string): Promise<string | undefined> {
  const out = await bed.ctr(node, ['images', 'check', '--snapshotter', snapshotter, `name==${name}`])
  return out.split('\n').find((l) => l.startsWith(`${name} `))?.trim().split(/\s+/).at(-1)
}

describe.each([
  ['2.x', 0],
  ['1.6', 1],
])('CRI snapshotter on a containerd %s node', (line, index) => {
  it('is found from the CRI image filesystem and the snapshotter roots', async () => {
    const node = bed.nodes[index]
    expect(node.containerdLine).toBe(line === '2.x' ? '2' : '1.6')
    const client = new ContainerdClient(`unix://${node.hostSocketPath}`, {displayName: node.name})
    const cri = new CriClient(`unix://${node.hostSocketPath}`, node.name, client.channel())
    try {
      expect(await criSnapshotter(client, cri)).toBe('native')
      expect(await cri.imageFilesystems()).toEqual(['/var/lib/containerd/io.containerd.snapshotter.v1.native'])
    } finally {
      client.close()
    }
    // the ctr fallback reads it from `containerd config dump`, as kind does
    const dump = await bed.exec(node, ['containerd', 'config', 'dump'])
    expect(criSnapshotterFromConfigDump(dump.stdout)).toBe('native')
  })

  it('gets native and sudo-ctr pushes unpacked into it, and doctor names it', async () => {
    const node = bed.nodes[index]
    const rootImage = `docker.io/sl-snap/root${index}:1`
    const userImage = `docker.io/sl-snap/user${index}:1`
    for (const name of [rootImage, userImage]) {
      await makeImage({name, format: 'oci', out: path.join(dir, `${path.basename(name)}.tar`), layers: [{busybox: true}, {sizeBytes: 1 << 20, seed: name}]})
    }
    const native = await runCli(['push', '--archive', path.join(dir, `${path.basename(rootImage)}.tar`), '--host', `root@${node.ip}`, ...sshArgs(), '--json'])
    expect(native.code, native.stderr).toBe(0)
    expect(jsonResult(native.stdout).results[0]).toMatchObject({status: 'pushed', mode: 'native'})
    expect(await unpackedFor(node, rootImage, 'native')).toBe('true')

    const viaCtr = await runCli(['push', '--archive', path.join(dir, `${path.basename(userImage)}.tar`), '--host', `${bed.nonRootUser}@${node.ip}`, ...sshArgs(), '--json'])
    expect(viaCtr.code, viaCtr.stderr + viaCtr.stdout).toBe(0)
    expect(jsonResult(viaCtr.stdout).results[0]).toMatchObject({status: 'pushed', mode: 'ctr'})
    expect(await unpackedFor(node, userImage, 'native')).toBe('true')
    // nothing went to containerd's default snapshotter
    expect(await snapshots(node, 'overlayfs')).toBe(0)
    expect(await snapshots(node, 'native')).toBeGreaterThanOrEqual(3)

    const doctor = await runCli(['doctor', '--host', `root@${node.ip}`, '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath, '--json'])
    const checks = (JSON.parse(doctor.stdout) as {checks: Array<{check: string; status: string; detail: string}>}).checks
    expect(checks.find((c) => c.check === 'snapshotter')).toMatchObject({status: 'ok', detail: 'native (CRI)'})
  })
})
