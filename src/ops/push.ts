import * as grpc from '@grpc/grpc-js'
import {ContainerdError, ImportCancelledError, type ImportEvent, type ImportResult} from '../containerd/index.js'
import {formatPlatform, parsePlatform, type Platform, resolveImage, type ImageSource, type ResolvedImage} from '../image/index.js'
import {describeNode, openNode, type ImageNode, type NodeTarget} from '../nodes/index.js'
import {isSshError, SshPool, type PoolOptions} from '../ssh/index.js'
import {errorInfo} from '../ui/errors.js'
import type {Reporter} from '../ui/progress.js'
import {openSources, sourceLabel, type SourceSpec} from '../sources/index.js'
import {mapLimit, sleep} from '../util/async.js'


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
  unpack?: boolean
  /** Reconnect and resume this many times when a node's connection drops (default 3). */
  retries?: number
  ssh?: PoolOptions
  /** Share SSH connections with the caller; otherwise push opens and closes its own. */
  pool?: SshPool
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
}

export interface PushResult {
  results: NodeImageResult[]
  ok: boolean
}

/** Thrown when the signal stops a push; commands exit 130. */
export class PushCancelledError extends Error {
  constructor() {
    super('push cancelled')
    this.name = 'PushCancelledError'
  }
}

/** One image, opened once and shared by every node; resolved once per platform. */
class OpenedImage {
  private readonly resolved = new Map<string, Promise<ResolvedImage>>()
  constructor(
    readonly name: string,
    readonly source: ImageSource,
  ) {}
  resolveFor(platform: ResolvedImage['platform']): Promise<ResolvedImage> {
    const key = formatPlatform(platform)
    let r = this.resolved.get(key)
    if (!r) {
      r = resolveImage(this.source, platform)
      this.resolved.set(key, r)
    }
    return r
  }
}

/** Errors worth reconnecting for: the connection went away, not the node saying no. */
export function isRetryable(err: unknown): boolean {
  if (isSshError(err)) return err.code === 'closed' || err.code === 'timeout'
  if (err instanceof ContainerdError) {
    return err.code === grpc.status.UNAVAILABLE && !/EACCES|permission denied|ENOENT/i.test(err.details)
  }
  return err instanceof Error && /ECONNRESET|EPIPE|socket hang up|connection (was )?(lost|closed)/i.test(err.message)
}

/**
 * Push images to nodes: per node (in parallel, --jobs), connect over SSH, pick native or ctr
 * import, and send each image's missing blobs for that node's platform. A node that fails
 * does not stop the others; a dropped connection is retried and resumes where the node
 * stopped.
 */
export async function push(options: PushOptions): Promise<PushResult> {
  const pool = options.pool ?? new SshPool(options.ssh)
  const results: NodeImageResult[] = []
  const provenance = sourceLabel(options.source)
  const opened = await openSources(options.source, options.images)
  const images = opened.images.map((image) => new OpenedImage(image.name, image.source))
  const ctx: PushContext = {
    options, pool, provenance, retries: options.retries ?? 3,
    platform: options.platform ? parsePlatform(options.platform) : undefined,
    namesImages: options.images.length > 1 || images.length > 1,
  }
  try {
    await mapLimit(options.nodes, options.jobs ?? 4, async (target) => {
      for (const image of images) {
        if (options.signal?.aborted) break
        results.push(await pushToNode(ctx, target, image))
      }
    })
  } finally {
    await opened.close()
    if (!options.pool) await pool.closeAll()
    options.reporter?.close()
  }
  if (options.signal?.aborted) throw new PushCancelledError()
  return {results, ok: results.length > 0 && results.every((r) => r.status !== 'failed')}
}

/** What every node's push shares. */
interface PushContext {
  options: PushOptions
  pool: SshPool
  retries: number
  /** --platform, over each node's own */
  platform?: Platform
  /** what the records say they came from (sideload.dev/source) */
  provenance: string
  /** several images: each progress line names the image as well as the node */
  namesImages: boolean
}

