import {corruptSource, digestHex, sha256Digest, type Digest} from './digest.js'
import {type ArchiveFiles, readDocument} from './archive-files.js'
import {type ArchiveEntry, type Listing, nameCollector, platformOf, quoted} from './archive-listing.js'
import {Annotation, documentKind, MAX_DOCUMENT_SIZE, parseConfig, parseIndex, parseManifest, type Descriptor, type ImageIndex} from './model.js'
import {type TarEntry} from './tar-index.js'

const MAX_DESCRIBED_PLATFORMS = 8

/** An OCI image layout (a tar or a directory): index.json's manifests, blobs by digest. */
export async function listOci(tar: ArchiveFiles, label: string): Promise<Listing> {
  await checkLayoutVersion(tar, label)
  const index = parseIndex(await readDocument(tar, 'index.json', label), `${label}: index.json`)
  const entries = index.manifests.map((m, i) => ociEntry(m, i))
  const blobs = layoutBlobs(tar, label)
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
        readBlob: blobs.readBlob,
        async openBlob(desc) {
          return tar.stream(blobs.entryFor(desc))
        },
      }
    },
    async describe(entry) {
      return describeTarget(blobs, index.manifests[entry.number - 1], label)
    },
  }
}

/** oci-layout, when there is one, must say imageLayoutVersion 1.0.0. */
async function checkLayoutVersion(tar: ArchiveFiles, label: string): Promise<void> {
  const layout = tar.resolve('oci-layout')
  if (!layout) return
  const text = (await tar.read(layout)).toString('utf8')
  let version: unknown
  try {
    version = (JSON.parse(text) as {imageLayoutVersion?: unknown}).imageLayoutVersion
  } catch {
    version = undefined
  }
  if (version !== '1.0.0') throw new Error(`${label}: unsupported oci-layout (imageLayoutVersion ${String(version)}, expected 1.0.0)`)
}

/** The entry for index.json's `manifests[i]`, named by its annotations. */
function ociEntry(m: Descriptor, i: number): ArchiveEntry {
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
}

/** The layout's blobs (blobs/sha256/<hex>), checked against their descriptors. */
interface LayoutBlobs {
  /** The blob's file; throws when it is missing or has another size. */
  entryFor(desc: Descriptor): TarEntry
  /** A small blob, read whole and checked against its digest. */
  readBlob(desc: Descriptor): Promise<Buffer>
}

function layoutBlobs(tar: ArchiveFiles, label: string): LayoutBlobs {
  const entryFor = (desc: Descriptor): TarEntry => {
    const entry = tar.resolve(blobPath(desc.digest))
    if (!entry) throw new Error(`${label} does not contain blob ${desc.digest} (${desc.mediaType})`)
    if (entry.size !== desc.size) throw corruptSource(`${label} is corrupt: blob ${desc.digest} has ${entry.size} bytes, expected ${desc.size}`)
    return entry
  }
  const readBlob = async (desc: Descriptor): Promise<Buffer> => {
    const entry = entryFor(desc)
    if (entry.size > MAX_DOCUMENT_SIZE) throw new Error(`${label}: blob ${desc.digest} is too large to read whole`)
    const data = await tar.read(entry)
    if (sha256Digest(data) !== desc.digest) throw corruptSource(`${label} is corrupt: blob ${desc.digest} does not match its digest`)
    return data
  }
  return {entryFor, readBlob}
}

function blobPath(digest: Digest): string {
  return `blobs/sha256/${digestHex(digest)}`
}

/** What index.json points at: a manifest, or an index and a line per platform. */
async function describeTarget(blobs: LayoutBlobs, desc: Descriptor, label: string): Promise<string> {
  const data = await blobs.readBlob(desc)
  let json: Record<string, unknown> = {}
  try {
    json = JSON.parse(data.toString('utf8')) as Record<string, unknown>
  } catch {
    // documentKind goes by the media type
  }
  if (documentKind(desc.mediaType, json) !== 'index') return describeManifest(blobs, desc, true, label)
  const inner = platformManifests(parseIndex(data, `${label}: ${desc.digest}`))
  const parts: string[] = []
  for (const m of inner.slice(0, MAX_DESCRIBED_PLATFORMS)) {
    const what = await describeManifest(blobs, m, !m.platform, label).catch((err: Error) => `manifest ${m.digest} (cannot be read: ${err.message})`)
    parts.push(m.platform ? `${platformOf(m.platform)} (${what})` : `(${what})`)
  }
  if (inner.length > MAX_DESCRIBED_PLATFORMS) parts.push(`… ${inner.length - MAX_DESCRIBED_PLATFORMS} more`)
  return `index ${desc.digest}, ${inner.length} platform${inner.length === 1 ? '' : 's'}:${parts.map((p) => `\n${p}`).join('')}`
}

/** `manifest sha256:…, config sha256:…` (+ the config's platform when the manifest has none). */
async function describeManifest(blobs: LayoutBlobs, desc: Descriptor, withPlatform: boolean, label: string): Promise<string> {
  const manifest = parseManifest(await blobs.readBlob(desc), `${label}: ${desc.digest}`)
  let platform = ''
  if (withPlatform) {
    try {
      platform = `, ${platformOf(parseConfig(await blobs.readBlob(manifest.config), `${label}: config ${manifest.config.digest}`))}`
    } catch {
      platform = ', platform unknown'
    }
  }
  return `manifest ${desc.digest}, config ${manifest.config.digest}${platform}, ${manifest.layers.length} layer${manifest.layers.length === 1 ? '' : 's'}`
}

/** Entries of an image index that are images for a platform (not BuildKit's attestation manifests). */
function platformManifests(index: ImageIndex): Descriptor[] {
  return index.manifests.filter((m) => m.annotations?.['vnd.docker.reference.type'] !== 'attestation-manifest')
}
