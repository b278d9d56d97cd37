import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import {LOADER_OPTIONS} from '../grpc/load.js'

/**
 * BuildKit's protos, loaded once. Unlike the project default, 64-bit integers are decoded as
 * decimal strings and accepted as strings when encoding: fsutil's `Stat.modTime` is Unix
 * nanoseconds (~1.7e18), far beyond what a JS number holds exactly, and the daemon's cache key
 * for a local source depends on it.
 */
const FILES = [
  'buildkit/control.proto',
  'moby/filesync.proto',
  'moby/auth.proto',
  'moby/secrets.proto',
  'grpc/health/v1/health.proto',
]

let loaded: protoLoader.PackageDefinition | undefined

export function buildkitDefinitions(): protoLoader.PackageDefinition {
  loaded ??= protoLoader.loadSync(FILES, {...LOADER_OPTIONS, longs: String})
  return loaded
}

/** A service definition usable with grpc.Server#addService and grpc.makeClientConstructor. */
export function serviceDefinition(name: string): grpc.ServiceDefinition {
  const def = buildkitDefinitions()[name]
  if (!def || !('DiffCopy' in def || 'Check' in def || 'Solve' in def || 'Credentials' in def || 'GetSecret' in def)) {
    throw new Error(`proto service ${name} not found in proto/ (buildkit protos)`)
  }
  return def as grpc.ServiceDefinition
}

export const SERVICES = {
  control: 'moby.buildkit.v1.Control',
  health: 'grpc.health.v1.Health',
  fileSync: 'moby.filesync.v1.FileSync',
  fileSend: 'moby.filesync.v1.FileSend',
  auth: 'moby.filesync.v1.Auth',
  secrets: 'moby.buildkit.secrets.v1.Secrets',
} as const

// ---- message shapes (as decoded with LOADER_OPTIONS + longs: String) ----

export interface Timestamp {
  seconds: string
  nanos: number
}

export interface ExporterSpec {
  Type: string
  Attrs: Record<string, string>
}

export interface SolveRequest {
  Ref: string
  ExporterDeprecated: string
  ExporterAttrsDeprecated: Record<string, string>
  Session: string
  Frontend: string
  FrontendAttrs: Record<string, string>
  Entitlements: string[]
  Exporters: ExporterSpec[]
}

export interface SolveResponse {
  ExporterResponse: Record<string, string>
}

export interface Vertex {
  digest: string
  inputs: string[]
  name: string
  cached: boolean
  started: Timestamp | null
  completed: Timestamp | null
  error: string
}

export interface VertexStatus {
  ID: string
  vertex: string
  name: string
  current: string
  total: string
  timestamp: Timestamp | null
  started: Timestamp | null
  completed: Timestamp | null
}

export interface VertexLog {
  vertex: string
  timestamp: Timestamp | null
  stream: string
  msg: Buffer
}

export interface VertexWarning {
  vertex: string
  level: string
  short: Buffer
  detail: Buffer[]
  url: string
}

export interface StatusResponse {
  vertexes: Vertex[]
  statuses: VertexStatus[]
  logs: VertexLog[]
  warnings: VertexWarning[]
}

export interface Platform {
  Architecture: string
  OS: string
  Variant: string
  OSVersion: string
}

export interface WorkerRecord {
  ID: string
  Labels: Record<string, string>
  platforms: Platform[]
  BuildkitVersion: BuildkitVersion | null
}

export interface BuildkitVersion {
  package: string
  version: string
  revision: string
}

export interface BytesMessage {
  data: Buffer
}

export type PacketType = 'PACKET_STAT' | 'PACKET_REQ' | 'PACKET_DATA' | 'PACKET_FIN' | 'PACKET_ERR'

export interface FsStat {
  path: string
  mode: number
  uid: number
  gid: number
  size: string
  modTime: string
  linkname: string
  devmajor: string
  devminor: string
  xattrs: Record<string, Buffer>
}

export interface Packet {
  type: PacketType
  stat: FsStat | null
  ID: number
  data: Buffer
}

/** Milliseconds since the epoch of a protobuf Timestamp, or undefined when unset. */
export function timestampMs(ts: Timestamp | null | undefined): number | undefined {
  if (!ts) return undefined
  const s = Number(ts.seconds)
  if (s <= 0 && ts.nanos === 0) return undefined
  return s * 1000 + ts.nanos / 1e6
}
