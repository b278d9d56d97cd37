import {randomBytes} from 'node:crypto'
import * as net from 'node:net'
import {type Duplex, Readable} from 'node:stream'
import * as grpc from '@grpc/grpc-js'
import {DuplexChannelCredentials} from '../grpc/duplex-credentials.js'
import {CHANNEL_OPTIONS, loadProtos, lookup} from '../grpc/load.js'
import type {Descriptor, Digest} from '../image/index.js'
import {describeError, isAlreadyExists, isNotFound} from './errors.js'
import {writeContent, type WriteContentOptions, type WriteContentResult} from './content-writer.js'
import {rfc3339} from './labels.js'
import type {ReadContentResponse__Output} from '../grpc/generated/containerd/services/content/v1/ReadContentResponse.js'
import {type ContainerdServices, type ContentClient, type Rpc, type RpcMethod, SERVICE_NAMES, type UnaryReply, type UnaryRequest} from './services.js'
import {LEASE_EXPIRE_LABEL} from './labels.js'
import {type CallOptions, type ContainerdClientOptions, type ContentInfo, fromProtoDescriptor, fromProtoImage, type ImageRecord, type Mount, type SnapshotInfo, toProtoDescriptor} from './client-types.js'

export * from './client-types.js'

const PROTO_FILES = [
  'containerd/services/version/v1/version.proto',
  'containerd/services/introspection/v1/introspection.proto',
  'containerd/services/content/v1/content.proto',
  'containerd/services/images/v1/images.proto',
  'containerd/services/leases/v1/leases.proto',
  'containerd/services/snapshots/v1/snapshots.proto',
  'containerd/services/diff/v1/diff.proto',
  'containerd/services/containers/v1/containers.proto',
]

/**
 * containerd's gRPC server keeps Go's default keepalive enforcement (pings no more often than
 * every 5 min, none without calls): more frequent pings get the connection closed with
 * GOAWAY too_many_pings after three of them, which would kill a long Diff.Apply mid-call
 * (seen with containerd 1.6.20). Dead links are detected by the SSH keepalive instead.
 */
export const CONTAINERD_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  ...CHANNEL_OPTIONS,
  'grpc.keepalive_time_ms': 330_000,
  'grpc.keepalive_permit_without_calls': 0,
}

export const NAMESPACE_HEADER = 'containerd-namespace'
export const LEASE_HEADER = 'containerd-lease'

type ServiceCtor = new (address: string, creds: grpc.ChannelCredentials, options: grpc.ClientOptions) => grpc.Client

/** `unix:///run/containerd/containerd.sock`, a bare socket path, or any grpc-js target. */
export function normalizeAddress(address: string): string {
  return address.startsWith('/') ? `unix://${address}` : address
}

/**
 * A containerd client over one gRPC channel (a local unix socket, or streams over SSH through
 * DuplexChannelCredentials). Every namespaced call carries `containerd-namespace`.
 */
export class ContainerdClient {
  readonly address: string
  readonly namespace: string
  readonly displayName: string
  private readonly services: ContainerdServices
  private readonly credentials: grpc.ChannelCredentials | undefined

  constructor(address: string, options: ContainerdClientOptions = {}) {
    this.address = normalizeAddress(address)
    this.namespace = options.namespace ?? 'k8s.io'
    this.displayName = options.displayName ?? this.address
    const pkg = loadProtos(PROTO_FILES)
    this.credentials = options.credentials
    const creds = options.credentials ?? grpc.credentials.createInsecure()
    let first: grpc.Client | undefined
    const make = <K extends keyof ContainerdServices>(service: K): ContainerdServices[K] => {
      const client = new (lookup<ServiceCtor>(pkg, SERVICE_NAMES[service]))(this.address, creds,
        first ? {...CONTAINERD_CHANNEL_OPTIONS, channelOverride: first.getChannel()} : CONTAINERD_CHANNEL_OPTIONS)
      first ??= client
      return client as ContainerdServices[K]
    }
    this.services = {
      version: make('version'),
      introspection: make('introspection'),
      content: make('content'),
      images: make('images'),
      leases: make('leases'),
      snapshots: make('snapshots'),
      diff: make('diff'),
      containers: make('containers'),
    }
  }

