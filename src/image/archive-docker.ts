import {Readable} from 'node:stream'
import {assertDigest, corruptSource, DigestHasher, sha256Digest, type Digest} from './digest.js'
import {type ArchiveFiles, readDocument} from './archive-files.js'
import {type ArchiveEntry, type Listing, nameCollector, type Opening, platformOf, printable} from './archive-listing.js'
import {detectCompression, MediaType} from './media.js'
import {MAX_DOCUMENT_SIZE, parseConfig, type Descriptor} from './model.js'
import {type TarEntry} from './tar-index.js'

/** One `[i]` of a docker-archive's manifest.json. */
interface DockerManifestEntry {
  Config: string
  RepoTags?: unknown
  Layers: string[]
}

/** An image config as the archive holds it, and its digest (the image ID). */
type DockerConfig = {data: Buffer; digest: Digest}

/** A blob of an opened image: a file of the archive, or bytes made here (config, manifest). */
type DockerBlob = {entry?: TarEntry; data?: Buffer}

/**
 * docker-archive: layers are referenced by path, so build what containerd's importer
 * builds: a Docker schema2 manifest whose layers are the layer files as they are
 * (usually uncompressed, media type ...rootfs.diff.tar; gzip ones ...diff.tar.gzip).
 */
export async function listDocker(tar: ArchiveFiles, label: string): Promise<Listing> {
  if (!tar.has('manifest.json')) {
    throw new Error(`${label} is a tar but not an image archive (no oci-layout/index.json and no manifest.json)`)
  }
  const manifestEntries = await readDockerManifest(tar, label)
  const configOf = configReader(tar, manifestEntries, label)
  const entries = await dockerEntries(manifestEntries, configOf)
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
      return openDocker(tar, entry, await configOf(which.number - 1), which, name, label)
    },
  }
}

async function readDockerManifest(tar: ArchiveFiles, label: string): Promise<DockerManifestEntry[]> {
  try {
    const manifestEntries = JSON.parse((await readDocument(tar, 'manifest.json', label)).toString('utf8')) as DockerManifestEntry[]
    if (!Array.isArray(manifestEntries)) throw new Error('not a list')
    for (const e of manifestEntries) {
      if (!e || typeof e.Config !== 'string' || !Array.isArray(e.Layers)) throw new Error('an entry without Config or Layers')
    }
    return manifestEntries
  } catch (err) {
    throw new Error(`${label}: manifest.json is not a docker-archive manifest (${(err as Error).message})`)
  }
}

/** The config of manifest.json's `[i]`, read once however often it is asked for. */
function configReader(tar: ArchiveFiles, manifestEntries: DockerManifestEntry[], label: string): (i: number) => Promise<DockerConfig> {
  const configs = new Map<number, Promise<DockerConfig>>()
  return (i) => {
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
}

/** The entries of manifest.json, named by their RepoTags, each with its config's digest (the image ID). */
async function dockerEntries(manifestEntries: DockerManifestEntry[], configOf: (i: number) => Promise<DockerConfig>): Promise<ArchiveEntry[]> {
  const entries: ArchiveEntry[] = []
  for (const [i, e] of manifestEntries.entries()) {
    const found = nameCollector()
    const tags = Array.isArray(e.RepoTags) ? e.RepoTags : []
    for (const t of tags) found.add(typeof t === 'string' ? t : JSON.stringify(t))
    const naming = `manifest.json [${i}]: RepoTags ${e.RepoTags === undefined ? 'missing' : e.RepoTags === null ? 'null' : printable(JSON.stringify(e.RepoTags), 300)}`
    const digest = await configOf(i).then((c) => c.digest, () => undefined)
    entries.push({number: i + 1, names: found.names, invalidNames: found.invalidNames, naming, digest})
  }
  return entries
}

/** One docker-archive image as an image source: its config, its layer files, and the manifest made for them. */
async function openDocker(tar: ArchiveFiles, entry: DockerManifestEntry, config: DockerConfig, which: ArchiveEntry, name: string | undefined, label: string): Promise<Opening> {
  const blobs = new Map<Digest, DockerBlob>()
  blobs.set(config.digest, {data: config.data})
  const diffIds = parseConfig(config.data, `${label}: ${entry.Config}`).rootfs.diff_ids
  if (diffIds.length !== entry.Layers.length) {
    throw new Error(`${label} is not a valid docker archive: ${entry.Layers.length} layers but the config lists ${diffIds.length} diff_ids`)
  }
  const layers = await dockerLayers(tar, entry.Layers, diffIds, blobs, label)
  const manifestData = dockerManifest(config, layers)
  const target: Descriptor = {mediaType: MediaType.dockerManifest, digest: sha256Digest(manifestData), size: manifestData.length}
  blobs.set(target.digest, {data: manifestData})
  const find = (desc: Descriptor): DockerBlob => {
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
      if (sha256Digest(data) !== desc.digest) throw corruptSource(`${label} is corrupt: blob ${desc.digest} does not match its digest`)
      return data
    },
    async openBlob(desc) {
      const blob = find(desc)
      return blob.data ? Readable.from([blob.data]) : tar.stream(blob.entry!)
    },
  }
}

/** A descriptor for each layer file (recorded in `blobs` under its digest), in order. */
async function dockerLayers(tar: ArchiveFiles, layerPaths: string[], diffIds: Digest[], blobs: Map<Digest, DockerBlob>, label: string): Promise<Descriptor[]> {
  const layers: Descriptor[] = []
  for (const [i, layerPath] of layerPaths.entries()) {
    const layerEntry = tar.resolve(layerPath)
    if (!layerEntry) throw new Error(`${label} is not a valid docker archive: layer "${layerPath}" is missing`)
    const compression = detectCompression(await headOf(tar, layerEntry))
    // An uncompressed layer's digest is its diffID: no need to read gigabytes to open the
    // archive (the bytes are verified against it while they are sent).
    const digest = compression === 'none' ? diffIds[i] : await entryDigest(tar, layerEntry)
    blobs.set(digest, {entry: layerEntry})
    layers.push({mediaType: compression === 'none' ? MediaType.dockerLayer : MediaType.dockerLayerGzip, digest, size: layerEntry.size})
  }
  return layers
}

/** The Docker schema2 manifest for a config and its layers, in the same field order as containerd's importer writes it. */
function dockerManifest(config: DockerConfig, layers: Descriptor[]): Buffer {
  const manifest = {
    schemaVersion: 2,
    mediaType: MediaType.dockerManifest,
    config: {mediaType: MediaType.dockerConfig, digest: config.digest, size: config.data.length},
    layers: layers.map((l) => ({mediaType: l.mediaType, digest: l.digest, size: l.size})),
  }
  return Buffer.from(JSON.stringify(manifest))
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
