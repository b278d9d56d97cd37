import {chainIds, formatPlatform, imageBlobs, normalizeImageName, resolveImage, type Descriptor, type Digest, type Platform, type ResolvedImage} from '../image/index.js'
import type {ContainerdClient} from './client.js'
import {snapshotGcLabel} from './unpack.js'
import {CRI_PINNED_LABEL} from './labels.js'
import {sourceFromClient} from './source.js'

/** Which blobs of an image a node has and which it lacks (Content.Info per blob). */
export async function findMissingBlobs(client: ContainerdClient, image: ResolvedImage): Promise<{missing: Descriptor[]; present: Descriptor[]}> {
  const blobs = imageBlobs(image)
  const infos = await Promise.all(blobs.map((b) => client.contentInfo(b.digest)))
  return {missing: blobs.filter((_, i) => !infos[i]), present: blobs.filter((_, i) => !!infos[i])}
}

export interface NodeImageStatus {
  name: string
  /** An image record with that name exists. */
  present: boolean
  /** Its target (index or manifest digest). */
  digest?: Digest
  /** The node's platform's manifest, config and layers are all in the content store. */
  complete: boolean
  /** Unpacked into `snapshotter`. */
  unpacked: boolean
  pinned: boolean
  platform?: string
  /** Why it is not complete (first problem found). */
  problem?: string
}

/**
 * What a node has under `name`: like `ctr images check`, for the node's platform. Never throws
 * for a missing or broken image (that is the answer); throws when the node cannot be asked.
 */
export async function inspectNodeImage(client: ContainerdClient, options: {name: string; platform?: Platform; snapshotter?: string}): Promise<NodeImageStatus> {
  const name = normalizeImageName(options.name)
  const record = await client.imageGet(name)
  if (!record) return {name, present: false, complete: false, unpacked: false, pinned: false}
  const base = {name, present: true, digest: record.target.digest, pinned: record.labels[CRI_PINNED_LABEL] === 'pinned'}
  let image: ResolvedImage
  try {
    image = await resolveImage(await sourceFromClient(client, name), options.platform)
  } catch (err) {
    return {...base, complete: false, unpacked: false, problem: (err as Error).message}
  }
  const {missing} = await findMissingBlobs(client, image)
  const platform = formatPlatform(image.platform)
  if (missing.length) return {...base, platform, complete: false, unpacked: false, problem: `${missing.length} blob(s) missing, e.g. ${missing[0].digest}`}
  const chain = chainIds(image.diffIds)
  const top = chain[chain.length - 1]
  const snapshotter = options.snapshotter ?? 'overlayfs'
  let unpacked = true
  if (top) {
    const config = await client.contentInfo(image.config.digest)
    unpacked = config?.labels[snapshotGcLabel(snapshotter)] === top && (await client.snapshotStat(snapshotter, top)) !== undefined
  }
  return {...base, platform, complete: true, unpacked}
}
