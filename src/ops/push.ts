import * as fs from 'node:fs'
import * as path from 'node:path'
import * as grpc from '@grpc/grpc-js'
import {saveDockerImages} from '../buildkit/engine.js'
import {ContainerdError, ImportCancelledError, openContainerdSource, type ImportEvent} from '../containerd/index.js'
import {parseDockerHost} from '../grpc/hijack.js'
import {formatPlatform, imageRecordName, listArchive, parsePlatform, quoted, readArchive, resolveImage, selectImage, type ArchiveContents, type ImageSource, type ResolvedImage} from '../image/index.js'
import {describeNode, openNode, type ImageNode, type NodeTarget} from '../nodes/index.js'
import {isSshError, SshPool, type PoolOptions} from '../ssh/index.js'
import {errorInfo} from '../ui/errors.js'
import type {Reporter} from '../ui/progress.js'
import {mapLimit, sleep} from '../util/async.js'

export type PushSource =
  | {kind: 'archive'; path: string}
  | {kind: 'containerd'; address: string; namespace?: string}
  | {kind: 'docker'; endpoint?: string}
  | {kind: 'archive-dir'; dir: string}

export interface PushOptions {
  /**
   * Image names; [] with an archive source means every image in the archive (refused when one has
   * no valid name). One name with an archive whose only image has no name pushes it under that name.
   */
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
 * An archive image that has no valid name, pushed as "every image in the archive": refused
 * before any node is touched. Recorded as it is, it would be `docker.io/library/sha256:<hex>`
 * (and `…/sha256@sha256:<hex>`), pinned: no pod names it and the kubelet's GC never removes it.
 */
export class UnnamedArchiveImageError extends Error {
  readonly hint: string
  /** For programs (--json): what went wrong, never the text. */
  readonly reason = 'archive-image-unnamed'
  constructor(message: string, hint: string) {
    super(`${message}\n  hint: ${hint}`)
    this.hint = hint
  }
}

/** A path or name as it can be pasted into a shell. */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`
}

async function refuseUnnamed(contents: ArchiveContents, archiveArg: string): Promise<void> {
  const images = contents.distinct()
  const unnamed = images.filter((e) => e.names.length === 0)
  if (unnamed.length === 0) return
  const lines: string[] = []
  for (const e of unnamed) {
    const [first, ...more] = (await contents.describe(e)).split('\n')
    lines.push(`  image ${e.number} of ${contents.entries.length} (${e.naming}): ${first}`, ...more.map((l) => `    ${l}`))
    for (const bad of e.invalidNames) lines.push(`    ${quoted(bad.name)} is not a valid image reference: ${bad.why}`)
  }
  const noName = unnamed.every((e) => e.invalidNames.length > 0) ? 'no valid name' : 'no name'
  const why = 'the kubelet finds an image by the name in the pod\'s image: field, and a record named after the digest ' +
    '(docker.io/library/sha256:<hex>) would be pinned junk its image GC never removes'
  const archive = shellWord(archiveArg)
  const only = unnamed[0]
  const saveNamed = contents.format === 'docker' && images.length === 1 && only.digest
    ? `or save it under a name: docker tag ${only.digest} NAME && docker save -o FILE NAME`
    : 'or save it under a name (tag it, then docker/nerdctl save -o FILE NAME)'
  if (images.length === 1) {
    throw new UnnamedArchiveImageError(
      `${contents.label} holds an image with ${noName}, so it is not pushed: ${why}:\n${lines.join('\n')}`,
      `give it the name its pods use: sideload push --archive ${archive} NAME (e.g. myapp:1.0: the archive's only image goes in as NAME), ${saveNamed}`,
    )
  }
  const named = contents.names
  throw new UnnamedArchiveImageError(
    `${contents.label} holds ${images.length} images and ${unnamed.length} ${unnamed.length === 1 ? 'has' : 'have'} ${noName}, so nothing was pushed: ${why}:\n${lines.join('\n')}`,
    (named.length ? `push the named ones by name: sideload push --archive ${archive} ${named.join(' ')}; ` : '') +
      `for an image without a name, save it alone and name it (docker save -o ONE.tar IMAGE-ID, then sideload push --archive ONE.tar NAME), ${saveNamed}`,
  )
}

/** Every requested image, opened from the source, and how to release them all. */
interface OpenedImages {
  images: OpenedImage[]
  close(): Promise<void>
}

/**
 * Open every requested image from the source. An archive is listed once (an archive given as
 * '-', stdin, is spooled then) and each image is read from it.
 */
