import {createHash} from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {extract} from 'tar-stream'
import {startBed, type Bed} from './bed.js'
import {ctrErrorLines} from '../../src/nodes/ctr-output.js'
import {changeLastLayer, makeImage, normalizeImageName, type MakeImageOptions} from './images.js'

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'slbt-images-'))
afterAll(() => fs.rmSync(tmp, {recursive: true, force: true}))

/** Files up to 4 MiB of an archive (name → content), and the names and sizes of all entries. */
async function readArchive(file: string): Promise<{small: Map<string, Buffer>; sizes: Map<string, number>}> {
  const small = new Map<string, Buffer>()
  const sizes = new Map<string, number>()
  const ex = extract()
  const done = (async () => {
    for await (const entry of ex) {
      const chunks: Buffer[] = []
      let n = 0
      for await (const c of entry) {
        n += (c as Buffer).length
        if (n <= 4 << 20) chunks.push(c as Buffer)
      }
      sizes.set(entry.header.name, n)
      if (n <= 4 << 20) small.set(entry.header.name, Buffer.concat(chunks))
    }
  })()
  fs.createReadStream(file).pipe(ex)
  await done
  return {small, sizes}
}

async function fileSha(file: string): Promise<string> {
  const h = createHash('sha256')
  for await (const c of fs.createReadStream(file)) h.update(c as Buffer)
  return h.digest('hex')
}

const json = (b: Buffer | undefined): Record<string, unknown> => JSON.parse(String(b)) as Record<string, unknown>

describe('test image generator (archives)', () => {
  it('normalises names like containerd', () => {
    expect(normalizeImageName('app')).toBe('docker.io/library/app:latest')
    expect(normalizeImageName('app:1')).toBe('docker.io/library/app:1')
    expect(normalizeImageName('me/app')).toBe('docker.io/me/app:latest')
    expect(normalizeImageName('localhost:5000/app')).toBe('localhost:5000/app:latest')
    expect(normalizeImageName('registry.example.com/a/b:2')).toBe('registry.example.com/a/b:2')
  })

  it('writes an OCI layout as nerdctl save does, with digests that match the content', async () => {
    const out = path.join(tmp, 'layout.tar')
    const info = await makeImage({name: 'slbt-layout:1', layers: [{sizeBytes: 100_000, seed: 'a'}, {sizeBytes: 5000, seed: 'b'}], format: 'oci', out})
    const {small, sizes} = await readArchive(out)
    expect(json(small.get('oci-layout'))).toEqual({imageLayoutVersion: '1.0.0'})
    const index = json(small.get('index.json')) as {manifests: Array<{digest: string; mediaType: string; annotations: Record<string, string>}>}
    expect(index.manifests).toHaveLength(1)
    expect(index.manifests[0].annotations).toEqual({
      'io.containerd.image.name': 'docker.io/library/slbt-layout:1',
      'org.opencontainers.image.ref.name': '1',
    })
    expect(index.manifests[0].digest).toBe(info.manifestDigests[0])
    expect(index.manifests[0].mediaType).toBe('application/vnd.oci.image.manifest.v1+json')
    // every blob is stored under its own digest
    for (const [name, content] of small) {
      if (!name.startsWith('blobs/sha256/') || name.endsWith('/')) continue
      expect(createHash('sha256').update(content).digest('hex')).toBe(name.slice('blobs/sha256/'.length))
    }
    const manifest = json(small.get(`blobs/sha256/${info.manifestDigests[0].slice(7)}`)) as {config: {digest: string}; layers: Array<{digest: string; size: number; mediaType: string}>}
    expect(manifest.config.digest).toBe(info.configDigest)
    expect(manifest.layers.map((l) => l.digest)).toEqual(info.layerDigests)
    expect(manifest.layers[0].mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip')
    for (const l of manifest.layers) expect(sizes.get(`blobs/sha256/${l.digest.slice(7)}`)).toBe(l.size)
    const config = json(small.get(`blobs/sha256/${info.configDigest.slice(7)}`)) as {rootfs: {diff_ids: string[]}; architecture: string; os: string}
    expect(config.rootfs.diff_ids).toEqual(info.diffIds)
    expect(config.architecture).toBe('amd64')
    // gzip layers: the digest differs from the diff id, content is incompressible
    expect(info.layerDigests[0]).not.toBe(info.diffIds[0])
    expect(info.platforms[0].layerSizes[0]).toBeGreaterThan(100_000)
  })

  it('writes a docker-archive as docker save does', async () => {
    const out = path.join(tmp, 'docker.tar')
    const info = await makeImage({name: 'docker.io/library/slbt-dock:2', layers: [{busybox: true}, {sizeBytes: 3000, seed: 'd'}], format: 'docker', out})
    const {small} = await readArchive(out)
    const manifest = JSON.parse(String(small.get('manifest.json'))) as Array<{Config: string; RepoTags: string[]; Layers: string[]}>
    expect(manifest).toHaveLength(1)
    expect(manifest[0].RepoTags).toEqual(['slbt-dock:2'])
    expect(manifest[0].Config).toBe(`${info.configDigest.slice(7)}.json`)
    expect(manifest[0].Layers).toHaveLength(2)
    for (const [i, l] of manifest[0].Layers.entries()) {
      expect(l).toMatch(/^[0-9a-f]{64}\/layer\.tar$/)
      // uncompressed layer.tar: its digest is the diff id
      expect(`sha256:${createHash('sha256').update(small.get(l) ?? Buffer.alloc(0)).digest('hex')}`).toBe(info.diffIds[i])
      expect(String(small.get(l.replace('layer.tar', 'VERSION')))).toBe('1.0')
    }
    const repos = json(small.get('repositories')) as Record<string, Record<string, string>>
    expect(repos['slbt-dock']['2']).toBe(manifest[0].Layers[1].split('/')[0])
    expect(small.has('index.json')).toBe(false)
    expect(small.has('oci-layout')).toBe(false)
    expect(info.manifestDigests).toEqual([])
  })

  it('is reproducible, and changeLastLayer changes only the last layer', async () => {
    const opts: MakeImageOptions = {name: 'slbt-delta:1', layers: [{sizeBytes: 50_000, seed: 1}, {sizeBytes: 50_000, seed: 2}, {sizeBytes: 50_000, seed: 3}], format: 'oci', out: path.join(tmp, 'd1.tar')}
    const a = await makeImage(opts)
    const b = await makeImage({...opts, out: path.join(tmp, 'd2.tar')})
    expect(await fileSha(path.join(tmp, 'd1.tar'))).toBe(await fileSha(path.join(tmp, 'd2.tar')))
    expect(b.layerDigests).toEqual(a.layerDigests)
    const c = await makeImage(changeLastLayer(opts, 'changed', path.join(tmp, 'd3.tar')))
    expect(c.layerDigests.slice(0, 2)).toEqual(a.layerDigests.slice(0, 2))
    expect(c.layerDigests[2]).not.toBe(a.layerDigests[2])
    expect(c.configDigest).not.toBe(a.configDigest)
    expect(() => changeLastLayer(opts, 3)).toThrow(/current one/)
  })

  it('builds a multi-platform index with distinct layers per platform', async () => {
    const info = await makeImage({name: 'slbt-multi:1', layers: [{busybox: true}, {sizeBytes: 10_000, seed: 'm'}], platforms: ['linux/amd64', 'linux/arm64'], format: 'oci', out: path.join(tmp, 'multi.tar')})
    expect(info.indexDigest).toBeDefined()
    expect(info.targetDigest).toBe(info.indexDigest)
    expect(new Set(info.manifestDigests).size).toBe(2)
    const [amd, arm] = info.platforms
    for (let i = 0; i < 2; i++) expect(amd.layerDigests[i]).not.toBe(arm.layerDigests[i])
    const {small} = await readArchive(path.join(tmp, 'multi.tar'))
    const index = json(small.get(`blobs/sha256/${info.indexDigest?.slice(7)}`)) as {manifests: Array<{platform: Record<string, string>}>}
    expect(index.manifests.map((m) => m.platform)).toEqual([
      {os: 'linux', architecture: 'amd64'},
      {os: 'linux', architecture: 'arm64', variant: 'v8'},
    ])
    await expect(makeImage({name: 'x', layers: [{sizeBytes: 1, seed: 1}], platforms: ['linux/amd64', 'linux/arm64'], format: 'docker', out: path.join(tmp, 'bad.tar')})).rejects.toThrow(/one platform/)
  })

  it('streams: a 400 MB image does not grow the process by its size', async () => {
    const out = path.join(tmp, 'big.tar')
    const base = process.memoryUsage().rss
    let peak = base
    const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20)
    try {
      const info = await makeImage({name: 'slbt-big:1', layers: [{sizeBytes: 400_000_000, seed: 'big'}], format: 'docker', out})
      expect(info.archiveBytes).toBeGreaterThan(400_000_000)
    } finally {
      clearInterval(timer)
      fs.rmSync(out, {force: true})
    }
    expect(peak - base).toBeLessThan(150 << 20)
  })
})

