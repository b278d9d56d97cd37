import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {createGunzip} from 'node:zlib'
import {assertDigest, DigestHasher, digestHex, sha256Digest, type Digest} from './digest.js'
import {detectCompression, MediaType} from './media.js'
import {Annotation, documentKind, MAX_DOCUMENT_SIZE, parseConfig, parseIndex, parseManifest, type Descriptor, type ImageIndex, type ImageSource} from './model.js'
import {formatPlatform, normalizePlatform} from './platform.js'
import {imageRecordName} from './reference.js'
import {indexTar, normalizeTarPath, readRange, type TarEntry} from './tar-index.js'

/** An image found inside an OCI-layout or docker-archive tar. */
export interface ArchiveImage extends ImageSource {
  readonly format: 'oci' | 'docker'
  /** The archive file being read (a temporary spool when the input was a stream). */
  readonly file: string
  /** Every image name found in the archive (fully qualified). */
  readonly names: string[]
}

/**
 * One image an archive lists: index.json's `manifests[i]` (OCI layout) or manifest.json's `[i]`
 * (docker-archive), before it is opened.
 */
export interface ArchiveEntry {
  /** 1-based position in index.json / manifest.json, as people count. */
  readonly number: number
  /** Its valid names, fully qualified (what the kubelet looks up); empty for an unnamed image. */
  readonly names: string[]
  /** Names the archive gives it that are not valid image references (never used), each with why. */
  readonly invalidNames: {name: string; why: string}[]
  /** What the archive names it with, for messages: `RepoTags null`, `no io.containerd.image.name … annotation`. */
  readonly naming: string
  /** OCI: the index or manifest index.json points at; docker-archive: its config (the image ID). Undefined when unreadable. */
  readonly digest: Digest | undefined
}

/** An archive's table of contents: every image it holds, opened one by one on demand. */
export interface ArchiveContents {
  readonly format: 'oci' | 'docker'
  /** The archive file being read (a temporary spool when the input was a stream). */
  readonly file: string
  /** How messages name the archive: its path, or `stdin`. */
  readonly label: string
  readonly entries: ArchiveEntry[]
  /** Every valid image name in the archive (fully qualified). */
  readonly names: string[]
  /** The entry with this name (any form: `app:1`, `docker.io/library/app:1`); throws for an invalid reference. */
  find(name: string): ArchiveEntry | undefined
  /** Entries that are different images (the same image listed twice counts once). */
  distinct(): ArchiveEntry[]
  /**
   * One entry as an image source, under `name` (default: its first name). It reads the archive
   * this listing holds open: closing it does nothing, close the listing.
   */
  open(entry: ArchiveEntry, name?: string): Promise<ArchiveImage>
  /**
   * What the entry is, read from the archive, for messages: `config sha256:… (the image ID; linux/amd64, 2 layers)`,
   * `manifest sha256:…, config sha256:…, linux/amd64, 2 layers`, or `index sha256:…, 2 platforms:` and
   * a line per platform `linux/amd64 (manifest sha256:…, config sha256:…, 2 layers)`. Never throws.
   */
  describe(entry: ArchiveEntry): Promise<string>
  close(): Promise<void>
}

export interface ReadArchiveOptions {
  /** Which image to take when the archive holds several (any form: `app:1`, `docker.io/library/app:1`). */
  name?: string
  /**
   * When `name` is not in the archive but the archive holds exactly one image and that image has
   * no valid name (`docker save <id>`, an OCI layout without name annotations), take it under
   * `name`. Off by default: only an explicit request names an image (`sideload push --archive A NAME`).
   */
  nameUnnamed?: boolean
  /** Where to spool a non-seekable input (default: os.tmpdir()). */
  tmpDir?: string
}

/**
 * Open an image archive (OCI layout tar or docker-archive tar, `docker save`/`nerdctl save`;
 * docker ≥25 writes both and the OCI layout wins; or an OCI layout directory) without
 * reading it into memory, and take one image from it (`options.name`, or its only image).
 */
export async function readArchive(input: string | Readable, options: ReadArchiveOptions = {}): Promise<ArchiveImage> {
  const contents = await listArchive(input, options)
  try {
    const {entry, name} = selectImage(contents, options.name, options.nameUnnamed ?? false)
    const image = await contents.open(entry, name)
    return {...image, close: () => contents.close()}
  } catch (err) {
    await contents.close()
    throw err
  }
}

/**
 * Open an image archive and list the images it holds, without reading it into memory.
 *
 * Access plan: two passes over a *file*. Pass 1 reads only tar headers (seeking over data)
 * to index entries; blobs are then read by offset, as often as needed (small documents
 * whole, layers as streams). A real file path is used in place, never copied. A stream
 * input (stdin, a pipe) can be read only once, so it is spooled to a temporary file first
 * (deleted by close()); a stdin redirected from a regular file is read in place. A gzip-
 * compressed tar is decompressed into a temporary file.
 */
