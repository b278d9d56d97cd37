// `--p2p spegel`: sideload sends the image to a few seed nodes itself; every other node's
// containerd pulls it by digest through its own registry mirror (Spegel on each node serves what
// its containerd holds to its peers), so the bytes move node to node instead of through this
// machine's uplink N times. A node whose pull fails gets a direct push, and says so.
import {imageBlobs, parseReference, type ImageSource, type ResolvedImage} from '../image/index.js'
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
 * `repository:tag` when the image has a tag, else `repository@digest`: what the node's mirror is
 * asked about before a pull. The tag, because containerd pulls by digest and never asks for it: a
 * question about the digest would touch the very lookup the pull is about to use (see below).
 */
export function probeReference(name: string, resolved: ResolvedImage): string {
  const ref = parseReference(name)
  return ref.tag ? `${ref.repository}:${ref.tag}` : `${ref.repository}@${resolved.target.digest}`
}

/**
 * A seed's Spegel advertises the image (its tag and every digest) once containerd tells it of the
 * new record, and the DHT takes a moment to carry that. Before the first pull the node's mirror is
 * asked, from the node, whether a peer serves the image's tag (`HEAD`, as containerd asks) every
 * POLL_PEERS_EVERY_MS until one does: a mirror that does not answer, or none configured for the
 * registry, is known at once, and the pull is not asked before the image can be found.
 *
 * A pull can still meet "not found" with peers that have it. Spegel v0.7.3 (pkg/routing/iterator.go)
 * keeps the peers a lookup found for a key 5 s (LOOKUP_KEPT_MS) and hands them to one request at a
 * time; a peer the lookup adds while every known peer is taken never makes the set "ready" again,
 * so with two or more peers (the seeds) a request for the key can wait out the lookup timeout and
 * answer 404 until those 5 s are over. containerd asks the manifest twice (HEAD, then GET), so the
 * second can land on such a set. Seen here on 4 nodes: HEAD 200 in 13 ms, then the pull's manifest
 * requests 404 "waited too long for new peer with no inflight fetches … attempts 0", four times in
 * a row. A node reached through the containerd API therefore gets the image's index and manifest
 * from sideload before its pull (NodePullOptions.writeFirst), so containerd skips the GET and asks
 * each key once. A `sudo ctr` node cannot take them: a pull that meets "not found" is asked again
 * once LOOKUP_KEPT_MS have passed since it began (the set it met is gone by then), after the mirror
 * answers for the tag again, all within SETTLE_MS; then the direct push. Any other failure goes
 * straight to the direct push.
 */
export const POLL_PEERS_EVERY_MS = 500
export const LOOKUP_KEPT_MS = 5000
export const SETTLE_MS = 30_000

/** `sentBytes`: what sideload sent the node itself (its index and manifest, writeFirst), over every attempt. */
export type PeerPullOutcome = {pulled: boolean; attempts: number; sentBytes: number} | {error: Error; attempts: number; sentBytes: number}

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
 * Until one of the node's mirrors finds a peer that serves `reference`. Returns at once where the
 * node cannot tell. Throws when the mirror does not answer, or when the deadline passes (not found).
 */
export async function untilPeersServe(w: PullWait): Promise<void> {
  if (!w.node.mirrorServes) return
  for (;;) {
    const serves = await w.node.mirrorServes(w.reference)
    if (serves !== false) return
    if (Date.now() + POLL_PEERS_EVERY_MS > w.deadline) {
      throw new Error(`the node's mirror found no peer with ${w.reference} within ${Math.round(SETTLE_MS / 1000)} s: not found`)
    }
    w.onWaiting()
    await sleep(POLL_PEERS_EVERY_MS, w.signal)
  }
}

/**
 * Ask the node to pull the image from its peers. Never throws for a failed pull (the caller
 * pushes directly instead); a cancelled signal does throw.
 */
export async function pullFromPeers(node: ImageNode, name: string, resolved: ResolvedImage, opts: {source?: ImageSource; signal?: AbortSignal; onPulling?: () => void; onRetry?: (err: Error) => void} = {}): Promise<PeerPullOutcome> {
  if (!node.pullImage) {
    return {error: new Error('sideload cannot ask this node to pull'), attempts: 0, sentBytes: 0}
  }
  let asked = false
  const onPulling = (): void => {
    if (!asked) opts.onPulling?.()
    asked = true
  }
  const writeFirst = opts.source && {source: opts.source, image: resolved}
  let sentBytes = 0
  const onSent = (bytes: number): void => { sentBytes += bytes }
  const request = {reference: pullReference(name, resolved), blobs: imageBlobs(resolved), timeoutMs: pullTimeoutMs(resolved), signal: opts.signal, onPulling, writeFirst, onSent}
  const deadline = Date.now() + SETTLE_MS
  let waited = false
  const onWaiting = (): void => {
    if (!waited) opts.onRetry?.(new Error('no peer has the image yet'))
    waited = true
  }
  let pullStarted = 0
  const ready = async (): Promise<void> => {
    await untilPeersServe({node, reference: probeReference(name, resolved), deadline, signal: opts.signal, onWaiting})
    pullStarted = Date.now()
  }
  for (let attempt = 1; ; attempt++) {
    try {
      const r = await node.pullImage({...request, ready})
      return {pulled: r.pulled, attempts: attempt, sentBytes}
    } catch (err) {
      opts.signal?.throwIfAborted()
      const retryAt = Math.max(Date.now(), pullStarted + LOOKUP_KEPT_MS)
      if (!isNotFoundYet(err as Error) || retryAt > deadline) return {error: err as Error, attempts: attempt, sentBytes}
      onWaiting()
      await sleep(retryAt - Date.now(), opts.signal)
    }
  }
}
