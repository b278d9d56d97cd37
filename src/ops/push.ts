import * as grpc from '@grpc/grpc-js'
import {ContainerdError, ImportCancelledError, type ImportEvent, type ImportResult} from '../containerd/index.js'
import {formatPlatform, parsePlatform, type Platform, resolveImage, type ImageSource, type ResolvedImage} from '../image/index.js'
import {describeNode, openNode, type ImageNode, type NodeTarget} from '../nodes/index.js'
import {isSshError, SshPool} from '../ssh/index.js'
import {errorInfo, renderError} from '../ui/errors.js'
import {openSources, sourceLabel} from '../sources/index.js'
import {mapLimit, sleep} from '../util/async.js'
import {inWaves, pullFromPeers, splitSeeds, type Route} from './p2p.js'
import {type PushWorkers, startPushWorkers, workerCount} from './push-workers.js'
import type {NodeImageResult, PushOptions, PushResult} from './push-types.js'

export type {NodeImageResult, PushOptions, PushResult, PushStatus} from './push-types.js'

/** With --p2p: one warning per node that was pushed directly because its pull from its peers failed. */
export function p2pFallbacks(results: NodeImageResult[]): string[] {
  return results.filter((r) => r.via === 'direct' && r.status !== 'failed' && r.p2pError)
    .map((r) => renderError({subject: r.node, message: `pushed directly, the pull from peers failed: ${r.p2pError}`,
      hint: r.p2pHint ?? 'sideload doctor --p2p spegel shows whether the node\'s containerd uses its Spegel (config_path, hosts.toml, the mirror answering)'}, 'warning'))
}

/** What a push says of a node's record it left as it is (not sideload's, holding this image). */
export function keptNote(origin: string): string {
  return `the node's record holds this image, ${origin}; left as it is, not pinned (--replace takes it over)`
}

/** Thrown when the signal stops a push; commands exit 130. */
export class PushCancelledError extends Error {
  constructor() {
    super('push cancelled')
    this.name = 'PushCancelledError'
  }
}

/** One image, opened once and shared by every node; resolved once per platform. */
export class OpenedImage {
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
  const opened = await openSources(options.source, options.images)
  const images = opened.images.map((image) => new OpenedImage(image.name, image.source))
  const ctx = pushContext(options, pool, images.length)
  let workers: PushWorkers | undefined
  // one image to one node: on a worker thread when there are some (and the node can be reached at all)
  const toNode = (target: NodeTarget, image: OpenedImage, route?: Route): Promise<NodeImageResult> =>
    workers && !target.unavailable ? workers.push(target, image.name, route) : pushToNode(ctx, target, image, route)
  const fanOut = async (targets: NodeTarget[], route?: Route): Promise<void> => {
    await mapLimit(targets, options.jobs ?? 4, async (target) => {
      for (const image of images) {
        if (options.signal?.aborted) break
        results.push(await toNode(target, image, route))
      }
    })
  }
  try {
    workers = startPushWorkers(options, workerCount(options, images.length))
    if (options.p2p) {
      // the seeds first, as a push; then the others pull each image some seed has
      const {seeds, peers} = splitSeeds(options.nodes, options.p2p.seeds)
      await fanOut(seeds, 'seed')
      const seeded = new Set(results.filter((r) => r.status !== 'failed').map((r) => r.image))
      const sources = new Set(results.filter((r) => r.status !== 'failed').map((r) => r.node)).size
      // no seed got any image: nothing to pull from, the others are pushed directly at --jobs
      if (sources === 0) await fanOut(peers, 'direct')
      else await inWaves(peers, sources, options.jobs ?? 4, async (target) => {
        let serves = true
        for (const image of images) {
          if (options.signal?.aborted) return false
          const r = await toNode(target, image, seeded.has(image.name) ? 'p2p' : 'direct')
          results.push(r)
          serves &&= r.status !== 'failed'
        }
        return serves
      })
    } else {
      await fanOut(options.nodes)
    }
  } finally {
    await workers?.close()
    await opened.close()
    if (!options.pool) await pool.closeAll()
    options.reporter?.close()
  }
  if (options.signal?.aborted) throw new PushCancelledError()
  return {results, ok: results.length > 0 && results.every((r) => r.status !== 'failed'), ...(workers ? {workers: workers.count} : {})}
}

