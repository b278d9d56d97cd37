import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import * as os from 'node:os'
import * as path from 'node:path'
import {execFileSync} from 'node:child_process'
import {PassThrough, Readable, Writable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {createGzip} from 'node:zlib'
import * as tar from 'tar-stream'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {MediaType, readArchive, resolveImage, sha256Digest, VerifyingStream, writeOciArchive} from '../../src/image/index.js'
import type {ImageInfo} from '../bed/images.js'
import {makeImage} from '../bed/images.js'

const KIB = 1024
let work: string
let ociPath: string
let oci: ImageInfo

beforeAll(async () => {
  work = await fsp.mkdtemp(path.join(os.tmpdir(), 'sl-archive-test-'))
  ociPath = path.join(work, 'app.tar')
  oci = await makeImage({name: 'sl-arch/app:1', format: 'oci', out: ociPath, layers: [{sizeBytes: 40 * KIB, seed: 'a1'}, {sizeBytes: 30 * KIB, seed: 'a2'}]})
})

afterAll(async () => {
  await fsp.rm(work, {recursive: true, force: true})
})

async function drain(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of stream as AsyncIterable<Buffer>) chunks.push(c)
  return Buffer.concat(chunks)
}

/** Copy a tar, dropping entries and adding new ones (to build other archive shapes). */
async function rewriteTar(from: string, to: string, keep: (name: string) => boolean, extra: tar.Headers[] & {data?: Buffer}[]): Promise<void> {
  const extract = tar.extract()
  const pack = tar.pack()
  const done = pipeline(pack, fs.createWriteStream(to))
  extract.on('entry', (header, stream, next) => {
    if (!keep(header.name)) {
      stream.resume()
      stream.on('end', next)
      return
    }
    stream.pipe(pack.entry(header, next))
  })
  await pipeline(fs.createReadStream(from), extract)
  for (const e of extra) await new Promise<void>((resolve, reject) => pack.entry(e, (e as {data?: Buffer}).data ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve())))
  pack.finalize()
  await done
}

