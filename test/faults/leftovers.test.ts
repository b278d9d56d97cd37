// Nothing of ours outlives a failed push (issue 19), on a containerd 2.x and a 1.6 node: a
// `sudo ctr` import that fails part-way is over — no ctr or sudo process of ours on the node —
// the moment sideload exits, and it leaves no lease, ingest or image record (not even the CRI's
// `sha256:<id>` name for it). And what must stay stays: `kill -9` of sideload mid-push (native)
// leaves its lease (1 h) and the partial blobs, and the re-run resumes at the node's offsets.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startBed, type Bed, type BedNode} from '../bed/bed.js'
import {spoilBlob} from '../bed/archive-edit.js'
import {makeImage, type ImageInfo} from '../bed/images.js'
import {runCli} from '../push/cli.js'
import {afterBytes, startPush} from './cli.js'

const MB = 1024 * 1024
let bed: Bed
let dir: string
let good: ImageInfo & {path: string}
let big: ImageInfo & {path: string}
const sshFlags = () => ['--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath]

async function nodeState(node: BedNode): Promise<{processes: string; leases: string[]; ingests: string[]; images: string[]}> {
  // first, before our own look-ups start ctr processes there
  const ours = bed.processes(node).filter((cmd) => /^(sudo -n )?ctr |^sh -c .*sideload-/.test(cmd)).join('\n')
  const lines = async (args: string[]) => (await bed.ctr(node, args)).split('\n').slice(1).map((l) => l.trim()).filter(Boolean)
  return {
    processes: ours,
    leases: await lines(['leases', 'ls']),
    ingests: await lines(['content', 'active']),
    images: (await bed.ctr(node, ['images', 'ls', '-q'])).split('\n').filter(Boolean),
  }
}

beforeAll(async () => {
  bed = await startBed({name: 'slbt-leftovers', nodes: 2, nodeOptions: {1: {containerd: '2'}, 2: {containerd: '1.6'}}})
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sideload-leftovers-'))
  const out = path.join(dir, 'good.tar')
  good = {...(await makeImage({name: 'docker.io/sl-left/app:1', format: 'oci', out, layers: [{sizeBytes: 2 * MB, seed: 'l1'}, {sizeBytes: 8 * MB, seed: 'l2'}]})), path: out}
  const bigOut = path.join(dir, 'cut.tar')
  big = {...(await makeImage({name: 'docker.io/sl-left/cut:1', format: 'oci', out: bigOut, layers: [{sizeBytes: 24 * MB, seed: 'c1'}, {sizeBytes: 24 * MB, seed: 'c2'}]})), path: bigOut}
}, 120_000)

afterAll(async () => {
  await bed?.down()
  fs.rmSync(dir, {recursive: true, force: true})
})

describe.each([
  ['2.x', 0],
  ['1.6', 1],
])('a failed `sudo ctr` import on a containerd %s node', (_line, index) => {
  it.each([
    ['names a layer the archive does not hold', 'drop'],
    ['has a layer whose bytes do not match its digest', 'flip'],
  ] as const)('an archive that %s: when sideload exits, no ctr of ours runs and nothing of the import is left', async (_what, how) => {
    const node = bed.nodes[index]
    const bigLayer = good.platforms[0].layerDigests.at(-1)!
    const archive = path.join(dir, `${how}-${index}.tar`)
    await spoilBlob(good.path, archive, bigLayer, how)
    const run = await startPush(['--archive', archive, '--host', `${bed.nonRootUser}@${node.ip}`, ...sshFlags()]).done
    // the moment it has exited: no process of ours, no lease, no image record
    const state = await nodeState(node)
    expect(run.code, run.stderr).toBe(1)
    expect(run.result?.results[0]).toMatchObject({status: 'failed'})
    expect({...state, ingests: []}).toEqual({processes: '', leases: [], ingests: [], images: []})
    // ctr's partial blob goes with its lease: containerd's GC takes it right after (within seconds)
    let ingests = state.ingests
    for (const deadline = Date.now() + 10_000; ingests.length > 0 && Date.now() < deadline; ) {
      await new Promise((r) => setTimeout(r, 250))
      ingests = (await nodeState(node)).ingests
    }
    expect(ingests).toEqual([])
  })
})

/** Polls (generous deadline, under load) until the node holds no ingest: containerd's GC takes ctr's partial blob once its lease is gone. */
async function ingestsGone(node: BedNode): Promise<string[]> {
  let ingests = (await nodeState(node)).ingests
  for (const deadline = Date.now() + 20_000; ingests.length > 0 && Date.now() < deadline; ) {
    await new Promise((r) => setTimeout(r, 250))
    ingests = (await nodeState(node)).ingests
  }
  return ingests
}

describe.each([
  ['2.x', 0],
  ['1.6', 1],
])('the fault suite through `sudo ctr` on a containerd %s node', (_line, index) => {
  const cutAt = 16 * MB
  const pushArgs = (node: BedNode, ...extra: string[]) => ['--archive', big.path, '--host', `${bed.nonRootUser}@${node.ip}`, ...sshFlags(), ...extra]
  const onNode = (node: BedNode) => `${bed.nonRootUser}@${node.ip}`

  it('the connection cut mid-transfer (--retries 0): ctr ends (its input gone) before sideload reports; nothing of the import is left', async () => {
    const node = bed.nodes[index]
    await bed.shape(node, {rateMbit: 200})
    let cut: Promise<void> | undefined
    const run = await startPush(pushArgs(node, '--retries', '0'), afterBytes(onNode(node), cutAt, () => (cut = bed.killSshSessions(node)))).done
    const state = await nodeState(node)
    await bed.unshape(node)
    await cut
    expect(cut, 'the transfer was cut').toBeDefined()
    expect(run.code, run.stderr).toBe(1)
    expect(run.result?.results[0]).toMatchObject({status: 'failed', reason: 'closed'})
    expect({...state, ingests: []}).toEqual({processes: '', leases: [], ingests: [], images: []})
    expect(await ingestsGone(node)).toEqual([])
  })

  it('the connection cut mid-transfer: the retry starts once the first import has ended, and pushes', async () => {
    const node = bed.nodes[index]
    await bed.shape(node, {rateMbit: 200})
    let cut: Promise<void> | undefined
    const run = await startPush(pushArgs(node), afterBytes(onNode(node), cutAt, () => (cut = bed.killSshSessions(node)))).done
    const state = await nodeState(node)
    await bed.unshape(node)
    await cut
    expect(run.code, run.stderr).toBe(0)
    expect(run.result?.results[0]).toMatchObject({status: 'pushed', attempts: 2})
    expect({...state, ingests: []}).toEqual({processes: '', leases: [], ingests: [], images: expect.arrayContaining([big.name])})
    expect(await ingestsGone(node)).toEqual([])
    await bed.ctr(node, ['images', 'rm', '--sync', ...state.images])
  })

  it.each(['SIGINT', 'SIGTERM'] as const)('%s mid-transfer: exit 130/143 once ctr has ended; no process, lease, ingest or image of the import is left', async (signal) => {
    const node = bed.nodes[index]
    await bed.shape(node, {rateMbit: 200})
    let sent = false
    const run = await startPush(pushArgs(node), afterBytes(onNode(node), cutAt, (child) => {
      sent = true
      child.kill(signal)
    })).done
    const state = await nodeState(node)
    await bed.unshape(node)
    expect(sent, 'the signal came mid-transfer').toBe(true)
    expect(run.code, run.stderr).toBe(signal === 'SIGINT' ? 130 : 143)
    expect(run.result).toMatchObject({ok: false})
    expect({...state, ingests: []}).toEqual({processes: '', leases: [], ingests: [], images: []})
    expect(await ingestsGone(node)).toEqual([])
  })

  it('containerd restarted mid-import: sideload reports it (no hang), ctr has ended and dropped its lease', async () => {
    const node = bed.nodes[index]
    await bed.shape(node, {rateMbit: 200})
    let restarted: Promise<void> | undefined
    const run = await startPush(pushArgs(node, '--retries', '0'), afterBytes(onNode(node), cutAt, () => {
      restarted = (async () => {
        await bed.stopContainerd(node)
        await bed.startContainerd(node)
      })()
    })).done
    const processes = (await nodeState(node)).processes
    await bed.unshape(node)
    await restarted
    expect(restarted, 'containerd was restarted mid-import').toBeDefined()
    expect(processes).toBe('')
    expect(run.code, run.stderr).toBe(1)
    const r = run.result?.results[0]
    expect(r).toMatchObject({status: 'failed'})
    expect(`${r?.error} ${r?.hint}`).toMatch(/containerd/)
    expect({...(await nodeState(node)), ingests: []}).toEqual({processes: '', leases: [], ingests: [], images: []})
    expect(await ingestsGone(node)).toEqual([])
  })

  it('containerd back only after ctr gave up (so ctr could not delete its lease): sideload drops that lease before it reports', async () => {
    const node = bed.nodes[index]
    await bed.shape(node, {rateMbit: 200})
    const ctrRuns = () => bed.processes(node).some((cmd) => /^(sudo -n )?ctr .*images import/.test(cmd))
    let restarted: Promise<boolean> | undefined
    const run = await startPush(pushArgs(node, '--retries', '0'), afterBytes(onNode(node), cutAt, () => {
      restarted = (async () => {
        await bed.stopContainerd(node)
        // ctr fails with containerd down, and so does the delete of its lease
        let gaveUp = false
        for (const deadline = Date.now() + 30_000; !gaveUp && Date.now() < deadline; ) {
          await new Promise((r) => setTimeout(r, 50))
          gaveUp = !ctrRuns()
        }
        // and containerd is back a second later: sideload's clean-up has found its socket gone by then
        await new Promise((r) => setTimeout(r, 1000))
        await bed.startContainerd(node)
        return gaveUp
      })()
    })).done
    await bed.unshape(node)
    expect(await restarted, 'ctr gave up while containerd was down').toBe(true)
    expect(run.code, run.stderr).toBe(1)
    expect(run.result?.results[0]).toMatchObject({status: 'failed'})
    expect({...(await nodeState(node)), ingests: []}).toEqual({processes: '', leases: [], ingests: [], images: []})
    expect(await ingestsGone(node)).toEqual([])
  })

  it('containerd stopped mid-import: sideload waits for ctr to give up and says what may be left; doctor shows it once containerd is back', async () => {
    const node = bed.nodes[index]
    await bed.shape(node, {rateMbit: 200})
    let stopped: Promise<void> | undefined
    const run = await startPush(pushArgs(node, '--retries', '0'), afterBytes(onNode(node), cutAt, () => (stopped = bed.stopContainerd(node)))).done
    const processes = bed.processes(node).filter((cmd) => /^(sudo -n )?ctr |^sh -c .*sideload-/.test(cmd))
    await bed.unshape(node)
    await stopped
    expect(processes).toEqual([])
    expect(run.code, run.stderr).toBe(1)
    const r = run.result?.results[0]
    expect(r?.hint).toMatch(/containerd stopped or restarted during the import/)
    await bed.startContainerd(node)
    // ctr could not drop its lease (24 h) with containerd down: what it holds is the import's partial blob
    const state = await nodeState(node)
    expect(state.images).toEqual([])
    expect(state.ingests.join('\n')).toMatch(/^tar-blobs\/sha256\//m)
    // doctor (through the same sudo ctr) shows the import's partial blob and what holds it
    const shown = await leftoverRows(`${bed.nonRootUser}@${node.ip}`)
    const ingests = shown.find((c) => c.check === 'ingests')
    expect(ingests, JSON.stringify(shown)).toMatchObject({status: 'warn'})
    expect(ingests?.detail).toMatch(/ctr import's: tar-blobs\/sha256\/[0-9a-f]{64}/)
    expect(ingests?.hint).toMatch(/leases ls/)
    for (const lease of (await bed.ctr(node, ['leases', 'ls', '-q'])).split('\n').filter(Boolean)) await bed.ctr(node, ['leases', 'rm', '--sync', lease])
    expect(await ingestsGone(node)).toEqual([])
  })
})

/** doctor --host's rows about leftovers (leases, ingests, running imports) for one node. */
async function leftoverRows(host: string): Promise<Array<{check: string; status: string; detail: string; hint?: string}>> {
  const run = await runCli(['doctor', '--host', host, ...sshFlags(), '--json'])
  return (JSON.parse(run.stdout) as {checks: Array<{check: string; status: string; detail: string; hint?: string}>}).checks.filter((c) => ['leftovers', 'ingests', 'imports'].includes(c.check))
}

describe('kill -9 of sideload mid-push (native)', () => {
  it('leaves its lease (expiring in about an hour) and the partial blobs; the re-run resumes at the node\'s offsets', async () => {
    const node = bed.nodes[0]
    const archive = path.join(dir, 'big.tar')
    const big = await makeImage({name: 'docker.io/sl-left/big:1', format: 'oci', out: archive, layers: [{sizeBytes: 48 * MB, seed: 'k1'}, {sizeBytes: 48 * MB, seed: 'k2'}]})
    await bed.shape(node, {rateMbit: 200})
    const host = `root@${node.ip}`
    const killed = await startPush(['--archive', archive, '--host', host, ...sshFlags()], afterBytes(host, 40 * MB, (child) => child.kill('SIGKILL'))).done
    await bed.unshape(node)
    expect(killed.signal).toBe('SIGKILL')
    const leases = (await bed.ctr(node, ['leases', 'ls'])).split('\n').filter((l) => l.includes('sideload'))
    expect(leases).toHaveLength(1)
    const expire = Date.parse(/containerd\.io\/gc\.expire=(\S+?)(,|$)/.exec(leases[0])?.[1] ?? '')
    expect(expire - Date.now()).toBeGreaterThan(50 * 60_000)
    expect(expire - Date.now()).toBeLessThan(70 * 60_000)
    expect((await bed.ctr(node, ['content', 'active'])).split('\n').slice(1).filter(Boolean).length, 'a partial blob kept for the re-run').toBeGreaterThan(0)
    // doctor shows the interrupted transfer and how to resume or drop it
    const leaseId = leases[0].trim().split(/\s+/)[0]
    const leftovers = async () => {
      const run = await runCli(['doctor', '--host', host, '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath, '--json'])
      return (JSON.parse(run.stdout) as {checks: Array<{check: string; status: string; detail: string; hint?: string}>}).checks.find((c) => c.check === 'leftovers')
    }
    const shown = await leftovers()
    expect(shown).toMatchObject({status: 'warn'})
    expect(shown?.detail).toContain(`docker.io/sl-left/big:1 (lease ${leaseId}, kept `)
    expect(shown?.hint).toContain(`ctr -n k8s.io leases rm ${leaseId}`)
    const total = big.platforms[0].layerSizes.reduce((a, b) => a + b, 0)
    const again = await startPush(['--archive', archive, '--host', host, ...sshFlags()]).done
    expect(again.code, again.stderr).toBe(0)
    const sent = again.result?.results[0].sentBytes ?? Infinity
    // what had gone before the kill (≥ 40 MB, as committed blobs or kept ingests) is not sent again
    expect(sent).toBeLessThan(total - 30 * MB)
    // the re-run's own lease is gone; the killed run's expires by itself (the image holds its blobs now)
    expect((await bed.ctr(node, ['leases', 'ls'])).split('\n').filter((l) => l.includes('sideload'))).toEqual(leases)
    expect(await leftovers()).toMatchObject({status: 'ok', detail: 'no interrupted transfer of sideload'})
  }, 120_000)
})
