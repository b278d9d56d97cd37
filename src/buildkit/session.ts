import * as grpc from '@grpc/grpc-js'
import {execFile} from 'node:child_process'
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import type {Duplex, Writable} from 'node:stream'
import {finished} from 'node:stream/promises'
import {type FileSyncStats, emptyFileSyncStats, serveDiffCopy} from './filesync.js'
import {type BytesMessage, type Packet, SERVICES, serviceDefinition} from './protos.js'

/** Where a build secret comes from (`--secret id=ID,src=FILE` or `env=VAR`). */
export type SecretSource = {file: string} | {env: string}

/** Receives exporter output sent back over FileSend (an image archive). */
export interface ExportSink {
  /**
   * Called when the daemon starts sending; `metadata` has the exporter response entries the
   * daemon knows already (`containerimage.digest`…, from the `exporter-md-*` headers).
   */
  open(metadata: Record<string, string>): Promise<Writable> | Writable
}

export interface SessionOptions {
  /** Local directories the daemon may pull, by local name (`context`, `dockerfile`). */
  dirs: Record<string, string>
  /**
   * Part of the daemon's cache key for local sources: a stable value per project lets an
   * unchanged rebuild transfer nothing and keeps projects from evicting each other's copy.
   */
  sharedKey: string
  /** Informational session name (old daemons log it). */
  name?: string
  exportSink?: ExportSink
  secrets?: Record<string, SecretSource>
  /** Directory of config.json for registry credentials (default $DOCKER_CONFIG or ~/.docker). */
  dockerConfigDir?: string
}

/** BuildKit's identity.NewID shape: 25 base-36 characters. */
export function newSessionId(): string {
  let id = ''
  const bytes = crypto.randomBytes(25)
  for (const b of bytes) id += (b % 36).toString(36)
  return id
}

/** A stable shared key for a directory on this machine: a hash of the host name and the absolute path. */
export function sharedKeyFor(dir: string): string {
  return crypto.createHash('sha256').update(`${os.hostname()}\0${path.resolve(dir)}`).digest('hex').slice(0, 32)
}

/**
 * The client side of a BuildKit session: a gRPC server (health, FileSync, FileSend, Auth,
 * Secrets) that the daemon calls over a connection we hand it (Control.Session or dockerd's
 * /session), using grpc-js's connection injector.
 */
export class BuildSession {
  readonly id = newSessionId()
  /** FileSync traffic per local name. */
  readonly fileSync: Record<string, FileSyncStats> = {}
  /** Health checks answered (the daemon drops the session on the first missed one in v0.8). */
  healthChecks = 0
  private readonly server = new grpc.Server({'grpc.max_receive_message_length': 64 * 1024 * 1024})
  private readonly methods: string[] = []
  private injector: grpc.ConnectionInjector | undefined
  private readonly exports: Promise<void>[] = []

  constructor(private readonly options: SessionOptions) {
    this.add(SERVICES.health, {
      Check: (_call: unknown, cb: grpc.sendUnaryData<{status: string}>) => {
        this.healthChecks++
        cb(null, {status: 'SERVING'})
      },
    })
    this.add(SERVICES.fileSync, {
      DiffCopy: (call: grpc.ServerDuplexStream<Packet, Packet>) => {
        serveDiffCopy(call, this.options.dirs, (name) => (this.fileSync[name] ??= emptyFileSyncStats())).catch((err: Error) => {
          call.emit('error', {code: grpc.status.INTERNAL, details: `file sync failed: ${err.message}`})
        })
      },
    })
    if (options.exportSink) {
      const sink = options.exportSink
      this.add(SERVICES.fileSend, {
        DiffCopy: (call: grpc.ServerDuplexStream<BytesMessage, BytesMessage>) => {
          const received = receiveExport(call, sink)
          // Reported through exportsDone(); never an unhandled rejection in the meantime.
          received.catch(() => undefined)
          this.exports.push(received)
        },
      })
    }
    this.add(SERVICES.auth, {
      Credentials: (call: grpc.ServerUnaryCall<{Host: string}, unknown>, cb: grpc.sendUnaryData<{Username: string; Secret: string}>) => {
        registryCredentials(call.request.Host, options.dockerConfigDir).then(
          (creds) => cb(null, creds),
          // A broken credential helper should not fail a build that may not need credentials.
          () => cb(null, {Username: '', Secret: ''}),
        )
      },
    })
    if (options.secrets) {
      const secrets = options.secrets
      this.add(SERVICES.secrets, {
        GetSecret: (call: grpc.ServerUnaryCall<{ID: string}, unknown>, cb: grpc.sendUnaryData<{data: Buffer}>) => {
          readSecret(secrets, call.request.ID).then(
            (data) => cb(null, {data}),
            (err: grpc.ServiceError) => cb(err),
          )
        },
      })
    }
  }

  private add(service: string, impl: grpc.UntypedServiceImplementation): void {
    const def = serviceDefinition(service)
    this.server.addService(def, impl)
    for (const m of Object.keys(impl)) this.methods.push(`/${service}/${m}`)
  }

  /** The session headers (for Control.Session metadata or dockerd's POST /session). */
  headers(): Record<string, string | string[]> {
    return {
      'X-Docker-Expose-Session-Uuid': this.id,
      'X-Docker-Expose-Session-Name': this.options.name ?? 'sideload',
      'X-Docker-Expose-Session-Sharedkey': this.options.sharedKey,
      'X-Docker-Expose-Session-Grpc-Method': [...this.methods],
    }
  }

