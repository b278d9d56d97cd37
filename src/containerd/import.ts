// Importing one image into a node's containerd over its API, in named steps: plan (what the node
// has), refresh an image it has already, send the missing blobs (blob-transfer.ts) while
// unpacking (unpack.ts), decide what a failure leaves behind, write the records last.
import * as grpc from '@grpc/grpc-js'
import {
  chainIds,
  formatPlatform,
  gcLabelsFor,
  imageBlobs,
  imageRecordName,
  parseReference,
  resolveImage,
  type Descriptor,
  type Digest,
  type ImageSource,
  type Platform,
  type ResolvedImage,
} from '../image/index.js'
import {type BlobEvent, BlobTransfer} from './blob-transfer.js'
import type {ContainerdClient, ContentInfo, ImageRecord} from './client.js'
import {SourceInterruptedError} from './content-writer.js'
import {mapLimit} from '../util/async.js'
import {grpcCode, isAlreadyExists} from './errors.js'
import {distributionSource, distributionSourceLabels, hasRecordLabels, imageRecordLabels, originOf, type Provenance} from './labels.js'
import {decideRecord, type RecordDecision} from './record-owner.js'
import {LEASE_IMAGE_LABEL} from './labels.js'
import {snapshotGcLabel, type UnpackEvent, unpackImage} from './unpack.js'

export {UNCOMPRESSED_LABEL, snapshotGcLabel, unpackImage, type UnpackEvent} from './unpack.js'

export type ImportEvent =
  | {type: 'resolved'; target: Digest; manifest: Digest; platform: string; blobs: number; totalBytes: number; missingBlobs: number; missingBytes: number}
  | {type: 'blob-skipped'; digest: Digest; mediaType: string; size: number}
  | BlobEvent
  | UnpackEvent
  | {type: 'image-record'; name: string; action: 'created' | 'updated' | 'unchanged'}

export interface ImportImageOptions {
  /** Where the image comes from (archive, local containerd, build output). */
  source: ImageSource
  /** Image name on the node; normalised to the fully-qualified form CRI looks up. */
  name: string
  /** The node's platform (default: this machine's). Only that platform's blobs are sent. */
  platform?: Platform
  /** The image resolved already for this platform (resolve once, push to many nodes). */
  resolved?: ResolvedImage
  /** The CRI snapshotter of the node (default overlayfs). */
  snapshotter?: string
  /** Label the image io.cri-containerd.pinned=pinned so kubelet's image GC keeps it. */
  pin?: boolean
  /** Label the record as sideload's: when and from where (labels.ts). */
  provenance?: Provenance
  /**
   * Overwrite (or, holding the same image, adopt) a record of this name that is not sideload's.
   * Without it such a record is refused when it holds other content (RecordNotOursError) and
   * left exactly as it is when it holds this image (record-owner.ts).
   */
  replace?: boolean
  /** Unpack into the snapshotter now instead of on first container start. */
  unpack?: boolean
  onProgress?: (event: ImportEvent) => void
  /** Also record `<repository>@<digest>` as a CRI pull does (RepoDigests; pods that name the image by digest). Default true. */
  digestRecord?: boolean
  /** Lifetime of the lease that protects the transfer (default 1 h). */
  leaseExpiresInMs?: number
  /** Bytes per Content.Write message (default 1 MiB) and messages in flight (default 4). */
  chunkSize?: number
  window?: number
  /** Blobs sent at the same time (default 3); of these, at most one larger than 1 MiB (see SMALL_BLOB). */
  parallel?: number
  /**
   * Cancels the import (Ctrl-C): nothing is recorded, the lease is released and the partial
   * blobs are discarded (as `ctr`/nerdctl leave a node after Ctrl-C). Only involuntary
   * interruptions (connection lost, containerd restarting, source failing) keep them to resume.
   */
  signal?: AbortSignal
}

/** Raised when ImportImageOptions.signal fires. */
export class ImportCancelledError extends Error {
  constructor(where: string) {
    super(`import into ${where} was cancelled`)
    this.name = 'ImportCancelledError'
  }
}