describe('test image generator (into real containerd)', () => {
  let bed: Bed
  beforeAll(async () => {
    bed = await startBed({name: 'slbt-images', nodes: 1})
  })
  afterAll(async () => {
    await bed?.down()
  })

  it('imports a multi-platform image with all platforms complete', async () => {
    const node = bed.nodes[0]
    const out = path.join(tmp, 'multi-import.tar')
    const info = await makeImage({name: 'slbt-multi-import:1', layers: [{sizeBytes: 20_000, seed: 'x'}, {sizeBytes: 20_000, seed: 'y'}], platforms: ['linux/amd64', 'linux/arm64'], format: 'oci', out})
    await bed.ctr(node, ['images', 'import', '--all-platforms', out])
    const ls = await bed.ctr(node, ['images', 'ls'])
    expect(ls).toContain(info.name)
    expect(ls).toContain(info.indexDigest)
    expect(ls).toMatch(/linux\/amd64,linux\/arm64\/v8/)
    // ctr 1.6 checks the host platform only; the other platform's blobs must be in the content store
    const check = await bed.ctr(node, ['images', 'check', `name==${info.name}`])
    expect(check).toMatch(/\scomplete \((\d+)\/\1\)/)
    const content = await bed.ctr(node, ['content', 'ls', '-q'])
    for (const p of info.platforms) for (const d of [p.manifestDigest, p.configDigest, ...p.layerDigests]) expect(content).toContain(d)
  })

  it('imports an uncompressed OCI image whose busybox layer runs as a container', async () => {
    const node = bed.nodes[0]
    const out = path.join(tmp, 'run.tar')
    const info = await makeImage({name: 'slbt-run:1', layers: [{busybox: true}, {sizeBytes: 1000, seed: 'r'}], format: 'oci', compress: 'none', out, cmd: ['/bin/sh', '-c', 'echo hello-from-$(cat /etc/sideload-test-platform); ls /data']})
    await bed.ctr(node, ['images', 'import', out])
    const r = await bed.exec(node, ['ctr', '-n', 'k8s.io', 'run', '--rm', info.name, `slbt-run-${process.pid}`], {timeoutMs: 60_000})
    expect(ctrErrorLines(r.stderr)).toEqual([])
    expect(r.stdout).toMatch(/^hello-from-linux\/amd64\nlayer-[0-9a-f]{16}\.bin\n$/)
  })
})
