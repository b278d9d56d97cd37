// Reading ctr's output: its tables (images, leases, content) and its errors.

/** ctr's errors when containerd went away under it (stopped, restarted). */
export const CONTAINERD_GONE = /code = Unavailable|failed to send write|connection refused|transport is closing|error reading from server/i

/**
 * The rows of a ctr listing (a header, then rows aligned under it by tabwriter): each row's
 * leading words, and its LABELS column (`k=v,k2=v2`, or `-`), read from where the header puts it.
 */
export function ctrTable(out: string): {first: string[]; labels: Record<string, string>}[] {
  const [header, ...rows] = out.split('\n')
  const at = header?.indexOf('LABELS') ?? -1
  return rows.filter((r) => r.trim()).map((row) => {
    const first = (at >= 0 ? row.slice(0, at) : row).trim().split(/\s+/)
    const labels: Record<string, string> = {}
    let last: string | undefined
    // a comma inside a value (not ours: labels.ts encodes them) continues the previous label
    for (const part of (at >= 0 ? row.slice(at).trim() : '').split(',')) {
      const eq = part.indexOf('=')
      if (eq > 0) {
        last = part.slice(0, eq)
        labels[last] = part.slice(eq + 1)
      } else if (last !== undefined) labels[last] += `,${part}`
    }
    return {first, labels}
  })
}

/** The rows of `ctr content ls` (its columns are padded with tabs, not spaces): each blob's digest and labels. */
export function ctrContentTable(out: string): {digest: string; labels: Record<string, string>}[] {
  return out.split('\n').slice(1).map((row) => row.split('\t').filter(Boolean)).filter((cells) => cells.length >= 2)
    .map((cells) => ({digest: cells[0], labels: ctrTable(`LABELS\n${cells.at(-1)}`)[0].labels}))
}

/** ctr's stderr without its log-level warnings (2.x warns about cgroup v1 on every call): what went wrong. */
export function ctrErrorLines(stderr: string): string[] {
  return stderr.trim().split('\n').filter((l) => l.trim() && !/^time="[^"]*" level=(warning|info)/.test(l))
}
