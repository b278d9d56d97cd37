import * as fsp from 'node:fs/promises'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {ContainerdClient, ImportCancelledError, importImage, ingestRef, type ImportEvent} from '../../src/containerd/index.js'
import {readArchive} from '../../src/image/index.js'
import {makeImage} from '../bed/images.js'
import {faultyBlob} from './blob-faults.js'
import {startContainerd, type TestContainerd} from './fixture.js'

const MIB = 1024 * 1024

let ctd: TestContainerd
let work: string

beforeAll(async () => {
  work = await fsp.mkdtemp(path.join(os.tmpdir(), 'sl-crash-test-'))
  ctd = await startContainerd('crash')
})

afterAll(async () => {
  await ctd?.stop()
  await fsp.rm(work, {recursive: true, force: true})
})

describe('importImage when the node goes away or is busy', () => {
  it('after containerd dies mid-blob, a re-run resumes from what the node kept', async () => {
    const out = path.join(work, 'crash.tar')
    const info = await makeImage({name: 'sl-crash/app:1', format: 'oci', compress: 'none', out, layers: [{sizeBytes: 8 * MIB, seed: 'k'}]})
    const layer = info.layerDigests[0]
    const layerSize = info.platforms[0].layerSizes[0]
    const source = await readArchive(out)
    const client = new ContainerdClient(ctd.address, {displayName: 'crash-node'})
    try {
      let killed = false
      const dying = faultyBlob(source, layer, 4 * MIB, async () => {
        killed = true
        await new Promise((r) => setTimeout(r, 300)) // let the node write what it got
        await ctd.kill()
      })
      await expect(importImage(client, {source: dying, name: 'sl-crash/app:1', chunkSize: MIB})).rejects.toThrow(/crash-node/)
      expect(killed).toBe(true)
      await ctd.restart()
      const kept = await client.contentStatus(ingestRef(layer))
      expect(kept?.offset).toBeGreaterThanOrEqual(3 * MIB)
      expect(await client.imageGet('docker.io/sl-crash/app:1')).toBeUndefined()
      const events: ImportEvent[] = []
      const res = await importImage(client, {source, name: 'sl-crash/app:1', chunkSize: MIB, onProgress: (e) => events.push(e)})
      const done = events.find((e) => e.type === 'blob-done' && e.digest === layer) as Extract<ImportEvent, {type: 'blob-done'}>
      expect(done.sentBytes).toBe(layerSize - kept!.offset)
      expect(res.upToDate).toBe(false)
      expect(await ctd.ctr(['images', 'check'])).toMatch(/docker\.io\/sl-crash\/app:1 .*complete \(2\/2\)/)
    } finally {
      client.close()
      await source.close()
    }
  })

  it('two imports of the same image at once both succeed (the second waits for the ingest lock)', async () => {
    const out = path.join(work, 'twice.tar')
    const info = await makeImage({name: 'sl-crash/twice:1', format: 'oci', out, layers: [{sizeBytes: 6 * MIB, seed: 't1'}, {sizeBytes: 2 * MIB, seed: 't2'}]})
    const [a, b] = [new ContainerdClient(ctd.address), new ContainerdClient(ctd.address)]
    const [sa, sb] = [await readArchive(out), await readArchive(out)]
    try {
      const [ra, rb] = await Promise.all([
        importImage(a, {source: sa, name: 'sl-crash/twice:1', unpack: true, chunkSize: 256 * 1024, window: 1}),
        importImage(b, {source: sb, name: 'sl-crash/twice:1', unpack: true, chunkSize: 256 * 1024, window: 1}),
      ])
      expect(ra.digest).toBe(info.targetDigest)
      expect(rb.digest).toBe(info.targetDigest)
      // every blob crossed the wire about once in total
      expect(ra.sentBytes + rb.sentBytes).toBeLessThan(info.totalBytes + 2 * 256 * 1024)
      expect(await ctd.ctr(['images', 'check'])).toMatch(/docker\.io\/sl-crash\/twice:1 .*complete \(3\/3\).*true/)
    } finally {
      a.close()
      b.close()
      await sa.close()
      await sb.close()
    }
  })

  it('cancelling (Ctrl-C) records nothing, releases its lease and drops the partial blob', async () => {
    const out = path.join(work, 'cancel.tar')
    const info = await makeImage({name: 'sl-crash/cancel:1', format: 'oci', compress: 'none', out, layers: [{sizeBytes: 8 * MIB, seed: 'c1'}]})
    const layer = info.layerDigests[0]
    const client = new ContainerdClient(ctd.address, {displayName: 'cancel-node'})
    const source = await readArchive(out)
    try {
      const controller = new AbortController()
      const err = await importImage(client, {
        source,
        name: 'sl-crash/cancel:1',
        chunkSize: 256 * 1024,
        window: 1,
        signal: controller.signal,
        onProgress: (e) => e.type === 'blob-bytes' && e.digest === layer && e.sent >= 2 * MIB && controller.abort(),
      }).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(err).toBeInstanceOf(ImportCancelledError)
      expect((err as Error).message).toBe('import into cancel-node was cancelled')
      expect(await client.imageGet('docker.io/sl-crash/cancel:1')).toBeUndefined()
      expect(await client.contentStatus(ingestRef(layer)), 'the partial blob is aborted').toBeUndefined()
      expect(await ctd.ctr(['leases', 'ls']), 'no lease is left behind').not.toMatch(/sideload\/image=docker\.io\/sl-crash\/cancel:1/)
      const events: ImportEvent[] = []
      await importImage(client, {source, name: 'sl-crash/cancel:1', onProgress: (e) => events.push(e)})
      expect(events.find((e) => e.type === 'blob-start' && e.digest === layer)).toMatchObject({resumeOffset: 0})
      expect(await ctd.ctr(['images', 'check'])).toMatch(/docker\.io\/sl-crash\/cancel:1 .*complete/)
    } finally {
      client.close()
      await source.close()
    }
  })

  it('streams: memory stays flat while a 256 MiB layer goes in', async () => {
    const out = path.join(work, 'large.tar')
    await makeImage({name: 'sl-crash/large:1', format: 'oci', compress: 'none', out, layers: [{sizeBytes: 256 * MIB, seed: 'large'}]})
    const client = new ContainerdClient(ctd.address)
    const source = await readArchive(out)
    global.gc?.()
    const before = process.memoryUsage().rss
    let peak = before
    const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20)
    try {
      const res = await importImage(client, {source, name: 'sl-crash/large:1', onProgress: () => (peak = Math.max(peak, process.memoryUsage().rss))})
      expect(res.sentBytes).toBeGreaterThan(256 * MIB)
    } finally {
      clearInterval(timer)
      client.close()
      await source.close()
    }
    // window (4) × chunk (1 MiB) in flight plus stream buffers; nowhere near the 256 MiB blob
    expect(peak - before).toBeLessThan(64 * MIB)
  })
})
