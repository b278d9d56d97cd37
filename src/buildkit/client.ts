import * as grpc from '@grpc/grpc-js'
import {Duplex} from 'node:stream'
import {CHANNEL_OPTIONS} from '../grpc/load.js'
import {type DockerEndpoint, describeDockerEndpoint} from '../docker/endpoint.js'
import {startUpgradeBridge, type UpgradeBridge} from '../grpc/hijack.js'
import {
  type BuildkitVersion,
  type BytesMessage,
  SERVICES,
  type SolveRequest,
  type SolveResponse,
  type StatusResponse,
  type WorkerRecord,
  serviceDefinition,
} from './protos.js'
import {BuildCancelledError, describeSolveError} from './errors.js'

export const DEFAULT_BUILDKIT_HOST = 'unix:///run/buildkit/buildkitd.sock'

/** Which builder runs the build, as the user chose it (ops/build/ resolveBuilder makes it a BuilderEndpoint). */
export type BuilderChoice =
  /** A standalone BuildKit daemon (default address: $BUILDKIT_HOST or unix:///run/buildkit/buildkitd.sock). */
  | {kind: 'buildkitd'; address?: string}
  /** The BuildKit embedded in dockerd (default: $DOCKER_HOST or unix:///var/run/docker.sock). */
  | {kind: 'docker'; dockerHost?: string}
  /**
   * A BuildKit daemon when $BUILDKIT_HOST is set or its default socket exists, else dockerd when
   * $DOCKER_HOST is set or its default socket exists.
   */
  | {kind: 'auto'}

/** Which builder to talk to: a standalone buildkitd, or the BuildKit embedded in dockerd. */
export type BuilderEndpoint = {kind: 'buildkitd'; address: string} | {kind: 'docker'; docker: DockerEndpoint}

export function describeBuilder(endpoint: BuilderEndpoint): string {
  return endpoint.kind === 'buildkitd'
    ? `BuildKit daemon at ${endpoint.address}`
    : `Docker's BuildKit at ${describeDockerEndpoint(endpoint.docker)}`
}

/** grpc-js target for a BUILDKIT_HOST-style address (`unix:///…`, `tcp://host:port`). */
export function grpcTarget(address: string): string {
  if (address.startsWith('unix://')) return address
  if (address.startsWith('tcp://')) return address.slice('tcp://'.length).replace(/\/$/, '')
  if (address.startsWith('/')) return `unix://${address}`
  throw new Error(`unsupported BuildKit address "${address}": use unix:///path/buildkitd.sock or tcp://host:port`)
}

/**
 * Channel options for BuildKit. A standalone buildkitd serves with grpc-go, whose default
 * keepalive enforcement (pings no more often than every 5 min, none without calls) answers the
 * project's 30 s pings with GOAWAY too_many_pings after three, which would kill a long Solve
 * or the session stream (containerd 1.6 did exactly that). dockerd's /grpc is served by
 * x/net/http2 and does not care; local sockets need no keepalive anyway.
 */
export const BUILDKIT_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  ...CHANNEL_OPTIONS,
  'grpc.keepalive_time_ms': 330_000,
  'grpc.keepalive_permit_without_calls': 0,
}

type ControlClient = grpc.Client & {
  [method: string]: unknown
}

const ControlClientCtor = grpc.makeClientConstructor(serviceDefinition(SERVICES.control), SERVICES.control)

/**
 * A BuildKit Control API client (Solve, Status, ListWorkers, Info, Session) over grpc-js.
 * For dockerd the Control API is reached through `POST /grpc` upgrades behind a private socket.
 */
export class BuildkitClient {
  private constructor(
    readonly endpoint: BuilderEndpoint,
    private readonly control: ControlClient,
    private readonly bridge: UpgradeBridge | undefined,
  ) {}

  static async connect(endpoint: BuilderEndpoint): Promise<BuildkitClient> {
    if (endpoint.kind === 'buildkitd') {
      const control = new ControlClientCtor(grpcTarget(endpoint.address), grpc.credentials.createInsecure(), BUILDKIT_CHANNEL_OPTIONS) as ControlClient
      return new BuildkitClient(endpoint, control, undefined)
    }
    const bridge = await startUpgradeBridge(endpoint.docker, '/grpc')
    // The authority is what dockerd's embedded grpc server sees; "localhost" like buildx.
    const control = new ControlClientCtor(bridge.target, grpc.credentials.createInsecure(), {
      ...BUILDKIT_CHANNEL_OPTIONS,
      'grpc.default_authority': 'localhost',
    }) as ControlClient
    return new BuildkitClient(endpoint, control, bridge)
  }

