// The containerd and CRI protos precompiled by the build (scripts/proto-json.mjs, read by
// src/grpc/load.ts) against the same .proto files parsed by @grpc/proto-loader: the same services
// and methods, and for every method's request and response, a message with every field set
// serializes to the same bytes and reads back to the same object.
import {execFileSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import type * as grpc from '@grpc/grpc-js'
import protobuf from 'protobufjs'
import {beforeAll, describe, expect, it} from 'vitest'
import {loadProtos, parseProtos, PRECOMPILED_PROTOS, servicesOf} from '../../src/grpc/load.js'

const ROOT = path.resolve(__dirname, '..', '..')
let json: {files: string[]; root: protobuf.INamespace}

beforeAll(() => {
  // what `npm run build` writes; made here when the tests run before a build
  if (!fs.existsSync(PRECOMPILED_PROTOS)) execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'proto-json.mjs')])
  json = JSON.parse(fs.readFileSync(PRECOMPILED_PROTOS, 'utf8'))
})

type Ctor = grpc.ServiceClientConstructor
/** Every service constructor in a package object, by dotted name. */
function services(pkg: grpc.GrpcObject, prefix = ''): Map<string, Ctor> {
  const out = new Map<string, Ctor>()
  for (const [key, value] of Object.entries(pkg)) {
    const name = prefix ? `${prefix}.${key}` : key
    if (typeof value === 'function' && 'service' in value) out.set(name, value as Ctor)
    else if (typeof value === 'object' && value && !('format' in value)) for (const [k, v] of services(value as grpc.GrpcObject, name)) out.set(k, v)
  }
  return out
}

/** A message of `type` with every field set (nested messages two levels deep). */
function sample(type: protobuf.Type, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const field of type.fieldsArray) {
    field.resolve()
    const one = (): unknown => {
      if (field.resolvedType instanceof protobuf.Type) return depth < 2 ? sample(field.resolvedType, depth + 1) : {}
      if (field.resolvedType instanceof protobuf.Enum) return Object.keys(field.resolvedType.values).at(-1)
      switch (field.type) {
        case 'string': return `${field.name}-é`
        case 'bytes': return Buffer.from([0, 1, 2, 255])
        case 'bool': return true
        case 'double': case 'float': return 1.5
        case 'int64': case 'uint64': case 'sint64': case 'fixed64': case 'sfixed64': return 9_007_199_254_740
        default: return 42
      }
    }
    if (field instanceof protobuf.MapField) out[field.name] = {a: one(), b: one()}
    else if (field.repeated) out[field.name] = [one(), one()]
    else out[field.name] = one()
  }
  return out
}

describe('the precompiled containerd and CRI protos', () => {
  it('hold every .proto under proto/containerd/', () => {
    const onDisk = (fs.readdirSync(path.join(ROOT, 'proto', 'containerd'), {recursive: true}) as string[]).filter((f) => f.endsWith('.proto')).map((f) => `containerd/${f}`).sort()
    expect(json.files).toEqual(onDisk)
  })

  it('are what loadProtos gives for those files, and serve the same services, methods and messages as the parsed .proto files', () => {
    const pre = loadProtos(['containerd/services/content/v1/content.proto'])
    expect(loadProtos(['containerd/cri/runtime/v1/api.proto']), 'one package object for every containerd set').toBe(pre)
    const precompiled = services(pre)
    const parsed = services(parseProtos(json.files))
    expect([...precompiled.keys()].sort()).toEqual([...parsed.keys()].sort())
    expect(precompiled.has('containerd.services.content.v1.Content')).toBe(true)
    expect(precompiled.has('runtime.v1.ImageService')).toBe(true)
    const root = protobuf.Root.fromJSON(json.root)
    let messages = 0
    for (const [name, ctor] of precompiled) {
      const want = parsed.get(name)!.service
      expect(Object.keys(ctor.service).sort(), name).toEqual(Object.keys(want).sort())
      for (const [method, def] of Object.entries(ctor.service)) {
        const other = want[method]
        expect({path: def.path, requestStream: def.requestStream, responseStream: def.responseStream, originalName: def.originalName}, `${name}/${method}`)
          .toEqual({path: other.path, requestStream: other.requestStream, responseStream: other.responseStream, originalName: other.originalName})
        const rpc = root.lookupService(name).methods[method]
        rpc.resolve()
        for (const [type, serialize, deserialize, serializeOther, deserializeOther] of [
          [rpc.resolvedRequestType!, def.requestSerialize, def.requestDeserialize, other.requestSerialize, other.requestDeserialize],
          [rpc.resolvedResponseType!, def.responseSerialize, def.responseDeserialize, other.responseSerialize, other.responseDeserialize],
        ] as const) {
          const message = sample(type)
          const bytes = serialize(message)
          expect(bytes.equals(serializeOther(message)), `${name}/${method} ${type.name}: the same bytes`).toBe(true)
          expect(deserialize(bytes), `${name}/${method} ${type.name}: the same object`).toEqual(deserializeOther(bytes))
          messages++
        }
      }
    }
    expect(messages).toBeGreaterThan(40)
  })
})
