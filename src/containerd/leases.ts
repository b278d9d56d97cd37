// The leases sideload's native push holds on a node. One is kept on purpose when a connection drops
// (a re-run resumes what arrived) and expires by itself; `doctor` shows such leftovers and `prune`
// clears them.

import type {ContainerdClient} from './client.js'
import {LEASE_EXPIRE_LABEL, LEASE_IMAGE_LABEL} from './labels.js'

export interface LeaseInfo {
  id: string
  labels: Record<string, string>
}

/** A lease an interrupted push left: its image was never recorded. */
export interface LeftoverLease {
  id: string
  image: string
  expiresAt?: Date
}

/**
 * sideload's leases whose image is not recorded: what interrupted pushes left. A lease whose image
 * has been pushed since holds nothing the image does not, so it is no leftover.
 */
export function leftoverLeases(leases: LeaseInfo[], recorded: (image: string) => boolean): LeftoverLease[] {
  const out: LeftoverLease[] = []
  for (const l of leases) {
    const image = l.labels[LEASE_IMAGE_LABEL]
    if (!image || recorded(image)) continue
    const expires = Date.parse(l.labels[LEASE_EXPIRE_LABEL] ?? '')
    out.push({id: l.id, image, ...(Number.isNaN(expires) ? {} : {expiresAt: new Date(expires)})})
  }
  return out
}

/** `IMAGE (lease ID, kept N min more)` */
export function describeLeftover(l: LeftoverLease, now = Date.now()): string {
  const left = l.expiresAt ? `, kept ${Math.max(0, Math.round((l.expiresAt.getTime() - now) / 60_000))} min more` : ''
  return `${l.image} (lease ${l.id}${left})`
}

/** leftoverLeases of a node reached through its containerd API. */
export async function nativeLeftovers(client: ContainerdClient): Promise<LeftoverLease[]> {
  const ours = (await client.leaseList()).filter((l) => l.labels[LEASE_IMAGE_LABEL])
  const images = [...new Set(ours.map((l) => l.labels[LEASE_IMAGE_LABEL]))]
  const recorded = await Promise.all(images.map(async (name) => (await client.imageGet(name)) !== undefined))
  return leftoverLeases(ours, (image) => recorded[images.indexOf(image)])
}

/** The ingest ref prefix of sideload's native push (`sideload-sha256:…`): a partial blob a re-run resumes. */
export const SIDELOAD_INGEST_PREFIX = 'sideload-'

/** A blob being written, or left half-written, in a node's content store. */
export interface LeftoverIngest {
  ref: string
  /** sideload: a native push's (resumed by a re-run, goes with its lease); import: a `ctr images import`'s (`tar-…`), sideload's fallback or another's */
  kind: 'sideload' | 'import'
  /** bytes written so far, when known */
  offset?: number
}

/** The ingests that interrupted transfers leave: sideload's own and `ctr images import`'s; others (a kubelet pull's) are not ours. */
export function leftoverIngests(refs: {ref: string; offset?: number}[]): LeftoverIngest[] {
  const out: LeftoverIngest[] = []
  for (const r of refs) {
    if (r.ref.startsWith(SIDELOAD_INGEST_PREFIX)) out.push({...r, kind: 'sideload'})
    else if (r.ref.startsWith('tar-')) out.push({...r, kind: 'import'})
  }
  return out
}

/** The rows of `ctr content active` (REF SIZE AGE). */
export function ctrActiveIngests(out: string): LeftoverIngest[] {
  return leftoverIngests(out.split('\n').slice(1).map((l) => l.trim()).filter(Boolean).map((l) => ({ref: l.split(/\s+/)[0]})))
}

/**
 * Every ingest of the namespace, through the containerd API: Content.ListStatuses, encoded here
 * (an empty request; from each Status only ref and offset are read).
 */
export async function nativeIngests(client: ContainerdClient): Promise<LeftoverIngest[]> {
  const svc = client.contentService()
  const body = await new Promise<Buffer>((resolve, reject) => {
    svc.makeUnaryRequest('/containerd.services.content.v1.Content/ListStatuses', () => Buffer.alloc(0), (b: Buffer) => b, {}, client.metadata(),
      (err, res) => (err || !res ? reject(err ?? new Error('no answer')) : resolve(res)))
  })
  const statuses: {ref: string; offset?: number}[] = []
  for (const [field, status] of protoFields(body)) {
    if (field !== 1 || !Buffer.isBuffer(status)) continue
    const s: {ref: string; offset?: number} = {ref: ''}
    for (const [f, v] of protoFields(status)) {
      if (f === 3 && Buffer.isBuffer(v)) s.ref = v.toString('utf8')
      else if (f === 4 && typeof v === 'number') s.offset = v
    }
    statuses.push(s)
  }
  return leftoverIngests(statuses)
}

/** The fields of a protobuf message: number and value (varints as numbers, length-delimited as bytes). */
function protoFields(buf: Buffer): [number, number | Buffer][] {
  const out: [number, number | Buffer][] = []
  let at = 0
  const varint = (): number => {
    let n = 0
    for (let shift = 1; ; shift *= 128) {
      const b = buf[at++]
      if (b === undefined) throw new Error('truncated protobuf message')
      n += (b & 0x7f) * shift
      if (b < 0x80) return n
    }
  }
  while (at < buf.length) {
    const key = varint()
    const wire = key % 8
    const field = Math.floor(key / 8)
    if (wire === 0) out.push([field, varint()])
    else if (wire === 2) {
      const len = varint()
      out.push([field, buf.subarray(at, at + len)])
      at += len
    } else if (wire === 1) at += 8
    else if (wire === 5) at += 4
    else throw new Error(`protobuf wire type ${wire} not expected`)
  }
  return out
}

export function describeIngest(i: LeftoverIngest): string {
  const size = i.offset ? ` (${(i.offset / 1024 / 1024).toFixed(1)} MiB)` : ''
  return `${i.ref}${size}`
}

/** A `ctr images import` running on a node (under sudo: the sudo process, run by the SSH user). */
export interface RunningImport {
  pid: number
  user: string
  /** how long it has run, as ps says ([[dd-]hh:]mm:ss) */
  elapsed: string
  command: string
}

/** ps options for runningImports: every process, no header. */
export const PS_IMPORTS_ARGV = ['ps', '-eo', 'pid=,ppid=,ruser=,etime=,args=']

/** The `ctr … images import` processes in a ps listing (a sudo's ctr child is its sudo's row). */
export function runningImports(ps: string): RunningImport[] {
  const rows = ps.split('\n').map((l) => /^\s*(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(.*)$/.exec(l)).filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({pid: Number(m[1]), ppid: Number(m[2]), user: m[3], elapsed: m[4], command: m[5].trim()}))
    .filter((r) => /^(\S*\/)?(sudo\s+(-\S+\s+)*)?(\S*\/)?ctr\s.*\bi(mages?)?\s+import\b/.test(r.command))
  const pids = new Set(rows.map((r) => r.pid))
  return rows.filter((r) => !pids.has(r.ppid)).map(({ppid: _, ...r}) => r)
}
