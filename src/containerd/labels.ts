// The labels sideload puts on the image records it writes on a node: what the CRI expects (managed,
// pinned against kubelet GC) and what says the record is ours (when, from where). Both import paths
// (native and `sudo ctr`) take them from here, and `images`, `rm` and `prune` read them back.

export const CRI_MANAGED_LABEL = 'io.cri-containerd.image'
export const CRI_PINNED_LABEL = 'io.cri-containerd.pinned'
/** RFC 3339 UTC time of the push that wrote (or confirmed) the record; present only on records sideload wrote. */
export const PUSHED_AT_LABEL = 'sideload.dev/pushed-at'
/** Where the image came from: `archive:/abs/file.tar`, `containerd`, `docker`, `build`. */
export const SOURCE_LABEL = 'sideload.dev/source'

/** containerd refuses a label whose key and value together exceed 4096 bytes; ours stay far below. */
const MAX_VALUE = 1024

/** Where a pushed image came from, as the record will say. */
export interface Provenance {
  source: string
  /** default: now */
  pushedAt?: Date
}

/** A time as containerd's own labels write it (RFC 3339, UTC, whole seconds). */
export function rfc3339(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z')
}

/**
 * A label value that survives `ctr images ls` (comma-separated labels in a space-padded column):
 * whitespace, commas, `%` and control characters percent-encoded; long values keep their end (the
 * file name), marked with `…`.
 */
export function labelValue(text: string): string {
  const encoded = text.replace(/[\s,%\p{Cc}]/gu, (c) => encodeURIComponent(c))
  return encoded.length <= MAX_VALUE ? encoded : `…${encoded.slice(encoded.length - MAX_VALUE + 1)}`
}

/** The labels of an image record sideload writes. */
export function imageRecordLabels(options: {pin: boolean; provenance?: Provenance}): Record<string, string> {
  const labels: Record<string, string> = {[CRI_MANAGED_LABEL]: 'managed'}
  if (options.pin) labels[CRI_PINNED_LABEL] = 'pinned'
  if (options.provenance) {
    labels[PUSHED_AT_LABEL] = rfc3339(options.provenance.pushedAt ?? new Date())
    labels[SOURCE_LABEL] = labelValue(options.provenance.source)
  }
  return labels
}

export function isPinned(labels: Record<string, string>): boolean {
  return labels[CRI_PINNED_LABEL] === 'pinned'
}

/** When sideload pushed the record, or undefined for a record sideload did not write. */
export function pushedAt(labels: Record<string, string>): Date | undefined {
  const value = labels[PUSHED_AT_LABEL]
  const ms = value ? Date.parse(value) : Number.NaN
  return Number.isNaN(ms) ? undefined : new Date(ms)
}

/** The source label as it was given (percent-decoded). */
export function pushedFrom(labels: Record<string, string>): string | undefined {
  const value = labels[SOURCE_LABEL]
  if (value === undefined) return undefined
  try {
    return decodeURIComponent(value)
  } catch {
    return value
  }
}

/** Whether a record already carries `want` (imageRecordLabels); any pushed-at will do: an up-to-date push keeps the first one's. */
export function hasRecordLabels(have: Record<string, string>, want: Record<string, string>): boolean {
  return Object.entries(want).every(([k, v]) => (k === PUSHED_AT_LABEL ? have[k] !== undefined : have[k] === v))
}
