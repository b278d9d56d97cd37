import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {createGunzip} from 'node:zlib'
import {assertDigest, DigestHasher, digestHex, sha256Digest, type Digest} from './digest.js'
import {detectCompression, MediaType} from './media.js'
import {Annotation, MAX_DOCUMENT_SIZE, parseConfig, parseIndex, type Descriptor, type ImageSource} from './model.js'
import {normalizeImageName} from './reference.js'
import {indexTar, normalizeTarPath, readRange, type TarEntry} from './tar-index.js'

/** An image found inside an OCI-layout or docker-archive tar. */
export interface ArchiveImage extends ImageSource {
  readonly format: 'oci' | 'docker'
  /** The archive file being read (a temporary spool when the input was a stream). */
  readonly file: string
  /** Every image name found in the archive (fully qualified). */
  readonly names: string[]
}

export interface ReadArchiveOptions {
  /** Which image to take when the archive holds several (any form: `app:1`, `docker.io/library/app:1`). */
  name?: string
  /** Where to spool a non-seekable input (default: os.tmpdir()). */
  tmpDir?: string
}

/**
 * Open an image archive (OCI layout tar or docker-archive tar, `docker save`/`nerdctl save`;
 * docker ≥25 writes both and the OCI layout wins; or an OCI layout directory) without
 * reading it into memory.
 *
 * Access plan: two passes over a *file*. Pass 1 reads only tar headers (seeking over data)
 * to index entries; blobs are then read by offset, as often as needed (small documents
 * whole, layers as streams). A real file path is used in place, never copied. A stream
 * input (stdin, a pipe) can be read only once, so it is spooled to a temporary file first
 * (deleted by close()); a stdin redirected from a regular file is read in place. A gzip-
 * compressed tar is decompressed into a temporary file.
 */
export async function readArchive(input: string | Readable, options: ReadArchiveOptions = {}): Promise<ArchiveImage> {
  const cleanups: (() => Promise<void>)[] = []
  const cleanup = async (): Promise<void> => {
    for (const fn of cleanups.reverse()) await fn().catch(() => undefined)
    cleanups.length = 0
  }
  try {
    if (typeof input === 'string' && fs.statSync(input, {throwIfNoEntry: false})?.isDirectory()) {
      const dir = new LayoutDirectory(fs.realpathSync(input))
      if (!dir.has('index.json')) throw new Error(`${input} is a directory but not an OCI image layout (no index.json)`)
      return {...(await openOci(dir, input, options)), file: input, close: cleanup}
    }
    const {fd, file, label} = await openInput(input, options, cleanups)
    const tar = await indexTar(fd, label)
    const files: ArchiveFiles = {has: (n) => tar.entries.has(n), resolve: (n) => tar.resolve(n), read: (e) => tar.read(e), stream: (e) => tar.stream(e)}
    const image = files.has('oci-layout') || files.has('index.json') ? await openOci(files, label, options) : await openDocker(files, label, options)
    return {...image, file, close: cleanup}
  } catch (err) {
    await cleanup()
    throw err
  }
}

type Opened = {fd: number; file: string; label: string}

/** The files of an archive: a tar read by offset, or an unpacked OCI layout directory. */
interface ArchiveFiles {
  has(name: string): boolean
  /** Follow symlinks/hard links to a regular file; undefined when absent. */
  resolve(name: string): TarEntry | undefined
  read(entry: TarEntry): Promise<Buffer>
  stream(entry: TarEntry): Readable
}

/** An OCI image layout directory (`buildctl --output type=oci,tar=false`, `skopeo copy … oci:dir`). */
class LayoutDirectory implements ArchiveFiles {
  constructor(private readonly root: string) {}
  private full(name: string): string | undefined {
    const rel = normalizeTarPath(name)
    if (rel.startsWith('..')) return undefined
    return path.join(this.root, rel)
  }
  has(name: string): boolean {
    const p = this.full(name)
    return !!p && fs.existsSync(p)
  }
  resolve(name: string): TarEntry | undefined {
    const p = this.full(name)
    if (!p) return undefined
    try {
      const real = fs.realpathSync(p)
      if (real !== this.root && !real.startsWith(this.root + path.sep)) return undefined
      const st = fs.statSync(real)
      return st.isFile() ? {name: path.relative(this.root, real), type: 'file', offset: 0, size: st.size, linkname: real} : undefined
    } catch {
      return undefined
    }
  }
  read(entry: TarEntry): Promise<Buffer> {
    return fs.promises.readFile(entry.linkname)
  }
  stream(entry: TarEntry): Readable {
    return fs.createReadStream(entry.linkname, {highWaterMark: 1024 * 1024})
  }
}