export interface ImportResult {
  /** The node already had this image under this name: nothing was sent or changed. */
  upToDate: boolean
  name: string
  /** The image record's target (the source's index or manifest digest). */
  digest: Digest
  manifest: Digest
  platform: string
  sentBytes: number
  /** Bytes of blobs the node already had (not sent). */
  skippedBytes: number
  blobsSent: number
  blobsSkipped: number
  unpacked: boolean
  /** The node's record of this name holds this image but is not sideload's: it was left as it is (who wrote it, in words). */
  kept?: string
}

/** The ingest ref of a blob: stable, so a re-run after an interruption resumes where the node stopped. */
export function ingestRef(digest: Digest): string {
  return `sideload-${digest}`
}


/** What the node has of the image, and what this import will write. */
interface ImportPlan {
  name: string
  /** `<repository>@<digest>`, recorded too (undefined: not asked for, or the name is a digest already) */
  digestName?: string
  image: ResolvedImage
  blobs: Descriptor[]
  /** the node's content info of the blobs it has */
  existing: Map<Digest, ContentInfo>
  missing: Descriptor[]
  record: ImageRecord | undefined
  /** what this push may do with `record` (record-owner.ts) */
  decision: RecordDecision
  snapshotter: string
  unpack: boolean
  recordLabels: Record<string, string>
  base: Pick<ImportResult, 'name' | 'digest' | 'manifest' | 'platform'>
}

async function planImport(client: ContainerdClient, options: ImportImageOptions): Promise<ImportPlan> {
  const ref = parseReference(imageRecordName(options.name)) // never an image ID as a name (sha256:<hex>)
  const name = ref.normalized
  const image = options.resolved ?? (await resolveImage(options.source, options.platform))
  const blobs = imageBlobs(image)
  const [record, infos] = await Promise.all([client.imageGet(name), mapLimit(blobs, 8, (b) => client.contentInfo(b.digest))])
  const existing = new Map<Digest, ContentInfo>()
  infos.forEach((info, i) => info && existing.set(blobs[i].digest, info))
  const decision = decideRecord(record, image.target.digest, options.replace ?? false) // before anything is written
  return {
    name,
    digestName: options.digestRecord === false || ref.digest ? undefined : `${ref.repository}@${image.target.digest}`,
    image,
    blobs,
    existing,
    missing: blobs.filter((b) => !existing.has(b.digest)),
    record,
    decision,
    snapshotter: options.snapshotter ?? 'overlayfs',
    unpack: options.unpack ?? false,
    recordLabels: imageRecordLabels({digest: image.target.digest, pin: options.pin ?? false, provenance: options.provenance}),
    base: {name, digest: image.target.digest, manifest: image.manifest.digest, platform: formatPlatform(image.platform)},
  }
}

/** The node has this image under this name already, with every blob (and its snapshots, when unpacking is asked for). */
async function alreadyThere(client: ContainerdClient, plan: ImportPlan): Promise<boolean> {
  const {record, image, missing, unpack, existing, snapshotter} = plan
  if (!record || record.target.digest !== image.target.digest || missing.length > 0) return false
  if (!unpack) return true
  const topChain = chainIds(image.diffIds).at(-1)
  if (!topChain) return true
  const config = existing.get(image.config.digest)
  if (!config || config.labels[snapshotGcLabel(snapshotter)] !== topChain) return false
  return (await client.snapshotStat(snapshotter, topChain)) !== undefined
}

/**
 * Parents the node already has must carry our GC labels, or the image would not keep its
 * children; and every blob the distribution-source label of this name, as a pull leaves it.
 */
async function labelExistingBlobs(client: ContainerdClient, plan: ImportPlan): Promise<void> {
  const source = distributionSource(plan.name)
  for (const blob of plan.blobs) {
    const info = plan.existing.get(blob.digest)
    if (!info) continue
    const want = {...gcLabelsFor(plan.image, blob.digest), ...distributionSourceLabels(info.labels, source)}
    const labels: Record<string, string> = {}
    for (const [k, v] of Object.entries(want)) if (info.labels[k] !== v) labels[k] = v
    if (Object.keys(labels).length) plan.existing.set(blob.digest, await client.contentSetLabels(blob.digest, labels))
  }
}

