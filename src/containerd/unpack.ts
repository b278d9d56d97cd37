// Unpacking an image's layers into a snapshotter through Snapshots + Diff (protocols.md §C.4),
// and the labels that tie the snapshots to the image for containerd's GC.
import {randomBytes} from 'node:crypto'
import {chainIds, type Digest, type ResolvedImage} from '../image/index.js'
import type {ContainerdClient} from './client.js'
import {isAlreadyExists, isNotFound} from './errors.js'

export const UNCOMPRESSED_LABEL = 'containerd.io/uncompressed'
/** What unpacking reports, layer by layer (part of an import's events). */
export type UnpackEvent = {type: 'unpack-layer'; digest: Digest; chainId: Digest; index: number; count: number; skipped: boolean}

export const snapshotGcLabel = (snapshotter: string): string => `containerd.io/gc.ref.snapshot.${snapshotter}`

/**
 * Unpack an image's layers into `snapshotter` through Snapshots + Diff (protocols.md §C.4),
 * then label the config so GC keeps the snapshots (gc.ref.snapshot.<snapshotter>).
 */
export async function unpackImage(
  client: ContainerdClient,
  image: ResolvedImage,
  options: {snapshotter: string; lease?: string; emit?: (event: UnpackEvent) => void; whenArrived?: (digest: Digest) => Promise<void>},
): Promise<void> {
  const {snapshotter, lease} = options
  const whenArrived = options.whenArrived ?? ((): Promise<void> => Promise.resolve())
  const chain = chainIds(image.diffIds)
  for (let i = 0; i < image.layers.length; i++) {
    const layer = image.layers[i]
    const chainId = chain[i]
    const event = {type: 'unpack-layer' as const, digest: layer.digest, chainId, index: i, count: image.layers.length}
    // A snapshot found here may belong to nothing (a pull that failed after unpacking it): held in
    // our lease first, so a GC before the next layer is built on it cannot take it.
    if (lease) await client.leaseAddResource(lease, {id: chainId, type: `snapshots/${snapshotter}`})
    if (await client.snapshotStat(snapshotter, chainId)) {
      options.emit?.({...event, skipped: true})
      continue
    }
    await whenArrived(layer.digest)
    const key = `extract-${process.hrtime.bigint()}-${randomBytes(4).toString('hex')} ${chainId}`
    let mounts
    try {
      mounts = await client.snapshotPrepare(snapshotter, key, i === 0 ? '' : chain[i - 1], {lease})
    } catch (err) {
      if (isAlreadyExists(err) && (await client.snapshotStat(snapshotter, chainId))) {
        options.emit?.({...event, skipped: true})
        continue
      }
      if (isNotFound(err)) throw new Error(`unpacking ${image.manifest.digest} on ${client.displayName}: snapshotter "${snapshotter}" or parent snapshot not found (${(err as Error).message}). Hint: pass the node's CRI snapshotter.`)
      throw err
    }
    try {
      const applied = await client.diffApply(layer, mounts, {lease})
      if (applied.digest !== image.diffIds[i]) {
        throw new Error(`unpacking layer ${layer.digest} on ${client.displayName}: its content has diffID ${applied.digest}, but the image config says ${image.diffIds[i]}`)
      }
      try {
        await client.snapshotCommit(snapshotter, chainId, key, {lease})
      } catch (err) {
        if (!isAlreadyExists(err)) throw err
        await client.snapshotRemove(snapshotter, key, {lease})
      }
    } catch (err) {
      await client.snapshotRemove(snapshotter, key, {lease}).catch(() => undefined)
      throw err
    }
    await client.contentSetLabels(layer.digest, {[UNCOMPRESSED_LABEL]: image.diffIds[i]})
    options.emit?.({...event, skipped: false})
  }
  await whenArrived(image.config.digest)
  if (chain.length) await client.contentSetLabels(image.config.digest, {[snapshotGcLabel(snapshotter)]: chain[chain.length - 1]})
}