async function openImages(options: PushOptions): Promise<OpenedImages> {
  const opened: OpenedImage[] = []
  const closers: (() => Promise<void>)[] = []
  const close = async (): Promise<void> => {
    for (const image of [...opened].reverse()) await image.source.close().catch(() => undefined)
    for (const fn of [...closers].reverse()) await fn().catch(() => undefined)
    opened.length = 0
    closers.length = 0
  }
  const src = options.source
  try {
    switch (src.kind) {
      case 'archive': {
        const contents = await listArchive(src.path === '-' ? process.stdin : src.path)
        closers.push(() => contents.close())
        if (options.images.length === 0) {
          // every image in the archive, under each of its names; an unnamed one stops it all
          await refuseUnnamed(contents, src.path)
          if (contents.entries.length === 0) throw new Error(`${contents.label} contains no image`)
          for (const entry of contents.entries) {
            for (const name of entry.names) {
              if (!opened.some((o) => o.name === name)) opened.push(new OpenedImage(name, await contents.open(entry, name)))
            }
          }
        } else {
          // one name for an archive whose only image has none names it (`sideload push --archive A NAME`)
          for (const wanted of options.images) {
            const {entry, name} = selectImage(contents, wanted, options.images.length === 1)
            opened.push(new OpenedImage(name!, await contents.open(entry, name)))
          }
        }
        break
      }
      case 'archive-dir': {
        const files = archivesIn(src.dir)
        if (options.images.length === 0) throw new Error(`name the images to push from ${src.dir}`)
        for (const name of options.images) {
          const recordName = imageRecordName(name)
          let found: ImageSource | undefined
          for (const file of files) {
            const archive = await readArchive(file, {name}).catch(() => undefined)
            if (archive) {
              found = archive
              break
            }
          }
          if (!found) throw new Error(`image "${name}" is in none of the ${files.length} archive(s) in ${src.dir}. Hint: save it there with \`nerdctl save -o ${src.dir}/NAME.tar ${name}\``)
          opened.push(new OpenedImage(recordName, found))
        }
        break
      }
      case 'containerd':
        if (options.images.length === 0) throw new Error('name the images to push (from the local containerd)')
        for (const name of options.images) {
          opened.push(new OpenedImage(imageRecordName(name), await openContainerdSource({address: src.address, namespace: src.namespace ?? 'k8s.io', name})))
        }
        break
      case 'docker': {
        if (options.images.length === 0) throw new Error('name the images to push (from the Docker daemon)')
        const endpoint = parseDockerHost(src.endpoint ?? process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock')
        const contents = await listArchive(await saveDockerImages(endpoint, options.images))
        closers.push(() => contents.close())
        for (const wanted of options.images) {
          const {entry, name} = selectImage(contents, wanted, false)
          opened.push(new OpenedImage(name!, await contents.open(entry, name)))
        }
        break
      }
    }
  } catch (err) {
    await close()
    throw err
  }
  return {images: opened, close}
}

/** What the pushed records say they came from (sideload.dev/source). */
export function sourceLabel(source: PushSource): string {
  switch (source.kind) {
    case 'archive': return source.path === '-' ? 'archive:stdin' : `archive:${path.resolve(source.path)}`
    case 'archive-dir': return `archive-dir:${path.resolve(source.dir)}`
    case 'containerd': return 'containerd'
    case 'docker': return 'docker'
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
  const reporter = options.reporter
  const pool = options.pool ?? new SshPool(options.ssh)
  const retries = options.retries ?? 3
  const platformOverride = options.platform ? parsePlatform(options.platform) : undefined
  const results: NodeImageResult[] = []
  const source = sourceLabel(options.source)
  const opened = await openImages(options)
  const images = opened.images
  try {
    await mapLimit(options.nodes, options.jobs ?? 4, async (target) => {
      for (const image of images) {
        if (options.signal?.aborted) break
        results.push(await pushOne(target, image))
      }
    })
  } finally {
    await opened.close()
    if (!options.pool) await pool.closeAll()
    reporter?.close()
  }
  if (options.signal?.aborted) throw new PushCancelledError()
  return {results, ok: results.length > 0 && results.every((r) => r.status !== 'failed')}

  async function pushOne(target: NodeTarget, image: OpenedImage): Promise<NodeImageResult> {
    const label = options.images.length > 1 || images.length > 1 ? `${target.name} ${image.name}` : target.name
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
        const r = await node.importImage({source: image.source, resolved, name: image.name, pin: options.pin ?? true, provenance: {source}, unpack: options.unpack ?? true, onProgress, signal: options.signal})
        result.status = r.upToDate ? 'up to date' : 'pushed'
        result.sentBytes = earlierAttemptsBytes + r.sentBytes
        result.skippedBytes = r.skippedBytes
        result.digest = r.digest
        result.platform = r.platform
        delete result.error
        delete result.hint
        delete result.reason
        reporter?.event({type: 'done', target: label, message: r.upToDate ? 'up to date' : `pushed ${r.blobsSent} blob(s)`})
        break
      } catch (err) {
        if (err instanceof ImportCancelledError || options.signal?.aborted) {
          result.error = 'cancelled'
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
}
