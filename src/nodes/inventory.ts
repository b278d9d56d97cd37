// What images a node holds, as people think of them: one name with the records that go with it
// (the `repo@sha256:…` record a push or pull writes beside it, the CRI's `sha256:<id>`), the blobs
// it keeps on the node, and what of it is sideload's. Both node kinds (native, `sudo ctr`) list
// their records and blobs; the grouping and the accounting are done here, once.
import {isOurs, isPinned, originOf, pushedAt, pushedFrom} from '../containerd/labels.js'
import {isIndexType, isManifestType, parseReference, type Digest} from '../image/index.js'
import {mapLimit} from '../util/async.js'

/** An image record as the node's containerd holds it. */
export interface NodeImageRecord {
  name: string
  target: {digest: Digest; mediaType: string}
  labels: Record<string, string>
}

/** How to look into a node's content store. */
export interface ContentReader {
  has(digest: Digest): Promise<boolean>
  /** a small blob (index, manifest) whole */
  read(digest: Digest): Promise<Buffer>
}

export interface NodeBlob {
  digest: Digest
  size: number
}

/** An image on a node. */
export interface NodeImage {
  name: string
  /** the other records of this image (`repo@sha256:…`, the CRI's `sha256:<id>`); they go with it */
  aliases: string[]
  /** the records' target: the index or manifest digest */
  digest: Digest
  mediaType: string
  /** the image's blobs that are on the node (index, manifests, configs, layers) */
  blobs: NodeBlob[]
  /** what those blobs take in the content store (unpacked layers come on top) */
  sizeBytes: number
  /** config digests: the image IDs the kubelet may report for it */
  ids: Digest[]
  pinned: boolean
  /** sideload wrote the image's record and it still holds what sideload wrote (labels.ts isOurs) */
  ours: boolean
  /** who wrote the record, in words, for an image that is not sideload's */
  origin?: string
  /** set only on images sideload pushed (ours) */
  pushedAt?: Date
  source?: string
}

const IMAGE_ID = /^sha256:[a-f0-9]{64}$/

function kindOf(name: string): 'id' | 'digest' | 'tag' {
  if (IMAGE_ID.test(name)) return 'id'
  return name.includes('@') ? 'digest' : 'tag'
}

/** The repository of a record name (docker.io/library/app for app:1 and app@sha256:…); the name itself if it does not parse. */
export function repositoryOf(name: string): string {
  try {
    return parseReference(name).repository
  } catch {
    return name
  }
}

interface Walked {
  blobs: NodeBlob[]
  ids: Digest[]
}

interface DocDescriptor {
  mediaType?: string
  digest?: string
  size?: number
}

/** The blobs of one image that are on the node, from its target down (only what is present: a push sends one platform). */
async function walk(target: {digest: Digest; mediaType: string}, reader: ContentReader, docs: Map<Digest, Promise<Buffer>>): Promise<Walked> {
  const blobs = new Map<Digest, number>()
  const ids: Digest[] = []
  const read = (digest: Digest): Promise<Buffer> => {
    let doc = docs.get(digest)
    if (!doc) {
      doc = reader.read(digest)
      docs.set(digest, doc)
    }
    return doc
  }
  const visit = async (desc: {digest: Digest; mediaType: string; size?: number}, role: 'doc' | 'config' | 'layer'): Promise<void> => {
    if (blobs.has(desc.digest) || !(await reader.has(desc.digest))) return
    if (role !== 'doc') {
      blobs.set(desc.digest, desc.size ?? 0)
      if (role === 'config') ids.push(desc.digest)
      return
    }
    const body = await read(desc.digest)
    blobs.set(desc.digest, body.length)
    let doc: {mediaType?: string; manifests?: DocDescriptor[]; config?: DocDescriptor; layers?: DocDescriptor[]}
    try {
      doc = JSON.parse(body.toString('utf8'))
    } catch {
      return
    }
    const mediaType = doc.mediaType ?? desc.mediaType
    const child = (d: DocDescriptor | undefined): {digest: Digest; mediaType: string; size: number} | undefined =>
      d?.digest ? {digest: d.digest as Digest, mediaType: d.mediaType ?? '', size: Number(d.size ?? 0)} : undefined
    if (isIndexType(mediaType) || (!isManifestType(mediaType) && Array.isArray(doc.manifests))) {
      for (const m of doc.manifests ?? []) {
        const c = child(m)
        if (c) await visit(c, 'doc')
      }
    } else {
      const config = child(doc.config)
      if (config) await visit(config, 'config')
      for (const l of doc.layers ?? []) {
        const c = child(l)
        if (c) await visit(c, 'layer')
      }
    }
  }
  await visit(target, 'doc')
  return {blobs: [...blobs].map(([digest, size]) => ({digest, size})), ids}
}

