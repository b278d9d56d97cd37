import {assertDigest, sha256Digest, type Digest} from './digest.js'
import {isIndexType, isLayerType, isManifestType, MediaType} from './media.js'
import {formatPlatform, hostPlatform, normalizePlatform, platformRank, type Platform} from './platform.js'

/** An OCI content descriptor: what a blob is, its digest and size. */
export interface Descriptor {
  mediaType: string
  digest: Digest
  size: number
  annotations?: Record<string, string>
  platform?: Platform
}

export interface ImageIndex {
  schemaVersion: number
  mediaType?: string
  manifests: Descriptor[]
  annotations?: Record<string, string>
}

export interface ImageManifest {
  schemaVersion: number
  mediaType?: string
  config: Descriptor
  layers: Descriptor[]
  annotations?: Record<string, string>
}

/** The parts of an image config that sideload reads. */
export interface ImageConfig {
  os: string
  architecture: string
  variant?: string
  rootfs: {type: string; diff_ids: Digest[]}
}

/** Annotations that name an image inside an OCI layout's index.json. */
export const Annotation = {
  containerdImageName: 'io.containerd.image.name',
  refName: 'org.opencontainers.image.ref.name',
} as const

function parseJson(data: Buffer, what: string): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(data.toString('utf8'))
  } catch (err) {
    throw new Error(`${what} is not valid JSON: ${(err as Error).message}`)
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new Error(`${what} is not a JSON object`)
  return value as Record<string, unknown>
}

export function parseDescriptor(value: unknown, what: string): Descriptor {
  if (!value || typeof value !== 'object') throw new Error(`${what}: descriptor missing`)
  const v = value as Record<string, unknown>
  const digest = assertDigest(v.digest, `${what}: digest`)
  if (typeof v.size !== 'number' || !Number.isSafeInteger(v.size) || v.size < 0) throw new Error(`${what}: invalid size for ${digest}`)
  if (typeof v.mediaType !== 'string') throw new Error(`${what}: missing mediaType for ${digest}`)
  const d: Descriptor = {mediaType: v.mediaType, digest, size: v.size}
  if (v.annotations && typeof v.annotations === 'object') d.annotations = {...(v.annotations as Record<string, string>)}
  if (v.platform && typeof v.platform === 'object') {
    const p = v.platform as Record<string, unknown>
    if (typeof p.architecture === 'string' && typeof p.os === 'string') {
      d.platform = {os: p.os, architecture: p.architecture}
      if (typeof p.variant === 'string' && p.variant) d.platform.variant = p.variant
      if (typeof p['os.version'] === 'string') d.platform['os.version'] = p['os.version']
    }
  }
  return d
}

/** What kind of document a blob is, from its descriptor's media type or, failing that, its shape. */
export function documentKind(mediaType: string, json: Record<string, unknown>): 'index' | 'manifest' | 'other' {
  if (isIndexType(mediaType)) return 'index'
  if (isManifestType(mediaType)) return 'manifest'
  if (Array.isArray(json.manifests)) return 'index'
  if (json.config && Array.isArray(json.layers)) return 'manifest'
  return 'other'
}

export function parseIndex(data: Buffer, what: string): ImageIndex {
  const json = parseJson(data, what)
  if (!Array.isArray(json.manifests)) throw new Error(`${what} is not an image index (no "manifests" list)`)
  return {
    schemaVersion: Number(json.schemaVersion ?? 2),
    mediaType: typeof json.mediaType === 'string' ? json.mediaType : undefined,
    manifests: json.manifests.map((m, i) => parseDescriptor(m, `${what} manifests[${i}]`)),
    annotations: json.annotations as Record<string, string> | undefined,
  }
}

export function parseManifest(data: Buffer, what: string): ImageManifest {
  const json = parseJson(data, what)
  if (!Array.isArray(json.layers)) throw new Error(`${what} is not an image manifest (no "layers" list)`)
  return {
    schemaVersion: Number(json.schemaVersion ?? 2),
    mediaType: typeof json.mediaType === 'string' ? json.mediaType : undefined,
    config: parseDescriptor(json.config, `${what} config`),
    layers: json.layers.map((l, i) => parseDescriptor(l, `${what} layers[${i}]`)),
    annotations: json.annotations as Record<string, string> | undefined,
  }
}

