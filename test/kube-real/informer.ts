// List-then-watch with a local cache, as client-go's informers do for the kubelet and kube-proxy:
// resumes a watch the server ended from the last version seen, lists again on 410 Gone.
import {type JsonObject, type Rest, RestError, obj, str} from './rest.js'

export interface Informer {
  /** resolves after the first list */
  synced: Promise<void>
  /** the objects as last seen, by namespace/name */
  items(): JsonObject[]
  stop(): void
}

export function keyOf(o: JsonObject): string {
  const m = obj(o.metadata)
  return `${str(m.namespace)}/${str(m.name)}`
}

export function inform(rest: Rest, path: string, selectors: {labelSelector?: string; fieldSelector?: string},
  onChange: (type: 'ADDED' | 'MODIFIED' | 'DELETED', o: JsonObject) => void): Informer {
  const cache = new Map<string, JsonObject>()
  let stopped = false
  let cancel: (() => void) | undefined
  let timer: NodeJS.Timeout | undefined
  let markSynced: () => void = () => undefined
  const synced = new Promise<void>(resolve => (markSynced = resolve))

  const later = (ms: number, f: () => void): void => {
    if (stopped) return
    timer = setTimeout(f, ms)
  }
  const relist = async (): Promise<void> => {
    if (stopped) return
    let list
    try {
      list = await rest.list(path, selectors)
    } catch {
      later(500, () => void relist())
      return
    }
    const seen = new Set<string>()
    for (const item of list.items) {
      const key = keyOf(item)
      seen.add(key)
      const had = cache.get(key)
      cache.set(key, item)
      if (!had || str(obj(had.metadata).resourceVersion) !== str(obj(item.metadata).resourceVersion)) onChange(had ? 'MODIFIED' : 'ADDED', item)
    }
    for (const [key, item] of [...cache]) {
      if (seen.has(key)) continue
      cache.delete(key)
      onChange('DELETED', item)
    }
    markSynced()
    watchFrom(list.resourceVersion)
  }
  const watchFrom = (rv: string): void => {
    if (stopped) return
    let last = rv
    let expired = false
    cancel = rest.watch(path, {resourceVersion: rv, ...selectors}, e => {
      const version = str(obj(e.object.metadata).resourceVersion)
      if (e.type === 'ERROR') {
        if (e.object.code === 410) expired = true
        return
      }
      if (version) last = version
      if (e.type === 'BOOKMARK') return
      const key = keyOf(e.object)
      if (e.type === 'DELETED') cache.delete(key)
      else cache.set(key, e.object)
      onChange(e.type, e.object)
    }, err => {
      if (stopped) return
      if (expired || (err instanceof RestError && err.status === 410)) later(0, () => void relist())
      else later(err ? 500 : 0, () => watchFrom(last))
    })
  }
  void relist()
  return {
    synced,
    items: () => [...cache.values()],
    stop() {
      stopped = true
      if (timer) clearTimeout(timer)
      cancel?.()
    },
  }
}
