// What the --restart suites share: waiting for the cluster to reach a state.

/** Polls `probe` every 500 ms until it gives a value; fails after `timeoutMs` with what it last threw and `context()`. */
export async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 120_000, context: () => string = () => ''): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = await probe()
      if (v !== undefined) return v
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (${String(last)})` : ''}${context() ? `\n${context()}` : ''}`)
    await new Promise((r) => setTimeout(r, 500))
  }
}
