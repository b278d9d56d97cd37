import * as path from 'node:path'
import {Readable} from 'node:stream'
import * as tar from 'tar-stream'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {ContainerdClient, importImage, type ImportEvent, snapshotGcLabel, unpackImage} from '../../src/containerd/index.js'
import {chainIds, imageBlobs, MediaType, readArchive, resolveImage, sha256Digest, type Descriptor, type ImageSource} from '../../src/image/index.js'
import {makeImage} from '../bed/images.js'
import {startContainerdWithClient, stopContainerdWithClient, type TestContainerd} from './fixture.js'

const KIB = 1024
const MIB = 1024 * 1024
let ctd: TestContainerd
let client: ContainerdClient
let work: string

beforeAll(async () => {
  ;({ctd, client, work} = await startContainerdWithClient('unpack', {displayName: 'unpack-node'}))
})

afterAll(() => stopContainerdWithClient({ctd, client, work}))

async function layerTar(files: Record<string, string>): Promise<Buffer> {
  const pack = tar.pack()
  for (const [name, content] of Object.entries(files)) pack.entry({name, size: Buffer.byteLength(content), mode: 0o644}, content)
  pack.finalize()
  const chunks: Buffer[] = []
  for await (const c of pack) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

/** An image held in memory (tiny), to build what no tool would write: a config that lies about a layer. */
function memorySource(blobs: Buffer[], target: Descriptor): ImageSource {
  const byDigest = new Map(blobs.map((b) => [sha256Digest(b), b]))
  return {
    description: 'memory image',
    name: undefined,
    target,
    async readBlob(desc) {
      return byDigest.get(desc.digest)!
    },
    async openBlob(desc) {
      return Readable.from([byDigest.get(desc.digest)!])
    },
    async close() {},
  }
}

describe('unpacking during and after the transfer', () => {
  it('applies lower layers while upper ones are still on the way', async () => {
    const out = path.join(work, 'overlap.tar')
    const info = await makeImage({name: 'sl-unp/overlap:1', format: 'oci', compress: 'none', out, layers: [{sizeBytes: 64 * KIB, seed: 'o1'}, {sizeBytes: 4 * MIB, seed: 'o2'}]})
    const source = await readArchive(out)
    const big = info.layerDigests[1]
    // the big layer trickles in slowly
    const slow: ImageSource = {
      ...source,
      async openBlob(desc) {
        const stream = await source.openBlob(desc)
        if (desc.digest !== big) return stream
        return (async function* () {
          for await (const c of stream as AsyncIterable<Buffer>) {
            for (let i = 0; i < c.length; i += 256 * KIB) {
              await new Promise((r) => setTimeout(r, 40))
              yield c.subarray(i, i + 256 * KIB)
            }
          }
        })() as unknown as NodeJS.ReadableStream
      },
    }
    const events: ImportEvent[] = []
    try {
      await importImage(client, {source: slow, name: 'sl-unp/overlap:1', unpack: true, chunkSize: 256 * KIB, onProgress: (e) => events.push(e)})
    } finally {
      await source.close()
    }
    const firstUnpacked = events.findIndex((e) => e.type === 'unpack-layer' && e.index === 0 && !e.skipped)
    const bigDone = events.findIndex((e) => e.type === 'blob-done' && e.digest === big)
    expect(firstUnpacked).toBeGreaterThanOrEqual(0)
    expect(firstUnpacked).toBeLessThan(bigDone)
    expect(await ctd.ctr(['images', 'check'])).toMatch(/docker\.io\/sl-unp\/overlap:1 .*complete \(3\/3\).*true/)
  })

  it('a layer whose content does not match the config’s diffID fails the import and records nothing', async () => {
    const layer = await layerTar({'hello.txt': 'hello\n'})
    const config = Buffer.from(JSON.stringify({architecture: 'amd64', os: 'linux', rootfs: {type: 'layers', diff_ids: [sha256Digest('not this layer')]}}))
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.ociManifest,
        config: {mediaType: MediaType.ociConfig, digest: sha256Digest(config), size: config.length},
        layers: [{mediaType: MediaType.ociLayer, digest: sha256Digest(layer), size: layer.length}],
      }),
    )
    const source = memorySource([layer, config, manifest], {mediaType: MediaType.ociManifest, digest: sha256Digest(manifest), size: manifest.length})
    await expect(importImage(client, {source, name: 'sl-unp/liar:1', unpack: true})).rejects.toThrow(
      `unpacking layer ${sha256Digest(layer)} on unpack-node: its content has diffID ${sha256Digest(layer)}, but the image config says ${sha256Digest('not this layer')}`,
    )
    expect(await client.imageGet('docker.io/sl-unp/liar:1')).toBeUndefined()
    expect((await client.leaseList()).filter((l) => l.labels['sideload/image'])).toEqual([])
    // without unpack the same image imports (CRI would fail later, at container start)
    const res = await importImage(client, {source, name: 'sl-unp/liar:1', unpack: false})
    expect(res.upToDate).toBe(false)
  })
})

describe('unpacking over what another pull left', () => {
  it('holds a snapshot it builds on in its own lease: a GC between that layer and the next cannot take it', async () => {
    const out = path.join(work, 'left.tar')
    await makeImage({name: 'sl-unp/left:1', format: 'oci', out, layers: [{sizeBytes: 32 * KIB, seed: 'left-1'}, {sizeBytes: 32 * KIB, seed: 'left-2'}]})
    const source = await readArchive(out)
    const image = await resolveImage(source, {os: 'linux', architecture: 'amd64'})
    const chain = chainIds(image.diffIds)
    // the blobs on the node, under a lease of their own (as a pull holds them)
    const held = await client.leaseCreate({expiresInMs: 3_600_000})
    for (const blob of imageBlobs(image)) await client.writeContent({ref: `left-${blob.digest}`, desc: blob, open: () => source.openBlob(blob), lease: held})
    // a pull that unpacked the first layer, then failed: its lease is gone, GC has not run yet
    const pull = await client.leaseCreate({expiresInMs: 3_600_000})
    await unpackImage(client, {...image, layers: image.layers.slice(0, 1), diffIds: image.diffIds.slice(0, 1)}, {snapshotter: 'overlayfs', lease: pull})
    await client.leaseDelete(pull)
    // …and before it could label the config with its top snapshot (the GC reference that would hold it)
    await client.contentSetLabels(image.config.digest, {[snapshotGcLabel('overlayfs')]: 'sha256:none'})
    expect(await client.snapshotStat('overlayfs', chain[0])).toBeDefined()
    // our unpack finds that snapshot, and GC runs just before it builds the second layer on it
    const ours = await client.leaseCreate({expiresInMs: 3_600_000})
    const gcNow = async (): Promise<void> => client.leaseDelete(await client.leaseCreate({expiresInMs: 60_000}), true)
    const events: string[] = []
    await unpackImage(client, image, {snapshotter: 'overlayfs', lease: ours, emit: (e) => events.push(`${e.index}:${e.skipped}`), whenArrived: async (d) => {
      if (d === image.layers[1].digest) await gcNow()
    }})
    expect(events).toEqual(['0:true', '1:false'])
    expect(await client.snapshotStat('overlayfs', chain[1])).toBeDefined()
    await client.leaseDelete(ours, true)
    await client.leaseDelete(held, true)
    await source.close()
  })
})