/** What every node's push shares (`imageCount`: how many images the push sends). */
export function pushContext(options: PushOptions, pool: SshPool, imageCount: number): PushContext {
  return {
    options, pool, provenance: sourceLabel(options.source), retries: options.retries ?? 3,
    platform: options.platform ? parsePlatform(options.platform) : undefined,
    namesImages: options.images.length > 1 || imageCount > 1,
  }
}

/** What every node's push shares. */
export interface PushContext {
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

/**
 * One image to one node; a dropped connection is retried (with back-off) and resumes where it
 * stopped. `route` p2p: the node pulls from its peers first, and gets only what that left missing.
 */
export async function pushToNode(ctx: PushContext, target: NodeTarget, image: OpenedImage, route?: Route): Promise<NodeImageResult> {
  const {options, retries} = ctx
  const reporter = options.reporter
  const label = ctx.namesImages ? `${target.name} ${image.name}` : target.name
  const started = Date.now()
  const result: NodeImageResult = {node: target.name, image: image.name, status: 'failed', sentBytes: 0, skippedBytes: 0, durationMs: 0, attempts: 0, ...(route ? {via: route} : {})}
  if (route === 'direct') result.p2pError = 'no seed node got the image'
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
      if (route === 'p2p' && !result.p2pError) earlierAttemptsBytes += await pullInto(ctx, node, image, label, result)
      const r = await importInto(ctx, node, image, label, (bytes) => { attemptBytes = bytes })
      recordImported(result, r, earlierAttemptsBytes)
      reporter?.event({type: 'done', target: label, message: r.kept ? `up to date: ${keptNote(r.kept)}` : r.upToDate ? 'up to date' : `pushed ${r.blobsSent} blob(s)`})
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

/**
 * The node pulls the image from its peers (p2p.ts); when that fails, the result says so and the
 * import that follows sends the image directly. Resolves with the bytes sideload sent the node
 * itself meanwhile (its index and manifest).
 */
async function pullInto(ctx: PushContext, node: ImageNode, image: OpenedImage, label: string, result: NodeImageResult): Promise<number> {
  const reporter = ctx.options.reporter
  const resolved = await image.resolveFor(node.facts.platform)
  const outcome = await pullFromPeers(node, image.name, resolved, {
    source: image.source,
    signal: ctx.options.signal,
    onPulling: () => reporter?.event({type: 'info', target: label, message: 'pulling from peers through the node\'s registry mirror (Spegel)'}),
    onRetry: () => reporter?.event({type: 'info', target: label, message: 'no peer has the image yet; waiting for the seeds to advertise it'}),
  })
  if ('error' in outcome) {
    result.via = 'direct'
    const info = errorInfo(outcome.error, node.name)
    result.p2pError = info.message
    if (info.hint) result.p2pHint = info.hint
    reporter?.event({type: 'info', target: label, message: `pull from peers failed (${result.p2pError}); pushing directly`})
  } else if (outcome.pulled) {
    reporter?.event({type: 'info', target: label, message: 'pulled from peers'})
  }
  return outcome.sentBytes
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
  return node.importImage({source: image.source, resolved, name: image.name, pin: options.pin ?? true, provenance: {source: ctx.provenance}, replace: options.replace,
    unpack: options.unpack ?? true, onProgress, signal: options.signal})
}

/** A node that has the image now: what was sent (over every attempt), what it had, the digest and platform. */
function recordImported(result: NodeImageResult, r: ImportResult, earlierAttemptsBytes: number): void {
  result.status = r.upToDate ? 'up to date' : 'pushed'
  result.sentBytes = earlierAttemptsBytes + r.sentBytes
  result.skippedBytes = r.skippedBytes
  result.digest = r.digest
  result.platform = r.platform
  if (r.kept) result.kept = r.kept
  delete result.error
  delete result.hint
  delete result.reason
}
