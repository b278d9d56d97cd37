import {createHash} from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {Readable} from 'node:stream'
import type * as grpc from '@grpc/grpc-js'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {ContainerdClient} from '../../src/containerd/index.js'
import {CorruptSourceError} from '../../src/containerd/content-writer.js'
import {encodeWrite, HEADROOM} from '../../src/containerd/write-session.js'
import {loadProtos, lookup} from '../../src/grpc/load.js'
import {readRange} from '../../src/image/tar-index.js'
import {startContainerdWithClient, stopContainerdWithClient, type TestContainerd} from './fixture.js'

const KIB = 1024

describe('a WRITE message encoded by hand', () => {
  it('is byte for byte what protobufjs makes of {action: WRITE, offset, data}', () => {
    const pkg = loadProtos(['containerd/services/content/v1/content.proto'])
    const write = lookup<grpc.ServiceClientConstructor>(pkg, 'containerd.services.content.v1.Content').service.Write
    for (const offset of [0, 1, 127, 128, 16_383, 16_384, 2 ** 32 + 5, 2 ** 45 + 3]) {
      for (const length of [0, 1, 127, 128, 300, 1024 * KIB]) {
        const buf = Buffer.alloc(HEADROOM + length)
        const data = buf.subarray(HEADROOM)
        for (let i = 0; i < length; i++) data[i] = (i * 7 + offset) & 0xff
        const expected = write.requestSerialize({action: 'WRITE', offset, data: Buffer.from(data)})
        expect(Buffer.compare(encodeWrite(buf, offset, length), expected), `offset ${offset}, ${length} bytes`).toBe(0)
      }
    }
  })
})

// below 1 MiB through grpc-js; from 1 MiB on a stream of its own with our own framing (direct-write.ts)
describe.each([
  ['a small blob (grpc-js)', 300 * KIB + 7],
  ['a large blob (direct)', 3 * 1024 * KIB + 7],
])('writeContent into a real containerd: %s', (_what, blobSize) => {
  let ctd: TestContainerd
  let client: ContainerdClient
  let work: string
  let file: string
  let bytes: Buffer

  beforeAll(async () => {
    ;({ctd, client, work} = await startContainerdWithClient(`content-writer-${blobSize}`, {displayName: 'test-node'}))
    bytes = Buffer.alloc(blobSize)
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + (i >> 9)) & 0xff
    file = path.join(work, 'blob')
    fs.writeFileSync(file, bytes)
  })

  afterAll(() => stopContainerdWithClient({ctd, client, work}))

  const digestOf = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`
  // the two kinds of source the writer meets: an archive's file range (read straight into its
  // buffers) and any other stream (its chunks copied in)
  const sources = {
    'a file range': (fd: number, size: number) => readRange(fd, 0, size, 'the test file'),
    'a stream': (_fd: number, size: number) => Readable.from([bytes.subarray(0, 100 * KIB), bytes.subarray(100 * KIB, size)]),
  }

  describe.each(Object.entries(sources))('from %s', (kind, open) => {
    it('writes a blob whose size is no multiple of the message size, in order, and reads back the same bytes', async () => {
      const fd = fs.openSync(file, 'r')
      try {
        const desc = {mediaType: 'application/octet-stream', digest: digestOf(bytes), size: bytes.length}
        let streams = 0
        const openStream = client.openStream.bind(client)
        client.openStream = () => (streams++, openStream())
        // under a lease, as an import writes: a blob nothing references is GC's to take at any moment
        // (a GC the previous test's delete scheduled took it before it was read back, once, on 1.6)
        const lease = await client.leaseCreate({expiresInMs: 60_000})
        try {
          const res = await client.writeContent({ref: `cw-good-${kind}`, desc, lease, open: async () => open(fd, bytes.length), chunkSize: 64 * KIB, window: 2}).finally(() => (client.openStream = openStream))
          expect(res).toEqual({status: 'written', resumedFrom: 0, sentBytes: bytes.length})
          expect(streams, 'streams of its own').toBe(blobSize >= 1024 * KIB ? 1 : 0)
          const back: Buffer[] = []
          for await (const c of client.contentRead(desc.digest)) back.push(c as Buffer)
          expect(Buffer.compare(Buffer.concat(back), bytes)).toBe(0)
        } finally {
          await client.leaseDelete(lease, true)
        }
      } finally {
        fs.closeSync(fd)
      }
    })

    it.each([
      ['more', 2 / 3],
      ['fewer', 4 / 3],
    ])('a source with %s bytes than the descriptor says is corrupt, and leaves no ingest', async (_more, part) => {
      const size = Math.round(blobSize * part)
      const fd = fs.openSync(file, 'r')
      const ref = `cw-size-${kind}-${size}`
      try {
        const desc = {mediaType: 'application/octet-stream', digest: digestOf(bytes.subarray(0, size)), size}
        const write = client.writeContent({ref, desc, open: async () => open(fd, bytes.length), chunkSize: 64 * KIB, window: 2, sourceDescription: 'the test file'})
        await expect(write).rejects.toThrow(CorruptSourceError)
        await expect(write).rejects.toThrow(`the test file is corrupt: blob ${desc.digest} has ${bytes.length} bytes, expected ${size}`)
        expect(await client.contentStatus(ref)).toBeUndefined()
      } finally {
        fs.closeSync(fd)
      }
    })
  })
})
