// Test image generator: writes image archives as `nerdctl save` (OCI layout) or `docker save`
// (docker-archive) would, with no registry and no Docker. Everything is streamed: layer content is
// generated on the fly from a seed (AES-CTR keystream: incompressible, reproducible), so a 1 GB
// image never sits in memory. Same options → byte-identical blobs and digests.
import {createCipheriv, createHash, randomBytes, type Hash} from 'node:crypto'
import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import * as path from 'node:path'
import {pipeline} from 'node:stream/promises'
import {Transform, type TransformCallback} from 'node:stream'
import {createGzip} from 'node:zlib'
import {pack as tarPack, type Header, type Pack} from 'tar-stream'

export type LayerSpec = {sizeBytes: number; seed: string | number} | {busybox: true}

export interface MakeImageOptions {
  /** Image reference; normalised like containerd does ('slbt:1' → 'docker.io/library/slbt:1'). */
  name: string
  layers: LayerSpec[]
  /** Default ['linux/amd64']. More than one → an OCI image index with one manifest per platform. */
  platforms?: string[]
  format: 'oci' | 'docker'
  /** Layer compression. Default: 'gzip' for oci, 'none' for docker (what docker save writes). */
  compress?: 'gzip' | 'none'
  out: string
  /** Config Cmd. Default with a busybox layer: sleep forever; without: none. */
  cmd?: string[]
  /** Force an index blob even for one platform (BuildKit multi-platform style). Default: platforms > 1. */
  index?: boolean
}

export interface PlatformImage {
  platform: string
  /** OCI only (docker-archive has no manifest blob; containerd synthesises one on import). */
  manifestDigest?: string
  configDigest: string
  /** Digests of the layer blobs as stored (compressed when compress is gzip). */
  layerDigests: string[]
  layerSizes: number[]
  /** Digests of the uncompressed layer tars (config rootfs.diff_ids). */
  diffIds: string[]
}

export interface ImageInfo {
  /** The normalised name stored in the archive (io.containerd.image.name / RepoTags). */
  name: string
  format: 'oci' | 'docker'
  /** Digest of the image index blob (multi-platform OCI only). */
  indexDigest?: string
  /** What containerd's image record points at after import (index or manifest); OCI only. */
  targetDigest?: string
  manifestDigests: string[]
  configDigests: string[]
  /** First platform's values, for the common single-platform case. */
  configDigest: string
  layerDigests: string[]
  diffIds: string[]
  platforms: PlatformImage[]
  /** Sum of the sizes of all distinct blobs (layers, configs, manifests, index). */
  totalBytes: number
  /** Size of the archive file. */
  archiveBytes: number
}

const MTIME = new Date('2024-01-01T00:00:00Z')
const CREATED = MTIME.toISOString()
const CHUNK = 1 << 20
const ZERO_CHUNK = Buffer.alloc(CHUNK)
const BUSYBOX = '/usr/bin/busybox'
const BUSYBOX_APPLETS = ['sh', 'ls', 'cat', 'echo', 'sleep', 'env', 'mkdir', 'rm', 'cp', 'mv', 'ps', 'wget', 'httpd', 'true', 'false', 'id', 'uname', 'hostname', 'nc', 'sha256sum', 'head', 'tail', 'grep', 'df', 'du', 'date']
const MT = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
}

// ---------------------------------------------------------------------------------------------
// names and platforms

/** docker.io/library/x:latest style normalisation (the subset tests need: no digests in names). */
export function normalizeImageName(name: string): string {
  let ref = name
  const first = ref.split('/')[0]
  const hasDomain = ref.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost')
  if (!hasDomain) ref = ref.includes('/') ? `docker.io/${ref}` : `docker.io/library/${ref}`
  const last = ref.slice(ref.lastIndexOf('/') + 1)
  if (!last.includes(':') && !ref.includes('@')) ref = `${ref}:latest`
  return ref
}

/** 'docker.io/library/x:1' → 'x:1', as docker save writes RepoTags. */
function familiarName(ref: string): string {
  if (ref.startsWith('docker.io/library/')) return ref.slice('docker.io/library/'.length)
  if (ref.startsWith('docker.io/')) return ref.slice('docker.io/'.length)
  return ref
}

function splitTag(ref: string): {repo: string; tag: string} {
  const i = ref.lastIndexOf(':')
  return i > ref.lastIndexOf('/') ? {repo: ref.slice(0, i), tag: ref.slice(i + 1)} : {repo: ref, tag: 'latest'}
}

interface Platform {
  os: string
  architecture: string
  variant?: string
}