async function openInput(input: string | Readable, options: ReadArchiveOptions, cleanups: (() => Promise<void>)[]): Promise<Opened> {
  if (typeof input === 'string') {
    const fh = await fs.promises.open(input, 'r').catch((err: NodeJS.ErrnoException) => {
      throw new Error(`cannot open image archive ${input}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`)
    })
    cleanups.push(() => fh.close())
    const st = await fh.stat()
    if (!st.isFile()) throw new Error(`${input} is not a regular file (pass "-" to read an archive from stdin)`)
    if (await isGzip(fh.fd, input)) return decompressToSpool(readRange(fh.fd, 0, st.size, input), input, options, cleanups)
    return {fd: fh.fd, file: input, label: input}
  }
  const inputFd = (input as {fd?: unknown}).fd
  if (typeof inputFd === 'number') {
    try {
      if (fs.fstatSync(inputFd).isFile() && !(await isGzip(inputFd, 'stdin'))) return {fd: inputFd, file: `/proc/self/fd/${inputFd}`, label: 'stdin'}
    } catch {
      // not a file descriptor we can seek: spool it
    }
  }
  const dir = await fs.promises.mkdtemp(path.join(options.tmpDir ?? os.tmpdir(), 'sideload-archive-'))
  cleanups.push(() => fs.promises.rm(dir, {recursive: true, force: true}))
  const spool = path.join(dir, 'input.tar')
  await pipeline(input, fs.createWriteStream(spool)).catch((err: Error) => {
    throw new Error(`reading the image archive from stdin failed: ${err.message}`)
  })
  const fh = await fs.promises.open(spool, 'r')
  cleanups.push(() => fh.close())
  if (await isGzip(fh.fd, 'stdin')) return decompressToSpool(readRange(fh.fd, 0, (await fh.stat()).size, 'stdin'), 'stdin', options, cleanups)
  return {fd: fh.fd, file: spool, label: 'stdin'}
}

/** True for gzip input (decompressed to a spool); zstd input is refused with a way out. */
async function isGzip(fd: number, label = 'the archive'): Promise<boolean> {
  const head = Buffer.alloc(4)
  const {bytesRead} = await new Promise<{bytesRead: number}>((resolve, reject) =>
    fs.read(fd, head, 0, 4, 0, (err, n) => (err ? reject(err) : resolve({bytesRead: n}))),
  )
  const compression = detectCompression(head.subarray(0, bytesRead))
  if (compression === 'zstd') throw new Error(`${label} is zstd-compressed; decompress it first (zstd -d) or pipe it: zstd -dc FILE | sideload … -`)
  return compression === 'gzip'
}

async function decompressToSpool(source: Readable, label: string, options: ReadArchiveOptions, cleanups: (() => Promise<void>)[]): Promise<Opened> {
  const dir = await fs.promises.mkdtemp(path.join(options.tmpDir ?? os.tmpdir(), 'sideload-archive-'))
  cleanups.push(() => fs.promises.rm(dir, {recursive: true, force: true}))
  const spool = path.join(dir, 'input.tar')
  await pipeline(source, createGunzip(), fs.createWriteStream(spool)).catch((err: Error) => {
    throw new Error(`${label} is a gzip file that cannot be decompressed (${err.message})`)
  })
  const fh = await fs.promises.open(spool, 'r')
  cleanups.push(() => fh.close())
  return {fd: fh.fd, file: spool, label}
}

function readDocument(tar: ArchiveFiles, name: string, label: string): Promise<Buffer> {
  const entry = tar.resolve(name)
  if (!entry) throw new Error(`${label} is not a valid image archive: "${name}" is missing`)
  if (entry.size > MAX_DOCUMENT_SIZE) throw new Error(`${label}: "${name}" is too large (${entry.size} bytes) to be an image document`)
  return tar.read(entry)
}