  private unary<Req, Res>(method: string, request: Req, deadlineMs?: number, signal?: AbortSignal): Promise<Res> {
    const fn = this.control[method] as (
      req: Req,
      md: grpc.Metadata,
      opts: grpc.CallOptions,
      cb: (err: grpc.ServiceError | null, res?: Res) => void,
    ) => grpc.ClientUnaryCall
    return new Promise((resolve, reject) => {
      const options: grpc.CallOptions = deadlineMs === undefined ? {} : {deadline: Date.now() + deadlineMs}
      const call = fn.call(this.control, request, new grpc.Metadata(), options, (err, res) => {
        signal?.removeEventListener('abort', cancel)
        if (err) reject(err)
        else resolve(res as Res)
      })
      // Cancelling the call cancels the build in the daemon.
      const cancel = (): void => call.cancel()
      if (signal?.aborted) cancel()
      else signal?.addEventListener('abort', cancel, {once: true})
    })
  }

  /** The daemon's workers; also the liveness probe (every BuildKit version has it). */
  async listWorkers(): Promise<WorkerRecord[]> {
    try {
      const res = await this.unary<{filter: string[]}, {record: WorkerRecord[]}>('ListWorkers', {filter: []}, 20_000)
      return res.record
    } catch (err) {
      throw new Error(`cannot reach the ${describeBuilder(this.endpoint)}: ${(err as Error).message}. ${hintFor(this.endpoint)}`)
    }
  }

  /** The daemon's version, or undefined for daemons older than v0.11 (Info is UNIMPLEMENTED there). */
  async info(): Promise<BuildkitVersion | undefined> {
    try {
      const res = await this.unary<Record<string, never>, {buildkitVersion: BuildkitVersion | null}>('Info', {}, 20_000)
      return res.buildkitVersion ?? undefined
    } catch (err) {
      if ((err as grpc.ServiceError).code === grpc.status.UNIMPLEMENTED) return undefined
      throw err
    }
  }

  /**
   * Run one build. Rejects with a BuildFailedError carrying BuildKit's explanation, or with a
   * BuildCancelledError when `signal` aborted it (the daemon stops the build).
   */
  async solve(request: SolveRequest, signal?: AbortSignal): Promise<SolveResponse> {
    try {
      return await this.unary<SolveRequest, SolveResponse>('Solve', request, undefined, signal)
    } catch (err) {
      if (signal?.aborted) throw new BuildCancelledError()
      throw describeSolveError(err as grpc.ServiceError)
    }
  }

  /**
   * Progress of the build with this ref. The daemon streams incremental updates until the build
   * ends; `cancel()` stops listening early.
   */
  status(ref: string, onUpdate: (update: StatusResponse) => void): {done: Promise<void>; cancel(): void} {
    const fn = this.control.Status as (req: {Ref: string}) => grpc.ClientReadableStream<StatusResponse>
    const call = fn.call(this.control, {Ref: ref})
    const done = new Promise<void>((resolve) => {
      call.on('data', onUpdate)
      call.on('end', () => resolve())
      // A cancelled or broken status stream never fails the build itself.
      call.on('error', () => resolve())
    })
    return {done, cancel: () => call.cancel()}
  }

  /**
   * Open `Control.Session` and expose it as a raw byte stream: the daemon speaks HTTP/2 (as the
   * client) inside it, and our session server answers.
   */
  openSession(headers: Record<string, string | string[]>): Duplex {
    const md = new grpc.Metadata()
    for (const [key, value] of Object.entries(headers)) {
      for (const v of Array.isArray(value) ? value : [value]) md.add(key.toLowerCase(), v)
    }
    const fn = this.control.Session as (md: grpc.Metadata) => grpc.ClientDuplexStream<BytesMessage, BytesMessage>
    const call = fn.call(this.control, md)
    return bytesDuplex(call)
  }

  close(): Promise<void> {
    this.control.close()
    return this.bridge?.close() ?? Promise.resolve()
  }
}

/** Wrap a BytesMessage bidi call as a plain byte Duplex (grpchijack's framing: none). */
export function bytesDuplex(call: grpc.ClientDuplexStream<BytesMessage, BytesMessage>): Duplex {
  const duplex = new Duplex({
    write(chunk: Buffer, _enc, cb) {
      call.write({data: chunk}, cb)
    },
    final(cb) {
      call.end()
      cb()
    },
    read() {
      call.resume()
    },
    destroy(err, cb) {
      call.cancel()
      cb(err)
    },
  })
  call.on('data', (m: BytesMessage) => {
    if (!duplex.push(m.data)) call.pause()
  })
  call.on('end', () => duplex.push(null))
  call.on('error', (err: grpc.ServiceError) => {
    if (err.code === grpc.status.CANCELLED) duplex.push(null)
    else duplex.destroy(err)
  })
  return duplex
}

function hintFor(endpoint: BuilderEndpoint): string {
  return endpoint.kind === 'buildkitd'
    ? 'Is buildkitd running? Set BUILDKIT_HOST or --buildkit-host, or use --builder docker.'
    : 'Is dockerd running (20.10 or newer)? Set DOCKER_HOST or --docker-host.'
}