export function parseConfig(data: Buffer, what: string): ImageConfig {
  const json = parseJson(data, what)
  const rootfs = json.rootfs as {type?: unknown; diff_ids?: unknown} | undefined
  if (!rootfs || !Array.isArray(rootfs.diff_ids)) throw new Error(`${what} is not an image config (no rootfs.diff_ids)`)
  const cfg: ImageConfig = {
    os: typeof json.os === 'string' ? json.os : 'linux',
    architecture: typeof json.architecture === 'string' ? json.architecture : '',
    rootfs: {type: String(rootfs.type ?? 'layers'), diff_ids: rootfs.diff_ids.map((d, i) => assertDigest(d, `${what} rootfs.diff_ids[${i}]`))},
  }
  if (typeof json.variant === 'string' && json.variant) cfg.variant = json.variant
  return cfg
}

/** ChainIDs of a layer stack: chain[0] = diffID[0]; chain[i] = sha256(chain[i-1] + " " + diffID[i]). */
export function chainIds(diffIds: Digest[]): Digest[] {
  const out: Digest[] = []
  for (const d of diffIds) out.push(out.length === 0 ? d : sha256Digest(`${out[out.length - 1]} ${d}`))
  return out
}

/**
 * Where an image's blobs come from: an archive, a local containerd, a build output.
 * `target` is the image's root (an index or a manifest).
 */
export interface ImageSource {
  /** For messages: "archive /tmp/app.tar", "containerd unix:///run/containerd/containerd.sock image X". */
  readonly description: string
  /** The fully-qualified name the source knows the image by, if any. */
  readonly name: string | undefined
  readonly target: Descriptor
  /** A small blob (index, manifest, config) read whole; its digest is verified. */
  readBlob(desc: Descriptor): Promise<Buffer>
  /** A blob as a stream from byte 0 (callers verify the digest while streaming). */
  openBlob(desc: Descriptor): Promise<NodeJS.ReadableStream>
  /** Release files, sockets, temporary spools. */
  close(): Promise<void>
}

/** Maximum size of an index/manifest/config blob read into memory. */
export const MAX_DOCUMENT_SIZE = 16 * 1024 * 1024

/** An index on the way from the image's target to the chosen manifest. */
export interface IndexStep {
  descriptor: Descriptor
  index: ImageIndex
}

/** One image for one platform: everything a node needs, resolved from a source. */
export interface ResolvedImage {
  /** The image's root as the source has it (an index or the manifest itself). */
  target: Descriptor
  /** Indexes from target down to the manifest (empty when target is a manifest). */
  indexes: IndexStep[]
  manifest: Descriptor
  manifestDoc: ImageManifest
  config: Descriptor
  configDoc: ImageConfig
  layers: Descriptor[]
  diffIds: Digest[]
  platform: Platform
}

/** Every blob of a resolved image, leaves first: layers, config, manifest, then indexes inner to outer. */
export function imageBlobs(image: ResolvedImage): Descriptor[] {
  const seen = new Set<string>()
  const out: Descriptor[] = []
  const add = (d: Descriptor): void => {
    if (!seen.has(d.digest)) {
      seen.add(d.digest)
      out.push(d)
    }
  }
  image.layers.forEach(add)
  add(image.config)
  add(image.manifest)
  for (let i = image.indexes.length - 1; i >= 0; i--) add(image.indexes[i].descriptor)
  return out
}

/**
 * Containerd's GC reference labels for a blob of this image (protocols.md §C.2): an index
 * points at its manifests (m.<i>), a manifest at its config and layers (config, l.<i>).
 */
