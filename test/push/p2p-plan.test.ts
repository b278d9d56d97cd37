// --p2p's planning, without nodes: which nodes are seeds, how many peers pull at once, the flags.
import {describe, expect, it} from 'vitest'
import {p2pFrom} from '../../src/cli/flags.js'
import {inWaves, LOOKUP_KEPT_MS, probeReference, pullFromPeers, pullReference, splitSeeds} from '../../src/ops/p2p.js'
import {renderPushTable} from '../../src/commands/push.js'
import {p2pFallbacks} from '../../src/ops/push.js'
import type {ImageSource, ResolvedImage} from '../../src/image/index.js'
import type {ImageNode, NodePullOptions} from '../../src/nodes/index.js'

describe('--p2p planning', () => {
  it('the first K reachable nodes are the seeds; an unreachable one is never a seed', () => {
    const nodes = [{name: 'a', unavailable: new Error('no such node')}, {name: 'b'}, {name: 'c'}, {name: 'd'}]
    const {seeds, peers} = splitSeeds(nodes, 2)
    expect(seeds.map((n) => n.name)).toEqual(['b', 'c'])
    expect(peers.map((n) => n.name)).toEqual(['a', 'd'])
    expect(splitSeeds(nodes.slice(1), 5).peers).toEqual([])
  })

  it('peers pull with as many at once as there are nodes that have the image, up to --jobs', async () => {
    let running = 0
    const seen: number[] = []
    const pull = async (ok: boolean): Promise<boolean> => {
      running++
      seen.push(running)
      await new Promise((r) => setTimeout(r, 20))
      running--
      return ok
    }
    await inWaves([true, true, true, true, true, true, true], 1, 3, pull)
    // 1 source: one pull; then 2; then 3 (the cap)
    expect(seen.slice(0, 3)).toEqual([1, 1, 2])
    expect(Math.max(...seen)).toBe(3)
    // peers that fail do not become sources
    seen.length = 0
    await inWaves([false, false, false], 1, 4, pull)
    expect(seen).toEqual([1, 1, 1])
    await expect(inWaves([], 2, 4, pull)).resolves.toBeUndefined()
  })

  it('pulls by digest under the image\'s repository', () => {
    const resolved = {target: {digest: 'sha256:' + 'a'.repeat(64)}} as ResolvedImage
    expect(pullReference('app:1', resolved)).toBe(`docker.io/library/app@sha256:${'a'.repeat(64)}`)
    expect(pullReference('registry.lab:5000/team/app:1', resolved)).toBe(`registry.lab:5000/team/app@sha256:${'a'.repeat(64)}`)
  })

  it('--seeds without --p2p is a usage error that says what to add', () => {
    expect(p2pFrom({})).toBeUndefined()
    expect(p2pFrom({p2p: 'spegel'})).toEqual({via: 'spegel', seeds: 2})
    expect(p2pFrom({p2p: 'spegel', seeds: 3})).toEqual({via: 'spegel', seeds: 3})
    expect(() => p2pFrom({seeds: 3})).toThrow(/--seeds needs --p2p/)
  })

  it('the table shows how each node got the image, and each fallback is said once', () => {
    const base = {image: 'docker.io/library/app:1', status: 'pushed' as const, skippedBytes: 0, durationMs: 1000, attempts: 1}
    const result = {ok: true, results: [
      {...base, node: 'n1', via: 'seed' as const, sentBytes: 5 << 20},
      {...base, node: 'n2', via: 'p2p' as const, sentBytes: 0},
      {...base, node: 'n3', via: 'direct' as const, sentBytes: 5 << 20, p2pError: 'containerd cri.PullImage on node n3 failed: not found'},
    ]}
    const table = renderPushTable(result)
    expect(table.split('\n')[0]).toMatch(/NODE\s+IMAGE\s+RESULT\s+VIA\s+SENT/)
    expect(table).toMatch(/n2\s+\S+\s+pushed\s+p2p\s+0 B/)
    // the node named once (the message names it already)
    expect(p2pFallbacks(result.results)).toEqual([expect.stringMatching(/^warning: pushed directly, the pull from peers failed: containerd cri.PullImage on node n3 failed: not found; hint: sideload doctor/)])
    expect(renderPushTable({ok: true, results: [{...base, node: 'n1', sentBytes: 1}]})).not.toMatch(/VIA/)
  })
})

