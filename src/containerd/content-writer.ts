import type {Duplex} from 'node:stream'
import * as grpc from '@grpc/grpc-js'
import {CORRUPT_SOURCE_HINT, type Descriptor} from '../image/index.js'
import {DirectWriteFailed, DirectWriteSession} from './direct-write.js'
import {ContainerdError, describeError, grpcCode} from './errors.js'
import type {ContentClient} from './services.js'
import type {WriteContentRequest} from '../grpc/generated/containerd/services/content/v1/WriteContentRequest.js'
import type {WriteContentResponse__Output} from '../grpc/generated/containerd/services/content/v1/WriteContentResponse.js'

/** What a blob writer needs of a containerd client (ContainerdClient is one): the content service, call metadata, aborting an ingest. */
export interface ContentIngester {
  readonly displayName: string
  contentService(): ContentClient
  metadata(options?: {lease?: string}): grpc.Metadata
  contentAbort(ref: string): Promise<void>
  /** A new stream to the containerd socket, when the client can open one (the direct path for large blobs). */
  openStream?(): Promise<Duplex> | undefined
}

export interface WriteContentOptions {
  /** Ingest ref; keep it stable per digest so an interrupted write resumes on the next run. */
  ref: string
  desc: Descriptor
  /** Opens the blob from byte 0 (the writer skips the part the node already has). */
  open: () => Promise<NodeJS.ReadableStream>
  /** Labels applied at COMMIT (GC references). */
  labels?: Record<string, string>
  lease?: string
  /** Bytes per WRITE message (default 1 MiB). */
  chunkSize?: number
  /** WRITE messages sent before waiting for their replies (default 4). */
  window?: number
  /** Called with the number of bytes just acknowledged by the node. */
  onBytes?: (bytes: number) => void
  /** Called once the node has told us how much it already had. */
  onStart?: (resumeOffset: number) => void
  /** Where the data comes from, for "corrupt" errors. */
  sourceDescription?: string
  /** Stops the write (the partial ingest stays on the node). */
  signal?: AbortSignal
  /** How long to keep retrying while another writer holds the ref (default 60 s). */
  lockedTimeoutMs?: number
}

export interface WriteContentResult {
  /** 'exists' when the node already had the blob (AlreadyExists at STAT or COMMIT). */
  status: 'written' | 'exists'
  /** Offset the node already had for this ref (resume). */
  resumedFrom: number
  /** Bytes actually sent over the wire. */
  sentBytes: number
}

/** Raised when the blob's source failed mid-stream (the partial ingest is kept for resuming). */
export class SourceInterruptedError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'SourceInterruptedError'
  }
}

/** The source's bytes do not match the descriptor (the partial ingest is discarded). */
export class CorruptSourceError extends Error {
  readonly hint = CORRUPT_SOURCE_HINT
  constructor(message: string) {
    super(message)
    this.name = 'CorruptSourceError'
  }
}

type WriteRequest = WriteContentRequest & {action: 'STAT' | 'WRITE' | 'COMMIT'}
type WriteResponse = WriteContentResponse__Output

const WRITE_METHOD = '/containerd.services.content.v1.Content/Write'

/**
 * Blobs from this size go over a stream of their own with our own HTTP/2 framing (direct-write.ts):
 * the write alone (64 MiB blob over SSH to a bed node) took ~0.7x the CPU of grpc-js's path, a
 * whole 170 MB push ~0.9x. Smaller ones are not worth a stream's set-up.
 */
const DIRECT_MIN = 1024 * 1024

/** What writeFrom needs of a Content.Write call: the grpc-js one (WriteSession) or the direct one. */
interface Session {
  send(req: WriteRequest | Buffer, written?: () => void): Promise<{reply: Promise<WriteResponse>}>
  request(req: WriteRequest): Promise<WriteResponse>
  finish(): Promise<void>
  cancel(): void
}

/** A Content.Write call on a stream of its own (undefined when the client cannot open one). */
async function directSession(client: ContentIngester, lease: string | undefined): Promise<Session | undefined> {
  const stream = await client.openStream?.()?.catch(() => undefined)
  if (!stream) return undefined
  const method = (client.contentService().constructor as grpc.ServiceClientConstructor).service.Write
  const headers: Record<string, string> = {}
  for (const [key, value] of Object.entries(client.metadata({lease}).getMap())) headers[key] = String(value)
  return new DirectWriteSession<WriteRequest, WriteResponse>(stream, {
    path: WRITE_METHOD,
    headers,
    serialize: (req) => method.requestSerialize(req),
    deserialize: (bytes) => method.responseDeserialize(bytes),
    lost: (reason) => describeError(Object.assign(new Error(reason), {code: grpc.status.UNAVAILABLE, details: reason, metadata: new grpc.Metadata()}), 'content.Write', client.displayName),
  })
}