/** An image the node has under a record of ours: only labels (GC references, pin, provenance) and the digest record are brought up to date. */
async function refreshRecords(client: ContainerdClient, plan: ImportPlan, replace: boolean): Promise<void> {
  const {record, recordLabels, digestName, image} = plan
  await labelExistingBlobs(client, plan)
  if (record && !hasRecordLabels(record.labels, recordLabels)) {
    await client.imageUpdate({name: plan.name, target: record.target, labels: recordLabels}, Object.keys(recordLabels).map((k) => `labels.${k}`))
  }
  if (digestName) {
    const digestRecord = await client.imageGet(digestName)
    if (!digestRecord || digestRecord.target.digest !== image.target.digest || !hasRecordLabels(digestRecord.labels, recordLabels)) {
      await putRecord(client, digestName, image.target, recordLabels, digestRecord, replace)
    }
  }
}

/**
 * After a failed transfer: whether its lease stays (so the next run resumes each blob from the
 * node's offset) — only for an involuntary interruption (connection lost, containerd restarting,
 * source failing). A cancel (Ctrl-C) aborts the partial ingests at once; the lease goes either way otherwise.
 */
async function keepLeaseAfter(failure: unknown, client: ContainerdClient, started: ReadonlySet<Digest>, leaseMs: number): Promise<boolean> {
  if (failure instanceof ImportCancelledError) {
    // Ctrl-C: leave the node as it was. The partial ingests go now (they belong to the lease,
    // which is deleted after this, and GC would take them anyway).
    await mapLimit([...started], 8, (digest) => client.contentAbort(ingestRef(digest)).catch(() => undefined))
    return false
  }
  if (failure instanceof SourceInterruptedError || grpcCode(failure) === grpc.status.UNAVAILABLE || grpcCode(failure) === grpc.status.CANCELLED) {
    if (failure instanceof Error) {
      failure.message = `${failure.message.replace(/\.?\s*$/, '.')} Run the import again to resume: ${client.displayName} keeps what arrived for ${Math.round(leaseMs / 60_000)} min.`
    }
    return true
  }
  return false
}

/**
 * Import one image into a node's containerd (namespace of the client, k8s.io for CRI),
 * natively over the containerd API (protocols.md §C): send only the blobs the node lacks,
 * for the node's platform only, up to 3 at once, under a lease, with GC reference labels;
 * unpack (each layer as soon as it and those below it are on the node); then write the
 * image record last, so a failure never leaves a half-imported image behind and needs no
 * rollback. On failure the lease is deleted (GC takes what was sent), except when the
 * transfer was interrupted against our will (connection lost, containerd restarting, source
 * failed): then the lease is left to expire so a re-run resumes each blob from the node's
 * offset. A cancel (signal) releases the lease and aborts the partial blobs at once.
 *
 * The record targets the source's own root (index or manifest), like a registry pull with a
 * platform filter: the digest the node reports equals the source's, and CRI resolves the
 * node's platform through the index; other platforms' manifests stay absent (GC labels that
 * point at missing content are harmless).
 */
