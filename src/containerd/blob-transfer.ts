// Sending the blobs a node lacks, under one lease: a few at once so per-blob round trips overlap,
// large ones one at a time and in order; each blob's arrival is announced so unpacking can start
// on it while later blobs are still on the way. The first failure stops every other sender.
import type {Descriptor, Digest, ImageSource, ResolvedImage} from '../image/index.js'
import {gcLabelsFor} from '../image/index.js'
import type {ContainerdClient} from './client.js'
import {type DistributionSource, distributionSourceLabels} from './labels.js'

/** Blobs up to this size (manifests, configs, tiny layers) may travel alongside a large one. */
const SMALL_BLOB = 1024 * 1024

export type BlobEvent =
  | {type: 'blob-start'; digest: Digest; mediaType: string; size: number; resumeOffset: number}
  | {type: 'blob-bytes'; digest: Digest; bytes: number; sent: number; size: number}
  | {type: 'blob-done'; digest: Digest; size: number; sentBytes: number}

export interface BlobTransferOptions {
  image: ResolvedImage
  source: ImageSource
  /** the image's distribution source (labels.ts): every blob sent carries it, as a pull writes it */
  distributionSource?: DistributionSource
  lease: string
  /** the ingest ref of a blob (stable, so a re-run resumes) */
  ingestRef: (digest: Digest) => string
  chunkSize?: number
  window?: number
  emit: (event: BlobEvent) => void
}

interface Arrival {
  promise: Promise<void>
  resolve: () => void
  reject: (e: unknown) => void
}

export class BlobTransfer {
  /** bytes that went over the wire, including those of a blob that failed half-way */
  sentBytes = 0
  /** blobs whose write began (their partial ingests are ours) */
  readonly started = new Set<Digest>()
  /** the first failure, which stopped the transfer */
  failure: unknown
  private readonly abort = new AbortController()
  private readonly arrivals = new Map<Digest, Arrival>()
  private readonly queue: Descriptor[]
  private largeInFlight = false

  constructor(private readonly client: ContainerdClient, missing: readonly Descriptor[], private readonly options: BlobTransferOptions) {
    this.queue = [...missing]
    for (const blob of missing) {
      let resolve!: () => void
      let reject!: (e: unknown) => void
      const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)))
      promise.catch(() => undefined)
      this.arrivals.set(blob.digest, {promise, resolve, reject})
    }
  }

  /** Resolves when `digest` is on the node (at once for a blob it had); rejects when the transfer failed first. */
  whenArrived = (digest: Digest): Promise<void> => this.arrivals.get(digest)?.promise ?? Promise.resolve()

  /** Stops the transfer: the senders stop, every waiter gets `err`. The first call wins. */
  fail = (err: unknown): void => {
    if (this.failure !== undefined) return
    this.failure = err
    this.abort.abort()
    for (const a of this.arrivals.values()) a.reject(err)
  }

  /** Sends every blob with `parallel` senders; resolves when all are done or the transfer failed (see `failure`). */
  async run(parallel: number): Promise<void> {
    const senders = Math.min(Math.max(1, parallel), this.queue.length)
    await Promise.all(Array.from({length: senders}, () => this.sender()))
  }

  /**
   * A few blobs at once over the one connection, so per-blob round trips (STAT, COMMIT) overlap;
   * but large blobs one at a time, in order: several big streams multiplexed on the one SSH
   * channel cost ~1.5x the CPU (smaller frames and packets) for no more throughput, and layers
   * arriving in order let each unpack step start sooner (measured on the bed: 170 MB first push
   * 2.8 s -> 2.2 s, peak RSS 160 -> 137 MB).
   */
  private nextBlob(): Descriptor | undefined {
    // The sender holding the large blob comes back here, so none is left behind.
    const i = this.queue.findIndex((b) => b.size <= SMALL_BLOB || !this.largeInFlight)
    return i < 0 ? undefined : this.queue.splice(i, 1)[0]
  }

  private async sender(): Promise<void> {
    for (let blob = this.nextBlob(); this.failure === undefined && blob; blob = this.nextBlob()) {
      const large = blob.size > SMALL_BLOB
      if (large) this.largeInFlight = true
      try {
        await this.send(blob)
      } catch (err) {
        this.fail(err)
      } finally {
        if (large) this.largeInFlight = false
      }
    }
  }

  private async send(blob: Descriptor): Promise<void> {
    const {client} = this
    const {image, source, lease, emit} = this.options
    let sent = 0
    this.started.add(blob.digest)
    try {
      const res = await client.writeContent({
        ref: this.options.ingestRef(blob.digest),
        desc: blob,
        lease,
        labels: {...gcLabelsFor(image, blob.digest), ...distributionSourceLabels(undefined, this.options.distributionSource)},
        open: async () => (await source.openBlob(blob)) as NodeJS.ReadableStream,
        chunkSize: this.options.chunkSize,
        window: this.options.window,
        signal: this.abort.signal,
        sourceDescription: source.description,
        onStart: (resumeOffset) => emit({type: 'blob-start', digest: blob.digest, mediaType: blob.mediaType, size: blob.size, resumeOffset}),
        onBytes: (bytes) => {
          sent += bytes
          emit({type: 'blob-bytes', digest: blob.digest, bytes, sent, size: blob.size})
        },
      })
      this.sentBytes += res.sentBytes
      if (res.status === 'exists') {
        // Someone else committed it meanwhile: make sure it carries our GC and source labels.
        await client.leaseAddResource(lease, {id: blob.digest, type: 'content'})
        const have = (await client.contentInfo(blob.digest))?.labels
        const labels = {...gcLabelsFor(image, blob.digest), ...distributionSourceLabels(have, this.options.distributionSource)}
        if (Object.keys(labels).length) await client.contentSetLabels(blob.digest, labels)
      }
      emit({type: 'blob-done', digest: blob.digest, size: blob.size, sentBytes: res.sentBytes})
      this.arrivals.get(blob.digest)?.resolve()
    } catch (err) {
      this.sentBytes += sent
      throw err
    }
  }
}