/** Room before a WRITE message's data for its other fields: action, offset, and the data's tag and length. */
export const HEADROOM = 32

/**
 * A WRITE message (action 1, offset, data) whose data already lies in `buf` from HEADROOM on:
 * the fields are written just before it, so the message goes out without protobufjs copying the
 * data into a new buffer (~5 % of a push's CPU); `buf` is reused once grpc-js has framed it.
 */
export function encodeWrite(buf: Buffer, offset: number, length: number): Buffer {
  const fields = [0x08, 1, 0x28, ...varint(offset), 0x32, ...varint(length)]
  const start = HEADROOM - fields.length
  for (let i = 0; i < fields.length; i++) buf[start + i] = fields[i]
  return buf.subarray(start, HEADROOM + length)
}

function varint(n: number): number[] {
  const out: number[] = []
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80)
    n = Math.floor(n / 0x80)
  }
  out.push(n)
  return out
}

/**
 * One Content.Write session: requests and replies in order (every request gets exactly one
 * reply); up to `window` requests may be outstanding so a high-latency link stays busy.
 */
class WriteSession {
  private readonly call: grpc.ClientDuplexStream<WriteRequest | Buffer, WriteResponse>
  private readonly waiting: {resolve: (r: WriteResponse) => void; reject: (e: Error) => void}[] = []
  /** write callbacks not called yet: all are called when the session fails */
  private readonly unwritten = new Set<() => void>()
  private failure: Error | undefined
  private ended = false

  constructor(
    private readonly client: ContentIngester,
    lease: string | undefined,
  ) {
    const content = client.contentService()
    const method = (content.constructor as grpc.ServiceClientConstructor).service.Write
    // an encoded WRITE message (a Buffer) passes through; STAT and COMMIT go through protobufjs
    const serialize = (req: WriteRequest | Buffer): Buffer => (Buffer.isBuffer(req) ? req : method.requestSerialize(req))
    this.call = content.makeBidiStreamRequest(WRITE_METHOD, serialize, method.responseDeserialize as (b: Buffer) => WriteResponse, client.metadata({lease}))
    this.call.on('data', (res: WriteResponse) => this.waiting.shift()?.resolve(res))
    this.call.on('error', (err) => this.fail(describeError(err, 'content.Write', client.displayName)))
    this.call.on('end', () => {
      this.ended = true
      this.fail(new ContainerdError(`containerd content.Write on ${client.displayName} ended the stream early`, grpc.status.INTERNAL, 'content.Write', 'stream ended'))
    })
  }

  private fail(err: Error): void {
    if (!this.failure) this.failure = err
    for (const w of this.waiting.splice(0)) w.reject(this.failure)
    for (const written of [...this.unwritten]) written()
  }