/** One image to one node; a dropped connection is retried (with back-off) and resumes where it stopped. */
async function pushToNode(ctx: PushContext, target: NodeTarget, image: OpenedImage): Promise<NodeImageResult> {
  const {options, retries} = ctx
  const reporter = options.reporter
  const label = ctx.namesImages ? `${target.name} ${image.name}` : target.name
  const started = Date.now()
  const result: NodeImageResult = {node: target.name, image: image.name, status: 'failed', sentBytes: 0, skippedBytes: 0, durationMs: 0, attempts: 0}
  // the line is already labelled with the node: name where it is reached only when that differs
  reporter?.event({type: 'start', target: label, message: target.sshTarget === target.name ? 'connecting' : `connecting to ${target.sshTarget}`})
  let earlierAttemptsBytes = 0
  for (let attempt = 0; ; attempt++) {
    let attemptBytes = 0
    result.attempts = attempt + 1
    let node: ImageNode | undefined
    try {
      if (target.unavailable) throw target.unavailable
      node = await openNode({...target, platform: ctx.platform ?? target.platform}, ctx.pool)
      result.mode = node.facts.mode
      const r = await importInto(ctx, node, image, label, (bytes) => { attemptBytes = bytes })
      recordImported(result, r, earlierAttemptsBytes)
      reporter?.event({type: 'done', target: label, message: r.upToDate ? 'up to date' : `pushed ${r.blobsSent} blob(s)`})
      break
    } catch (err) {
      if (err instanceof ImportCancelledError || options.signal?.aborted) {
        result.error = 'cancelled'
        result.reason = 'cancelled'
        break
      }
      earlierAttemptsBytes += attemptBytes
      result.sentBytes = earlierAttemptsBytes
      const info = errorInfo(err, target.name)
      result.error = info.message
      result.hint = info.hint
      result.reason = info.reason
      if (attempt < retries && isRetryable(err)) {
        reporter?.event({type: 'info', target: label, message: `connection lost (${result.error}); retrying (${attempt + 1}/${retries})`})
        await sleep(Math.min(500 * 2 ** attempt, 5000), options.signal)
        continue
      }
      reporter?.event({type: 'failed', target: label, error: result.error, reason: result.reason})
      break
    } finally {
      await node?.close().catch(() => undefined)
    }
  }
  result.durationMs = Date.now() - started
  return result
}

/** One attempt on an open node: the image resolved for its platform, its missing blobs sent; progress to the reporter. */
async function importInto(ctx: PushContext, node: ImageNode, image: OpenedImage, label: string, onBytes: (attemptBytes: number) => void): Promise<ImportResult> {
  const {options} = ctx
  const reporter = options.reporter
  reporter?.event({type: 'info', target: label, message: `importing into ${describeNode(node)}`})
  const resolved = await image.resolveFor(node.facts.platform)
  let total = 0
  let sent = 0
  const onProgress = (e: ImportEvent): void => {
    if (e.type === 'resolved') {
      total = e.missingBytes
      reporter?.event({type: 'start', target: label, totalBytes: total, message: `${e.missingBlobs} of ${e.blobs} blobs missing`})
    } else if (e.type === 'blob-bytes') {
      sent += e.bytes
      onBytes(sent)
      reporter?.event({type: 'bytes', target: label, doneBytes: sent, totalBytes: total})
    } else if (e.type === 'unpack-layer' && !e.skipped) {
      reporter?.event({type: 'info', target: label, message: `unpacking layer ${e.index + 1}/${e.count}`})
    }
  }
  return node.importImage({source: image.source, resolved, name: image.name, pin: options.pin ?? true, provenance: {source: ctx.provenance},
    unpack: options.unpack ?? true, onProgress, signal: options.signal})
}

/** A node that has the image now: what was sent (over every attempt), what it had, the digest and platform. */
function recordImported(result: NodeImageResult, r: ImportResult, earlierAttemptsBytes: number): void {
  result.status = r.upToDate ? 'up to date' : 'pushed'
  result.sentBytes = earlierAttemptsBytes + r.sentBytes
  result.skippedBytes = r.skippedBytes
  result.digest = r.digest
  result.platform = r.platform
  delete result.error
  delete result.hint
  delete result.reason
}