function parsePlatform(p: string): Platform {
  const [os, architecture, variant] = p.split('/')
  if (!os || !architecture) throw new Error(`platform '${p}' is invalid: use os/arch[/variant], e.g. linux/arm64`)
  if (architecture === 'arm64' && !variant) return {os, architecture, variant: 'v8'}
  return variant ? {os, architecture, variant} : {os, architecture}
}

// ---------------------------------------------------------------------------------------------
// stream helpers

const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`
const hexOf = (digest: string) => digest.slice('sha256:'.length)

/** Pass-through that hashes and counts what flows through it. */
class Digester extends Transform {
  private readonly hash: Hash = createHash('sha256')
  bytes = 0
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk)
    this.bytes += chunk.length
    cb(null, chunk)
  }
  digest(): string {
    return `sha256:${this.hash.digest('hex')}`
  }
}

/** Incompressible bytes, reproducible from the key: AES-128-CTR keystream. */
async function* keystream(key: Buffer, size: number): AsyncGenerator<Buffer> {
  const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), Buffer.alloc(16))
  let left = size
  while (left > 0) {
    const n = Math.min(left, CHUNK)
    yield cipher.update(n === CHUNK ? ZERO_CHUNK : ZERO_CHUNK.subarray(0, n))
    left -= n
  }
}

type TarHeader = Partial<Header> & Pick<Header, 'name'>
type EntrySource = Buffer | AsyncIterable<Buffer> | undefined

/** Writes one entry into a tar-stream pack, honouring backpressure. */
function writeEntry(pack: Pack, header: TarHeader, source: EntrySource): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = (err?: Error | null) => (err ? reject(err) : resolve())
    if (source === undefined || Buffer.isBuffer(source)) {
      pack.entry(header, source ?? Buffer.alloc(0), done)
      return
    }
    const entry = pack.entry(header, done)
    ;(async () => {
      for await (const chunk of source) {
        if (!entry.write(chunk)) await new Promise<void>((r) => entry.once('drain', () => r()))
      }
      entry.end(undefined)
    })().catch((e: unknown) => {
      entry.destroy(e instanceof Error ? e : new Error(String(e)))
      reject(e instanceof Error ? e : new Error(String(e)))
    })
  })
}

const padded = (n: number) => Math.ceil(n / 512) * 512

// ---------------------------------------------------------------------------------------------
// layers

interface LayerEntry {
  header: TarHeader
  source: () => EntrySource
}

interface LayerPlan {
  entries: LayerEntry[]
  /** Exact size of the uncompressed layer tar. */
  tarSize: number
  /** Key identifying identical layers within one archive. */
  key: string
}

function planLayer(spec: LayerSpec, platform: string, busyboxSize: number): LayerPlan {
  const dir = (name: string): LayerEntry => ({header: {name, type: 'directory', mode: 0o755, mtime: MTIME, uid: 0, gid: 0}, source: () => undefined})
  let entries: LayerEntry[]
  let key: string
  if ('busybox' in spec) {
    const marker = Buffer.from(`${platform}\n`)
    entries = [
      dir('bin/'),
      {header: {name: 'bin/busybox', type: 'file', mode: 0o755, size: busyboxSize, mtime: MTIME, uid: 0, gid: 0}, source: () => fs.createReadStream(BUSYBOX, {highWaterMark: CHUNK})},
      ...BUSYBOX_APPLETS.map((a): LayerEntry => ({
        header: {name: `bin/${a}`, type: 'symlink', linkname: 'busybox', mode: 0o777, mtime: MTIME, uid: 0, gid: 0},
        source: () => undefined,
      })),
      dir('etc/'),
      {header: {name: 'etc/sideload-test-platform', type: 'file', mode: 0o644, size: marker.length, mtime: MTIME, uid: 0, gid: 0}, source: () => marker},
      dir('tmp/'),
    ]
    key = `busybox|${platform}`
  } else {
    if (!Number.isInteger(spec.sizeBytes) || spec.sizeBytes < 0) throw new Error(`layer sizeBytes must be a non-negative integer, got ${spec.sizeBytes}`)
    const seedKey = createHash('sha256').update(`${String(spec.seed)}|${platform}`).digest()
    const file = `data/layer-${seedKey.toString('hex').slice(0, 16)}.bin`
    entries = [
      dir('data/'),
      {header: {name: file, type: 'file', mode: 0o644, size: spec.sizeBytes, mtime: MTIME, uid: 0, gid: 0}, source: () => keystream(seedKey, spec.sizeBytes)},
    ]
    key = `random|${String(spec.seed)}|${spec.sizeBytes}|${platform}`
  }
  const tarSize = entries.reduce((sum, e) => sum + 512 + padded(e.header.size ?? 0), 0) + 1024
  return {entries, tarSize, key}
}

/** The uncompressed layer tar as a stream. */
function layerTar(plan: LayerPlan): AsyncIterable<Buffer> {
  const pack = tarPack()
  ;(async () => {
    for (const e of plan.entries) await writeEntry(pack, e.header, e.source())
    pack.finalize()
  })().catch((e: unknown) => pack.destroy(e instanceof Error ? e : new Error(String(e))))
  return pack as AsyncIterable<Buffer>
}

interface WrittenLayer {
  digest: string
  diffId: string
  size: number
}

/** The uncompressed layer tar, hashed on the way through. */
async function* hashedLayerTar(plan: LayerPlan, hash: Hash, counter: {bytes: number}): AsyncGenerator<Buffer> {
  for await (const chunk of layerTar(plan)) {
    hash.update(chunk)
    counter.bytes += chunk.length
    yield chunk
  }
}

type EntryName = string | ((w: {digest: string; diffId: string}) => string | undefined)

/**
 * Streams one layer blob into the archive. A name known up front (docker-archive) takes one pass;
 * a name that is the digest (OCI blobs/sha256/<hex>) takes a hashing pass first for uncompressed
 * layers (no disk), and a temp file for gzip (its size is unknown until compressed).
 */
async function writeLayer(pack: Pack, plan: LayerPlan, compress: 'gzip' | 'none', tmpDir: string, entryName: EntryName): Promise<WrittenLayer> {
  if (compress === 'none') {
    const hash = createHash('sha256')
    const counter = {bytes: 0}
    let digest: string
    if (typeof entryName === 'string') {
      await writeEntry(pack, fileHeader(entryName, plan.tarSize), hashedLayerTar(plan, hash, counter))
      digest = `sha256:${hash.digest('hex')}`
    } else {
      for await (const _ of hashedLayerTar(plan, hash, counter)) {
        // hashing pass only
      }
      digest = `sha256:${hash.digest('hex')}`
      const name = entryName({digest, diffId: digest})
      if (name !== undefined) await writeEntry(pack, fileHeader(name, plan.tarSize), layerTar(plan))
    }
    if (counter.bytes !== plan.tarSize) throw new Error(`layer tar size mismatch: planned ${plan.tarSize}, produced ${counter.bytes}`)
    return {digest, diffId: digest, size: plan.tarSize}
  }
  const tmp = path.join(tmpDir, `.layer-${randomBytes(6).toString('hex')}.tar.gz`)
  try {
    const raw = new Digester()
    const gz = new Digester()
    await pipeline(layerTar(plan), raw, createGzip({level: 1}), gz, fs.createWriteStream(tmp))
    const digest = gz.digest()
    const diffId = raw.digest()
    const name = typeof entryName === 'string' ? entryName : entryName({digest, diffId})
    if (name !== undefined) await writeEntry(pack, fileHeader(name, gz.bytes), fs.createReadStream(tmp, {highWaterMark: CHUNK}))
    return {digest, diffId, size: gz.bytes}
  } finally {
    await fsp.rm(tmp, {force: true})
  }
}

function fileHeader(name: string, size: number, mode = 0o644): TarHeader {
  return {name, type: 'file', size, mode, mtime: MTIME, uid: 0, gid: 0}
}

function imageConfig(p: Platform, diffIds: string[], cmd: string[] | undefined, name: string): Buffer {
  const config: Record<string, unknown> = {
    created: CREATED,
    architecture: p.architecture,
    ...(p.variant ? {variant: p.variant} : {}),
    os: p.os,
    config: {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      ...(cmd ? {Cmd: cmd} : {}),
      WorkingDir: '/',
      Labels: {'org.sideload.test-image': name},
    },
    rootfs: {type: 'layers', diff_ids: diffIds},
    history: diffIds.map((_, i) => ({created: CREATED, created_by: `sideload test image layer ${i}`})),
  }
  return Buffer.from(JSON.stringify(config))
}

// ---------------------------------------------------------------------------------------------
// archives

async function prepare(opts: MakeImageOptions): Promise<{platforms: string[]; compress: 'gzip' | 'none'; busyboxSize: number; cmd?: string[]}> {
  const platforms = opts.platforms ?? ['linux/amd64']
  if (platforms.length === 0) throw new Error('makeImage: platforms must not be empty')
  if (opts.layers.length === 0) throw new Error('makeImage: an image needs at least one layer')
  if (opts.format === 'docker' && platforms.length > 1) {
    throw new Error('makeImage: a docker-archive holds one platform (docker save); use format oci for multi-platform images')
  }
  const hasBusybox = opts.layers.some((l) => 'busybox' in l)
  let busyboxSize = 0
  if (hasBusybox) {
    try {
      busyboxSize = (await fsp.stat(BUSYBOX)).size
    } catch {
      throw new Error(`makeImage: a busybox layer needs ${BUSYBOX} (apt-get install busybox-static)`)
    }
  }
  const cmd = opts.cmd ?? (hasBusybox ? ['/bin/sh', '-c', 'echo sideload test image started; exec sleep 2147483647'] : undefined)
  return {platforms, compress: opts.compress ?? (opts.format === 'oci' ? 'gzip' : 'none'), busyboxSize, cmd}
}

/** Writes an image archive at opts.out (streaming) and returns its digests. */
export async function makeImage(opts: MakeImageOptions): Promise<ImageInfo> {
  const prep = await prepare(opts)
  const name = normalizeImageName(opts.name)
  await fsp.mkdir(path.dirname(path.resolve(opts.out)), {recursive: true})
  const tmpDir = path.dirname(path.resolve(opts.out))
  const pack = tarPack()
  const file = fs.createWriteStream(opts.out)
  const written = new Promise<void>((resolve, reject) => {
    file.once('finish', () => resolve())
    file.once('error', reject)
    pack.once('error', reject)
  })
  pack.pipe(file)
  try {
    const info = opts.format === 'oci' ? await writeOci(pack, opts, prep, name, tmpDir) : await writeDocker(pack, opts, prep, name, tmpDir)
    pack.finalize()
    await written
    return {...info, archiveBytes: (await fsp.stat(opts.out)).size}
  } catch (e) {
    pack.destroy()
    file.destroy()
    await fsp.rm(opts.out, {force: true})
    throw e
  }
}

type Prepared = Awaited<ReturnType<typeof prepare>>

async function writeOci(pack: Pack, opts: MakeImageOptions, prep: Prepared, name: string, tmpDir: string): Promise<Omit<ImageInfo, 'archiveBytes'>> {
  const dir = (n: string): TarHeader => ({name: n, type: 'directory', mode: 0o755, mtime: MTIME, uid: 0, gid: 0})
  await writeEntry(pack, dir('blobs/'), undefined)
  await writeEntry(pack, dir('blobs/sha256/'), undefined)
  const blobs = new Map<string, number>() // digest → size, written once
  const layerCache = new Map<string, WrittenLayer>()
  const putBlob = async (content: Buffer): Promise<{digest: string; size: number}> => {
    const digest = sha256(content)
    if (!blobs.has(digest)) {
      await writeEntry(pack, fileHeader(`blobs/sha256/${hexOf(digest)}`, content.length), content)
      blobs.set(digest, content.length)
    }
    return {digest, size: content.length}
  }
  const platforms: PlatformImage[] = []
  const manifestDescs: Array<Record<string, unknown>> = []
  for (const platform of prep.platforms) {
    const p = parsePlatform(platform)
    const layers: WrittenLayer[] = []
    for (const spec of opts.layers) {
      const plan = planLayer(spec, platform, prep.busyboxSize)
      let w = layerCache.get(plan.key)
      if (!w) {
        w = await writeLayer(pack, plan, prep.compress, tmpDir, ({digest}) => (blobs.has(digest) ? undefined : `blobs/sha256/${hexOf(digest)}`))
        blobs.set(w.digest, w.size)
        layerCache.set(plan.key, w)
      }
      layers.push(w)
    }
    const diffIds = layers.map((l) => l.diffId)
    const config = await putBlob(imageConfig(p, diffIds, prep.cmd, name))
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MT.ociManifest,
        config: {mediaType: MT.ociConfig, digest: config.digest, size: config.size},
        layers: layers.map((l) => ({mediaType: prep.compress === 'gzip' ? MT.ociLayerGzip : MT.ociLayer, digest: l.digest, size: l.size})),
      }),
    )
    const m = await putBlob(manifest)
    manifestDescs.push({mediaType: MT.ociManifest, digest: m.digest, size: m.size, platform: p})
    platforms.push({platform, manifestDigest: m.digest, configDigest: config.digest, layerDigests: layers.map((l) => l.digest), layerSizes: layers.map((l) => l.size), diffIds})
  }
  const useIndex = opts.index ?? prep.platforms.length > 1
  let target: {mediaType: string; digest: string; size: number}
  let indexDigest: string | undefined
  if (useIndex) {
    const idx = await putBlob(Buffer.from(JSON.stringify({schemaVersion: 2, mediaType: MT.ociIndex, manifests: manifestDescs})))
    indexDigest = idx.digest
    target = {mediaType: MT.ociIndex, ...idx}
  } else {
    const only = manifestDescs[0]
    target = {mediaType: MT.ociManifest, digest: String(only.digest), size: Number(only.size)}
  }
  await writeEntry(pack, fileHeader('oci-layout', 30), Buffer.from('{"imageLayoutVersion":"1.0.0"}'))
  const indexJson = {
    schemaVersion: 2,
    mediaType: MT.ociIndex,
    manifests: [{...target, annotations: {'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': splitTag(name).tag}}],
  }
  const indexBuf = Buffer.from(JSON.stringify(indexJson))
  await writeEntry(pack, fileHeader('index.json', indexBuf.length), indexBuf)
  const first = platforms[0]
  return {
    name,
    format: 'oci',
    indexDigest,
    targetDigest: target.digest,
    manifestDigests: platforms.map((p) => p.manifestDigest ?? ''),
    configDigests: platforms.map((p) => p.configDigest),
    configDigest: first.configDigest,
    layerDigests: first.layerDigests,
    diffIds: first.diffIds,
    platforms,
    totalBytes: [...blobs.values()].reduce((a, b) => a + b, 0),
  }
}

async function writeDocker(pack: Pack, opts: MakeImageOptions, prep: Prepared, name: string, tmpDir: string): Promise<Omit<ImageInfo, 'archiveBytes'>> {
  const platform = prep.platforms[0]
  const p = parsePlatform(platform)
  const layers: Array<WrittenLayer & {id: string}> = []
  let parent = ''
  let total = 0
  for (const spec of opts.layers) {
    const plan = planLayer(spec, platform, prep.busyboxSize)
    // docker save names layer dirs by a v1 id derived from the layer chain; ours: parent id + layer spec
    const id = createHash('sha256').update(`${parent} ${plan.key} ${prep.compress}`).digest('hex')
    await writeEntry(pack, {name: `${id}/`, type: 'directory', mode: 0o755, mtime: MTIME, uid: 0, gid: 0}, undefined)
    const w = await writeLayer(pack, plan, prep.compress, tmpDir, `${id}/layer.tar`)
    const v1 = Buffer.from(JSON.stringify({id, ...(parent ? {parent} : {}), created: CREATED, container_config: {Cmd: null}, os: p.os}))
    await writeEntry(pack, fileHeader(`${id}/VERSION`, 3), Buffer.from('1.0'))
    await writeEntry(pack, fileHeader(`${id}/json`, v1.length), v1)
    layers.push({...w, id})
    total += w.size
    parent = id
  }
  const diffIds = layers.map((l) => l.diffId)
  const config = imageConfig(p, diffIds, prep.cmd, name)
  const configDigest = sha256(config)
  await writeEntry(pack, fileHeader(`${hexOf(configDigest)}.json`, config.length), config)
  const familiar = familiarName(name)
  const manifest = Buffer.from(JSON.stringify([{Config: `${hexOf(configDigest)}.json`, RepoTags: [familiar], Layers: layers.map((l) => `${l.id}/layer.tar`)}]))
  await writeEntry(pack, fileHeader('manifest.json', manifest.length), manifest)
  const {repo, tag} = splitTag(familiar)
  const repositories = Buffer.from(`${JSON.stringify({[repo]: {[tag]: parent}})}\n`)
  await writeEntry(pack, fileHeader('repositories', repositories.length), repositories)
  return {
    name,
    format: 'docker',
    manifestDigests: [],
    configDigests: [configDigest],
    configDigest,
    layerDigests: layers.map((l) => l.digest),
    diffIds,
    platforms: [{platform, configDigest, layerDigests: layers.map((l) => l.digest), layerSizes: layers.map((l) => l.size), diffIds}],
    totalBytes: total + config.length,
  }
}

/** The same image with only its last layer changed (new seed): for delta tests. */
export function changeLastLayer(opts: MakeImageOptions, seed: string | number, out = opts.out): MakeImageOptions {
  const last = opts.layers[opts.layers.length - 1]
  if (!last || 'busybox' in last) throw new Error('changeLastLayer: the last layer must be a seeded layer, not busybox')
  if (String(last.seed) === String(seed)) throw new Error(`changeLastLayer: seed '${seed}' is the current one; pass a different seed`)
  return {...opts, out, layers: [...opts.layers.slice(0, -1), {sizeBytes: last.sizeBytes, seed}]}
}
