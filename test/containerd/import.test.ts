import * as fsp from 'node:fs/promises'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {ContainerdClient, importImage, ingestRef, type ImportEvent} from '../../src/containerd/index.js'
import {readArchive, resolveImage, type ImageSource} from '../../src/image/index.js'
import {makeImage, changeLastLayer, type MakeImageOptions} from '../bed/images.js'
import {faultyBlob} from './blob-faults.js'
import {startContainerdWithClient, stopContainerdWithClient, type TestContainerd} from './fixture.js'

const KIB = 1024
const MIB = 1024 * 1024

let ctd: TestContainerd
let client: ContainerdClient
let work: string

beforeAll(async () => {
  ;({ctd, client, work} = await startContainerdWithClient('import', {displayName: 'test-node'}))
})

afterAll(() => stopContainerdWithClient({ctd, client, work}))

async function withArchive<T>(file: string, fn: (source: ImageSource) => Promise<T>): Promise<T> {
  const source = await readArchive(file)
  try {
    return await fn(source)
  } finally {
    await source.close()
  }
}

function checkLine(out: string, name: string): string {
  const line = out.split('\n').find((l) => l.startsWith(`${name} `))
  if (!line) throw new Error(`${name} not in ctr images check output:\n${out}`)
  return line
}

describe('importImage into a real containerd 1.6', () => {
  const base: MakeImageOptions = {
    name: 'sl-imp/app:1',
    format: 'oci',
    out: '',
    layers: [
      {sizeBytes: 300 * KIB, seed: 'a'},
      {sizeBytes: 200 * KIB, seed: 'b'},
      {sizeBytes: 100 * KIB, seed: 'c'},
    ],
  }

  it('imports a 3-layer image: complete, unpacked, pinned, same digest as the source', async () => {
    const opts = {...base, out: path.join(work, 'app1.tar')}
    const info = await makeImage(opts)
    const events: ImportEvent[] = []
    const res = await withArchive(opts.out, (source) =>
      importImage(client, {source, name: 'sl-imp/app:1', pin: true, unpack: true, snapshotter: 'overlayfs', onProgress: (e) => events.push(e)}),
    )
    expect(res.upToDate).toBe(false)
    expect(res.name).toBe('docker.io/sl-imp/app:1')
    expect(res.digest).toBe(info.targetDigest)
    expect(res.blobsSent).toBe(5)
    expect(res.sentBytes).toBe(info.totalBytes)
    expect(events.filter((e) => e.type === 'blob-done')).toHaveLength(5)
    const check = checkLine(await ctd.ctr(['images', 'check']), 'docker.io/sl-imp/app:1')
    expect(check).toMatch(/complete \(4\/4\)/)
    expect(check).toMatch(/\btrue\b/) // UNPACKED
    const record = await client.imageGet('docker.io/sl-imp/app:1')
    expect(record?.labels).toMatchObject({'io.cri-containerd.pinned': 'pinned', 'io.cri-containerd.image': 'managed'})
    expect(record?.target.digest).toBe(info.targetDigest)
    // as a CRI pull does, the image is also recorded by digest
    expect((await client.imageGet(`docker.io/sl-imp/app@${info.targetDigest}`))?.labels).toMatchObject({'io.cri-containerd.pinned': 'pinned'})
    // GC labels hold the blobs: the manifest points at config and layers
    const manifest = await client.contentInfo(info.manifestDigests[0])
    expect(manifest?.labels['containerd.io/gc.ref.content.config']).toBe(info.configDigest)
    expect(manifest?.labels['containerd.io/gc.ref.content.l.2']).toBe(info.layerDigests[2])
    // no lease left behind
    expect((await client.leaseList()).filter((l) => l.labels['sideload/image'])).toHaveLength(0)
    // a rootfs can be mounted from it (the unpack is real): read a file via ctr
    const mnt = path.join(work, 'mnt')
    await fsp.mkdir(mnt)
    await ctd.ctr(['images', 'mount', 'docker.io/sl-imp/app:1', mnt])
    try {
      expect((await fsp.readdir(path.join(mnt, 'data'))).length).toBe(3)
    } finally {
      await ctd.ctr(['images', 'unmount', '--rm', mnt])
    }

    // identical re-import: nothing sent
    const again = await withArchive(opts.out, (source) => importImage(client, {source, name: 'sl-imp/app:1', pin: true, unpack: true}))
    expect(again).toMatchObject({upToDate: true, sentBytes: 0, blobsSent: 0, blobsSkipped: 5})

    // only the last layer changed: only it (plus the new config and manifest) is sent
    const changed = changeLastLayer(opts, 'c2', path.join(work, 'app1b.tar'))
    const info2 = await makeImage(changed)
    const delta = await withArchive(changed.out, (source) => importImage(client, {source, name: 'sl-imp/app:1', pin: true, unpack: true}))
    const p2 = info2.platforms[0]
    const manifestSize = info2.totalBytes - p2.layerSizes.reduce((a, b) => a + b, 0) - (await client.contentInfo(info2.configDigest))!.size
    expect(delta.upToDate).toBe(false)
    expect(delta.blobsSent).toBe(3)
    expect(delta.sentBytes).toBe(p2.layerSizes[2] + (await client.contentInfo(info2.configDigest))!.size + manifestSize)
    expect(delta.skippedBytes).toBe(p2.layerSizes[0] + p2.layerSizes[1])
    expect(checkLine(await ctd.ctr(['images', 'check']), 'docker.io/sl-imp/app:1')).toMatch(/complete \(4\/4\).*true/)
    expect((await client.imageGet('docker.io/sl-imp/app:1'))?.target.digest).toBe(info2.targetDigest)
  })

  it('sends only the chosen platform of a multi-platform image and keeps the index digest', async () => {
    const opts: MakeImageOptions = {...base, name: 'sl-imp/multi:1', out: path.join(work, 'multi.tar'), platforms: ['linux/amd64', 'linux/arm64'], layers: [{sizeBytes: 50 * KIB, seed: 'm'}]}
    const info = await makeImage(opts)
    const arm = info.platforms.find((p) => p.platform === 'linux/arm64')!
    const amd = info.platforms.find((p) => p.platform === 'linux/amd64')!
    const res = await withArchive(opts.out, (source) => importImage(client, {source, name: 'sl-imp/multi:1', platform: {os: 'linux', architecture: 'amd64'}, unpack: true}))
    expect(res.digest).toBe(info.indexDigest)
    expect(res.manifest).toBe(amd.manifestDigest)
    expect(res.blobsSent).toBe(4) // index, manifest, config, 1 layer
    expect(await client.contentInfo(arm.manifestDigest!)).toBeUndefined()
    expect(await client.contentInfo(arm.layerDigests[0])).toBeUndefined()
    expect(await client.contentInfo(amd.layerDigests[0])).toBeDefined()
    const index = await client.contentInfo(info.indexDigest!)
    expect(Object.values(index!.labels)).toContain(amd.manifestDigest)
    expect(checkLine(await ctd.ctr(['images', 'check']), 'docker.io/sl-imp/multi:1')).toMatch(/complete \(2\/2\).*true/)
  })

  it('imports a docker-archive (docker save) with a synthesised schema2 manifest', async () => {
    const opts: MakeImageOptions = {...base, name: 'sl-imp/docker:1', format: 'docker', out: path.join(work, 'docker.tar')}
    const info = await makeImage(opts)
    const res = await withArchive(opts.out, (source) => importImage(client, {source, name: 'sl-imp/docker:1', unpack: true, pin: true}))
    expect(res.blobsSent).toBe(5)
    const record = await client.imageGet('docker.io/sl-imp/docker:1')
    expect(record?.target.mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json')
    expect(await client.contentInfo(info.layerDigests[0])).toBeDefined()
    expect(checkLine(await ctd.ctr(['images', 'check']), 'docker.io/sl-imp/docker:1')).toMatch(/complete \(4\/4\).*true/)
    // the digest ctr's own importer would give: import the same tar with ctr in another namespace
    await ctd.ctr(['images', 'import', '--no-unpack', opts.out], 'ctr-ref')
    const ctrList = await ctd.ctr(['images', 'ls'], 'ctr-ref')
    expect(ctrList).toContain(record!.target.digest)
  })

  it('fails on a corrupt archive naming the file, stops the other transfers, and records nothing', async () => {
    const opts: MakeImageOptions = {
      ...base,
      name: 'sl-imp/corrupt:1',
      out: path.join(work, 'corrupt.tar'),
      compress: 'none',
      layers: [{sizeBytes: 64 * KIB, seed: 'x'}, {sizeBytes: 6 * MIB, seed: 'y'}, {sizeBytes: 6 * MIB, seed: 'z'}],
    }
    const info = await makeImage(opts)
    // flip one byte inside the small layer blob's data
    const data = await fsp.readFile(opts.out)
    const at = data.indexOf(Buffer.from(`blobs/sha256/${info.layerDigests[0].slice(7)}`))
    expect(at).toBeGreaterThanOrEqual(0)
    data[at + 512 + 2048] ^= 0xff
    await fsp.writeFile(opts.out, data)
    const started: string[] = []
    const onProgress = (e: ImportEvent): void => void (e.type === 'blob-start' && started.push(e.digest))
    await expect(withArchive(opts.out, (source) => importImage(client, {source, name: 'sl-imp/corrupt:1', unpack: true, chunkSize: 64 * KIB, window: 1, onProgress}))).rejects.toThrow(
      new RegExp(`${opts.out.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is corrupt: blob ${info.layerDigests[0]}`),
    )
    expect(await client.imageGet('docker.io/sl-imp/corrupt:1')).toBeUndefined()
    expect(await client.contentInfo(info.layerDigests[0])).toBeUndefined()
    expect(await client.contentStatus(ingestRef(info.layerDigests[0]))).toBeUndefined()
    // the transfers running beside it were stopped, and with the lease gone GC drops what they left
    expect(started).toContain(info.layerDigests[1])
    const deadline = Date.now() + 10_000
    const left = async () => (await Promise.all(info.layerDigests.slice(1).map(async (d) => (await client.contentStatus(ingestRef(d))) ?? (await client.contentInfo(d))))).filter(Boolean)
    while ((await left()).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200))
    expect(await left()).toEqual([])
  })

  it('finds a corrupt layer in a docker-archive while sending it (opening does not read the layers)', async () => {
    const opts: MakeImageOptions = {...base, name: 'sl-imp/dcorrupt:1', format: 'docker', out: path.join(work, 'dcorrupt.tar'), layers: [{sizeBytes: 2 * MIB, seed: 'dc'}]}
    const info = await makeImage(opts)
    const data = await fsp.readFile(opts.out)
    // the random file's data starts after the layer tar's 2 headers (dir + file); flip a byte deep inside
    const layerTarName = Buffer.from('/layer.tar')
    const at = data.indexOf(layerTarName)
    expect(at).toBeGreaterThan(0)
    data[at + 512 + 1024 + 100_000] ^= 0xff
    await fsp.writeFile(opts.out, data)
    const source = await readArchive(opts.out)
    try {
      expect((await resolveImage(source)).layers[0].digest).toBe(info.layerDigests[0])
      await expect(importImage(client, {source, name: 'sl-imp/dcorrupt:1'})).rejects.toThrow(`${opts.out} is corrupt: blob ${info.layerDigests[0]} has digest`)
    } finally {
      await source.close()
    }
    expect(await client.imageGet('docker.io/sl-imp/dcorrupt:1')).toBeUndefined()
  })

  it('resumes an interrupted blob write from the node’s offset', async () => {
    const opts: MakeImageOptions = {...base, name: 'sl-imp/resume:1', out: path.join(work, 'resume.tar'), compress: 'none', layers: [{sizeBytes: 6 * MIB, seed: 'r'}]}
    const info = await makeImage(opts)
    const layer = info.layerDigests[0]
    const chunk = 256 * KIB
    const cutAt = 3 * MIB + 1000
    const source = await readArchive(opts.out)
    try {
      const flaky = faultyBlob(source, layer, cutAt, 'cut')
      await expect(importImage(client, {source: flaky, name: 'sl-imp/resume:1', chunkSize: chunk, window: 1})).rejects.toThrow(/link cut/)
      expect(await client.imageGet('docker.io/sl-imp/resume:1')).toBeUndefined()
      const status = await client.contentStatus(ingestRef(layer))
      expect(status?.offset).toBeGreaterThan(2 * MIB)
      const events: ImportEvent[] = []
      const res = await importImage(client, {source, name: 'sl-imp/resume:1', chunkSize: chunk, onProgress: (e) => events.push(e)})
      const start = events.find((e) => e.type === 'blob-start' && e.digest === layer)
      expect(start).toMatchObject({resumeOffset: status!.offset})
      const layerSize = info.platforms[0].layerSizes[0]
      const layerDone = events.find((e) => e.type === 'blob-done' && e.digest === layer) as Extract<ImportEvent, {type: 'blob-done'}>
      expect(layerDone.sentBytes).toBe(layerSize - status!.offset)
      expect(layerDone.sentBytes).toBeLessThanOrEqual(layerSize - cutAt + chunk)
      expect(res.upToDate).toBe(false)
      expect(checkLine(await ctd.ctr(['images', 'check']), 'docker.io/sl-imp/resume:1')).toMatch(/complete \(2\/2\)/)
    } finally {
      await source.close()
    }
  })
})
