import {type KubeConfig, type V1Pod, Watch} from '@kubernetes/client-node'
import {KubeError, describeKubeError} from './errors.js'

export type PodEventType = 'ADDED' | 'MODIFIED' | 'DELETED'

export interface PodWatchOptions {
  /** a namespace, or undefined for all namespaces */
  namespace?: string
  labelSelector?: string
  fieldSelector?: string
  /**
   * called for every pod that exists when the watch starts (ADDED), then for every change; after a
   * re-list (410 Expired) every current pod comes again as ADDED and pods gone meanwhile as DELETED
   */
  onEvent(type: PodEventType, pod: V1Pod): void
  /** called when the watch cannot continue (e.g. forbidden); the watch is over */
  onError?(err: KubeError): void
  /** called each time the watch had to list again (start, 410 Expired, dropped connection) */
  onRelist?(resourceVersion: string): void
}

export interface PodWatch {
  stop(): void
}

/** How long a watch that was working goes on trying when the API server suddenly refuses it. */
export const REFUSAL_GRACE_MS = 60_000

/** What a pod watch needs of the cluster: a list of pods, and where to open watches. */
export interface PodWatchSource {
  readonly server: string
  readonly target: {config: KubeConfig}
  listPods(opts: {namespace?: string; labelSelector?: string; fieldSelector?: string}): Promise<{items: V1Pod[]; resourceVersion: string}>
}

/**
 * Lists, then watches pods from the list's resourceVersion. When the server says the version is
 * too old (410 Expired) or the connection drops, it lists again and goes on, reporting every
 * current pod as ADDED so the caller's view is complete again.
 */
export function watchPods(source: PodWatchSource, opts: PodWatchOptions): PodWatch {
  const watch = new PodWatcher(source, opts)
  void watch.relist()
  return watch
}

/** One watch connection: its generation (a newer one makes it stale), where it got to, whether it was refused. */
interface WatchConnection {
  generation: number
  resourceVersion: string
  refused: boolean
}

class PodWatcher implements PodWatch {
  private stopped = false
  /** Bumped by every list, watch and retry: callbacks of an older one are ignored. */
  private generation = 0
  private readonly known = new Map<string, V1Pod>()
  private abort: (() => void) | undefined
  private retry: NodeJS.Timeout | undefined
  // Once a watch has been accepted, a refusal can be the API server's own restart (its authorizer serves
  // before its caches are filled; seen here on kube-apiserver 1.36): try again for a while, as
  // client-go's reflectors do, before giving up. A refusal at the start is final at once.
  private established = false
  private deniedSince: number | undefined
  private readonly action: {verb: string; resource: string; namespace?: string}
  private readonly path: string

  constructor(private readonly source: PodWatchSource, private readonly opts: PodWatchOptions) {
    this.action = {verb: 'watch', resource: 'pods', namespace: opts.namespace}
    this.path = opts.namespace === undefined ? '/api/v1/pods' : `/api/v1/namespaces/${encodeURIComponent(opts.namespace)}/pods`
  }

  stop(): void {
    this.stopped = true
    if (this.retry) clearTimeout(this.retry)
    this.abort?.()
  }

  /** List the pods, report the difference to what we knew, and watch from the list's version. */
  async relist(): Promise<void> {
    const gen = ++this.generation
    try {
      const list = await this.source.listPods(this.opts)
      if (this.stopped || gen !== this.generation) return
      this.deniedSince = undefined
      this.opts.onRelist?.(list.resourceVersion)
      this.replaceKnown(list.items)
      await this.watchFrom(list.resourceVersion)
    } catch (err) {
      const e = describeKubeError(err, {...this.action, verb: 'list'}, this.source.server)
      if (e.kind === 'unreachable' || this.deniedForNow(e)) return this.later(2000, () => this.relist())
      this.fail(e)
    }
  }

