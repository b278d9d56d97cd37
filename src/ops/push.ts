import * as fs from 'node:fs'
import * as path from 'node:path'
import * as grpc from '@grpc/grpc-js'
import {saveDockerImages} from '../buildkit/engine.js'
import {ContainerdError, ImportCancelledError, openContainerdSource, type ImportEvent} from '../containerd/index.js'
import {parseDockerHost} from '../grpc/hijack.js'
import {formatPlatform, normalizeImageName, parsePlatform, readArchive, resolveImage, type ImageSource, type ResolvedImage} from '../image/index.js'
import {describeNode, openNode, type ImageNode, type NodeTarget} from '../nodes/index.js'
import {isSshError, SshPool, type PoolOptions} from '../ssh/index.js'
import type {Reporter} from '../ui/progress.js'
import {mapLimit, sleep} from '../util/async.js'

export type PushSource =
  | {kind: 'archive'; path: string}
  | {kind: 'containerd'; address: string; namespace?: string}
  | {kind: 'docker'; endpoint?: string}
  | {kind: 'archive-dir'; dir: string}

export interface PushOptions {
  /** Image names; [] with an archive source means every image in the archive. */
  images: string[]
  source: PushSource
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
  error?: string
  hint?: string
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

function archivesIn(dir: string): string[] {
  let entries: string[]
  try {
    entries = fs.readdirSync(dir)
  } catch (err) {
    throw new Error(`cannot read the archive directory ${dir}: ${(err as Error).message}`)
  }
  return entries.filter((f) => /\.(tar|tar\.gz|tgz|oci)$/.test(f)).map((f) => path.join(dir, f)).sort()
}

/**
 * Open every requested image from the source. An archive given as '-' (stdin) can be read only
 * once: it is spooled by the first readArchive and later images are read from that spool.
 */
async function openImages(options: PushOptions): Promise<OpenedImage[]> {
  const opened: OpenedImage[] = []
  const src = options.source
  try {
    switch (src.kind) {
      case 'archive': {
        const first = await readArchive(src.path === '-' ? process.stdin : src.path, {name: options.images[0]})
        opened.push(new OpenedImage(options.images[0] ? normalizeImageName(options.images[0]) : (first.name ?? first.names[0] ?? first.target.digest), first))
        const rest = options.images.length > 0 ? options.images.slice(1) : first.names.filter((n) => n !== first.name)
        for (const name of rest) opened.push(new OpenedImage(normalizeImageName(name), await readArchive(first.file, {name})))
        break
      }
      case 'archive-dir': {
        const files = archivesIn(src.dir)
        if (options.images.length === 0) throw new Error(`name the images to push from ${src.dir}`)
        for (const name of options.images) {
          let found: ImageSource | undefined
          for (const file of files) {
            const archive = await readArchive(file, {name}).catch(() => undefined)
            if (archive) {
              found = archive
              break
            }
          }
          if (!found) throw new Error(`image "${name}" is in none of the ${files.length} archive(s) in ${src.dir}. Hint: save it there with \`nerdctl save -o ${src.dir}/NAME.tar ${name}\``)
          opened.push(new OpenedImage(normalizeImageName(name), found))
        }
        break
      }
      case 'containerd':
        if (options.images.length === 0) throw new Error('name the images to push (from the local containerd)')
        for (const name of options.images) {
          opened.push(new OpenedImage(normalizeImageName(name), await openContainerdSource({address: src.address, namespace: src.namespace ?? 'k8s.io', name})))
        }
        break
      case 'docker': {
        if (options.images.length === 0) throw new Error('name the images to push (from the Docker daemon)')
        const endpoint = parseDockerHost(src.endpoint ?? process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock')
        const stream = await saveDockerImages(endpoint, options.images)
        const first = await readArchive(stream, {name: options.images[0]})
        opened.push(new OpenedImage(normalizeImageName(options.images[0]), first))
        for (const name of options.images.slice(1)) opened.push(new OpenedImage(normalizeImageName(name), await readArchive(first.file, {name})))
        break
      }
    }
  } catch (err) {
    for (const image of opened.reverse()) await image.source.close().catch(() => undefined)
    throw err
  }
  return opened
}

/** Errors worth reconnecting for: the connection went away, not the node saying no. */
export function isRetryable(err: unknown): boolean {
  if (isSshError(err)) return err.code === 'closed' || err.code === 'timeout'
  if (err instanceof ContainerdError) {
    return err.code === grpc.status.UNAVAILABLE && !/EACCES|permission denied|ENOENT/i.test(err.details)
  }
  return err instanceof Error && /ECONNRESET|EPIPE|socket hang up|connection (was )?(lost|closed)/i.test(err.message)
}

function hintOf(err: unknown): string | undefined {
  const hint = (err as {hint?: unknown}).hint
  return typeof hint === 'string' ? hint : undefined
}

/**
 * Push images to nodes: per node (in parallel, --jobs), connect over SSH, pick native or ctr
 * import, and send each image's missing blobs for that node's platform. A node that fails
 * does not stop the others; a dropped connection is retried and resumes where the node
 * stopped.
 */
export async function push(options: PushOptions): Promise<PushResult> {
  const reporter = options.reporter
  const pool = options.pool ?? new SshPool(options.ssh)
  const retries = options.retries ?? 3
  const platformOverride = options.platform ? parsePlatform(options.platform) : undefined
  const results: NodeImageResult[] = []
  const images = await openImages(options)
  try {
    await mapLimit(options.nodes, options.jobs ?? 4, async (target) => {
      for (const image of images) {
        if (options.signal?.aborted) break
        results.push(await pushOne(target, image))
      }
    })
  } finally {
    for (const image of images) await image.source.close().catch(() => undefined)
    if (!options.pool) await pool.closeAll()
    reporter?.close()
  }
  if (options.signal?.aborted) throw new PushCancelledError()
  return {results, ok: results.length > 0 && results.every((r) => r.status !== 'failed')}

  async function pushOne(target: NodeTarget, image: OpenedImage): Promise<NodeImageResult> {
    const label = options.images.length > 1 || images.length > 1 ? `${target.name} ${image.name}` : target.name
    const started = Date.now()
    const result: NodeImageResult = {node: target.name, image: image.name, status: 'failed', sentBytes: 0, skippedBytes: 0, durationMs: 0, attempts: 0}
    reporter?.event({type: 'start', target: label, message: `connecting to ${target.sshTarget}`})
    let earlierAttemptsBytes = 0
    for (let attempt = 0; ; attempt++) {
      let attemptBytes = 0
      result.attempts = attempt + 1
      let node: ImageNode | undefined
      try {
        node = await openNode({...target, platform: platformOverride ?? target.platform}, pool)
        result.mode = node.facts.mode
        reporter?.event({type: 'info', target: label, message: `importing into ${describeNode(node)}`})
        const resolved = await image.resolveFor(node.facts.platform)
        let total = 0
        const onProgress = (e: ImportEvent): void => {
          if (e.type === 'resolved') {
            total = e.missingBytes
            reporter?.event({type: 'start', target: label, totalBytes: total, message: `${e.missingBlobs} of ${e.blobs} blobs missing`})
          } else if (e.type === 'blob-bytes') {
            attemptBytes += e.bytes
            reporter?.event({type: 'bytes', target: label, doneBytes: attemptBytes, totalBytes: total})
          } else if (e.type === 'unpack-layer' && !e.skipped) {
            reporter?.event({type: 'info', target: label, message: `unpacking layer ${e.index + 1}/${e.count}`})
          }
        }
        const r = await node.importImage({source: image.source, resolved, name: image.name, pin: options.pin ?? true, unpack: options.unpack ?? true, onProgress, signal: options.signal})
        result.status = r.upToDate ? 'up to date' : 'pushed'
        result.sentBytes = earlierAttemptsBytes + r.sentBytes
        result.skippedBytes = r.skippedBytes
        result.digest = r.digest
        result.platform = r.platform
        delete result.error
        delete result.hint
        reporter?.event({type: 'done', target: label, message: r.upToDate ? 'up to date' : `pushed ${r.blobsSent} blob(s)`})
        break
      } catch (err) {
        if (err instanceof ImportCancelledError || options.signal?.aborted) {
          result.error = 'cancelled'
          break
        }
        earlierAttemptsBytes += attemptBytes
        result.sentBytes = earlierAttemptsBytes
        result.error = (err as Error).message
        result.hint = hintOf(err)
        if (attempt < retries && isRetryable(err)) {
          reporter?.event({type: 'info', target: label, message: `connection lost (${result.error}); retrying (${attempt + 1}/${retries})`})
          await sleep(Math.min(500 * 2 ** attempt, 5000), options.signal)
          continue
        }
        reporter?.event({type: 'failed', target: label, error: result.hint ? `${result.error}\n  hint: ${result.hint}` : result.error})
        break
      } finally {
        await node?.close().catch(() => undefined)
      }
    }
    result.durationMs = Date.now() - started
    return result
  }
}
