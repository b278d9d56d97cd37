// Writing one blob into a node's content store, resumably: STAT, WRITE from the node's offset,
// COMMIT (writeContent); the call it drives is write-session.ts's.
import * as grpc from '@grpc/grpc-js'
import {CORRUPT_SOURCE_HINT, type Descriptor} from '../image/index.js'
import {DirectWriteFailed} from './direct-write.js'
import {ContainerdError, grpcCode} from './errors.js'
import {type ContentIngester, DIRECT_MIN, directSession, encodeWrite, HEADROOM, type Session, type WriteResponse, WriteSession} from './write-session.js'

export type {ContentIngester} from './write-session.js'

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
