// `--p2p spegel`: sideload sends the image to a few seed nodes itself; every other node's
// containerd pulls it by digest through its own registry mirror (Spegel on each node serves what
// its containerd holds to its peers), so the bytes move node to node instead of through this
// machine's uplink N times. A node whose pull fails gets a direct push, and says so.
import {imageBlobs, parseReference, type ResolvedImage} from '../image/index.js'
import type {ImageNode} from '../nodes/index.js'
import {sleep} from '../util/async.js'

/** The node-to-node layer the nodes run, and how many nodes sideload sends to itself. */
export interface P2pOptions {
  via: 'spegel'
  /** Nodes sideload pushes to itself (default 2); every other node pulls from them. */
  seeds: number
}

/** How a node got the image: sent by sideload as a seed, pulled from its peers, or sent directly after its pull failed. */
export type Route = 'seed' | 'p2p' | 'direct'

export const DEFAULT_SEEDS = 2

/**
 * The first `count` nodes that can be reached at all are the seeds (in the order given: --node,
 * --host, or the API's), the rest pull from them.
 */
export function splitSeeds<T extends {unavailable?: Error}>(nodes: T[], count: number): {seeds: T[]; peers: T[]} {
  const seeds: T[] = []
  const peers: T[] = []
  for (const node of nodes) (seeds.length < count && !node.unavailable ? seeds : peers).push(node)
  return {seeds, peers}
}

/**
 * Runs `pull` over the peers with as many at once as there are nodes to pull from (the seeds, then
 * each peer that got the image too), never more than `max`: a peer serves one pull at a time
 * while the wave grows, and pullers do not lean on each other's half-pulled content.
 * `pull` resolves true when its node can serve the image now.
 */
export async function inWaves<T>(peers: T[], sources: number, max: number, pull: (peer: T) => Promise<boolean>): Promise<void> {
  let next = 0
  let running = 0
  let available = Math.max(1, sources)
  await new Promise<void>((resolve, reject) => {
    const start = (): void => {
      while (next < peers.length && running < Math.min(available, max)) {
        const peer = peers[next++]
        running++
        pull(peer).then((serves) => {
          running--
          if (serves) available++
          if (next >= peers.length && running === 0) resolve()
          else start()
        }, reject)
      }
      if (next >= peers.length && running === 0) resolve()
    }
    start()
  })
}

/** `repository@digest`: what the node's containerd pulls (its tag record is written afterwards, as by a push). */
export function pullReference(name: string, resolved: ResolvedImage): string {
  return `${parseReference(name).repository}@${resolved.target.digest}`
}

/** A pull gets a minute, plus a second for every 10 MiB of the image (a slow peer link is still a pull). */
export function pullTimeoutMs(resolved: ResolvedImage): number {
  const bytes = imageBlobs(resolved).reduce((sum, b) => sum + b.size, 0)
  return 60_000 + Math.ceil(bytes / (10 << 20)) * 1000
}

/**
 * A seed's Spegel advertises the image once containerd tells it of the new record, and the DHT
 * takes a moment to carry that. A node's Spegel gives a lookup 20 ms (its default
 * --mirror-resolve-timeout) and a peer's answer max(2 × its slow percentile, 100 ms) before it
 * answers "not found"; it keeps what a lookup found for 5 s, looks again only after 2.5 s, and
 * drops a peer after one failed request — so a pull asked too early, or on busy nodes, meets
 * "not found" for a while. Before each pull the node's mirror is asked, from the node, for the
 * image's manifest (`HEAD`, as containerd asks it) every POLL_PEERS_EVERY_MS until a peer serves
 * it; a pull that still meets "not found" is asked again the same way, all within SETTLE_MS.
 * (Waiting for every blob to answer at once was tried: on 2 busy cores it almost never happened,
 * and the polling added load.) Where the node's mirrors cannot be read the pull itself is asked
 * again every RETRY_PULL_EVERY_MS. A mirror that does not answer, or any failure but
 * "not found", goes straight to the direct push.
 */
export const POLL_PEERS_EVERY_MS = 500
export const RETRY_PULL_EVERY_MS = 6000
export const SETTLE_MS = 30_000

export type PeerPullOutcome = {pulled: boolean; attempts: number} | {error: Error; attempts: number}

/** The mirror answered, and had no peer with the image (yet). */
export function isNotFoundYet(err: Error): boolean {
  return /not found/i.test(err.message)
}

interface PullWait {
  node: ImageNode
  reference: string
  deadline: number
  signal?: AbortSignal
  onWaiting: () => void
}

/**
 * Until the node's mirrors find the image's manifest among its peers: true, or false where the
 * node cannot tell. Throws when the mirror does not answer, or when the deadline passes (not found).
 */
export async function untilPeersServe(w: PullWait): Promise<boolean> {
  if (!w.node.mirrorLacks) return false
  for (;;) {
    const lacking = await w.node.mirrorLacks(w.reference, [])
    if (lacking === undefined) return false
    if (lacking.length === 0) return true
    if (Date.now() + POLL_PEERS_EVERY_MS > w.deadline) {
      throw new Error(`the node's mirror found no peer with the image (${shortDigest(lacking[0])}) within ${Math.round(SETTLE_MS / 1000)} s: not found`)
    }
    w.onWaiting()
    await sleep(POLL_PEERS_EVERY_MS, w.signal)
  }
}

function shortDigest(d: string): string {
  return d.replace(/^(sha256:[0-9a-f]{12})[0-9a-f]+$/, '$1…')
}

/**
 * Ask the node to pull the image from its peers. Never throws for a failed pull (the caller
 * pushes directly instead); a cancelled signal does throw.
 */
export async function pullFromPeers(node: ImageNode, name: string, resolved: ResolvedImage, opts: {signal?: AbortSignal; onPulling?: () => void; onRetry?: (err: Error) => void} = {}): Promise<PeerPullOutcome> {
  if (!node.pullImage) {
    return {error: new Error('sideload cannot ask this node to pull'), attempts: 0}
  }
  let asked = false
  const onPulling = (): void => {
    if (!asked) opts.onPulling?.()
    asked = true
  }
  const blobs = imageBlobs(resolved)
  const request = {reference: pullReference(name, resolved), blobs, timeoutMs: pullTimeoutMs(resolved), signal: opts.signal, onPulling}
  const deadline = Date.now() + SETTLE_MS
  let waited = false
  const onWaiting = (): void => {
    if (!waited) opts.onRetry?.(new Error('no peer has the image yet'))
    waited = true
  }
  let polled = false
  const ready = async (): Promise<void> => {
    polled = await untilPeersServe({node, reference: request.reference, deadline, signal: opts.signal, onWaiting})
  }
  for (let attempt = 1; ; attempt++) {
    try {
      const r = await node.pullImage({...request, ready})
      return {pulled: r.pulled, attempts: attempt}
    } catch (err) {
      opts.signal?.throwIfAborted()
      const again = polled ? POLL_PEERS_EVERY_MS : RETRY_PULL_EVERY_MS
      if (!isNotFoundYet(err as Error) || Date.now() + again > deadline) return {error: err as Error, attempts: attempt}
      onWaiting()
      if (!polled) await sleep(RETRY_PULL_EVERY_MS, opts.signal)
    }
  }
}
