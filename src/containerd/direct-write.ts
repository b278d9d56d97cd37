// Content.Write over HTTP/2 frames we write ourselves, on a stream of its own to the node's
// containerd socket (an SSH channel): the bytes of a large blob skip grpc-js's framing copy,
// Node's http2 (nghttp2, and the copy of every frame into a JS buffer that a non-socket stream
// costs) and our join of its frames. Only what a write needs is spoken: the client's side of one
// stream, flow control, SETTINGS and PING. The server's header blocks are not decoded (HPACK), so
// this session cannot tell why a call failed: any failure is a DirectWriteFailed, and the writer
// goes on through grpc-js, which resumes from what the node kept and reports the real error. A
// stream that breaks is the link's failure (or containerd's end), reported as grpc-js would.
import type {Duplex} from 'node:stream'
import {copiesBeforeCallback} from '../ssh/index.js'

/** The direct session failed (why is not known here): the caller retries the write through grpc-js. */
export class DirectWriteFailed extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'DirectWriteFailed'
  }
}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1')
const DATA = 0x0
const HEADERS = 0x1
const RST_STREAM = 0x3
const SETTINGS = 0x4
const PING = 0x6
const GOAWAY = 0x7
const WINDOW_UPDATE = 0x8
const END_STREAM = 0x1
const ACK = 0x1
const END_HEADERS = 0x4
const PADDED = 0x8
const STREAM = 1
/** What we let the server send before we say we have read it (replies are small). */
const RECEIVE_WINDOW = 1 << 30
/** DATA bytes written to the stream in one go, at most. */
const MAX_BATCH = 256 * 1024

function frameHeader(out: Buffer, at: number, length: number, type: number, flags: number, stream: number): void {
  out.writeUIntBE(length, at, 3)
  out[at + 3] = type
  out[at + 4] = flags
  out.writeUInt32BE(stream, at + 5)
}

function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.allocUnsafe(9 + payload.length)
  frameHeader(out, 0, payload.length, type, flags, stream)
  payload.copy(out, 9)
  return out
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4)
  b.writeUInt32BE(n)
  return b
}

/** A header field as an HPACK literal without indexing, new name, no Huffman coding (RFC 7541 §6.2.2). */
function literal(name: string, value: string): Buffer {
  const length = (n: number, prefixBits: number, first: number): number[] => {
    const max = 2 ** prefixBits - 1
    if (n < max) return [first | n]
    const out = [first | max]
    for (n -= max; n >= 0x80; n = Math.floor(n / 0x80)) out.push((n % 0x80) | 0x80)
    out.push(n)
    return out
  }
  const n = Buffer.from(name, 'latin1')
  const v = Buffer.from(value, 'latin1')
  return Buffer.concat([Buffer.from([0x00, ...length(n.length, 7, 0)]), n, Buffer.from(length(v.length, 7, 0)), v])
}

export interface DirectWriteOptions {
  path: string
  /** request metadata (containerd-namespace, containerd-lease) */
  headers: Record<string, string>
  serialize: (message: unknown) => Buffer
  deserialize: (bytes: Buffer) => unknown
  /** The error for a stream that broke while the call was open (the link or containerd went away: no use retrying on it). */
  lost: (reason: string) => Error
}

/**
 * One gRPC bidi call on its own HTTP/2 connection over `stream`: messages out in order, each
 * reply delivered to the request it answers (Content.Write answers every request once).
 */
export class DirectWriteSession<Req, Res> {
  private readonly waiting: {resolve: (r: Res) => void; reject: (e: Error) => void}[] = []
  private readonly queue: {bytes: Buffer; written?: () => void}[] = []
  private failure: Error | undefined
  private ended = false
  private onEnded: (() => void) | undefined
  private connectionWindow = 65_535
  private streamWindow = 65_535
  private initialWindow = 65_535
  private maxFrame = 16_384
  private input: Buffer = Buffer.alloc(0)
  private message: Buffer = Buffer.alloc(0)
  private pumping = false
  /** DATA bytes received since we last widened the windows */
  private received = 0
  private wakePump: (() => void) | undefined
  /** One buffer for the DATA frames of every batch, when the stream has copied a write by its callback (an SSH channel). */
  private scratch: Buffer | undefined
  private scratchFree: Promise<void> = Promise.resolve()
  private releaseScratch: (() => void) | undefined
  private readonly reuse: boolean

