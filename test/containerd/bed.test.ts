// The native import against the real test bed: a node with its own containerd + CRI config,
// reached through the socket as the host sees it (the SSH transport is the nodes/ layer's job).
import * as fsp from 'node:fs/promises'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {ContainerdClient, CriClient, criSnapshotter, importImage, type CriImage} from '../../src/containerd/index.js'
import {ctrErrorLines} from '../../src/nodes/ctr-output.js'
import {readArchive} from '../../src/image/index.js'
import {startBed, type Bed} from '../bed/bed.js'
import {makeImage} from '../bed/images.js'

const MIB = 1024 * 1024
let bed: Bed
let work: string

/** CRI learns about new images from events: poll until it reports `name`. */
async function criStatus(cri: CriClient, name: string): Promise<CriImage | undefined> {
  const deadline = Date.now() + 10_000
  for (;;) {
    const image = await cri.imageStatus(name)
    if (image || Date.now() > deadline) return image
    await new Promise((r) => setTimeout(r, 200))
  }
}

beforeAll(async () => {
  work = await fsp.mkdtemp(path.join(os.tmpdir(), 'sl-ctdbed-test-'))
  bed = await startBed({name: 'slb-ctdimp', nodes: 2, nodeOptions: {2: {rootSizeMb: 48}}})
}, 180_000)

afterAll(async () => {
  await bed?.down()
  await fsp.rm(work, {recursive: true, force: true})
})

describe('native import into bed nodes', () => {
  it('imports a runnable busybox image, pinned and unpacked with the node’s snapshotter', async () => {
    const node = bed.nodes[0]
    const out = path.join(work, 'bb.tar')
    const info = await makeImage({name: 'sl-bed/bb:1', format: 'oci', out, layers: [{busybox: true}, {sizeBytes: 2 * MIB, seed: 'bb'}]})
    const client = new ContainerdClient(`unix://${node.hostSocketPath}`, {displayName: node.name})
    const source = await readArchive(out)
    try {
      const res = await importImage(client, {source, name: 'sl-bed/bb:1', snapshotter: node.snapshotter, pin: true, unpack: true})
      expect(res).toMatchObject({upToDate: false, digest: info.targetDigest, blobsSent: 4})
      const check = (await bed.ctr(node, ['images', 'check'])).split('\n').find((l) => l.startsWith('docker.io/sl-bed/bb:1 '))
      expect(check).toMatch(/complete \(3\/3\).*true/)
      expect(await bed.ctr(node, ['images', 'ls'])).toMatch(/docker\.io\/sl-bed\/bb:1 .*io\.cri-containerd\.pinned=pinned/)
      // the image runs (busybox from the imported, unpacked layers)
      const run = await bed.exec(node, ['ctr', '-n', 'k8s.io', 'run', '--rm', '--snapshotter', node.snapshotter, 'docker.io/sl-bed/bb:1', 'slt-ctdimp', '/bin/cat', '/etc/sideload-test-platform'], {timeoutMs: 60_000})
      expect(ctrErrorLines(run.stderr)).toEqual([])
      expect(run.stdout.trim()).toBe('linux/amd64')
      const again = await importImage(client, {source, name: 'sl-bed/bb:1', snapshotter: node.snapshotter, pin: true, unpack: true})
      expect(again).toMatchObject({upToDate: true, sentBytes: 0})
      // the kubelet's view: CRI resolves the short name, reports the config digest as id and the digest reference
      const cri = new CriClient(`unix://${node.hostSocketPath}`)
      try {
        const status = await criStatus(cri, 'sl-bed/bb:1')
        expect(status).toMatchObject({id: info.configDigest, repoTags: ['docker.io/sl-bed/bb:1'], repoDigests: [`docker.io/sl-bed/bb@${info.targetDigest}`]})
        // containerd 1.6.20's CRI does not report pinned yet (later 1.6.x/1.7 read the label); the label itself is asserted above
      } finally {
        cri.close()
      }
      // the snapshotter CRI uses, asked from CRI itself
      const cri2 = new CriClient(`unix://${node.hostSocketPath}`, node.name, client.channel())
      expect(await criSnapshotter(client, cri2)).toBe(node.snapshotter)
      // the other node has nothing of it
      expect(await bed.ctr(bed.nodes[1], ['images', 'ls', '-q'])).not.toContain('sl-bed/bb')
    } finally {
      await source.close()
      client.close()
    }
  })

  it('CRI resolves a multi-platform index (node platform only) and a docker-archive import', async () => {
    const node = bed.nodes[0]
    const multi = path.join(work, 'multi.tar')
    const m = await makeImage({name: 'sl-bed/multi:1', format: 'oci', out: multi, platforms: ['linux/arm64', 'linux/amd64'], layers: [{busybox: true}]})
    const dock = path.join(work, 'dock.tar')
    const d = await makeImage({name: 'sl-bed/dock:1', format: 'docker', out: dock, layers: [{busybox: true}, {sizeBytes: MIB, seed: 'dk'}]})
    const client = new ContainerdClient(`unix://${node.hostSocketPath}`, {displayName: node.name})
    const cri = new CriClient(`unix://${node.hostSocketPath}`)
    try {
      for (const [file, name] of [[multi, 'sl-bed/multi:1'], [dock, 'sl-bed/dock:1']]) {
        const source = await readArchive(file)
        try {
          await importImage(client, {source, name, platform: {os: 'linux', architecture: 'amd64'}, snapshotter: node.snapshotter, pin: true, unpack: true})
        } finally {
          await source.close()
        }
      }
      const amd = m.platforms.find((p) => p.platform === 'linux/amd64')!
      expect(await criStatus(cri, 'sl-bed/multi:1')).toMatchObject({id: amd.configDigest, repoDigests: [`docker.io/sl-bed/multi@${m.indexDigest}`]})
      expect(await criStatus(cri, 'docker.io/sl-bed/dock:1')).toMatchObject({id: d.configDigest, repoTags: ['docker.io/sl-bed/dock:1']})
      const run = await bed.exec(node, ['ctr', '-n', 'k8s.io', 'run', '--rm', '--snapshotter', node.snapshotter, 'docker.io/sl-bed/multi:1', 'slt-ctdimp-m', '/bin/cat', '/etc/sideload-test-platform'], {timeoutMs: 60_000})
      expect(run.stdout.trim()).toBe('linux/amd64')
    } finally {
      cri.close()
      client.close()
    }
  })

  it('reports a full node disk by name and leaves no image record there', async () => {
    const node = bed.nodes[1]
    const out = path.join(work, 'big.tar')
    await makeImage({name: 'sl-bed/big:1', format: 'oci', compress: 'none', out, layers: [{sizeBytes: 80 * MIB, seed: 'big'}]})
    const client = new ContainerdClient(`unix://${node.hostSocketPath}`, {displayName: node.name})
    const source = await readArchive(out)
    try {
      await expect(importImage(client, {source, name: 'sl-bed/big:1', snapshotter: node.snapshotter, unpack: true})).rejects.toThrow(`no space left on ${node.name} (containerd`)
      expect(await client.imageGet('docker.io/sl-bed/big:1')).toBeUndefined()
    } finally {
      await source.close()
      client.close()
    }
  })
})
