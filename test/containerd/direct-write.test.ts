// Our own HTTP/2 framing of a Content.Write call (direct-write.ts), against a stream we drive by
// hand: the link dropping while a batch is still being copied out must fail the call with the
// "lost" error its caller resumes on (found in CI: a TypeError instead, and the push gave up).
import {createRequire} from 'node:module'
import {Duplex} from 'node:stream'
import {describe, expect, it} from 'vitest'
import {DirectWriteSession} from '../../src/containerd/direct-write.js'

const {Channel} = createRequire(import.meta.url)('ssh2/lib/Channel.js') as {Channel: {prototype: object}}

class LinkLost extends Error {}

/**
 * A duplex that passes for an ssh2 Channel (so the session reuses one buffer per batch, as on a
 * real node) and holds the write callback of every DATA frame batch until `release()`.
 */
class HeldChannel extends Duplex {
  readonly held: Array<() => void> = []
  dataBatches = 0
  constructor() {
    super({writableHighWaterMark: 8 << 20})
  }

  override _read(): void {}

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (chunk[3] === 0x0 && chunk.length > 1024) {
      this.dataBatches++
      this.held.push(() => cb())
    } else cb()
  }

  /** a frame from the server */
  frame(type: number, stream: number, payload: Buffer): void {
    const header = Buffer.alloc(9)
    header.writeUIntBE(payload.length, 0, 3)
    header[3] = type
    header.writeUInt32BE(stream, 5)
    this.push(Buffer.concat([header, payload]))
  }
}
Object.setPrototypeOf(HeldChannel.prototype, Object.create(Channel.prototype, Object.getOwnPropertyDescriptors(Duplex.prototype)))

const windowUpdate = (n: number): Buffer => {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n)
  return b
}
const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 10))

describe('DirectWriteSession', () => {
  it('the link drops while a batch is being copied out: the call fails with the lost-link error, no TypeError', async () => {
    const channel = new HeldChannel()
    const session = new DirectWriteSession<unknown, unknown>(channel, {
      path: '/containerd.services.content.v1.Content/Write',
      headers: {},
      serialize: () => Buffer.alloc(0),
      deserialize: (b) => b,
      lost: (reason) => new LinkLost(reason),
    })
    // a message larger than the first window (64 KiB): one batch goes out and is held
    const sending = session.send(Buffer.alloc(512 * 1024, 1))
    sending.catch(() => undefined)
    await tick()
    expect(channel.dataBatches).toBe(1)
    // containerd opens its windows: the next batch waits for the held one's buffer
    channel.frame(0x8, 0, windowUpdate(4 << 20))
    channel.frame(0x8, 1, windowUpdate(4 << 20))
    await tick()
    expect(channel.dataBatches).toBe(1)
    // the SSH session is killed
    channel.destroy()
    await expect(sending).rejects.toBeInstanceOf(LinkLost)
  })

  it('with the batch copied out, the rest of the message follows in the windows given', async () => {
    const channel = new HeldChannel()
    const session = new DirectWriteSession<unknown, unknown>(channel, {
      path: '/x', headers: {}, serialize: () => Buffer.alloc(0), deserialize: (b) => b, lost: (reason) => new LinkLost(reason),
    })
    const sending = session.send(Buffer.alloc(512 * 1024, 1))
    await tick()
    channel.frame(0x8, 0, windowUpdate(4 << 20))
    channel.frame(0x8, 1, windowUpdate(4 << 20))
    await tick()
    let sent = false
    void sending.then(() => (sent = true))
    while (!sent) {
      channel.held.shift()?.()
      await tick()
    }
    // 64 KiB, then the remaining 448 KiB (+5 bytes of prefix) in batches of at most 256 KiB
    expect(channel.dataBatches).toBe(3)
  })
})