  /** Like an informer's Replace: pods that went away while we were not watching are DELETED, every current one ADDED. */
  private replaceKnown(items: V1Pod[]): void {
    const now = new Map(items.map(p => [podKey(p), p]))
    for (const [key, p] of this.known) if (!now.has(key)) this.opts.onEvent('DELETED', p)
    this.known.clear()
    for (const [key, p] of now) {
      this.known.set(key, p)
      this.opts.onEvent('ADDED', p)
    }
  }

  private async watchFrom(from: string): Promise<void> {
    const conn: WatchConnection = {generation: ++this.generation, resourceVersion: from, refused: false}
    const req = await new Watch(this.source.target.config).watch(this.path,
      {resourceVersion: from, allowWatchBookmarks: true, labelSelector: this.opts.labelSelector, fieldSelector: this.opts.fieldSelector},
      (type: string, obj: unknown) => this.onWatchEvent(conn, type, obj),
      (err: unknown) => this.onWatchEnd(conn, err))
    if (!this.isCurrent(conn)) req.abort()
    else {
      this.abort = () => req.abort()
      // the server accepted the watch (200): refusals from now on may be its restart
      if (!conn.refused) this.established = true
    }
  }

  private isCurrent(conn: WatchConnection): boolean {
    return !this.stopped && conn.generation === this.generation
  }

  private onWatchEvent(conn: WatchConnection, type: string, obj: unknown): void {
    if (!this.isCurrent(conn)) return
    if (type === 'ERROR') return this.onWatchError(obj as {code?: number; message?: string})
    const pod = obj as V1Pod
    if (pod.metadata?.resourceVersion) conn.resourceVersion = pod.metadata.resourceVersion
    if (type === 'ADDED' || type === 'MODIFIED') this.known.set(podKey(pod), pod)
    if (type === 'DELETED') this.known.delete(podKey(pod))
    if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED') this.opts.onEvent(type, pod)
  }

  /** An ERROR event in the watch stream. */
  private onWatchError(status: {code?: number; message?: string}): void {
    // 410 Expired: the version left the server's window; only a new list can catch up
    if (status.code === 410) return this.later(0, () => this.relist())
    this.fail(new KubeError(`watch of pods failed: ${status.message ?? 'unknown error'}`, 'other', this.action,
      status.code ?? 0, status.message ?? ''))
  }

  /** The watch ended: refused (final, or retried within the grace), or ended by the server or the network (resumed). */
  private onWatchEnd(conn: WatchConnection, err: unknown): void {
    if (!this.isCurrent(conn)) return
    const e = err ? describeKubeError(err, this.action, this.source.server) : undefined
    if (e && (e.kind === 'forbidden' || e.kind === 'unauthorized')) conn.refused = true
    if (e && this.deniedForNow(e)) return this.later(2000, () => this.relist())
    if (e && ['forbidden', 'unauthorized', 'not-found'].includes(e.kind)) return this.fail(e)
    // the server ended the watch (timeout, restart) or the connection dropped: resume where we were
    this.later(e?.kind === 'unreachable' ? 2000 : 100, () => this.watchFrom(conn.resourceVersion))
  }

  /** A refusal of a watch that was working, within REFUSAL_GRACE_MS of the first: try again. */
  private deniedForNow(e: KubeError): boolean {
    if (!this.established || (e.kind !== 'forbidden' && e.kind !== 'unauthorized')) return false
    this.deniedSince ??= Date.now()
    return Date.now() - this.deniedSince < REFUSAL_GRACE_MS
  }

  private fail(err: KubeError): void {
    if (this.stopped) return
    this.stopped = true
    this.abort?.()
    this.opts.onError?.(err)
  }

  /** runs `next` after `delayMs`, abandoning the current connection */
  private later(delayMs: number, next: () => Promise<void>): void {
    this.generation++
    this.abort?.()
    if (this.stopped) return
    this.retry = setTimeout(() => void next(), delayMs)
  }
}

function podKey(p: V1Pod): string {
  return `${p.metadata?.namespace ?? ''}/${p.metadata?.name ?? ''}`
}