/**
 * The node's images: a tagged record is an image; a `repo@digest` record goes with the tagged
 * record of the same repository, target and owner (sideload's or not: removing one of ours never
 * takes another's record with it, and another's never makes one of ours look foreign), a
 * `sha256:<id>` record with any record of the same target; what has no such partner is an image
 * of its own. Whose an image is, is read from its own record only.
 */
export async function inventory(records: NodeImageRecord[], reader: ContentReader): Promise<NodeImage[]> {
  const groups: {records: NodeImageRecord[]}[] = []
  const order = {tag: 0, digest: 1, id: 2}
  const sorted = [...records].sort((a, b) => order[kindOf(a.name)] - order[kindOf(b.name)] || a.name.localeCompare(b.name))
  for (const r of sorted) {
    const kind = kindOf(r.name)
    const partner = kind === 'tag' ? undefined : groups.find((g) => g.records[0].target.digest === r.target.digest &&
      (kind === 'id' || (kindOf(g.records[0].name) === 'tag' && repositoryOf(g.records[0].name) === repositoryOf(r.name) && isOurs(g.records[0]) === isOurs(r))))
    if (partner) partner.records.push(r)
    else groups.push({records: [r]})
  }
  const docs = new Map<Digest, Promise<Buffer>>()
  return mapLimit(groups, 4, async (g) => {
    const [main, ...aliases] = g.records
    const {blobs, ids} = await walk(main.target, reader, docs)
    const ours = isOurs(main)
    const image: NodeImage = {
      name: main.name,
      aliases: aliases.map((a) => a.name),
      digest: main.target.digest,
      mediaType: main.target.mediaType,
      blobs,
      sizeBytes: blobs.reduce((n, b) => n + b.size, 0),
      ids,
      pinned: g.records.some((r) => isPinned(r.labels)),
      ours,
    }
    if (!ours) image.origin = originOf(main)
    else {
      image.pushedAt = pushedAt(main.labels)
      const source = pushedFrom(main.labels)
      if (source) image.source = source
    }
    return image
  })
}

/**
 * The records to delete to remove `images` from a node whose images are `all`: each image's name,
 * and its aliases that no image staying behind shares (a `repo@digest` record another tag of that
 * repository still points at stays, and so does an ID another image still has).
 */
export function recordsToRemove(images: NodeImage[], all: NodeImage[]): string[] {
  const gone = new Set(images.map((i) => i.name))
  const staying = all.filter((i) => !gone.has(i.name))
  const out: string[] = []
  for (const image of images) {
    out.push(image.name)
    for (const alias of image.aliases) {
      const shared = staying.some((s) => s.digest === image.digest && (kindOf(alias) === 'id' || (kindOf(s.name) === 'tag' && repositoryOf(s.name) === repositoryOf(alias))))
      if (!shared) out.push(alias)
    }
  }
  return out
}

/** Bytes of content that removing `images` frees: their blobs that no image staying behind has. */
export function freedBytes(images: NodeImage[], all: NodeImage[]): number {
  const gone = new Set(images.map((i) => i.name))
  const kept = new Set(all.filter((i) => !gone.has(i.name)).flatMap((i) => i.blobs.map((b) => b.digest)))
  const freed = new Map<Digest, number>()
  for (const b of images.flatMap((i) => i.blobs)) if (!kept.has(b.digest)) freed.set(b.digest, b.size)
  return [...freed.values()].reduce((n, s) => n + s, 0)
}

/** Whether an image ID a pod's status reports (`repo@sha256:…`, `sha256:…`, `docker-pullable://…`) is this image. */
export function usesImage(imageId: string, image: NodeImage): boolean {
  const digest = /sha256:[a-f0-9]{64}$/.exec(imageId)?.[0]
  return digest !== undefined && (digest === image.digest || image.ids.includes(digest as Digest))
}
