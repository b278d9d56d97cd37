import type {EventEmitter} from 'node:events'

/**
 * Wait `ms`, or less when the signal fires (never rejects: callers check the signal themselves).
 * The abort listener goes when the wait ends either way: callers poll with one long-lived signal
 * (fix waits for pods, 4 polls a second), and a listener left per call would pile up on it.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const done = (): void => {
      clearTimeout(t)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    const t = setTimeout(done, ms)
    signal?.addEventListener('abort', done, {once: true})
  })
}

/** Run `fn` over `items` with at most `limit` at once, results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length)
  let next = 0
  await Promise.all(
    Array.from({length: Math.max(1, Math.min(limit, items.length))}, async () => {
      while (next < items.length) {
        const i = next++
        out[i] = await fn(items[i])
      }
    }),
  )
  return out
}

/**
 * The first of `events` that `emitter` emits (its name). Every listener this added is gone then:
 * a race of events.once() calls leaves the losers (and an `error` listener each) on the emitter,
 * and awaited again and again (a long stream's backpressure) they pile up.
 */
export function firstEvent(emitter: EventEmitter, events: readonly string[]): Promise<string> {
  return new Promise((resolve) => {
    const handlers = events.map((name) => [name, (): void => settle(name)] as const)
    const settle = (name: string): void => {
      for (const [n, h] of handlers) emitter.off(n, h)
      resolve(name)
    }
    for (const [n, h] of handlers) emitter.on(n, h)
  })
}

/** What p gives within ms, else undefined. */
export async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    return await Promise.race([p, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)))])
  } finally {
    clearTimeout(timer)
  }
}