  constructor(
    private readonly stream: Duplex,
    private readonly options: DirectWriteOptions,
  ) {
    this.reuse = copiesBeforeCallback(stream)
    stream.on('data', (chunk: Buffer) => this.receive(chunk))
    stream.on('error', (err: Error) => this.fail(options.lost(`Connection dropped: ${err.message}`)))
    stream.on('close', () => this.fail(options.lost('Connection dropped')))
    const block = Buffer.concat([
      literal(':method', 'POST'),
      literal(':scheme', 'http'),
      literal(':path', options.path),
      literal(':authority', 'localhost'),
      literal('content-type', 'application/grpc'),
      literal('te', 'trailers'),
      ...Object.entries(options.headers).map(([k, v]) => literal(k, v)),
    ])
    const settings = Buffer.alloc(12)
    settings.writeUInt16BE(0x2, 0) // ENABLE_PUSH 0
    settings.writeUInt16BE(0x4, 6) // INITIAL_WINDOW_SIZE
    settings.writeUInt32BE(RECEIVE_WINDOW, 8)
    stream.write(Buffer.concat([PREFACE, frame(SETTINGS, 0, 0, settings), frame(WINDOW_UPDATE, 0, 0, u32(RECEIVE_WINDOW - 65_535)), frame(HEADERS, END_HEADERS, STREAM, block)]))
  }

  private fail(err: Error): void {
    if (!this.failure) this.failure = err
    for (const w of this.waiting.splice(0)) w.reject(this.failure)
    for (const q of this.queue.splice(0)) q.written?.()
    this.releaseScratch?.()
    this.wakePump?.()
    this.onEnded?.()
  }

  private receive(chunk: Buffer): void {
    this.input = this.input.length ? Buffer.concat([this.input, chunk]) : chunk
    while (this.input.length >= 9) {
      const length = this.input.readUIntBE(0, 3)
      if (this.input.length < 9 + length) break
      const type = this.input[3]
      const flags = this.input[4]
      const stream = this.input.readUInt32BE(5) & 0x7fffffff
      const payload = this.input.subarray(9, 9 + length)
      this.input = this.input.subarray(9 + length)
      try {
        this.onFrame(type, flags, stream, payload)
      } catch (err) {
        // a frame or a reply we cannot read: grpc-js takes over (an exception here would end the process)
        this.fail(new DirectWriteFailed(`cannot read containerd's reply: ${(err as Error).message}`))
        this.input = Buffer.alloc(0)
        return
      }
    }
  }

  private onFrame(type: number, flags: number, stream: number, payload: Buffer): void {
    switch (type) {
      case SETTINGS:
        if (flags & ACK) return
        for (let i = 0; i + 6 <= payload.length; i += 6) {
          const value = payload.readUInt32BE(i + 2)
          const id = payload.readUInt16BE(i)
          if (id === 0x4) {
            this.streamWindow += value - this.initialWindow
            this.initialWindow = value
          } else if (id === 0x5) this.maxFrame = value
        }
        this.stream.write(frame(SETTINGS, ACK, 0))
        this.wakePump?.()
        return
      case WINDOW_UPDATE: {
        const increment = payload.readUInt32BE(0) & 0x7fffffff
        if (stream === 0) this.connectionWindow += increment
        else this.streamWindow += increment
        this.wakePump?.()
        return
      }
      case PING:
        if (!(flags & ACK)) this.stream.write(frame(PING, ACK, 0, payload))
        return
      case DATA: {
        let data = payload
        if (flags & PADDED) data = data.subarray(1, data.length - data[0])
        this.onMessageBytes(data)
        // the replies are small: the window we gave lasts the call, unless it is half used
        this.received += payload.length
        if (this.received >= RECEIVE_WINDOW / 2) {
          this.stream.write(Buffer.concat([frame(WINDOW_UPDATE, 0, 0, u32(this.received)), frame(WINDOW_UPDATE, 0, STREAM, u32(this.received))]))
          this.received = 0
        }
        if (flags & END_STREAM) this.end()
        return
      }
      case HEADERS:
        // the response's headers, or its trailers (END_STREAM): their content is not read (see above)
        if (flags & END_STREAM) this.end()
        return
      case RST_STREAM:
        this.fail(new DirectWriteFailed(`containerd reset the stream (HTTP/2 error ${payload.readUInt32BE(0)})`))
        return
      case GOAWAY:
        this.fail(new DirectWriteFailed(`containerd closed the connection (GOAWAY, HTTP/2 error ${payload.readUInt32BE(4)})`))
        return
      default:
      // PRIORITY, PUSH_PROMISE (disabled), CONTINUATION of a header block we do not read, unknown types
    }
  }

