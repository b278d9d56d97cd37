import type {Writable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import * as tar from 'tar-stream'
import {digestHex, VerifyingStream, type Digest} from './digest.js'
import {MediaType} from './media.js'
import {Annotation, imageBlobs, type ImageSource, type ResolvedImage} from './model.js'
import {parseReference} from './reference.js'

export interface WriteOciArchiveOptions {
  /** Image name recorded in index.json (io.containerd.image.name + ref.name annotations). */
  name?: string
  /** Blobs to leave out because the receiver already has them. */
  omitBlobs?: Set<Digest>
}

/**
 * Write an OCI image layout tar holding one image for one platform (the resolved image's
 * manifest, config and layers, plus the indexes above it so the digest stays the source's),
 * leaving out `omitBlobs`. `ctr images import` accepts such partial OCI tars as long as the
 * omitted blobs are in its content store (protocols.md §D). Do not import it with
 * `--all-platforms`: other platforms' manifests are not in the tar.
 * Blobs are streamed from the source and verified on the way; nothing is held in memory.
 */
export async function writeOciArchive(out: Writable, source: ImageSource, image: ResolvedImage, options: WriteOciArchiveOptions = {}): Promise<{blobsWritten: number; bytesWritten: number}> {
  const pack = tar.pack()
  const piping = pipeline(pack, out)
  piping.catch(() => undefined) // awaited below; this only keeps an early failure from going unhandled
  // A failing output (a closed SSH channel) must end the blob copies too, not leave them waiting on backpressure.
  const outputFailed = piping.then(() => {
    throw new Error('the output closed before the archive was complete')
  })
  outputFailed.catch(() => undefined)
  let blobsWritten = 0
  let bytesWritten = 0
  const mtime = new Date(0)
  const addBuffer = async (name: string, data: Buffer): Promise<void> => {
    const written = new Promise<void>((resolve, reject) => pack.entry({name, size: data.length, mtime, mode: 0o644}, data, (err) => (err ? reject(err) : resolve())))
    written.catch(() => undefined)
    await Promise.race([written, outputFailed])
  }
  try {
    await addBuffer('oci-layout', Buffer.from(JSON.stringify({imageLayoutVersion: '1.0.0'})))
    const annotations: Record<string, string> = {}
    if (options.name) {
      const ref = parseReference(options.name)
      annotations[Annotation.containerdImageName] = ref.normalized
      if (ref.tag) annotations[Annotation.refName] = ref.tag
    }
    const index = {
      schemaVersion: 2,
      mediaType: MediaType.ociIndex,
      manifests: [{mediaType: image.target.mediaType, digest: image.target.digest, size: image.target.size, ...(options.name ? {annotations} : {})}],
    }
    await addBuffer('index.json', Buffer.from(JSON.stringify(index)))
    for (const desc of imageBlobs(image).reverse()) {
      if (options.omitBlobs?.has(desc.digest)) continue
      // open the blob first: an entry left without its data would fail the pack with an unhandled error
      const blob = await source.openBlob(desc)
      const entry = pack.entry({name: `blobs/sha256/${digestHex(desc.digest)}`, size: desc.size, mtime, mode: 0o644})
      const copy = pipeline(blob, new VerifyingStream(desc, source.description), entry)
      copy.catch(() => undefined)
      await Promise.race([copy, outputFailed])
      blobsWritten++
      bytesWritten += desc.size
    }
    pack.finalize()
    await piping
    return {blobsWritten, bytesWritten}
  } catch (err) {
    pack.destroy(err as Error)
    await piping.catch(() => undefined)
    throw err
  }
}