  /** Serve the session over a byte stream on which the daemon speaks HTTP/2 to us. */
  attach(connection: Duplex): void {
    this.injector ??= this.server.createConnectionInjector(grpc.ServerCredentials.createInsecure())
    connection.on('error', () => connection.destroy())
    this.injector.injectConnection(connection)
  }

  /** Wait for every FileSend transfer the daemon started to be fully written. */
  async exportsDone(): Promise<void> {
    await Promise.all(this.exports)
  }

  close(): void {
    this.injector?.destroy()
    this.server.forceShutdown()
  }
}

async function receiveExport(call: grpc.ServerDuplexStream<BytesMessage, BytesMessage>, sink: ExportSink): Promise<void> {
  const md: Record<string, string> = {}
  for (const [k, v] of Object.entries(call.metadata.getMap())) {
    if (k.startsWith('exporter-md-')) md[k.slice('exporter-md-'.length)] = String(v)
  }
  let out: Writable
  try {
    out = await sink.open(md)
  } catch (err) {
    call.emit('error', {code: grpc.status.INTERNAL, details: `cannot store the exported image: ${(err as Error).message}`})
    throw err
  }
  call.on('data', (m: BytesMessage) => {
    if (!out.write(m.data)) {
      call.pause()
      out.once('drain', () => call.resume())
    }
  })
  call.on('end', () => out.end())
  call.on('error', (err) => out.destroy(err))
  try {
    await finished(out)
  } catch (err) {
    call.emit('error', {code: grpc.status.INTERNAL, details: `cannot store the exported image: ${(err as Error).message}`})
    throw err
  }
  call.end()
}

async function readSecret(secrets: Record<string, SecretSource>, id: string): Promise<Buffer> {
  const source = secrets[id]
  if (!source) throw Object.assign(new Error(`secret ${id} not provided (pass --secret id=${id},src=FILE)`), {code: grpc.status.NOT_FOUND})
  if ('env' in source) {
    const value = process.env[source.env]
    if (value === undefined) throw Object.assign(new Error(`secret ${id}: environment variable ${source.env} is not set`), {code: grpc.status.NOT_FOUND})
    return Buffer.from(value)
  }
  try {
    return await fs.promises.readFile(source.file)
  } catch (err) {
    throw Object.assign(new Error(`secret ${id}: cannot read ${source.file}: ${(err as Error).message}`), {code: grpc.status.NOT_FOUND})
  }
}

interface DockerConfig {
  auths?: Record<string, {auth?: string; username?: string; password?: string; identitytoken?: string}>
  credsStore?: string
  credHelpers?: Record<string, string>
}

export interface RegistryCredentials {
  Username: string
  Secret: string
}

const ANONYMOUS: RegistryCredentials = {Username: '', Secret: ''}

/** The config.json keys a registry host may be stored under (Docker Hub has historical aliases). */
function hostKeys(host: string): string[] {
  return host === 'registry-1.docker.io' || host === 'docker.io' || host === 'index.docker.io'
    ? ['https://index.docker.io/v1/', 'index.docker.io', 'docker.io', 'registry-1.docker.io']
    : [host]
}

/**
 * Registry credentials as the docker CLI finds them in config.json ($DOCKER_CONFIG or ~/.docker):
 * a per-registry `credHelpers` entry, else the `credsStore` helper, else plain `auths`. Helpers
 * are the `docker-credential-<name>` programs (`get`, host on stdin, JSON out). Empty answers
 * mean anonymous access.
 */
export async function registryCredentials(host: string, configDir?: string): Promise<RegistryCredentials> {
  const dir = configDir ?? process.env.DOCKER_CONFIG ?? path.join(os.homedir(), '.docker')
  let config: DockerConfig
  try {
    config = JSON.parse(await fs.promises.readFile(path.join(dir, 'config.json'), 'utf8')) as DockerConfig
  } catch {
    return ANONYMOUS
  }
  const keys = hostKeys(host)
  const helper = keys.map((k) => config.credHelpers?.[k]).find((h) => h) ?? config.credsStore
  if (helper) {
    for (const key of keys) {
      const creds = await fromHelper(helper, key)
      if (creds) return creds
    }
  }
  for (const [key, entry] of Object.entries(config.auths ?? {})) {
    const keyHost = key.replace(/^https?:\/\//, '').replace(/\/.*$/, '')
    if (!keys.includes(key) && !keys.includes(keyHost)) continue
    if (entry.identitytoken) return {Username: '', Secret: entry.identitytoken}
    if (entry.username && entry.password) return {Username: entry.username, Secret: entry.password}
    if (entry.auth) {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8')
      const colon = decoded.indexOf(':')
      if (colon > 0) return {Username: decoded.slice(0, colon), Secret: decoded.slice(colon + 1)}
    }
  }
  return ANONYMOUS
}

/** `docker-credential-<helper> get`; undefined when the helper has nothing for this server. */
function fromHelper(helper: string, serverUrl: string): Promise<RegistryCredentials | undefined> {
  return new Promise((resolve) => {
    const child = execFile(`docker-credential-${helper}`, ['get'], {timeout: 10_000}, (err, stdout) => {
      if (err) return resolve(undefined)
      try {
        const out = JSON.parse(stdout) as {Username?: string; Secret?: string}
        if (!out.Secret) return resolve(undefined)
        // A Username of "<token>" marks an identity token.
        resolve({Username: out.Username === '<token>' ? '' : (out.Username ?? ''), Secret: out.Secret})
      } catch {
        resolve(undefined)
      }
    })
    child.stdin?.end(serverUrl)
  })
}
