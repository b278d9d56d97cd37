import * as fs from 'node:fs'
import * as path from 'node:path'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import protobuf from 'protobufjs'
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

/** The containerd and CRI protos, precompiled by `npm run build` (scripts/proto-json.mjs). */
export const PRECOMPILED_PROTOS = path.join(PACKAGE_ROOT, 'dist', 'proto', 'containerd.json')
let precompiled: {files: Set<string>; pkg: grpc.GrpcObject} | null | undefined

/**
 * Load our own .proto files (paths relative to proto/) into a grpc-js package object: from the
 * build's precompiled descriptor when it holds them all, else parsed from proto/ (tests run from
 * src/ before a build).
 */
export function loadProtos(files: string[]): grpc.GrpcObject {
  const pre = precompiledProtos()
  if (pre && files.every((f) => pre.files.has(f))) return pre.pkg
  return parseProtos(files)
}

/** The .proto files parsed by @grpc/proto-loader. */
export function parseProtos(files: string[]): grpc.GrpcObject {
  const key = files.join('\0')
  let loaded = cache.get(key)
  if (!loaded) {
    const definition = protoLoader.loadSync(files, LOADER_OPTIONS)
    loaded = grpc.loadPackageDefinition(definition)
    cache.set(key, loaded)
  }
  return loaded
}

function precompiledProtos(): {files: Set<string>; pkg: grpc.GrpcObject} | null {
  if (precompiled === undefined) {
    let text: string | undefined
    try {
      text = fs.readFileSync(PRECOMPILED_PROTOS, 'utf8')
    } catch {
      // not built: parse the protos
    }
    const json = text === undefined ? undefined : (JSON.parse(text) as {files: string[]; root: protobuf.INamespace})
    precompiled = json ? {files: new Set(json.files), pkg: servicesOf(protobuf.Root.fromJSON(json.root))} : null
  }
  return precompiled
}

/**
 * The services of a protobufjs root as grpc-js client constructors, at their dotted names: what
 * grpc.loadPackageDefinition makes of @grpc/proto-loader's definition for them (the same
 * serializers, with LOADER_OPTIONS), without the file descriptors proto-loader also builds.
 */
export function servicesOf(root: protobuf.Root): grpc.GrpcObject {
  const pkg: grpc.GrpcObject = {}
  const {keepCase: _k, includeDirs: _i, ...conversion} = LOADER_OPTIONS
  const serializer = (type: protobuf.Type) => (message: object): Buffer => Buffer.from(type.encode(type.fromObject(message)).finish())
  const deserializer = (type: protobuf.Type) => (bytes: Buffer): object => type.toObject(type.decode(bytes), conversion as protobuf.IConversionOptions)
  const visit = (ns: protobuf.NamespaceBase): void => {
    for (const child of ns.nestedArray) {
      if (child instanceof protobuf.Service) {
        const name = child.fullName.slice(1)
        const methods: Record<string, grpc.MethodDefinition<object, object>> = {}
        for (const method of child.methodsArray) {
          method.resolve()
          const request = method.resolvedRequestType!
          const response = method.resolvedResponseType!
          methods[method.name] = {
            path: `/${name}/${method.name}`,
            requestStream: !!method.requestStream,
            responseStream: !!method.responseStream,
            requestSerialize: serializer(request),
            requestDeserialize: deserializer(request),
            responseSerialize: serializer(response),
            responseDeserialize: deserializer(response),
            originalName: method.name[0].toLowerCase() + method.name.slice(1),
          }
        }
        let at = pkg
        const parts = name.split('.')
        for (const part of parts.slice(0, -1)) at = (at[part] ??= {}) as grpc.GrpcObject
        at[parts.at(-1)!] = grpc.makeGenericClientConstructor(methods, name)
      } else if (child instanceof protobuf.Namespace) visit(child)
    }
  }
  visit(root)
  return pkg
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