  close(): void {
    for (const svc of Object.values(this.services)) svc.close()
  }

  /** The gRPC channel, to run other services on the same socket (CRI) over the same connection. */
  channel(): grpc.Channel {
    return this.services.version.getChannel() as grpc.Channel
  }

  metadata(options: CallOptions = {}): grpc.Metadata {
    const md = new grpc.Metadata()
    md.set(NAMESPACE_HEADER, this.namespace)
    if (options.lease) md.set(LEASE_HEADER, options.lease)
    return md
  }

  /** One unary call, typed by the generated client: `unary('content.Info', {digest})`. */
  private unary<R extends Rpc>(rpc: R, request: NoInfer<UnaryRequest<RpcMethod<R>>>, options: CallOptions = {}): Promise<UnaryReply<RpcMethod<R>>> {
    const [service, method] = rpc.split('.') as [keyof ContainerdServices, string]
    const client = this.services[service]
    // the one dynamic call: the method picked by name, with (argument, metadata, callback)
    const call = (client as unknown as Record<string, (argument: unknown, metadata: grpc.Metadata, callback: grpc.requestCallback<UnaryReply<RpcMethod<R>>>) => grpc.ClientUnaryCall>)[method]
    return new Promise((resolve, reject) => {
      call.call(client, request, this.metadata(options), (err, res) => (err || res === undefined ? reject(describeError(err ?? new Error('no reply'), rpc, this.displayName)) : resolve(res)))
    })
  }

  /** A message field of a reply that the proto allows to be absent, where containerd always sends it. */
  private field<T, K extends keyof T>(reply: T, key: K, rpc: Rpc): NonNullable<T[K]> {
    const value = reply[key]
    if (value === null || value === undefined) throw new Error(`containerd ${rpc} on ${this.displayName} replied without ${String(key)}`)
    return value as NonNullable<T[K]>
  }

  /**
   * A new stream to containerd's socket, for a call spoken without grpc-js (the blob writer's
   * direct path); undefined when the channel is not one we can open a stream of.
   */
  openStream(): Promise<Duplex> | undefined {
    if (this.credentials instanceof DuplexChannelCredentials) return this.credentials.openStream()
    if (this.credentials || !this.address.startsWith('unix://')) return undefined
    const socketPath = this.address.slice('unix://'.length)
    return new Promise((resolve, reject) => {
      const socket = net.connect(socketPath, () => {
        socket.off('error', reject)
        resolve(socket)
      })
      socket.once('error', reject)
    })
  }

  /** The Content client, for the streaming writer. */
  contentService(): ContentClient {
    return this.services.content
  }

  // --- version / introspection -------------------------------------------------------------

  version(): Promise<{version: string; revision: string}> {
    return this.unary('version.Version', {})
  }

  /** The daemon's UUID (stable per containerd root); tells whether two addresses are one daemon. */
  async serverUuid(): Promise<string> {
    const res = await this.unary('introspection.Server', {})
    return res.uuid
  }

  /**
   * The platform containerd runs containers for (its snapshotter and runtime plugins report
   * it), e.g. {os: linux, architecture: arm64, variant: v8}; undefined when no plugin says.
   */
  async platform(): Promise<{os: string; architecture: string; variant?: string} | undefined> {
    type P = {os: string; architecture: string; variant: string}
    const res = await this.unary('introspection.Plugins', {filters: ['type==io.containerd.snapshotter.v1', 'type==io.containerd.runtime.v2']})
    const p = res.plugins.flatMap((x) => x.platforms).find((x) => x.os && x.architecture)
    return p ? {os: p.os, architecture: p.architecture, ...(p.variant ? {variant: p.variant} : {})} : undefined
  }