function pickImage<T>(candidates: {names: string[]; value: T}[], label: string, wanted: string | undefined): {value: T; name: string | undefined} {
  const allNames = [...new Set(candidates.flatMap((c) => c.names))]
  if (candidates.length === 0) throw new Error(`${label} contains no image`)
  if (wanted) {
    let normalized: string
    try {
      normalized = normalizeImageName(wanted)
    } catch {
      normalized = wanted
    }
    const hit = candidates.find((c) => c.names.includes(normalized))
    if (!hit) {
      throw new Error(`image "${wanted}" is not in ${label}; it contains: ${allNames.length ? allNames.join(', ') : '(unnamed images only)'}`)
    }
    return {value: hit.value, name: normalized}
  }
  const distinct = new Set(candidates.map((c) => JSON.stringify(c.value)))
  if (distinct.size > 1) {
    throw new Error(`${label} contains ${distinct.size} images (${allNames.join(', ') || 'unnamed'}); say which one to take`)
  }
  return {value: candidates[0].value, name: allNames[0]}
}

function qualify(name: string | undefined): string | undefined {
  if (!name) return undefined
  try {
    return normalizeImageName(name)
  } catch {
    return undefined
  }
}

function blobPath(digest: Digest): string {
  return `blobs/sha256/${digestHex(digest)}`
}

type Opening = Omit<ArchiveImage, 'file' | 'close'>

async function openOci(tar: ArchiveFiles, label: string, options: ReadArchiveOptions): Promise<Opening> {
  const layout = tar.resolve('oci-layout')
  if (layout) {
    const text = (await tar.read(layout)).toString('utf8')
    let version: unknown
    try {
      version = (JSON.parse(text) as {imageLayoutVersion?: unknown}).imageLayoutVersion
    } catch {
      version = undefined
    }
    if (version !== '1.0.0') throw new Error(`${label}: unsupported oci-layout (imageLayoutVersion ${String(version)}, expected 1.0.0)`)
  }
  const index = parseIndex(await readDocument(tar, 'index.json', label), `${label}: index.json`)
  const candidates = index.manifests.map((m) => {
    const names: string[] = []
    const full = qualify(m.annotations?.[Annotation.containerdImageName])
    if (full) names.push(full)
    const ref = m.annotations?.[Annotation.refName]
    if (ref && /[/:]/.test(ref)) {
      const q = qualify(ref)
      if (q && !names.includes(q)) names.push(q)
    }
    const target: Descriptor = {mediaType: m.mediaType, digest: m.digest, size: m.size}
    return {names, value: target}
  })
  const {value: target, name} = pickImage(candidates, label, options.name)
  const entryFor = (desc: Descriptor): TarEntry => {
    const entry = tar.resolve(blobPath(desc.digest))
    if (!entry) throw new Error(`${label} does not contain blob ${desc.digest} (${desc.mediaType})`)
    if (entry.size !== desc.size) throw new Error(`${label} is corrupt: blob ${desc.digest} has ${entry.size} bytes, expected ${desc.size}`)
    return entry
  }
  return {
    format: 'oci',
    description: `archive ${label}`,
    name,
    names: [...new Set(candidates.flatMap((c) => c.names))],
    target,
    async readBlob(desc) {
      const entry = entryFor(desc)
      if (entry.size > MAX_DOCUMENT_SIZE) throw new Error(`${label}: blob ${desc.digest} is too large to read whole`)
      const data = await tar.read(entry)
      if (sha256Digest(data) !== desc.digest) throw new Error(`${label} is corrupt: blob ${desc.digest} does not match its digest`)
      return data
    },
    async openBlob(desc) {
      return tar.stream(entryFor(desc))
    },
  }
}

interface DockerManifestEntry {
  Config: string
  RepoTags?: string[] | null
  Layers: string[]
}

async function hashEntry(tar: ArchiveFiles, entry: TarEntry): Promise<Digest> {
  const hasher = new DigestHasher()
  for await (const chunk of tar.stream(entry)) hasher.update(chunk as Buffer)
  return hasher.digest()
}

/** The digest an entry's data has, trusting a `blobs/sha256/<hex>` location (verified later while sending). */
async function entryDigest(tar: ArchiveFiles, entry: TarEntry): Promise<Digest> {
  const m = /^blobs\/sha256\/([a-f0-9]{64})$/.exec(entry.name)
  return m ? `sha256:${m[1]}` : hashEntry(tar, entry)
}

