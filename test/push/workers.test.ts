// `sideload push --workers N` (src/ops/push-workers.ts): the nodes spread over worker threads,
// each with its own SSH connections, on real bed nodes. What a user sees must not change: the same
// records, progress for every node, a failing node failing alone, Ctrl-C leaving nothing behind.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startBed, type Bed, type BedNode} from '../bed/bed.js'
import {makeImage, type ImageInfo} from '../bed/images.js'
import {afterBytes, startPush, type PushRun} from '../faults/cli.js'
import {runCli} from './cli.js'
import {workerCount} from '../../src/ops/push-workers.js'

const MB = 1024 * 1024
const NAME = 'docker.io/sl-workers/app:1'
let bed: Bed
let dir: string
let image: ImageInfo & {path: string}

const host = (n: BedNode) => `root@${n.ip}`
const pushArgs = (nodes: string[], ...extra: string[]) => ['--archive', image.path, ...nodes.flatMap((h) => ['--host', h]), '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath, ...extra]
const describeRun = (run: PushRun) => `exit ${run.code} signal ${run.signal}\nstderr: ${run.stderr.slice(-1500)}\nresult: ${JSON.stringify(run.result)}`
const workersOf = (run: PushRun): unknown => (JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}') as {workers?: number}).workers

async function reset(node: BedNode): Promise<void> {
  const images = (await bed.ctr(node, ['images', 'ls', '-q'])).split('\n').filter(Boolean)
  if (images.length) await bed.ctr(node, ['images', 'rm', '--sync', ...images])
  const content = (await bed.ctr(node, ['content', 'ls', '-q'])).split('\n').filter(Boolean)
  if (content.length) await bed.ctr(node, ['content', 'rm', ...content])
}

async function expectLanded(node: BedNode): Promise<void> {
  const check = (await bed.ctr(node, ['images', 'check'])).split('\n').find((l) => l.startsWith(`${NAME} `))
  expect(check, `${node.name}: ${NAME}`).toMatch(/complete \((\d+)\/\1\)\s.*true/)
  const record = (await bed.ctr(node, ['images', 'ls'])).split('\n').find((l) => l.startsWith(`${NAME} `))
  expect(record, node.name).toContain(image.targetDigest!)
  expect(record, node.name).toContain('io.cri-containerd.pinned=pinned')
}

describe('workerCount: how many worker threads a push uses', () => {
  const nodes = (n: number) => Array.from({length: n}, (_, i) => ({name: `n${i}`, sshTarget: `n${i}`}))
  const archive = {kind: 'archive', path: 'app.tar'} as const
  it('by default one per core up to the pairs that run at once (--jobs), when both are at least 4', () => {
    expect(workerCount({source: archive, nodes: nodes(6)}, 1, 8)).toBe(4)
    expect(workerCount({source: archive, nodes: nodes(6), jobs: 8}, 1, 8)).toBe(6)
    expect(workerCount({source: archive, nodes: nodes(12), jobs: 16}, 1, 6)).toBe(6)
    expect(workerCount({source: archive, nodes: nodes(2)}, 2, 8)).toBe(4)
    expect(workerCount({source: archive, nodes: nodes(3)}, 1, 16)).toBe(0)
    expect(workerCount({source: archive, nodes: nodes(6)}, 1, 2)).toBe(0)
    expect(workerCount({source: archive, nodes: nodes(1)}, 1, 8)).toBe(0)
  })
  it('--workers decides (1: none), but not for a source only this thread can read or a shared pool', () => {
    expect(workerCount({source: archive, nodes: nodes(3), workers: 2}, 1, 2)).toBe(2)
    expect(workerCount({source: archive, nodes: nodes(3), workers: 1}, 1, 8)).toBe(0)
    expect(workerCount({source: {kind: 'archive', path: '-'}, nodes: nodes(3), workers: 2}, 1, 8)).toBe(0)
    expect(workerCount({source: {kind: 'docker'}, nodes: nodes(3), workers: 2}, 1, 8)).toBe(0)
    expect(workerCount({source: {kind: 'containerd', address: '/run/containerd/containerd.sock'}, nodes: nodes(3), workers: 2}, 1, 8)).toBe(2)
    expect(workerCount({source: archive, nodes: nodes(3), workers: 2, pool: {} as never}, 1, 8)).toBe(0)
  })
})

describe('push --workers on the bed', () => {
  beforeAll(async () => {
    bed = await startBed({name: 'slbt-workers', nodes: 3})
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sideload-workers-'))
    const out = path.join(dir, 'app.tar')
    image = {...(await makeImage({name: NAME, format: 'oci', out, layers: [{busybox: true}, {sizeBytes: 30 * MB, seed: 'w1'}, {sizeBytes: 10 * MB, seed: 'w2'}]})), path: out}
  })
  afterAll(async () => {
    await bed?.down()
    if (dir) fs.rmSync(dir, {recursive: true, force: true})
  })

  it('three nodes over two worker threads: each complete, unpacked and pinned; progress and results for every node; an identical re-push sends nothing', async () => {
    const run = await startPush(pushArgs(bed.nodes.map(host), '--workers', '2')).done
    expect(run.code, describeRun(run)).toBe(0)
    expect(workersOf(run)).toBe(2)
    expect(run.result!.results.map((r) => [r.node, r.status, r.sentBytes]).sort()).toEqual(bed.nodes.map((n) => [host(n), 'pushed', image.totalBytes]).sort())
    for (const n of bed.nodes) {
      // the worker's progress reached this thread's display
      expect(run.events.filter((e) => e.target === host(n) && e.type === 'bytes').at(-1)?.doneBytes, n.name).toBe(image.totalBytes)
      expect(run.events.some((e) => e.target === host(n) && e.type === 'done'), n.name).toBe(true)
      await expectLanded(n)
    }
    const again = await startPush(pushArgs(bed.nodes.map(host), '--workers', '2')).done
    expect(again.code, describeRun(again)).toBe(0)
    expect(again.result!.results.map((r) => [r.status, r.sentBytes])).toEqual(bed.nodes.map(() => ['up to date', 0]))
  })

  it('--workers with an archive on stdin: a warning says it runs in one thread and why, and the push succeeds', async () => {
    const run = await runCli(['push', '--archive', '-', '--host', host(bed.nodes[0]), '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath, '--workers', '2', '--json'],
      {input: fs.readFileSync(image.path)})
    expect(run.code, run.stderr).toBe(0)
    expect(run.stderr).toMatch(/^warning: --workers: an archive on stdin is read by one thread only, so this push runs without worker threads; save it to a file first/m)
    expect(JSON.parse(run.stdout.trim().split('\n').at(-1)!)).not.toHaveProperty('workers')
  })

  it('a node that cannot be reached fails alone, and says why, while the worker threads push the others', async () => {
    for (const n of bed.nodes) await reset(n)
    const closed = `root@${bed.nodes[2].ip}:2` // nothing listens on port 2
    const run = await startPush(pushArgs([host(bed.nodes[0]), closed, host(bed.nodes[1])], '--workers', '2', '--retries', '0')).done
    expect(run.code, describeRun(run)).toBe(1)
    const byNode = new Map(run.result!.results.map((r) => [r.node, r]))
    expect(byNode.get(closed)).toMatchObject({status: 'failed', error: expect.stringMatching(/refused/i)})
    for (const n of bed.nodes.slice(0, 2)) {
      expect(byNode.get(host(n))?.status, n.name).toBe('pushed')
      await expectLanded(n)
    }
  })

  it('Ctrl-C mid-transfer: exit 130 once every worker thread has stopped; no image record, lease or partial blob on any node; the re-run completes', async () => {
    for (const n of bed.nodes) await reset(n)
    for (const n of bed.nodes) await bed.shape(n, {rateMbit: 200})
    try {
      const run = await startPush(pushArgs(bed.nodes.map(host), '--workers', '2'), afterBytes(host(bed.nodes[0]), 10 * MB, (child) => child.kill('SIGINT'))).done
      expect(run.code, describeRun(run)).toBe(130)
      expect(run.result).toMatchObject({ok: false})
      for (const n of bed.nodes) {
        expect((await bed.ctr(n, ['images', 'ls', '-q'])).split('\n').filter((l) => l.includes('sl-workers')), `image record on ${n.name}`).toEqual([])
        expect(await bed.ctr(n, ['leases', 'ls']), `lease left on ${n.name}`).not.toMatch(/sideload\/image=/)
        expect((await bed.ctr(n, ['content', 'active'])).split('\n').slice(1).filter(Boolean), `partial blobs left on ${n.name}`).toEqual([])
      }
    } finally {
      for (const n of bed.nodes) await bed.unshape(n)
    }
    const again = await startPush(pushArgs(bed.nodes.map(host), '--workers', '2')).done
    expect(again.code, describeRun(again)).toBe(0)
    for (const n of bed.nodes) await expectLanded(n)
  })
})
