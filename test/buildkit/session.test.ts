// The session server played against a real grpc-js client standing in for the daemon, over a
// unix socket handed to the session as a raw connection (like dockerd's /session upgrade).
import * as grpc from '@grpc/grpc-js'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import {PassThrough} from 'node:stream'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {buildkitDefinitions} from '../../src/buildkit/protos.js'
import type {BytesMessage, Packet} from '../../src/buildkit/protos.js'
import {BuildSession, registryCredentials} from '../../src/buildkit/session.js'

let dir: string
let ctx: string
let server: net.Server
let session: BuildSession
let exported: Buffer[] = []
let exportMetadata: Record<string, string> = {}
const clients: grpc.Client[] = []

function client(service: string): grpc.Client & Record<string, unknown> {
  const Ctor = grpc.makeClientConstructor(buildkitDefinitions()[service] as grpc.ServiceDefinition, service)
  const c = new Ctor(`unix://${path.join(dir, 'session.sock')}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, unknown>
  clients.push(c)
  return c
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sl-session-'))
  ctx = path.join(dir, 'ctx')
  fs.mkdirSync(path.join(ctx, 'sub'), {recursive: true})
  fs.writeFileSync(path.join(ctx, 'big.bin'), Buffer.alloc(100_000, 7))
  fs.writeFileSync(path.join(ctx, 'skip.log'), 'x')
  fs.writeFileSync(path.join(ctx, 'sub', 'keep.txt'), 'keep')
  fs.writeFileSync(path.join(ctx, 'sub', 'drop.txt'), 'drop')
  const sink = new PassThrough()
  sink.on('data', (c: Buffer) => exported.push(c))
  session = new BuildSession({
    dirs: {context: ctx},
    sharedKey: 'k',
    dockerConfigDir: path.join(dir, 'no-docker-config'),
    secrets: {tok: {file: path.join(ctx, 'sub', 'keep.txt')}},
    exportSink: {
      open: (md) => {
        exportMetadata = md
        return sink
      },
    },
  })
  server = net.createServer((sock) => session.attach(sock))
  await new Promise<void>((r) => server.listen(path.join(dir, 'session.sock'), r))
})

afterAll(async () => {
  for (const c of clients) c.close()
  session.close()
  await new Promise((r) => server.close(r))
  fs.rmSync(dir, {recursive: true, force: true})
})

describe('BuildSession', () => {
  it('advertises one method header per served method', () => {
    const methods = session.headers()['X-Docker-Expose-Session-Grpc-Method']
    expect(methods).toEqual([
      '/grpc.health.v1.Health/Check',
      '/moby.filesync.v1.FileSync/DiffCopy',
      '/moby.filesync.v1.FileSend/DiffCopy',
      '/moby.filesync.v1.Auth/Credentials',
      '/moby.buildkit.secrets.v1.Secrets/GetSecret',
    ])
    expect(session.headers()['X-Docker-Expose-Session-Uuid']).toMatch(/^[0-9a-z]{25}$/)
  })

  it('answers health checks with SERVING', async () => {
    const health = client('grpc.health.v1.Health')
    const res = await new Promise<{status: string}>((resolve, reject) =>
      (health.Check as (r: object, cb: (e: Error | null, r: {status: string}) => void) => void).call(health, {}, (e, r) => (e ? reject(e) : resolve(r))),
    )
    expect(res.status).toBe('SERVING')
    expect(session.healthChecks).toBeGreaterThan(0)
  })

  it('FileSync: lists with repeated exclude-pattern headers, serves REQuested files in chunks, answers FIN', async () => {
    const fileSync = client('moby.filesync.v1.FileSync')
    const md = new grpc.Metadata()
    md.add('dir-name', 'context')
    md.add('exclude-patterns', '*.log')
    md.add('exclude-patterns', 'sub/drop.txt')
    const call = (fileSync.DiffCopy as (md: grpc.Metadata) => grpc.ClientDuplexStream<Partial<Packet>, Packet>).call(fileSync, md)
    const stats: string[] = []
    const data: Buffer[] = []
    let dataPackets = 0
    const done = new Promise<void>((resolve, reject) => {
      call.on('data', (p: Packet) => {
        if (p.type === 'PACKET_STAT') {
          if (p.stat) stats.push(p.stat.path)
          else call.write({type: 'PACKET_REQ', ID: stats.indexOf('big.bin')})
        } else if (p.type === 'PACKET_DATA') {
          if (p.data.length === 0) call.write({type: 'PACKET_FIN'})
          else {
            dataPackets++
            data.push(p.data)
          }
        } else if (p.type === 'PACKET_FIN') {
          call.end()
        }
      })
      call.on('end', resolve)
      call.on('error', reject)
    })
    await done
    expect(stats).toEqual(['big.bin', 'sub', 'sub/keep.txt'])
    expect(Buffer.concat(data)).toEqual(Buffer.alloc(100_000, 7))
    expect(dataPackets).toBe(4) // 32 KiB chunks
    expect(session.fileSync.context).toMatchObject({entries: 3, requests: 1, dataPackets: 4, bytes: 100_000})
  })

  it('FileSync: an unknown local name is refused with NOT_FOUND', async () => {
    const fileSync = client('moby.filesync.v1.FileSync')
    const md = new grpc.Metadata()
    md.add('dir-name', 'elsewhere')
    const call = (fileSync.DiffCopy as (md: grpc.Metadata) => grpc.ClientDuplexStream<Partial<Packet>, Packet>).call(fileSync, md)
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      call.on('error', resolve)
      call.on('data', () => undefined)
    })
    expect(err.code).toBe(grpc.status.NOT_FOUND)
  })

  it('FileSend: receives the exporter stream with its metadata and acknowledges by ending', async () => {
    const fileSend = client('moby.filesync.v1.FileSend')
    const md = new grpc.Metadata()
    md.add('exporter-md-containerimage.digest', 'sha256:abc')
    const call = (fileSend.DiffCopy as (md: grpc.Metadata) => grpc.ClientDuplexStream<BytesMessage, BytesMessage>).call(fileSend, md)
    const ended = new Promise<void>((resolve, reject) => {
      call.on('data', () => undefined)
      call.on('end', resolve)
      call.on('error', reject)
    })
    call.write({data: Buffer.from('part1-')})
    call.write({data: Buffer.from('part2')})
    call.end()
    await ended
    await session.exportsDone()
    expect(Buffer.concat(exported).toString()).toBe('part1-part2')
    expect(exportMetadata).toEqual({'containerimage.digest': 'sha256:abc'})
  })

  it('Secrets: known ids are read from their file, unknown ones are NOT_FOUND', async () => {
    const secrets = client('moby.buildkit.secrets.v1.Secrets')
    const get = (ID: string): Promise<{data: Buffer}> =>
      new Promise((resolve, reject) =>
        (secrets.GetSecret as (r: object, cb: (e: Error | null, r: {data: Buffer}) => void) => void).call(secrets, {ID}, (e, r) => (e ? reject(e) : resolve(r))),
      )
    expect((await get('tok')).data.toString()).toBe('keep')
    await expect(get('nope')).rejects.toMatchObject({code: grpc.status.NOT_FOUND})
  })

  it('registry credentials come from config.json auths, credHelpers or credsStore; anything else is anonymous', async () => {
    const cfg = path.join(dir, 'dockercfg')
    fs.mkdirSync(cfg)
    fs.writeFileSync(
      path.join(cfg, 'config.json'),
      JSON.stringify({
        auths: {
          'https://index.docker.io/v1/': {auth: Buffer.from('hub-user:hub-pass').toString('base64')},
          'reg.example.com:5000': {identitytoken: 'tok123'},
        },
        credHelpers: {'helped.example.com': 'sltest'},
      }),
    )
    expect(await registryCredentials('registry-1.docker.io', cfg)).toEqual({Username: 'hub-user', Secret: 'hub-pass'})
    expect(await registryCredentials('reg.example.com:5000', cfg)).toEqual({Username: '', Secret: 'tok123'})
    expect(await registryCredentials('other.example.com', cfg)).toEqual({Username: '', Secret: ''})

    // A real helper program on PATH: docker-credential-sltest get <<< host
    const bin = path.join(dir, 'bin')
    fs.mkdirSync(bin)
    fs.writeFileSync(
      path.join(bin, 'docker-credential-sltest'),
      '#!/bin/sh\nread host\n[ "$1" = get ] && [ "$host" = helped.example.com ] && echo \'{"ServerURL":"helped.example.com","Username":"helper-user","Secret":"helper-secret"}\' && exit 0\necho "credentials not found in native keychain"; exit 1\n',
      {mode: 0o755},
    )
    const savedPath = process.env.PATH
    process.env.PATH = `${bin}:${savedPath}`
    try {
      expect(await registryCredentials('helped.example.com', cfg)).toEqual({Username: 'helper-user', Secret: 'helper-secret'})
      fs.writeFileSync(path.join(cfg, 'config.json'), JSON.stringify({credsStore: 'sltest'}))
      expect(await registryCredentials('helped.example.com', cfg)).toEqual({Username: 'helper-user', Secret: 'helper-secret'})
      expect(await registryCredentials('unknown.example.com', cfg)).toEqual({Username: '', Secret: ''})
    } finally {
      process.env.PATH = savedPath
    }
  })

  it('serves Auth/Credentials on the session', async () => {
    const auth = client('moby.filesync.v1.Auth')
    const res = await new Promise<{Username: string; Secret: string}>((resolve, reject) =>
      (auth.Credentials as (r: object, cb: (e: Error | null, r: {Username: string; Secret: string}) => void) => void).call(auth, {Host: 'nowhere.example.com'}, (e, r) =>
        e ? reject(e) : resolve(r),
      ),
    )
    expect(res).toEqual({Username: '', Secret: ''})
  })
})
