import * as fsp from 'node:fs/promises'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {ContainerdClient, importImage} from '../../src/containerd/index.js'
import {readArchive} from '../../src/image/index.js'
import {makeImage} from '../bed/images.js'
import {startContainerdWithClient, stopContainerdWithClient, type TestContainerd} from './fixture.js'

const MIB = 1024 * 1024

let ctd: TestContainerd
let client: ContainerdClient
let work: string

beforeAll(async () => {
  ;({ctd, client, work} = await startContainerdWithClient('diskfull', {displayName: 'tiny-node', rootSizeMb: 24}))
})

afterAll(() => stopContainerdWithClient({ctd, client, work}))

describe('importImage onto a node whose disk fills up', () => {
  it('fails with "no space left on" the node, leaves no image record and no lease', async () => {
    const out = path.join(work, 'big.tar')
    await makeImage({name: 'sl-full/big:1', format: 'oci', out, compress: 'none', layers: [{sizeBytes: 4 * MIB, seed: 'f1'}, {sizeBytes: 32 * MIB, seed: 'f2'}]})
    const source = await readArchive(out)
    try {
      await expect(importImage(client, {source, name: 'sl-full/big:1', unpack: true, pin: true})).rejects.toThrow(/^no space left on tiny-node \(containerd content\.Write: .*no space left on device\)$/)
    } finally {
      await source.close()
    }
    expect(await client.imageGet('docker.io/sl-full/big:1')).toBeUndefined()
    expect(await client.imageList()).toEqual([])
    expect((await client.leaseList()).filter((l) => l.labels['sideload/image'])).toEqual([])
    // the lease is gone, so GC gives the space back
    const deadline = Date.now() + 10_000
    let free = 0
    while (Date.now() < deadline) {
      const st = await fsp.statfs(ctd.root)
      free = st.bavail * st.bsize
      if (free > 20 * MIB) break
      await new Promise((r) => setTimeout(r, 200))
    }
    expect(free).toBeGreaterThan(20 * MIB)
    // the daemon is still healthy: a small image fits
    const small = path.join(work, 'small.tar')
    await makeImage({name: 'sl-full/small:1', format: 'oci', out: small, layers: [{sizeBytes: 1 * MIB, seed: 's'}]})
    const smallSource = await readArchive(small)
    try {
      const res = await importImage(client, {source: smallSource, name: 'sl-full/small:1', unpack: true})
      expect(res.upToDate).toBe(false)
    } finally {
      await smallSource.close()
    }
    expect(await ctd.ctr(['images', 'check'])).toMatch(/docker\.io\/sl-full\/small:1 .*complete/)
  })
})