  /**
   * Send a request; the promise settles with its reply. Waits for 'drain' if grpc-js buffers.
   * `written` is called once grpc-js no longer needs the request (an encoded one's buffer may be
   * reused then), or when the session failed.
   */
  async send(req: WriteRequest | Buffer, written?: () => void): Promise<{reply: Promise<WriteResponse>}> {
    if (this.failure) throw this.failure
    const reply = new Promise<WriteResponse>((resolve, reject) => this.waiting.push({resolve, reject}))
    reply.catch(() => undefined)
    let callback: (() => void) | undefined
    if (written) {
      callback = (): void => {
        if (this.unwritten.delete(callback!)) written()
      }
      this.unwritten.add(callback)
    }
    if (!this.call.write(req, callback)) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.call.off('drain', done)
          this.call.off('error', done)
          resolve()
        }
        this.call.on('drain', done)
        this.call.on('error', done)
      })
    }
    return {reply}
  }

  async request(req: WriteRequest): Promise<WriteResponse> {
    return await (await this.send(req)).reply
  }

  /** Half-close and wait for the server to end the stream. */
  async finish(): Promise<void> {
    if (this.ended || this.failure) return
    await new Promise<void>((resolve) => {
      this.call.once('end', resolve)
      this.call.once('error', () => resolve())
      this.call.once('status', () => resolve())
      this.call.end()
    })
  }

  cancel(): void {
    this.call.cancel()
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/**
 * Write one blob into a node's content store (protocols.md §C.2): STAT (learn the offset
 * the node already has for `ref`) → WRITE from that offset in ≤ chunkSize messages →
 * COMMIT with expected digest, size and labels. AlreadyExists means the node has the blob.
 * containerd hashes what it receives and refuses a COMMIT whose digest differs: that is how a
 * corrupt source is found (hashing here as well cost ~10 % of a push's CPU for nothing).
 * Memory: at most `window` × `chunkSize` bytes in flight.
 */
export async function writeContent(client: ContentIngester, options: WriteContentOptions): Promise<WriteContentResult> {
  const {ref, desc} = options
  const chunkSize = options.chunkSize ?? 1024 * 1024
  const window = Math.max(1, options.window ?? 4)
  const what = options.sourceDescription ?? 'the image source'
  const deadline = Date.now() + (options.lockedTimeoutMs ?? 60_000)
  let restarted = false
  let direct = desc.size >= DIRECT_MIN
  const tally = {sent: 0}
  for (let attempt = 0; ; attempt++) {
    const session = (direct && (await directSession(client, options.lease))) || new WriteSession(client, options.lease)
    let stat: WriteResponse
    try {
      stat = await session.request({action: 'STAT', ref, total: desc.size, expected: desc.digest})
    } catch (err) {
      session.cancel()
      if (err instanceof DirectWriteFailed) {
        // through grpc-js, which says why (it exists, another writer holds the ref, ...)
        direct = false
        continue
      }
      if (grpcCode(err) === grpc.status.ALREADY_EXISTS) return {status: 'exists', resumedFrom: 0, sentBytes: 0}
      if (grpcCode(err) === grpc.status.UNAVAILABLE && /locked/i.test((err as Error).message) && Date.now() < deadline && !options.signal?.aborted) {
        await sleep(Math.min(2000, 100 * 2 ** attempt))
        continue
      }
      throw err
    }
    const resumeAt = Number(stat.offset) > desc.size ? 0 : Number(stat.offset)
    try {
      return await writeFrom(session, resumeAt, options, chunkSize, window, what, tally)
    } catch (err) {
      session.cancel()
      if (err instanceof DirectWriteFailed && !options.signal?.aborted) {
        // grpc-js resumes from what the node kept, and reports the real error if there is one; a
        // direct write that started at 0 wrote every byte the node holds, so a digest mismatch
        // then is the source's (no start over)
        direct = false
        if (resumeAt === 0) restarted = true
        continue
      }
      if (grpcCode(err) === grpc.status.ALREADY_EXISTS) return {status: 'exists', resumedFrom: 0, sentBytes: 0}
      if (err instanceof CorruptSourceError) await client.contentAbort(ref).catch(() => undefined)
      // containerd checks the digest at COMMIT (we do not hash here: the node does anyway).
      const mismatch = grpcCode(err) === grpc.status.FAILED_PRECONDITION ? /unexpected commit digest (\S+?),? expected/i.exec((err as Error).message) : null
      if (mismatch) {
        await client.contentAbort(ref).catch(() => undefined)
        // A resumed write may have met a partial ingest holding other bytes (an earlier corrupt
        // source, another writer's bug): start over once from 0 before blaming the source.
        if (!restarted && resumeAt > 0) {
          restarted = true
          continue
        }
        throw new CorruptSourceError(`${what} is corrupt: blob ${desc.digest} has digest ${mismatch[1]}`)
      }
      throw err
    }
  }
}

/** A source that can also read straight into a caller's buffer (a file range: image/tar-index.ts). */
interface ReadsAt {
  readAt(buf: Buffer, offset: number, length: number, position: number): Promise<number>
}

/** A blob's bytes from `from` on, into the caller's buffers; `position` counts every byte taken from the source. */
interface BlobInput {
  position: number
  /** Up to `length` bytes into `buf` at `offset`; 0 once the source has ended. */
  read(buf: Buffer, offset: number, length: number): Promise<number>
  close(): void
}

function blobInput(source: NodeJS.ReadableStream, from: number): BlobInput {
  if (typeof (source as Partial<ReadsAt>).readAt === 'function') {
    const file = source as unknown as ReadsAt
    const input: BlobInput = {
      position: from,
      async read(buf, offset, length) {
        const n = await file.readAt(buf, offset, length, input.position)
        input.position += n
        return n
      },
      close: () => (source as {destroy?: () => void}).destroy?.(),
    }
    return input
  }
  // any other stream: its chunks are copied, and the first `from` bytes skipped
  const chunks = (source as AsyncIterable<Buffer | string>)[Symbol.asyncIterator]()
  let rest: Buffer = Buffer.alloc(0)
  let skip = from
  const input: BlobInput = {
    position: 0,
    async read(buf, offset, length) {
      while (rest.length === 0) {
        const next = await chunks.next()
        if (next.done) return 0
        rest = typeof next.value === 'string' ? Buffer.from(next.value) : next.value
        const skipped = Math.min(skip, rest.length)
        rest = rest.subarray(skipped)
        skip -= skipped
        input.position += skipped
      }
      const n = rest.copy(buf, offset, 0, Math.min(length, rest.length))
      rest = rest.subarray(n)
      input.position += n
      return n
    },
    close() {
      chunks.return?.().catch(() => undefined)
      ;(source as {destroy?: () => void}).destroy?.()
    },
  }
  return input
}

/** A WRITE message being filled: its data goes from HEADROOM on; `free` settles once grpc-js has framed it. */
interface MessageBuffer {
  buf: Buffer
  free: Promise<void>
}

async function writeFrom(session: Session, resumeAt: number, options: WriteContentOptions, chunkSize: number, window: number, what: string, tally: {sent: number}): Promise<WriteContentResult> {
  const {desc} = options
  options.onStart?.(resumeAt)
  const replies: {reply: Promise<WriteResponse>; end: number; bytes: number}[] = []
  let offset = resumeAt // next offset to send
  // `window` buffers, each reused once grpc-js has framed its last message
  const capacity = Math.max(1, Math.min(chunkSize, desc.size - resumeAt))
  const buffers: MessageBuffer[] = []
  let next = 0
  const take = async (): Promise<Buffer> => {
    if (buffers.length < window) {
      const buf = Buffer.allocUnsafeSlow(HEADROOM + capacity)
      buffers.push({buf, free: Promise.resolve()})
      next = buffers.length - 1
      return buf
    }
    next = (next + 1) % buffers.length
    await buffers[next].free
    return buffers[next].buf
  }
  let current: Buffer | undefined
  let filled = 0

  const settle = async (keep: number): Promise<void> => {
    while (replies.length > keep) {
      const {reply, end, bytes} = replies.shift()!
      const res = await reply
      if (Number(res.offset) !== end) {
        throw new ContainerdError(`containerd content.Write: node reports offset ${res.offset} for ${desc.digest}, expected ${end}`, grpc.status.INTERNAL, 'content.Write', 'offset mismatch')
      }
      options.onBytes?.(bytes)
    }
  }
  const flush = async (): Promise<void> => {
    if (!current || filled === 0) return
    const length = filled
    const slot = buffers[next]
    let written!: () => void
    slot.free = new Promise<void>((resolve) => (written = resolve))
    // Restarting from 0 on a stale ingest: offset 0 with data truncates (server side).
    const {reply} = await session.send(encodeWrite(current, offset, length), written)
    current = undefined
    filled = 0
    offset += length
    tally.sent += length
    replies.push({reply, end: offset, bytes: length})
    await settle(window - 1)
  }

  const source = await options.open()
  const input = blobInput(source, resumeAt)
  try {
    for (;;) {
      if (options.signal?.aborted) throw new ContainerdError(`writing ${desc.digest} was stopped`, grpc.status.CANCELLED, 'content.Write', 'aborted')
      if (input.position >= desc.size) {
        // the blob ends here: what follows would be a corrupt source, read only to say how long it was
        const rest = Buffer.allocUnsafe(64 * 1024)
        while ((await input.read(rest, 0, rest.length)) > 0);
        break
      }
      current ??= await take()
      const n = await input.read(current, HEADROOM + filled, capacity - filled)
      if (n === 0) break
      filled += n
      if (filled >= capacity) await flush()
    }
  } catch (err) {
    if (err instanceof ContainerdError || err instanceof DirectWriteFailed) throw err
    // Let what was already sent land, so the node keeps it for the next run.
    await settle(0).catch(() => undefined)
    throw new SourceInterruptedError(`reading blob ${desc.digest} from ${what} failed after ${input.position} bytes: ${(err as Error).message}`)
  } finally {
    input.close()
  }
  const position = input.position
  if (position !== desc.size) {
    session.cancel()
    throw new CorruptSourceError(`${what} is corrupt: blob ${desc.digest} has ${position} bytes, expected ${desc.size}`)
  }
  await flush()
  await settle(0)
  const commit = await session.request({action: 'COMMIT', total: desc.size, offset, expected: desc.digest, labels: options.labels ?? {}})
  if (commit.digest && commit.digest !== desc.digest) {
    throw new Error(`containerd committed ${commit.digest} instead of ${desc.digest}`)
  }
  await session.finish()
  return {status: 'written', resumedFrom: resumeAt, sentBytes: tally.sent}
}