export async function importImage(client: ContainerdClient, options: ImportImageOptions): Promise<ImportResult> {
  const emit = options.onProgress ?? ((): void => undefined)
  const plan = await planImport(client, options)
  const {image, blobs, missing, existing, base} = plan
  emit({
    type: 'resolved',
    target: image.target.digest,
    manifest: image.manifest.digest,
    platform: base.platform,
    blobs: blobs.length,
    totalBytes: blobs.reduce((n, b) => n + b.size, 0),
    missingBlobs: missing.length,
    missingBytes: missing.reduce((n, b) => n + b.size, 0),
  })

  const upToDate = {...base, upToDate: true, sentBytes: 0, skippedBytes: blobs.reduce((n, b) => n + b.size, 0), blobsSent: 0, blobsSkipped: blobs.length, unpacked: plan.unpack}
  if (plan.decision === 'keep') {
    // another's record of this very image: nothing of it is touched (labels, pin, blobs, snapshots)
    emit({type: 'image-record', name: plan.name, action: 'unchanged'})
    return {...upToDate, kept: originOf(plan.record!)}
  }
  if (await alreadyThere(client, plan)) {
    await refreshRecords(client, plan, options.replace ?? false)
    for (const b of blobs) emit({type: 'blob-skipped', digest: b.digest, mediaType: b.mediaType, size: b.size})
    emit({type: 'image-record', name: plan.name, action: 'unchanged'})
    return upToDate
  }

  const leaseMs = options.leaseExpiresInMs ?? 60 * 60 * 1000
  const lease = await client.leaseCreate({expiresInMs: leaseMs, labels: {[LEASE_IMAGE_LABEL]: plan.name}})
  let keepLease = false
  try {
    // Hold what the node already has, so GC cannot take it while we work.
    await mapLimit([...existing.keys()], 8, (digest) => client.leaseAddResource(lease, {id: digest, type: 'content'}))
    await labelExistingBlobs(client, plan)
    let skippedBytes = 0
    for (const blob of blobs) {
      if (!existing.has(blob.digest)) continue
      skippedBytes += blob.size
      emit({type: 'blob-skipped', digest: blob.digest, mediaType: blob.mediaType, size: blob.size})
    }

    const transfer = new BlobTransfer(client, missing, {image, source: options.source, distributionSource: distributionSource(plan.name), lease, ingestRef, chunkSize: options.chunkSize, window: options.window, emit})
    const onAbort = (): void => transfer.fail(new ImportCancelledError(client.displayName))
    if (options.signal?.aborted) onAbort()
    options.signal?.addEventListener('abort', onAbort, {once: true})
    // Unpacking starts while later blobs are still on the way: layer i is applied as soon as it
    // (and every layer below it) is on the node.
    const unpacking = plan.unpack
      ? unpackImage(client, image, {snapshotter: plan.snapshotter, lease, emit, whenArrived: transfer.whenArrived}).catch(transfer.fail)
      : Promise.resolve()
    await transfer.run(options.parallel ?? 3)
    await unpacking
    options.signal?.removeEventListener('abort', onAbort)
    if (transfer.failure === undefined && options.signal?.aborted) onAbort()
    if (transfer.failure !== undefined) {
      keepLease = await keepLeaseAfter(transfer.failure, client, transfer.started, leaseMs)
      throw transfer.failure
    }

    // The name@digest record first (as a CRI pull makes it: RepoDigests, `image: x@sha256:…`), the named record last.
    const target: Descriptor = {mediaType: image.target.mediaType, digest: image.target.digest, size: image.target.size}
    const replace = options.replace ?? false
    if (plan.digestName) await putRecord(client, plan.digestName, target, plan.recordLabels, await client.imageGet(plan.digestName), replace)
    const action = await putRecord(client, plan.name, target, plan.recordLabels, plan.record, replace)
    emit({type: 'image-record', name: plan.name, action: action === 'kept' ? 'unchanged' : action})
    // Count only what went over the wire.
    return {...base, upToDate: false, sentBytes: transfer.sentBytes, skippedBytes, blobsSent: missing.length, blobsSkipped: blobs.length - missing.length, unpacked: plan.unpack,
      ...(action === 'kept' ? {kept: 'written meanwhile by another, with this image'} : {})}
  } finally {
    if (!keepLease) await client.leaseDelete(lease).catch(() => undefined)
  }
}

/**
 * Point an image record at `target`: Create when there is none, Update one that is ours (or
 * `replace`). A record that is not ours is left as it is when it holds `target` ('kept'), else
 * refused (RecordNotOursError) — also when another writer created it since the plan looked.
 */
async function putRecord(client: ContainerdClient, name: string, target: Descriptor, labels: Record<string, string>, existing: ImageRecord | undefined, replace: boolean): Promise<'created' | 'updated' | 'kept'> {
  const plain: Descriptor = {mediaType: target.mediaType, digest: target.digest, size: target.size}
  const paths = ['target', ...Object.keys(labels).map((k) => `labels.${k}`)]
  let record = existing
  if (!record) {
    try {
      await client.imageCreate({name, target: plain, labels})
      return 'created'
    } catch (err) {
      if (!isAlreadyExists(err)) throw err
      record = await client.imageGet(name)
    }
  }
  if (record && decideRecord(record, target.digest, replace) === 'keep') return 'kept'
  await client.imageUpdate({name, target: plain, labels}, paths)
  return 'updated'
}