  private onMessageBytes(data: Buffer): void {
    this.message = this.message.length ? Buffer.concat([this.message, data]) : data
    while (this.message.length >= 5 && this.message.length >= 5 + this.message.readUInt32BE(1)) {
      const length = this.message.readUInt32BE(1)
      if (this.message[0] !== 0) return this.fail(new DirectWriteFailed('containerd sent a compressed message'))
      const reply = this.options.deserialize(this.message.subarray(5, 5 + length)) as Res
      this.message = this.message.subarray(5 + length)
      this.waiting.shift()?.resolve(reply)
    }
  }

  private end(): void {
    this.ended = true
    // a stream that ends with requests unanswered failed (the trailers would say why)
    if (this.waiting.length > 0) this.fail(new DirectWriteFailed('containerd ended the call'))
    this.onEnded?.()
  }

  /**
   * Send a request (an encoded message as a Buffer, or one to serialize); the promise settles
   * once it is queued, its reply with the reply. `written`: called once the bytes of `req` have
   * been copied out (its buffer may be reused), or when the session failed.
   */
  async send(req: Req | Buffer, written?: () => void): Promise<{reply: Promise<Res>}> {
    if (this.failure) throw this.failure
    if (this.ended) throw new DirectWriteFailed('containerd ended the call')
    const bytes = Buffer.isBuffer(req) ? req : this.options.serialize(req)
    const reply = new Promise<Res>((resolve, reject) => this.waiting.push({resolve, reject}))
    reply.catch(() => undefined)
    const prefix = Buffer.allocUnsafe(5)
    prefix[0] = 0
    prefix.writeUInt32BE(bytes.length, 1)
    this.queue.push({bytes: prefix}, {bytes, written})
    await this.pump()
    return {reply}
  }

  async request(req: Req): Promise<Res> {
    return await (await this.send(req)).reply
  }

  /** Write out the queue as DATA frames within the windows the server gave. */
  private async pump(): Promise<void> {
    if (this.pumping) return
    this.pumping = true
    try {
      while (this.queue.length > 0) {
        // the last batch's buffer is ours again once the stream has copied it; a failure meanwhile
        // has emptied the queue (fail): the loop reads the queue only after this wait
        if (this.reuse) await this.scratchFree
        if (this.failure) throw this.failure
        const budget = Math.min(this.connectionWindow, this.streamWindow, MAX_BATCH)
        if (budget <= 0) {
          await new Promise<void>((resolve) => (this.wakePump = resolve))
          this.wakePump = undefined
          continue
        }
        let queued = 0
        for (const q of this.queue) queued += q.bytes.length
        const bytes = Math.min(budget, queued)
        const frames = Math.ceil(bytes / this.maxFrame)
        const size = bytes + 9 * frames
        let out: Buffer
        let written: (() => void) | undefined
        if (this.reuse) {
          if (!this.scratch || this.scratch.length < size) this.scratch = Buffer.allocUnsafeSlow(Math.max(size, MAX_BATCH + 9 * Math.ceil(MAX_BATCH / 16_384)))
          out = this.scratch.subarray(0, size)
          this.scratchFree = new Promise<void>((resolve) => (written = this.releaseScratch = resolve))
        } else out = Buffer.allocUnsafe(size)
        let at = 0
        for (let left = bytes; left > 0; ) {
          const n = Math.min(left, this.maxFrame)
          frameHeader(out, at, n, DATA, 0, STREAM)
          at += 9
          for (let need = n; need > 0; ) {
            const head = this.queue[0]
            const take = Math.min(need, head.bytes.length)
            at += head.bytes.copy(out, at, 0, take)
            need -= take
            if (take === head.bytes.length) {
              this.queue.shift()
              head.written?.()
            } else head.bytes = head.bytes.subarray(take)
          }
          left -= n
        }
        this.connectionWindow -= bytes
        this.streamWindow -= bytes
        if (!this.stream.write(out, () => written?.())) {
          await new Promise<void>((resolve) => {
            const done = (): void => {
              this.stream.off('drain', done)
              this.stream.off('close', done)
              resolve()
            }
            this.stream.on('drain', done)
            this.stream.on('close', done)
          })
        }
      }
    } finally {
      this.pumping = false
    }
  }

  /** Half-close and wait for the server to end the call; then close the stream. */
  async finish(): Promise<void> {
    if (!this.failure && !this.ended) {
      await new Promise<void>((resolve) => {
        this.onEnded = resolve
        this.stream.write(frame(DATA, END_STREAM, STREAM))
      })
    }
    this.stream.end()
  }

  cancel(): void {
    if (!this.stream.destroyed) this.stream.end(frame(RST_STREAM, 0, STREAM, u32(0x8)))
    this.fail(new DirectWriteFailed('cancelled'))
  }
}