describe('--p2p: asking the node\'s mirror before each pull', () => {
  const d = (c: string) => ({mediaType: 'x', digest: `sha256:${c.repeat(64)}`, size: 10})
  const manifest = d('a')
  const resolved = {target: manifest, indexes: [], manifest, config: d('b'), layers: [d('c'), d('e')]} as unknown as ResolvedImage
  /** A node whose mirror answers `answers` in turn (serves the image or not, or an error), and whose pull does what `pull` says. */
  function fakeNode(answers: Array<boolean | Error>, pull: (call: number) => void = () => undefined) {
    const calls: string[] = []
    const pullTimes: number[] = []
    let asked = 0
    let pulls = 0
    const node = {
      name: 'n', facts: {} as ImageNode['facts'],
      mirrorServes: async (reference: string) => {
        calls.push(`ask ${reference}`)
        const a = answers[Math.min(asked++, answers.length - 1)]
        if (a instanceof Error) throw a
        return a
      },
      pullImage: async (o: NodePullOptions) => {
        // a node reached through the containerd API gets the root blobs first (NativeNode.writeResolveChain)
        if (o.writeFirst) o.onSent?.(o.writeFirst.image.manifest.size)
        await o.ready?.()
        calls.push(`pull ${o.reference.replace(/@sha256:a+$/, '@a…')}`)
        pullTimes.push(Date.now())
        pull(++pulls)
        return {pulled: true}
      },
    } as unknown as ImageNode
    return {node, calls, pullTimes}
  }

  it('asks about the image\'s tag (never the digest the pull uses) until a peer serves it, then pulls by digest once', async () => {
    const {node, calls} = fakeNode([false, false, true])
    const out = await pullFromPeers(node, 'app:1', resolved)
    expect(out).toEqual({pulled: true, attempts: 1, sentBytes: 0})
    expect(calls).toEqual(['ask docker.io/library/app:1', 'ask docker.io/library/app:1', 'ask docker.io/library/app:1', 'pull docker.io/library/app@a…'])
    expect(probeReference('registry.lab:5000/team/app@sha256:' + 'a'.repeat(64), resolved)).toBe(`registry.lab:5000/team/app@sha256:${'a'.repeat(64)}`)
  })

  it('a mirror that does not answer ends the pull at once with its reason (no pull asked)', async () => {
    const {node, calls} = fakeNode([new Error('the mirror at http://10.0.0.1:5000 does not answer (Connection refused)')])
    const out = await pullFromPeers(node, 'app:1', resolved)
    expect(out).toMatchObject({attempts: 1, error: {message: expect.stringMatching(/does not answer \(Connection refused\)/)}})
    expect(calls.some((c) => c.startsWith('pull'))).toBe(false)
  })

  it('a pull that meets "not found" is asked again once Spegel\'s lookup of that pull has expired', async () => {
    const {node, calls, pullTimes} = fakeNode([true], (n) => {
      if (n === 1) throw new Error('failed to resolve reference: not found')
    })
    const out = await pullFromPeers(node, 'app:1', resolved)
    expect(out).toEqual({pulled: true, attempts: 2, sentBytes: 0})
    expect(calls.filter((c) => c.startsWith('pull'))).toHaveLength(2)
    expect(pullTimes[1] - pullTimes[0]).toBeGreaterThanOrEqual(LOOKUP_KEPT_MS - 50)
  })

  it('with the image\'s source, every attempt is offered its index and manifest, and what was sent for them is counted, failed attempts too', async () => {
    const {node} = fakeNode([true], (n) => {
      if (n === 1) throw new Error('failed to resolve reference: not found')
    })
    const out = await pullFromPeers(node, 'app:1', resolved, {source: {} as ImageSource})
    expect(out).toEqual({pulled: true, attempts: 2, sentBytes: 2 * manifest.size})
  })

  it('any other pull failure is the outcome at once', async () => {
    const {node, calls} = fakeNode([true], () => {
      throw new Error('failed to unpack: no space left on device')
    })
    const out = await pullFromPeers(node, 'app:1', resolved)
    expect(out).toMatchObject({attempts: 1, error: {message: expect.stringMatching(/no space left/)}})
    expect(calls.filter((c) => c.startsWith('pull'))).toHaveLength(1)
  })
})