export async function listArchive(input: string | Readable, options: Pick<ReadArchiveOptions, 'tmpDir'> = {}): Promise<ArchiveContents> {
  const cleanups: (() => Promise<void>)[] = []
  const cleanup = async (): Promise<void> => {
    for (const fn of cleanups.reverse()) await fn().catch(() => undefined)
    cleanups.length = 0
  }
  try {
    if (typeof input === 'string' && fs.statSync(input, {throwIfNoEntry: false})?.isDirectory()) {
      const dir = new LayoutDirectory(fs.realpathSync(input))
      if (!dir.has('index.json')) throw new Error(`${input} is a directory but not an OCI image layout (no index.json)`)
      return contents(await listOci(dir, input), input, input, cleanup)
    }
    const {fd, file, label} = await openInput(input, options, cleanups)
    const tar = await indexTar(fd, label)
    const files: ArchiveFiles = {has: (n) => tar.entries.has(n), resolve: (n) => tar.resolve(n), read: (e) => tar.read(e), stream: (e) => tar.stream(e)}
    const listing = files.has('oci-layout') || files.has('index.json') ? await listOci(files, label) : await listDocker(files, label)
    return contents(listing, file, label, cleanup)
  } catch (err) {
    await cleanup()
    throw err
  }
}

/** What a format reader lists: entries, and how to open and describe one. */
interface Listing {
  format: 'oci' | 'docker'
  entries: ArchiveEntry[]
  open(entry: ArchiveEntry, name: string | undefined): Promise<Opening>
  describe(entry: ArchiveEntry): Promise<string>
}

type Opening = Omit<ArchiveImage, 'file' | 'close'>

function contents(listing: Listing, file: string, label: string, close: () => Promise<void>): ArchiveContents {
  const names = [...new Set(listing.entries.flatMap((e) => e.names))]
  return {
    format: listing.format,
    file,
    label,
    entries: listing.entries,
    names,
    find(name) {
      const wanted = imageRecordName(name)
      return listing.entries.find((e) => e.names.includes(wanted))
    },
    distinct() {
      // the same image listed twice (nerdctl save a:1 a:2) is one image; a named entry stands for it
      const byImage = new Map<string, ArchiveEntry>()
      for (const e of listing.entries) {
        const key = e.digest ?? `#${e.number}`
        const kept = byImage.get(key)
        if (!kept || (kept.names.length === 0 && e.names.length > 0)) byImage.set(key, e)
      }
      return [...byImage.values()].sort((a, b) => a.number - b.number)
    },
    async open(entry, name) {
      const image = await listing.open(entry, name === undefined ? entry.names[0] : imageRecordName(name))
      return {...image, names, file, close: async () => undefined}
    },
    async describe(entry) {
      try {
        return await listing.describe(entry)
      } catch (err) {
        return `${entry.digest ?? 'digest unknown'} (cannot be read: ${(err as Error).message})`
      }
    },
    close,
  }
}

/**
 * The entry to take for `wanted` (or, with none, the archive's only image) and the name it
 * goes under. With `nameUnnamed`, a name the archive does not have names its single unnamed image.
 */
