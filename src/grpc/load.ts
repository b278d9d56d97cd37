import * as path from 'node:path'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import {PACKAGE_ROOT} from '../util/package-root.js'

/** The project's proto/ directory. */
export const PROTO_ROOT = path.join(PACKAGE_ROOT, 'proto')

/**
 * One set of loader options for every proto in the project, so messages look the same
 * everywhere: field names exactly as written in the .proto (keepCase), 64-bit integers as
 * JS numbers (sizes and offsets stay far below 2^53), enums as their names, bytes as Buffers.
 */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  bytes: Buffer,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
}

const cache = new Map<string, grpc.GrpcObject>()

/** Load our own .proto files (paths relative to proto/) into a grpc-js package object. */
export function loadProtos(files: string[]): grpc.GrpcObject {
  const key = files.join('\0')
  let loaded = cache.get(key)
  if (!loaded) {
    const definition = protoLoader.loadSync(files, LOADER_OPTIONS)
    loaded = grpc.loadPackageDefinition(definition)
    cache.set(key, loaded)
  }
  return loaded
}

/** Walk a dotted name ("containerd.services.content.v1.Content") inside a loaded package. */
export function lookup<T = unknown>(pkg: grpc.GrpcObject, dotted: string): T {
  let node: unknown = pkg
  for (const part of dotted.split('.')) {
    node = (node as Record<string, unknown> | undefined)?.[part]
    if (node === undefined) throw new Error(`proto definition ${dotted} not found (is it in proto/?)`)
  }
  return node as T
}

/**
 * Channel options shared by every client on a channel. grpc-js only shares a connection
 * between clients created with identical options, so always pass this same object.
 */
export const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
  'grpc.max_send_message_length': 64 * 1024 * 1024,
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_permit_without_calls': 1,
}
