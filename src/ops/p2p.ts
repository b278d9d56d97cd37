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
 * takes a moment to carry that. A node's Spegel keeps what a lookup found for 5 s, and drops a
 * peer from it after one failed request — so a lookup spoiled early (before the seeds advertised,
 * or by a slow answer on a busy node) says "not found" until it expires. A pull the mirror
 * answered "not found" is therefore asked again after RETRY_PULL_EVERY_MS (past that 5 s), for up
 * to SETTLE_MS; any other failure (no mirror there, a broken transfer) goes straight to the
 * direct push.
 */
export const RETRY_PULL_EVERY_MS = 6000
export const SETTLE_MS = 30_000

export type PeerPullOutcome = {pulled: boolean; attempts: number} | {error: Error; attempts: number}

/** The mirror answered, and had no peer with the image (yet). */
export function isNotFoundYet(err: Error): boolean {
  return /not found/i.test(err.message)
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
  const request = {reference: pullReference(name, resolved), blobs: imageBlobs(resolved), timeoutMs: pullTimeoutMs(resolved), signal: opts.signal, onPulling}
  const started = Date.now()
  for (let attempt = 1; ; attempt++) {
    try {
      const r = await node.pullImage(request)
      return {pulled: r.pulled, attempts: attempt}
    } catch (err) {
      opts.signal?.throwIfAborted()
      if (!isNotFoundYet(err as Error) || Date.now() - started + RETRY_PULL_EVERY_MS > SETTLE_MS) return {error: err as Error, attempts: attempt}
      if (attempt === 1) opts.onRetry?.(err as Error)
      await sleep(RETRY_PULL_EVERY_MS, opts.signal)
    }
  }
}