export function gcLabelsFor(image: ResolvedImage, digest: Digest): Record<string, string> {
  const labels: Record<string, string> = {}
  if (digest === image.manifest.digest) {
    labels['containerd.io/gc.ref.content.config'] = image.config.digest
    image.layers.forEach((l, i) => (labels[`containerd.io/gc.ref.content.l.${i}`] = l.digest))
  }
  for (const step of image.indexes) {
    if (step.descriptor.digest === digest) {
      step.index.manifests.forEach((m, i) => (labels[`containerd.io/gc.ref.content.m.${i}`] = m.digest))
    }
  }
  return labels
}

/**
 * Pick, from an index, the manifest for `want` (best variant first). Entries without a
 * platform (attestations carry unknown/unknown) never match unless they are the only entry.
 */
export function chooseManifest(index: ImageIndex, want: Platform, what: string): Descriptor {
  const candidates = index.manifests.filter((m) => isIndexType(m.mediaType) || isManifestType(m.mediaType) || !m.mediaType)
  if (candidates.length === 1 && !candidates[0].platform) return candidates[0]
  let best: Descriptor | undefined
  let bestRank = Infinity
  for (const m of candidates) {
    if (!m.platform) continue
    const rank = platformRank(want, m.platform)
    if (rank >= 0 && rank < bestRank) {
      best = m
      bestRank = rank
    }
  }
  if (!best) {
    const have = candidates.map((m) => (m.platform ? formatPlatform(normalizePlatform(m.platform)) : 'unknown')).join(', ')
    throw new Error(`${what} has no image for platform ${formatPlatform(normalizePlatform(want))} (it has: ${have || 'nothing'}). Hint: build for that platform or pass --platform.`)
  }
  return best
}

/**
 * Walk a source's target to the one manifest a node with `platform` runs (default: this
 * machine's platform) and read the manifest and config.
 */
export async function resolveImage(source: ImageSource, platform?: Platform): Promise<ResolvedImage> {
  const want = normalizePlatform(platform ?? hostPlatform())
  const indexes: IndexStep[] = []
  let current = source.target
  for (let depth = 0; ; depth++) {
    if (depth > 4) throw new Error(`${source.description}: image indexes nested too deeply`)
    const data = await source.readBlob(current)
    const what = `${source.description}: ${current.digest}`
    const kind = documentKind(current.mediaType, parseJson(data, what))
    if (kind === 'index') {
      const index = parseIndex(data, what)
      indexes.push({descriptor: current, index})
      current = chooseManifest(index, want, source.description)
      continue
    }
    if (kind !== 'manifest') throw new Error(`${what} is neither an image index nor a manifest (media type ${current.mediaType})`)
    const manifestDoc = parseManifest(data, what)
    const configData = await source.readBlob(manifestDoc.config)
    const configDoc = parseConfig(configData, `${source.description}: config ${manifestDoc.config.digest}`)
    if (configDoc.rootfs.diff_ids.length !== manifestDoc.layers.length) {
      throw new Error(`${what}: manifest has ${manifestDoc.layers.length} layers but its config lists ${configDoc.rootfs.diff_ids.length} diff_ids`)
    }
    for (const layer of manifestDoc.layers) {
      if (!isLayerType(layer.mediaType)) throw new Error(`${what}: unsupported layer media type ${layer.mediaType}`)
    }
    const imagePlatform: Platform = {os: configDoc.os, architecture: configDoc.architecture || want.architecture}
    if (configDoc.variant) imagePlatform.variant = configDoc.variant
    if (indexes.length === 0 && configDoc.architecture && platform && platformRank(want, imagePlatform) < 0) {
      throw new Error(`${source.description} is built for ${formatPlatform(normalizePlatform(imagePlatform))}, not ${formatPlatform(want)}. Hint: build for that platform or pass --platform.`)
    }
    return {
      target: source.target,
      indexes,
      manifest: {mediaType: current.mediaType || manifestDoc.mediaType || MediaType.ociManifest, digest: current.digest, size: current.size},
      manifestDoc,
      config: manifestDoc.config,
      configDoc,
      layers: manifestDoc.layers,
      diffIds: configDoc.rootfs.diff_ids,
      platform: normalizePlatform(imagePlatform),
    }
  }
}