  /** Each snapshotter plugin's exported root directory → its id (e.g. …/io.containerd.snapshotter.v1.overlayfs → overlayfs). */
  async snapshotterRoots(): Promise<Map<string, string>> {
    const res = await this.unary('introspection.Plugins', {filters: ['type==io.containerd.snapshotter.v1']})
    const roots = new Map<string, string>()
    for (const p of res.plugins) if (p.exports?.root) roots.set(p.exports.root, p.id)
    return roots
  }

  // --- content -------------------------------------------------------------------------------

  /** Content info, or undefined when the blob is not in the store. */
  async contentInfo(digest: Digest): Promise<ContentInfo | undefined> {
    try {
      const info = this.field(await this.unary('content.Info', {digest}), 'info', 'content.Info')
      return {digest: info.digest, size: Number(info.size), labels: {...info.labels}}
    } catch (err) {
      if (isNotFound(err)) return undefined
      throw err
    }
  }

  /** Set labels on a blob (only the keys given; other labels stay). */
  async contentSetLabels(digest: Digest, labels: Record<string, string>, options: CallOptions = {}): Promise<ContentInfo> {
    const res = await this.unary(
      'content.Update',
      {info: {digest, labels}, update_mask: {paths: Object.keys(labels).map((k) => `labels.${k}`)}},
      options,
    )
    const info = this.field(res, 'info', 'content.Update')
    return {digest: info.digest, size: Number(info.size), labels: {...info.labels}}
  }

  /** A blob as a byte stream (from `offset`), with backpressure. */
  contentRead(digest: Digest, offset = 0): Readable {
    const call = this.services.content.Read({digest, offset, size: 0}, this.metadata())
    const where = this.displayName
    async function* chunks(): AsyncGenerator<Buffer> {
      try {
        for await (const msg of call) yield (msg as ReadContentResponse__Output).data
      } catch (err) {
        throw describeError(err, 'content.Read', where)
      } finally {
        call.cancel()
      }
    }
    return Readable.from(chunks(), {objectMode: false})
  }

  async contentStatus(ref: string): Promise<{offset: number; total: number} | undefined> {
    try {
      const status = this.field(await this.unary('content.Status', {ref}), 'status', 'content.Status')
      return {offset: Number(status.offset), total: Number(status.total)}
    } catch (err) {
      if (isNotFound(err)) return undefined
      throw err
    }
  }

  async contentAbort(ref: string): Promise<void> {
    try {
      await this.unary('content.Abort', {ref})
    } catch (err) {
      if (!isNotFound(err)) throw err
    }
  }

  async contentDelete(digest: Digest): Promise<void> {
    try {
      await this.unary('content.Delete', {digest})
    } catch (err) {
      if (!isNotFound(err)) throw err
    }
  }

  /** Write one blob (resumable, see content-writer.ts). */
  writeContent(options: WriteContentOptions): Promise<WriteContentResult> {
    return writeContent(this, options)
  }

  // --- images --------------------------------------------------------------------------------

  async imageGet(name: string): Promise<ImageRecord | undefined> {
    try {
      return fromProtoImage(this.field(await this.unary('images.Get', {name}), 'image', 'images.Get'))
    } catch (err) {
      if (isNotFound(err)) return undefined
      throw err
    }
  }

  /** Every container in the namespace (the CRI's containers and sandboxes in k8s.io) with the image it was created from. */
  async containerList(): Promise<{id: string; image: string}[]> {
    const res = await this.unary('containers.List', {filters: []})
    return res.containers.map((c) => ({id: c.id, image: c.image}))
  }

  async imageList(filters: string[] = []): Promise<ImageRecord[]> {
    const res = await this.unary('images.List', {filters})
    return res.images.map(fromProtoImage)
  }

  async imageCreate(image: {name: string; labels?: Record<string, string>; target: Descriptor}, options: CallOptions = {}): Promise<ImageRecord> {
    const res = await this.unary('images.Create', {image: {name: image.name, labels: image.labels ?? {}, target: toProtoDescriptor(image.target)}}, options)
    return fromProtoImage(this.field(res, 'image', 'images.Create'))
  }

