// containerd's services as typed clients: the types come from our own protos (proto/) through
// @grpc/proto-loader's type generator (scripts/gen-protos.sh → src/grpc/generated/, git-ignored),
// so a request or a reply that does not match the .proto is a compile error, not a cast.
import type * as grpc from '@grpc/grpc-js'
import type {ContainersClient} from '../grpc/generated/containerd/services/containers/v1/Containers.js'
import type {ContentClient} from '../grpc/generated/containerd/services/content/v1/Content.js'
import type {DiffClient} from '../grpc/generated/containerd/services/diff/v1/Diff.js'
import type {ImagesClient} from '../grpc/generated/containerd/services/images/v1/Images.js'
import type {IntrospectionClient} from '../grpc/generated/containerd/services/introspection/v1/Introspection.js'
import type {LeasesClient} from '../grpc/generated/containerd/services/leases/v1/Leases.js'
import type {SnapshotsClient} from '../grpc/generated/containerd/services/snapshots/v1/Snapshots.js'
import type {VersionClient} from '../grpc/generated/containerd/services/version/v1/Version.js'

export type {ContentClient}

/** The containerd services sideload calls, by the short name errors use (`content.Info`). */
export interface ContainerdServices {
  version: VersionClient
  introspection: IntrospectionClient
  content: ContentClient
  images: ImagesClient
  leases: LeasesClient
  snapshots: SnapshotsClient
  diff: DiffClient
  containers: ContainersClient
}

/** The proto package path of each service. */
export const SERVICE_NAMES: Record<keyof ContainerdServices, string> = {
  version: 'containerd.services.version.v1.Version',
  introspection: 'containerd.services.introspection.v1.Introspection',
  content: 'containerd.services.content.v1.Content',
  images: 'containerd.services.images.v1.Images',
  leases: 'containerd.services.leases.v1.Leases',
  snapshots: 'containerd.services.snapshots.v1.Snapshots',
  diff: 'containerd.services.diff.v1.Diff',
  containers: 'containerd.services.containers.v1.Containers',
}

// A generated unary method has four overloads; TypeScript infers from the last: (argument, callback).
/** The request type of a unary method of a generated client. */
export type UnaryRequest<F> = F extends (argument: infer Req, callback: grpc.requestCallback<infer _Res>) => grpc.ClientUnaryCall ? Req : never
/** The reply type of a unary method of a generated client. */
export type UnaryReply<F> = F extends (argument: infer _Req, callback: grpc.requestCallback<infer Res>) => grpc.ClientUnaryCall ? Res : never
/** The names of a generated client's unary methods (the proto's own spelling: `Info`, `Write` is streaming). */
export type UnaryMethod<C> = {[M in keyof C]: M extends string ? ([UnaryRequest<C[M]>] extends [never] ? never : M extends Capitalize<M> ? M : never) : never}[keyof C]

/** Every unary call as `service.Method` (`content.Info`): the name errors show, and what `unary` takes. */
export type Rpc = {[S in keyof ContainerdServices]: `${S}.${UnaryMethod<ContainerdServices[S]>}`}[keyof ContainerdServices]
/** The generated method an Rpc names. */
export type RpcMethod<R extends Rpc> = R extends `${infer S extends keyof ContainerdServices}.${infer M}` ? (M extends keyof ContainerdServices[S] ? ContainerdServices[S][M] : never) : never
