// One Content.Write call as writeContent (content-writer.ts) drives it: through grpc-js (WriteSession,
// WRITE messages encoded by hand into reused buffers) or on a stream of its own with our own HTTP/2
// framing (directSession → direct-write.ts). Requests and replies in order, a window of them in flight.
import type {Duplex} from 'node:stream'
import * as grpc from '@grpc/grpc-js'
import {DirectWriteSession} from './direct-write.js'
import {ContainerdError, describeError} from './errors.js'
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

export type WriteRequest = WriteContentRequest & {action: 'STAT' | 'WRITE' | 'COMMIT'}
export type WriteResponse = WriteContentResponse__Output

const WRITE_METHOD = '/containerd.services.content.v1.Content/Write'

/**
 * Blobs from this size go over a stream of their own with our own HTTP/2 framing (direct-write.ts):
 * the write alone (64 MiB blob over SSH to a bed node) took ~0.7x the CPU of grpc-js's path, a
 * whole 170 MB push ~0.9x. Smaller ones are not worth a stream's set-up.
 */
export const DIRECT_MIN = 1024 * 1024

/** What writeFrom needs of a Content.Write call: the grpc-js one (WriteSession) or the direct one. */
export interface Session {
  send(req: WriteRequest | Buffer, written?: () => void): Promise<{reply: Promise<WriteResponse>}>
  request(req: WriteRequest): Promise<WriteResponse>
  finish(): Promise<void>
  cancel(): void
}

/** A Content.Write call on a stream of its own (undefined when the client cannot open one). */
export async function directSession(client: ContentIngester, lease: string | undefined): Promise<Session | undefined> {
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
export class WriteSession {
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
