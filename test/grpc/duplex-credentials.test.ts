import {Duplex} from 'node:stream'
import * as grpc from '@grpc/grpc-js'
import {describe, expect, it} from 'vitest'
import {coalesceWrites, duplexChannel} from '../../src/grpc/duplex-credentials.js'
import {loadProtos, lookup} from '../../src/grpc/load.js'

class Recorder extends Duplex {
  writes: Buffer[] = []
  _read(): void {}
  _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.writes.push(chunk)
    cb()
  }
}

describe('coalesceWrites', () => {
  it('joins corked writes into one write (what Node http2 does per frame)', async () => {
    const corks: string[] = []
    const r = coalesceWrites(new Recorder(), () => ({cork: () => corks.push('cork'), uncork: () => corks.push('uncork')}))
    r.cork()
    r.write(Buffer.from('head'))
    r.write(Buffer.from('-body'))
    r.write(Buffer.from('-tail'))
    r.uncork()
    await new Promise((resolve) => setImmediate(resolve))
    expect(r.writes.map(String)).toEqual(['head-body-tail'])
    expect(corks, 'the transport was corked around the joined write').toEqual(['cork', 'uncork'])
    r.write(Buffer.from('alone'))
    expect(r.writes.map(String)).toEqual(['head-body-tail', 'alone'])
  })

  it('gives a stream that may keep what it was given (not an SSH channel) a buffer of its own per joined write', async () => {
    const r = coalesceWrites(new Recorder())
    for (const parts of [['a', 'b'], ['c', 'd']]) {
      r.cork()
      for (const p of parts) r.write(Buffer.from(p))
      r.uncork()
      await new Promise((resolve) => setImmediate(resolve))
    }
    expect(r.writes.map(String)).toEqual(['ab', 'cd'])
  })
})

describe('DuplexChannelCredentials', () => {
  it('runs gRPC calls over the streams it opens, never over the placeholder socket', async () => {
    // A real grpc-js server (Health) on a private socket stands in for the far end of an SSH channel.
    const pkg = loadProtos(['grpc/health/v1/health.proto'])
    const Health = lookup<grpc.ServiceClientConstructor>(pkg, 'grpc.health.v1.Health')
    const server = new grpc.Server()
    server.addService(Health.service, {Check: (_call: unknown, cb: grpc.sendUnaryData<object>) => cb(null, {status: 'SERVING'})})
    const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure())
    let opened = 0
    const open = async (): Promise<Duplex> => {
      opened++
      const [a, b] = duplexPair()
      injector.injectConnection(b)
      return a
    }
    const {target, credentials} = await duplexChannel(open)
    // on Linux an abstract socket: nothing on disk that a killed process could leave behind
    expect(target).toMatch(/^unix:\0sideload-grpc-\d+-[0-9a-f]{12}$/)
    const client = new Health(target, credentials)
    try {
      const res = await new Promise<{status: string}>((resolve, reject) => client.Check({service: ''}, (err: Error | null, r: {status: string}) => (err ? reject(err) : resolve(r))))
      expect(res.status).toBe('SERVING')
      expect(opened).toBe(1)
    } finally {
      client.close()
      injector.destroy()
      server.forceShutdown()
    }
  })
})

/** Two connected in-memory Duplexes (a socketpair without sockets). */
function duplexPair(): [Duplex, Duplex] {
  let a!: Duplex
  let b!: Duplex
  const make = (peer: () => Duplex): Duplex =>
    new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        peer().push(chunk)
        cb()
      },
      final(cb) {
        peer().push(null)
        cb()
      },
    })
  a = make(() => b)
  b = make(() => a)
  return [a, b]
}
