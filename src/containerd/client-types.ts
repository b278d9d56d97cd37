// What containerd's services answer, as sideload uses it: content info, image records, mounts,
// snapshots; and the conversions from and to their protobuf shapes (client.ts calls, these describe).
import type * as grpc from '@grpc/grpc-js'
import type {Descriptor, Digest} from '../image/index.js'

export interface ContentInfo {
  digest: Digest
  size: number
  labels: Record<string, string>
}

/** An image record in containerd's image store. */
export interface ImageRecord {
  name: string
  labels: Record<string, string>
  target: Descriptor
  createdAt?: Date
  updatedAt?: Date
}

export interface Mount {
  type: string
  source: string
  target: string
  options: string[]
}

export interface SnapshotInfo {
  name: string
  parent: string
  kind: 'UNKNOWN' | 'VIEW' | 'ACTIVE' | 'COMMITTED'
  labels: Record<string, string>
}

export interface CallOptions {
  /** Attach what this call creates to a lease (containerd-lease header). */
  lease?: string
}

export interface ContainerdClientOptions {
  /** containerd namespace for namespaced calls; CRI uses k8s.io (the default). */
  namespace?: string
  /** Name used in error messages (the node's name); defaults to the address. */
  displayName?: string
  /** Channel credentials (default insecure): DuplexChannelCredentials run the channel over SSH. */
  credentials?: grpc.ChannelCredentials
}

export type ProtoDescriptor = {media_type: string; digest: string; size: number; annotations: Record<string, string>}
type Timestamp = {seconds: number; nanos: number} | null
type ProtoImage = {name: string; labels: Record<string, string>; target: ProtoDescriptor | null; created_at: Timestamp; updated_at: Timestamp}

export function toProtoDescriptor(d: Descriptor): ProtoDescriptor {
  return {media_type: d.mediaType, digest: d.digest, size: d.size, annotations: d.annotations ?? {}}
}

export function fromProtoDescriptor(d: ProtoDescriptor | null | undefined): Descriptor {
  const out: Descriptor = {mediaType: d?.media_type ?? '', digest: d?.digest ?? '', size: Number(d?.size ?? 0)}
  if (d?.annotations && Object.keys(d.annotations).length) out.annotations = {...d.annotations}
  return out
}

function toDate(t: Timestamp): Date | undefined {
  return t ? new Date(t.seconds * 1000 + Math.floor(t.nanos / 1e6)) : undefined
}

export function fromProtoImage(i: ProtoImage): ImageRecord {
  return {name: i.name, labels: {...i.labels}, target: fromProtoDescriptor(i.target), createdAt: toDate(i.created_at), updatedAt: toDate(i.updated_at)}
}