describe('readArchive', () => {
  it('reads an OCI layout tar in place and streams verified blobs', async () => {
    const source = await readArchive(ociPath)
    try {
      expect(source.format).toBe('oci')
      expect(source.file).toBe(ociPath)
      expect(source.name).toBe('docker.io/sl-arch/app:1')
      expect(source.target.digest).toBe(oci.targetDigest)
      const image = await resolveImage(source)
      expect(image.layers.map((l) => l.digest)).toEqual(oci.layerDigests)
      expect(image.diffIds).toEqual(oci.diffIds)
      const data = await drain((await source.openBlob(image.layers[1])).pipe(new VerifyingStream(image.layers[1], 'x')))
      expect(sha256Digest(data)).toBe(oci.layerDigests[1])
    } finally {
      await source.close()
    }
  })

  it('names the file when it is not a tar, is truncated, or lacks the image', async () => {
    const junk = path.join(work, 'junk.bin')
    await fsp.writeFile(junk, Buffer.alloc(4096, 7))
    await expect(readArchive(junk)).rejects.toThrow(`${junk} is not a tar archive`)
    const cut = path.join(work, 'cut.tar')
    const full = await fsp.readFile(ociPath)
    await fsp.writeFile(cut, full.subarray(0, Math.floor(full.length / 2)))
    await expect(readArchive(cut)).rejects.toThrow(new RegExp(`${cut.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is truncated`))
    await expect(readArchive(ociPath, {name: 'other:2'})).rejects.toThrow(`image "other:2" is not in ${ociPath}; it contains: docker.io/sl-arch/app:1`)
    await expect(readArchive(path.join(work, 'missing.tar'))).rejects.toThrow(/cannot open image archive .*missing\.tar: no such file/)
    const zst = path.join(work, 'app.tar.zst')
    await fsp.writeFile(zst, Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(600)]))
    await expect(readArchive(zst)).rejects.toThrow(`${zst} is zstd-compressed; decompress it first`)
    const plain = path.join(work, 'plain.tar')
    await rewriteTar(ociPath, plain, (n) => n.startsWith('blobs/'), [])
    await expect(readArchive(plain)).rejects.toThrow(`${plain} is a tar but not an image archive`)
  })

  it('spools a stream (stdin) to a temporary file and removes it on close; reads gzip input', async () => {
    const pass = new PassThrough()
    fs.createReadStream(ociPath).pipe(pass)
    const source = await readArchive(pass, {name: 'docker.io/sl-arch/app:1'})
    const spool = source.file
    expect(spool).not.toBe(ociPath)
    expect(fs.existsSync(spool)).toBe(true)
    const image = await resolveImage(source)
    expect(image.config.digest).toBe(oci.configDigest)
    await source.close()
    expect(fs.existsSync(spool)).toBe(false)

    // stdin redirected from a file (`sideload push - < app.tar`) is read in place, not spooled
    const fd = fs.openSync(ociPath, 'r')
    try {
      const redirected = await readArchive(fs.createReadStream('', {fd, autoClose: false}))
      expect(redirected.file).toBe(`/proc/self/fd/${fd}`)
      expect((await resolveImage(redirected)).config.digest).toBe(oci.configDigest)
      await redirected.close()
    } finally {
      fs.closeSync(fd)
    }

    const gz = path.join(work, 'app.tar.gz')
    await pipeline(fs.createReadStream(ociPath), createGzip(), fs.createWriteStream(gz))
    const fromGz = await readArchive(gz)
    try {
      expect(fromGz.target.digest).toBe(oci.targetDigest)
    } finally {
      await fromGz.close()
    }
    await expect(readArchive(Readable.from([Buffer.from('hello')]))).rejects.toThrow(/stdin is not a tar archive/)
  })

  it('reads docker-archives: layers by path, symlinked into blobs/ (docker ≥25), gzip layers', async () => {
    const docker = path.join(work, 'docker.tar')
    const d = await makeImage({name: 'sl-arch/dock:2', format: 'docker', out: docker, layers: [{sizeBytes: 20 * KIB, seed: 'd1'}, {sizeBytes: 10 * KIB, seed: 'd2'}]})
    const source = await readArchive(docker)
    try {
      expect(source.format).toBe('docker')
      expect(source.name).toBe('docker.io/sl-arch/dock:2')
      const image = await resolveImage(source)
      expect(image.manifest.mediaType).toBe(MediaType.dockerManifest)
      expect(image.layers.map((l) => [l.digest, l.mediaType])).toEqual(d.layerDigests.map((x) => [x, MediaType.dockerLayer]))
      expect(image.config.digest).toBe(d.configDigest)
    } finally {
      await source.close()
    }
    // docker 25 style: legacy manifest.json whose layer.tar entries are symlinks into blobs/
    const hex = (x: string) => x.slice(7)
    const linked = path.join(work, 'linked.tar')
    const manifestJson = Buffer.from(JSON.stringify([{Config: `blobs/sha256/${hex(oci.configDigest)}`, RepoTags: ['sl-arch/linked:3'], Layers: ['l0/layer.tar', 'l1/layer.tar']}]))
    await rewriteTar(ociPath, linked, (n) => n.startsWith('blobs/'), [
      {name: 'l0/layer.tar', type: 'symlink', linkname: `../blobs/sha256/${hex(oci.layerDigests[0])}`},
      {name: 'l1/layer.tar', type: 'symlink', linkname: `../blobs/sha256/${hex(oci.layerDigests[1])}`},
      Object.assign({name: 'manifest.json', size: manifestJson.length}, {data: manifestJson}),
    ] as tar.Headers[] & {data?: Buffer}[])
    const ls = await readArchive(linked, {name: 'sl-arch/linked:3'})
    try {
      const image = await resolveImage(ls)
      expect(image.layers.map((l) => [l.digest, l.mediaType])).toEqual(oci.layerDigests.map((x) => [x, MediaType.dockerLayerGzip]))
      const blob = await drain(await ls.openBlob(image.layers[0]))
      expect(sha256Digest(blob)).toBe(oci.layerDigests[0])
    } finally {
      await ls.close()
    }
  })

  it('reads an unpacked OCI layout directory, and refuses links that leave it', async () => {
    const dir = path.join(work, 'layout')
    await fsp.mkdir(dir)
    execFileSync('tar', ['-xf', ociPath, '-C', dir])
    const source = await readArchive(dir)
    try {
      expect(source.format).toBe('oci')
      const image = await resolveImage(source)
      expect(image.layers.map((l) => l.digest)).toEqual(oci.layerDigests)
      const data = await drain(await source.openBlob(image.layers[0]))
      expect(sha256Digest(data)).toBe(oci.layerDigests[0])
    } finally {
      await source.close()
    }
    // a blob that is a symlink to a file outside the layout is treated as absent
    const outside = path.join(work, 'outside.bin')
    await fsp.writeFile(outside, 'secret')
    const blob = path.join(dir, 'blobs', 'sha256', oci.layerDigests[1].slice(7))
    await fsp.rm(blob)
    await fsp.symlink(outside, blob)
    const again = await readArchive(dir)
    try {
      const image = await resolveImage(again)
      await expect(again.openBlob(image.layers[1])).rejects.toThrow(/does not contain blob/)
    } finally {
      await again.close()
    }
    await expect(readArchive(work)).rejects.toThrow(`${work} is a directory but not an OCI image layout`)
  })
})

describe('writeOciArchive', () => {
  it('fails with the output’s error when the output breaks or is torn down mid-blob', async () => {
    const source = await readArchive(ociPath)
    try {
      const image = await resolveImage(source)
      let n = 0
      const breaking = new Writable({
        write(chunk: Buffer, _enc, cb) {
          n += chunk.length
          cb(n > 20 * KIB ? new Error('channel closed') : null)
        },
      })
      await expect(writeOciArchive(breaking, source, image)).rejects.toThrow('channel closed')
      const stalled = new Writable({highWaterMark: 1024, write() {}})
      setTimeout(() => stalled.destroy(new Error('ssh channel reset')), 200)
      await expect(writeOciArchive(stalled, source, image)).rejects.toThrow('ssh channel reset')
    } finally {
      await source.close()
    }
  })
})