export function selectImage(contents: ArchiveContents, wanted: string | undefined, nameUnnamed: boolean): {entry: ArchiveEntry; name: string | undefined} {
  const {label, entries} = contents
  if (entries.length === 0) throw new Error(`${label} contains no image`)
  const distinct = contents.distinct()
  const listed = contents.names.length ? contents.names.join(', ') : '(unnamed images only)'
  if (wanted !== undefined) {
    const normalized = imageRecordName(wanted) // an invalid reference throws, with why
    const hit = contents.find(normalized)
    if (hit) return {entry: hit, name: normalized}
    const unnamed = distinct.filter((e) => e.names.length === 0)
    if (nameUnnamed && distinct.length === 1 && unnamed.length === 1) return {entry: unnamed[0], name: normalized}
    const more = unnamed.length === 0 ? '' : distinct.length === 1
      ? '. Hint: its only image has no name; pass exactly one NAME to give it that name'
      : `. Hint: ${unnamed.length} of its ${distinct.length} images have no name, and which one "${wanted}" should name is not guessed; save that image alone (docker save -o ONE.tar IMAGE-ID) or under a name (docker tag IMAGE-ID NAME && docker save NAME)`
    throw new Error(`image "${wanted}" is not in ${label}; it contains: ${listed}${more}`)
  }
  if (distinct.length > 1) throw new Error(`${label} contains ${distinct.length} images (${listed}); say which one to take`)
  const entry = distinct[0]
  return {entry, name: entry.names[0] ?? contents.names[0]}
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

/** Text from an archive (names, platforms) as it may be shown: control and bidi characters escaped, long text cut. */
export function printable(text: string, max = 200): string {
  const cut = text.length > max ? `${text.slice(0, max)}…` : text
  return cut.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/** A name from an archive, quoted for messages: `"docker.io/x/y:1$(touch /tmp/p)"`. */
export function quoted(text: string): string {
  return JSON.stringify(printable(text)).replace(/\\\\u/g, '\\u')
}

/** Sort names found in an archive into valid (fully qualified) and invalid ones (with why). */
function nameCollector(): {names: string[]; invalidNames: {name: string; why: string}[]; add(name: string): void} {
  const names: string[] = []
  const invalidNames: {name: string; why: string}[] = []
  return {
    names,
    invalidNames,
    add(name) {
      try {
        const q = imageRecordName(name)
        if (!names.includes(q)) names.push(q)
      } catch (err) {
        const why = (err as Error).message.replace(/^invalid image (?:reference|name) "(?:[^"\\]|\\.)*": /, '')
        invalidNames.push({name, why: printable(why)})
      }
    },
  }
}

function blobPath(digest: Digest): string {
  return `blobs/sha256/${digestHex(digest)}`
}

function platformOf(p: {os?: string; architecture?: string; variant?: string} | undefined): string {
  if (!p?.architecture) return 'platform unknown'
  return printable(formatPlatform(normalizePlatform({os: p.os || 'linux', architecture: p.architecture, variant: p.variant})), 60)
}

/** Entries of an image index that are images for a platform (not BuildKit's attestation manifests). */
function platformManifests(index: ImageIndex): Descriptor[] {
  return index.manifests.filter((m) => m.annotations?.['vnd.docker.reference.type'] !== 'attestation-manifest')
}

const MAX_DESCRIBED_PLATFORMS = 8

async function listOci(tar: ArchiveFiles, label: string): Promise<Listing> {
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
  const entries = index.manifests.map((m, i): ArchiveEntry => {
    const found = nameCollector()
    const full = m.annotations?.[Annotation.containerdImageName]
    const ref = m.annotations?.[Annotation.refName]
    if (typeof full === 'string' && full) found.add(full)
    // a ref.name is often a tag only ("latest", "1.0"): a name only when it has a repository
    const refIsName = typeof ref === 'string' && /[/:]/.test(ref)
    if (refIsName) found.add(ref)
    const naming = !full && !ref
      ? 'no io.containerd.image.name or org.opencontainers.image.ref.name annotation'
      : [
          typeof full === 'string' && full ? `io.containerd.image.name ${quoted(full)}` : 'no io.containerd.image.name annotation',
          typeof ref === 'string' && ref ? `org.opencontainers.image.ref.name ${quoted(ref)}${refIsName ? '' : ' (a tag, not a name)'}` : undefined,
        ].filter(Boolean).join(', ')
    return {number: i + 1, names: found.names, invalidNames: found.invalidNames, naming: `index.json manifests[${i}]: ${naming}`, digest: m.digest}
  })
  const entryFor = (desc: Descriptor): TarEntry => {
    const entry = tar.resolve(blobPath(desc.digest))
    if (!entry) throw new Error(`${label} does not contain blob ${desc.digest} (${desc.mediaType})`)
    if (entry.size !== desc.size) throw new Error(`${label} is corrupt: blob ${desc.digest} has ${entry.size} bytes, expected ${desc.size}`)
    return entry
  }
  const readBlob = async (desc: Descriptor): Promise<Buffer> => {
    const entry = entryFor(desc)
    if (entry.size > MAX_DOCUMENT_SIZE) throw new Error(`${label}: blob ${desc.digest} is too large to read whole`)
    const data = await tar.read(entry)
    if (sha256Digest(data) !== desc.digest) throw new Error(`${label} is corrupt: blob ${desc.digest} does not match its digest`)
    return data
  }
  /** `manifest sha256:…, config sha256:…` (+ the config's platform when the manifest has none). */
  const describeManifest = async (desc: Descriptor, withPlatform: boolean): Promise<string> => {
    const manifest = parseManifest(await readBlob(desc), `${label}: ${desc.digest}`)
    let platform = ''
    if (withPlatform) {
      try {
        platform = `, ${platformOf(parseConfig(await readBlob(manifest.config), `${label}: config ${manifest.config.digest}`))}`
      } catch {
        platform = ', platform unknown'
      }
    }
    return `manifest ${desc.digest}, config ${manifest.config.digest}${platform}, ${manifest.layers.length} layer${manifest.layers.length === 1 ? '' : 's'}`
  }
  return {
    format: 'oci',
    entries,
    async open(entry, name) {
      const m = index.manifests[entry.number - 1]
      const target: Descriptor = {mediaType: m.mediaType, digest: m.digest, size: m.size}
      return {
        format: 'oci',
        description: `archive ${label}`,
        name,
        names: entry.names,
        target,
        readBlob,
        async openBlob(desc) {
          return tar.stream(entryFor(desc))
        },
      }
    },
    async describe(entry) {
      const desc = index.manifests[entry.number - 1]
      const data = await readBlob(desc)
      let json: Record<string, unknown> = {}
      try {
        json = JSON.parse(data.toString('utf8')) as Record<string, unknown>
      } catch {
        // documentKind goes by the media type
      }
      if (documentKind(desc.mediaType, json) !== 'index') return describeManifest(desc, true)
      const inner = platformManifests(parseIndex(data, `${label}: ${desc.digest}`))
      const parts: string[] = []
      for (const m of inner.slice(0, MAX_DESCRIBED_PLATFORMS)) {
        const what = await describeManifest(m, !m.platform).catch((err: Error) => `manifest ${m.digest} (cannot be read: ${err.message})`)
        parts.push(m.platform ? `${platformOf(m.platform)} (${what})` : `(${what})`)
      }
      if (inner.length > MAX_DESCRIBED_PLATFORMS) parts.push(`… ${inner.length - MAX_DESCRIBED_PLATFORMS} more`)
      return `index ${desc.digest}, ${inner.length} platform${inner.length === 1 ? '' : 's'}:${parts.map((p) => `\n${p}`).join('')}`
    },
  }
}

interface DockerManifestEntry {
  Config: string
  RepoTags?: unknown
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
async function listDocker(tar: ArchiveFiles, label: string): Promise<Listing> {
  if (!tar.has('manifest.json')) {
    throw new Error(`${label} is a tar but not an image archive (no oci-layout/index.json and no manifest.json)`)
  }
  let manifestEntries: DockerManifestEntry[]
  try {
    manifestEntries = JSON.parse((await readDocument(tar, 'manifest.json', label)).toString('utf8')) as DockerManifestEntry[]
    if (!Array.isArray(manifestEntries)) throw new Error('not a list')
    for (const e of manifestEntries) {
      if (!e || typeof e.Config !== 'string' || !Array.isArray(e.Layers)) throw new Error('an entry without Config or Layers')
    }
  } catch (err) {
    throw new Error(`${label}: manifest.json is not a docker-archive manifest (${(err as Error).message})`)
  }
  const configs = new Map<number, Promise<{data: Buffer; digest: Digest}>>()
  const configOf = (i: number): Promise<{data: Buffer; digest: Digest}> => {
    let c = configs.get(i)
    if (!c) {
      const path = manifestEntries[i].Config
      c = (async () => {
        const configEntry = tar.resolve(path)
        if (!configEntry) throw new Error(`${label} is not a valid docker archive: config "${path}" is missing`)
        if (configEntry.size > MAX_DOCUMENT_SIZE) throw new Error(`${label}: config "${path}" is too large (${configEntry.size} bytes) to be an image config`)
        const data = await tar.read(configEntry)
        return {data, digest: sha256Digest(data)}
      })()
      configs.set(i, c)
    }
    return c
  }
  const entries: ArchiveEntry[] = []
  for (const [i, e] of manifestEntries.entries()) {
    const found = nameCollector()
    const tags = Array.isArray(e.RepoTags) ? e.RepoTags : []
    for (const t of tags) found.add(typeof t === 'string' ? t : JSON.stringify(t))
    const naming = `manifest.json [${i}]: RepoTags ${e.RepoTags === undefined ? 'missing' : e.RepoTags === null ? 'null' : printable(JSON.stringify(e.RepoTags), 300)}`
    const digest = await configOf(i).then((c) => c.digest, () => undefined)
    entries.push({number: i + 1, names: found.names, invalidNames: found.invalidNames, naming, digest})
  }
  return {
    format: 'docker',
    entries,
    async describe(entry) {
      const e = manifestEntries[entry.number - 1]
      const {data, digest} = await configOf(entry.number - 1)
      const config = parseConfig(data, `${label}: ${e.Config}`)
      return `config ${digest} (the image ID; ${platformOf(config)}, ${e.Layers.length} layer${e.Layers.length === 1 ? '' : 's'})`
    },
    async open(which, name) {
      const entry = manifestEntries[which.number - 1]
      const blobs = new Map<Digest, {entry?: TarEntry; data?: Buffer}>()
      const {data: configData, digest: configDigest} = await configOf(which.number - 1)
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
        names: which.names,
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
    },
  }
}