async function headOf(tar: ArchiveFiles, entry: TarEntry): Promise<Buffer> {
  const head = await tar.read({...entry, size: Math.min(entry.size, 4)})
  return head
}

/**
 * docker-archive: layers are referenced by path, so build what containerd's importer
 * builds: a Docker schema2 manifest whose layers are the layer files as they are
 * (usually uncompressed, media type ...rootfs.diff.tar; gzip ones ...diff.tar.gzip).
 */
async function openDocker(tar: ArchiveFiles, label: string, options: ReadArchiveOptions): Promise<Opening> {
  if (!tar.has('manifest.json')) {
    throw new Error(`${label} is a tar but not an image archive (no oci-layout/index.json and no manifest.json)`)
  }
  let entries: DockerManifestEntry[]
  try {
    entries = JSON.parse((await readDocument(tar, 'manifest.json', label)).toString('utf8')) as DockerManifestEntry[]
    if (!Array.isArray(entries)) throw new Error('not a list')
  } catch (err) {
    throw new Error(`${label}: manifest.json is not a docker-archive manifest (${(err as Error).message})`)
  }
  const candidates = entries.map((e, i) => ({names: (e.RepoTags ?? []).map((t) => qualify(t)).filter((t): t is string => !!t), value: i}))
  const {value: which, name} = pickImage(candidates, label, options.name)
  const entry = entries[which]
  const blobs = new Map<Digest, {entry?: TarEntry; data?: Buffer}>()
  const configEntry = tar.resolve(entry.Config)
  if (!configEntry) throw new Error(`${label} is not a valid docker archive: config "${entry.Config}" is missing`)
  const configData = await tar.read(configEntry)
  const configDigest = sha256Digest(configData)
  blobs.set(configDigest, {data: configData})
  const diffIds = parseConfig(configData, `${label}: ${entry.Config}`).rootfs.diff_ids
  if (diffIds.length !== entry.Layers.length) {
    throw new Error(`${label} is not a valid docker archive: ${entry.Layers.length} layers but the config lists ${diffIds.length} diff_ids`)
  }
  const layers: Descriptor[] = []
  for (const [i, layerPath] of entry.Layers.entries()) {
    const layerEntry = tar.resolve(layerPath)
    if (!layerEntry) throw new Error(`${label} is not a valid docker archive: layer "${layerPath}" is missing`)
    const compression = detectCompression(await headOf(tar, layerEntry))
    // An uncompressed layer's digest is its diffID: no need to read gigabytes to open the
    // archive (the bytes are verified against it while they are sent).
    const digest = compression === 'none' ? diffIds[i] : await entryDigest(tar, layerEntry)
    blobs.set(digest, {entry: layerEntry})
    layers.push({mediaType: compression === 'none' ? MediaType.dockerLayer : MediaType.dockerLayerGzip, digest, size: layerEntry.size})
  }
  // Same field order as containerd's importer writes it.
  const manifest = {
    schemaVersion: 2,
    mediaType: MediaType.dockerManifest,
    config: {mediaType: MediaType.dockerConfig, digest: configDigest, size: configData.length},
    layers: layers.map((l) => ({mediaType: l.mediaType, digest: l.digest, size: l.size})),
  }
  const manifestData = Buffer.from(JSON.stringify(manifest))
  const target: Descriptor = {mediaType: MediaType.dockerManifest, digest: sha256Digest(manifestData), size: manifestData.length}
  blobs.set(target.digest, {data: manifestData})
  const find = (desc: Descriptor): {entry?: TarEntry; data?: Buffer} => {
    const blob = blobs.get(assertDigest(desc.digest, label))
    if (!blob) throw new Error(`${label} does not contain blob ${desc.digest} (${desc.mediaType})`)
    return blob
  }
  return {
    format: 'docker',
    description: `archive ${label}`,
    name,
    names: [...new Set(candidates.flatMap((c) => c.names))],
    target,
    async readBlob(desc) {
      const blob = find(desc)
      if (blob.data) return blob.data
      const data = await tar.read(blob.entry!)
      if (sha256Digest(data) !== desc.digest) throw new Error(`${label} is corrupt: blob ${desc.digest} does not match its digest`)
      return data
    },
    async openBlob(desc) {
      const blob = find(desc)
      return blob.data ? Readable.from([blob.data]) : tar.stream(blob.entry!)
    },
  }
}
