// The labels sideload puts on the image records it writes on a node: what the CRI expects (managed,
// pinned against kubelet GC) and what says the record is ours (when, from where). Both import paths
// (native and `sudo ctr`) take them from here, and `images`, `rm` and `prune` read them back.
// Also the distribution-source label a registry pull writes on every blob, which node-to-node
// mirrors (Spegel) need to serve a blob.
import {parseReference} from '../image/index.js'

export const CRI_MANAGED_LABEL = 'io.cri-containerd.image'
export const CRI_PINNED_LABEL = 'io.cri-containerd.pinned'
/** RFC 3339 UTC time of the push that wrote (or confirmed) the record; present only on records sideload wrote. */
export const PUSHED_AT_LABEL = 'sideload.dev/pushed-at'
/** Where the image came from: `archive:/abs/file.tar`, `containerd`, `docker`, `build`. */
export const SOURCE_LABEL = 'sideload.dev/source'
/**
 * The target digest sideload wrote into the record. A record is sideload's only while its target is
 * still that digest: a registry pull or `ctr images import` of the same name later points it
 * elsewhere and keeps the labels it finds (the CRI updates the target and its own label only), so
 * pushed-at alone would claim content sideload never sent.
 */
export const DIGEST_LABEL = 'sideload.dev/digest'

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

/** The labels of an image record sideload writes, pointing at `digest`. */
export function imageRecordLabels(options: {digest: string; pin: boolean; provenance?: Provenance}): Record<string, string> {
  const labels: Record<string, string> = {[CRI_MANAGED_LABEL]: 'managed', [DIGEST_LABEL]: options.digest}
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

/** An image record as ownership needs it: its target and labels. */
export interface OwnedRecord {
  name: string
  target: {digest: string}
  labels: Record<string, string>
}

/** Whether sideload wrote this record and it still points at what sideload wrote (DIGEST_LABEL). */
export function isOurs(record: OwnedRecord): boolean {
  return record.labels[DIGEST_LABEL] === record.target.digest
}

/** Who wrote a record that is not sideload's, as a clause for errors and `images` ("holds X, written by …"). */
export function originOf(record: OwnedRecord): string {
  if (record.labels[DIGEST_LABEL]) return 'pushed by sideload, since pointed at other content by a registry pull, ctr or nerdctl'
  if (record.labels[PUSHED_AT_LABEL]) return 'labelled by an earlier sideload that did not record what it wrote'
  return 'written by a registry pull, ctr or nerdctl, not by sideload'
}

/** When sideload pushed the record (its pushed-at label); callers check isOurs first. */
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

/**
 * containerd's label of where a blob came from, as a pull writes it on every blob it fetches
 * (index, manifest, config, layers): `containerd.io/distribution.source.<registry host>` =
 * `<repository>[,<repository>…]`. Spegel advertises a blob to its peers only when it carries one,
 * so an imported image without it resolves on other nodes and then fails on its layers.
 */
export const DISTRIBUTION_SOURCE_LABEL = 'containerd.io/distribution.source'

/** A blob's registry (the label key's suffix) and repository (one entry of its value). */
export interface DistributionSource {
  key: string
  repository: string
}

/**
 * The distribution source of the image named `name` (a fully-qualified name, as recorded), as
 * containerd's pull computes it: the registry's host name without its port (`docker.io`,
 * `localhost` for `localhost:5000`, brackets dropped from an IPv6 address), the repository path
 * below it (`library/busybox`). Undefined for a name that does not parse.
 */
export function distributionSource(name: string): DistributionSource | undefined {
  let ref
  try {
    ref = parseReference(name)
  } catch {
    return undefined
  }
  const host = ref.domain.startsWith('[') ? ref.domain.slice(1, ref.domain.indexOf(']')) : ref.domain.replace(/:\d+$/, '')
  return {key: `${DISTRIBUTION_SOURCE_LABEL}.${host}`, repository: ref.path}
}

/**
 * The label to set on a blob that carries `have` so that it names `source` too, or {} when it
 * does already: containerd's value is the set of repositories, sorted and comma-separated, and
 * a pull skips a value that would pass containerd's 4096-byte limit for key and value (so do we).
 */
export function distributionSourceLabels(have: Record<string, string> | undefined, source: DistributionSource | undefined): Record<string, string> {
  if (!source) return {}
  const repos = (have?.[source.key] ?? '').split(',').filter(Boolean)
  if (repos.includes(source.repository)) return {}
  const value = [...new Set([...repos, source.repository])].sort().join(',')
  if (source.key.length + value.length > 4096) return {}
  return {[source.key]: value}
}

/** Label of a push's lease: the image record it is for. */
export const LEASE_IMAGE_LABEL = 'sideload/image'
/** containerd's own expiry label of a lease (RFC 3339). */
export const LEASE_EXPIRE_LABEL = 'containerd.io/gc.expire'