  /**
   * Update the fields named in `paths` ("target", "labels.<key>", "labels"). The target is sent even
   * when only labels change: containerd 2.3's Images.Update dereferences it unconditionally (a nil
   * target crashes the daemon: SIGSEGV in oci.DescriptorFromProto).
   */
  async imageUpdate(image: {name: string; labels?: Record<string, string>; target: Descriptor}, paths: string[], options: CallOptions = {}): Promise<ImageRecord> {
    const proto = {name: image.name, labels: image.labels ?? {}, target: toProtoDescriptor(image.target)}
    const res = await this.unary('images.Update', {image: proto, update_mask: {paths}}, options)
    return fromProtoImage(this.field(res, 'image', 'images.Update'))
  }

  async imageDelete(name: string, sync = false): Promise<void> {
    try {
      await this.unary('images.Delete', {name, sync})
    } catch (err) {
      if (!isNotFound(err)) throw err
    }
  }

  // --- leases --------------------------------------------------------------------------------

  /** Create a lease that containerd's GC drops by itself after `expiresInMs`. */
  async leaseCreate(options: {id?: string; expiresInMs: number; labels?: Record<string, string>}): Promise<string> {
    const id = options.id ?? `sideload-${Date.now()}-${randomBytes(4).toString('hex')}`
    const expire = rfc3339(new Date(Date.now() + options.expiresInMs))
    const res = await this.unary('leases.Create', {id, labels: {[LEASE_EXPIRE_LABEL]: expire, ...(options.labels ?? {})}})
    return this.field(res, 'lease', 'leases.Create').id
  }

  async leaseDelete(id: string, sync = false): Promise<void> {
    try {
      await this.unary('leases.Delete', {id, sync})
    } catch (err) {
      if (!isNotFound(err)) throw err
    }
  }

  /** Protect an existing resource (type "content" with a digest id, or "snapshots/<snapshotter>") with a lease. */
  async leaseAddResource(id: string, resource: {id: string; type: string}): Promise<void> {
    await this.unary('leases.AddResource', {id, resource})
  }

  async leaseList(filters: string[] = []): Promise<{id: string; labels: Record<string, string>}[]> {
    const res = await this.unary('leases.List', {filters})
    return res.leases.map((l) => ({id: l.id, labels: {...l.labels}}))
  }

  // --- snapshots / diff ------------------------------------------------------------------------

  async snapshotStat(snapshotter: string, key: string): Promise<SnapshotInfo | undefined> {
    try {
      const info = this.field(await this.unary('snapshots.Stat', {snapshotter, key}), 'info', 'snapshots.Stat')
      return {name: info.name, parent: info.parent, kind: info.kind, labels: {...info.labels}}
    } catch (err) {
      if (isNotFound(err)) return undefined
      throw err
    }
  }

  async snapshotPrepare(snapshotter: string, key: string, parent: string, options: CallOptions & {labels?: Record<string, string>} = {}): Promise<Mount[]> {
    const res = await this.unary('snapshots.Prepare', {snapshotter, key, parent, labels: options.labels ?? {}}, options)
    return res.mounts
  }

  async snapshotCommit(snapshotter: string, name: string, key: string, options: CallOptions & {labels?: Record<string, string>} = {}): Promise<void> {
    await this.unary('snapshots.Commit', {snapshotter, name, key, labels: options.labels ?? {}}, options)
  }

  async snapshotRemove(snapshotter: string, key: string, options: CallOptions = {}): Promise<void> {
    try {
      await this.unary('snapshots.Remove', {snapshotter, key}, options)
    } catch (err) {
      if (!isNotFound(err)) throw err
    }
  }

  /** Apply a layer blob (from the node's content store) onto prepared mounts; returns the applied (uncompressed) descriptor. */
  async diffApply(layer: Descriptor, mounts: Mount[], options: CallOptions = {}): Promise<Descriptor> {
    const res = await this.unary('diff.Apply', {diff: toProtoDescriptor(layer), mounts, payloads: {}}, options)
    return fromProtoDescriptor(res.applied)
  }
}

export {isAlreadyExists, isNotFound}
