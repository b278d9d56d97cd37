// What a push is asked (PushOptions) and what it answers (PushResult, a NodeImageResult per image
// and node): shared by push.ts and its worker threads (push-workers.ts).
import type {NodeTarget} from '../nodes/index.js'
import type {SourceSpec} from '../sources/index.js'
import type {PoolOptions, SshPool} from '../ssh/index.js'
import type {Reporter} from '../ui/progress.js'
import type {P2pOptions, Route} from './p2p.js'

export interface PushOptions {
  /**
   * Image names; [] with an archive source means every image in the archive (refused when one has
   * no valid name). One name with an archive whose only image has no name pushes it under that name.
   */
  images: string[]
  /** where the images are read (src/sources) */
  source: SourceSpec
  nodes: NodeTarget[]
  /** Override the node's own platform, e.g. linux/arm64. */
  platform?: string
  /** Nodes in parallel (default 4). */
  jobs?: number
  pin?: boolean
  /** Overwrite (or adopt) a node's record of the same name that sideload did not write (record-owner.ts). */
  replace?: boolean
  unpack?: boolean
  /** Reconnect and resume this many times when a node's connection drops (default 3). */
  retries?: number
  /** Send to a few seed nodes only; the others pull from them through their registry mirror (p2p.ts). */
  p2p?: P2pOptions
  ssh?: PoolOptions
  /** Share SSH connections with the caller; otherwise push opens and closes its own. */
  pool?: SshPool
  /**
   * Worker threads the nodes are spread over (push-workers.ts): each one's SSH encryption, HTTP/2
   * and protobuf work on its own core. 0 or 1: all in this thread; undefined: decided from the
   * cores and the nodes (workerCount). Never with a shared `pool` or a source only this thread can read.
   */
  workers?: number
  reporter?: Reporter
  signal?: AbortSignal
}

export type PushStatus = 'pushed' | 'up to date' | 'failed'

export interface NodeImageResult {
  node: string
  image: string
  status: PushStatus
  mode?: 'native' | 'ctr'
  /** Image bytes sent to the node (blobs it lacked). */
  sentBytes: number
  /** Bytes of blobs the node already had. */
  skippedBytes: number
  durationMs: number
  digest?: string
  platform?: string
  attempts: number
  /** what failed (the node is `node`, not repeated here) */
  error?: string
  hint?: string
  /** for programs: the error's code (e.g. host-key-unknown, unavailable, no-space) */
  reason?: string
  /** up to date, but the node's record of this name is not sideload's: left as it is (who wrote it) */
  kept?: string
  /** with --p2p: sent as a seed, pulled from peers, or sent directly after the pull failed */
  via?: Route
  /** with --p2p, via direct: why the node's pull from its peers failed */
  p2pError?: string
  /** and what to do about that failure (its own hint: the mirror's address, the missing config_path…) */
  p2pHint?: string
}

export interface PushResult {
  results: NodeImageResult[]
  ok: boolean
  /** the worker threads the nodes were spread over (absent: all in this thread) */
  workers?: number
}
