// The fault suite (issue 9): what happens to `sideload push` when the world misbehaves, on real
// nodes (sshd + containerd per node, test/bed). The links to the nodes under test are shaped so
// that a transfer lasts long enough to be cut in the middle, at a known byte count.
import {execFile} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {promisify} from 'node:util'
import {afterAll, beforeAll, beforeEach, describe, expect, it} from 'vitest'
import {startBed, type Bed, type BedNode} from '../bed/bed.js'
import {makeImage, type ImageInfo} from '../bed/images.js'
import {afterBytes, startPush, type PushRun} from './cli.js'

const execFileP = promisify(execFile)
const MB = 1024 * 1024
const BIG = 'docker.io/sl-faults/big:1'
const SMALL = 'docker.io/sl-faults/small:1'

let bed: Bed
let dir: string
let big: ImageInfo & {path: string}
let small: ImageInfo & {path: string}

const host = (n: BedNode) => `root@${n.ip}`
const sshFlags = () => ['--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath]
const pushArgs = (archive: string, nodes: BedNode[], ...extra: string[]) => ['--archive', archive, ...nodes.flatMap((n) => ['--host', host(n)]), ...sshFlags(), ...extra]

async function imageLine(node: BedNode, name: string): Promise<string | undefined> {
  return (await bed.ctr(node, ['images', 'ls'])).split('\n').find((l) => l.startsWith(`${name} `))
}

/** The image is recorded, points at the archive's manifest, and every blob of it is present. */
async function expectComplete(node: BedNode, name: string, info: ImageInfo): Promise<void> {
  const line = await imageLine(node, name)
  expect(line, `image ${name} on ${node.name}`).toContain(info.targetDigest ?? info.manifestDigests[0])
  const check = (await bed.ctr(node, ['images', 'check'])).split('\n').find((l) => l.startsWith(`${name} `))
  expect(check, `ctr images check on ${node.name}`).toMatch(/complete \((\d+)\/\1\)/)
}

/** Everything gone from the node's k8s.io namespace: images, leases, blobs (so each test starts cold). */
async function reset(node: BedNode): Promise<void> {
  const images = (await bed.ctr(node, ['images', 'ls', '-q'])).split('\n').filter(Boolean)
  if (images.length) await bed.ctr(node, ['images', 'rm', '--sync', ...images])
  for (const lease of (await bed.ctr(node, ['leases', 'ls', '-q'])).split('\n').filter(Boolean)) await bed.ctr(node, ['leases', 'rm', '--sync', lease])
  const content = (await bed.ctr(node, ['content', 'ls', '-q'])).split('\n').filter(Boolean)
  if (content.length) await bed.ctr(node, ['content', 'rm', ...content])
}

const resultFor = (run: PushRun, node: BedNode) => run.result?.results.find((r) => r.node === host(node))
const describeRun = (run: PushRun) => `exit ${run.code} signal ${run.signal}\nstderr: ${run.stderr.slice(-1500)}\nresult: ${JSON.stringify(run.result)}`

describe('fault suite: sideload push on the bed', () => {
  beforeAll(async () => {
    bed = await startBed({name: 'slbt-faults', nodes: 3})
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sideload-faults-'))
    const bigOut = path.join(dir, 'big.tar')
    big = {...(await makeImage({name: BIG, format: 'oci', out: bigOut, layers: [{sizeBytes: 40 * MB, seed: 'f1'}, {sizeBytes: 40 * MB, seed: 'f2'}]})), path: bigOut}
    const smallOut = path.join(dir, 'small.tar')
    small = {...(await makeImage({name: SMALL, format: 'oci', out: smallOut, layers: [{sizeBytes: 8 * MB, seed: 's1'}]})), path: smallOut}
  })
  afterAll(async () => {
    await bed?.down()
    if (dir) fs.rmSync(dir, {recursive: true, force: true})
  })
  beforeEach(async () => {
    await Promise.all(bed.nodes.map(async (n) => {
      await bed.unshape(n).catch(() => undefined)
      await reset(n)
    }))
  })

  it('an SSH session killed mid-transfer: the same run reconnects, resumes and ends correct', async () => {
    const [n1] = bed.nodes
    await bed.shape(n1, {rateMbit: 200})
    let killedAt = 0
    const running = startPush(pushArgs(big.path, [n1]), afterBytes(host(n1), 30 * MB, () => {
      killedAt = Date.now()
      void bed.killSshSessions(n1)
    }))
    const run = await running.done
    expect(killedAt, 'the transfer was cut').toBeGreaterThan(0)
    expect(run.code, describeRun(run)).toBe(0)
    const r = resultFor(run, n1)
    expect(r?.status).toBe('pushed')
    expect(r?.attempts).toBeGreaterThanOrEqual(2)
    // resumed from the node's offset: far less than a second copy of the blob that was cut
    expect(r?.sentBytes).toBeLessThan(big.totalBytes + 12 * MB)
    expect(run.events.some((e) => e.type === 'info' && /retrying/.test(e.message ?? ''))).toBe(true)
    await expectComplete(n1, BIG, big)
  })

  it('the node\'s link drops for 3 s mid-transfer: the push carries on and ends correct', async () => {
    const [n1] = bed.nodes
    await bed.shape(n1, {rateMbit: 200})
    const veth = `slb${bed.index}n${n1.index}` // the host end of the node's link (test/bed naming)
    let outage: Promise<void> | undefined
    const run = await startPush(pushArgs(big.path, [n1]), afterBytes(host(n1), 30 * MB, () => {
      outage = (async () => {
        await execFileP('ip', ['link', 'set', 'dev', veth, 'down'])
        await new Promise((r) => setTimeout(r, 3000))
        await execFileP('ip', ['link', 'set', 'dev', veth, 'up'])
      })()
    })).done
    expect(outage, 'the link was dropped mid-transfer').toBeDefined()
    await outage
    expect(run.code, describeRun(run)).toBe(0)
    expect(resultFor(run, n1)?.status).toBe('pushed')
    // ~3.4 s of transfer at 200 Mbit/s plus the 3 s outage: the outage really hit this push
    expect(resultFor(run, n1)?.durationMs).toBeGreaterThan(6000)
    await expectComplete(n1, BIG, big)
  })

  it('with --retries 0 the cut node fails clearly, the other node succeeds, nothing half-recorded', async () => {
    const [n1, n2] = bed.nodes
    await bed.shape(n1, {rateMbit: 200})
    const running = startPush(pushArgs(big.path, [n1, n2], '--retries', '0'), afterBytes(host(n1), 30 * MB, () => void bed.killSshSessions(n1)))
    const run = await running.done
    expect(run.code, describeRun(run)).toBe(1)
    const failed = resultFor(run, n1)
    expect(failed?.status).toBe('failed')
    expect(failed?.attempts).toBe(1)
    expect(`${failed?.error} ${failed?.hint ?? ''}`).toMatch(/connection|closed|lost/i)
    expect(`${failed?.error} ${failed?.hint ?? ''}`).toContain(n1.ip)
    expect(resultFor(run, n2)?.status).toBe('pushed')
    await expectComplete(n2, BIG, big)
    expect(await imageLine(n1, BIG)).toBeUndefined()
    // Usually 3-6 s. Once, in a CI run with load average ~10, it took over 60 s: the cut can then
    // reach the client only through SSH keepalives (15 s x 4), which still ends the push clearly.
  }, 150_000)

  it('two sideload processes pushing the same image to the same node at once both end correct', async () => {
    const [n1] = bed.nodes
    const [a, b] = await Promise.all([startPush(pushArgs(big.path, [n1])).done, startPush(pushArgs(big.path, [n1])).done])
    expect(a.code, describeRun(a)).toBe(0)
    expect(b.code, describeRun(b)).toBe(0)
    expect(['pushed', 'up to date']).toContain(resultFor(a, n1)?.status)
    expect(['pushed', 'up to date']).toContain(resultFor(b, n1)?.status)
    await expectComplete(n1, BIG, big)
  })

  it('a slow node does not hold back the others', async () => {
    const [fast1, fast2, slow] = bed.nodes
    await bed.shape(slow, {rateMbit: 8}) // ~8.4 MB image: at least 8 s on this link
    const order: string[] = []
    const run = await startPush(pushArgs(small.path, [slow, fast1, fast2]), (e) => {
      if (e.type === 'done' && e.target) order.push(e.target)
    }).done
    expect(run.code, describeRun(run)).toBe(0)
    const slowMs = resultFor(run, slow)?.durationMs ?? 0
    expect(slowMs).toBeGreaterThan(7000)
    for (const fast of [fast1, fast2]) {
      const ms = resultFor(run, fast)?.durationMs
      expect(ms, `${fast.name} finished long before the slow node (${slowMs} ms)`).toBeLessThan(slowMs / 2)
      await expectComplete(fast, SMALL, small)
    }
    expect(order.at(-1), 'the slow node finished last').toBe(host(slow))
    await expectComplete(slow, SMALL, small)
  })

  it('SIGINT during a push: exit 130, no image record, no lease and no partial blob on any node', async () => {
    const nodes = bed.nodes.slice(0, 2)
    for (const n of nodes) await bed.shape(n, {rateMbit: 200})
    const run = await startPush(pushArgs(big.path, nodes), afterBytes(host(nodes[0]), 20 * MB, (child) => child.kill('SIGINT'))).done
    expect(run.code, describeRun(run)).toBe(130)
    // --json: the result line says so (stderr stays empty)
    expect(JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}')).toMatchObject({type: 'result', ok: false, reason: 'cancelled', error: expect.stringMatching(/cancel/i)})
    for (const n of nodes) {
      expect(await imageLine(n, BIG), `image record on ${n.name}`).toBeUndefined()
      expect(await bed.ctr(n, ['leases', 'ls']), `lease left on ${n.name}`).not.toMatch(/sideload\/image=/)
      expect((await bed.ctr(n, ['content', 'active'])).split('\n').slice(1).filter(Boolean), `partial blobs left on ${n.name}`).toEqual([])
    }
    for (const n of nodes) await bed.unshape(n)
    const again = await startPush(pushArgs(big.path, nodes)).done
    expect(again.code, describeRun(again)).toBe(0)
    for (const n of nodes) await expectComplete(n, BIG, big)
  })

  it('SIGINT during a push through `ctr` (the fallback): exit 130, no image under any name on the node', async () => {
    const [n1] = bed.nodes
    await bed.shape(n1, {rateMbit: 200})
    const run = await startPush(pushArgs(big.path, [n1], '--import-mode', 'ctr'), afterBytes(host(n1), 20 * MB, (child) => child.kill('SIGINT'))).done
    await bed.unshape(n1)
    expect(run.code, describeRun(run)).toBe(130)
    expect(resultFor(run, n1)?.mode ?? 'ctr').toBe('ctr')
    expect(await imageLine(n1, BIG), 'image record on the node').toBeUndefined()
    expect(await bed.ctr(n1, ['images', 'ls', '-q']), 'no temporary import name left').not.toMatch(/sideload\.invalid/)
    const again = await startPush(pushArgs(big.path, [n1], '--import-mode', 'ctr')).done
    expect(again.code, describeRun(again)).toBe(0)
    await expectComplete(n1, BIG, big)
  })

  it('containerd restarting mid-push: the node recovers on retry or fails clearly; never half-recorded', async () => {
    const [n1] = bed.nodes
    await bed.shape(n1, {rateMbit: 200})
    let restarted: Promise<void> | undefined
    const run = await startPush(pushArgs(big.path, [n1]), afterBytes(host(n1), 30 * MB, () => {
      restarted = (async () => {
        await bed.stopContainerd(n1)
        await bed.startContainerd(n1)
      })()
    })).done
    expect(restarted, 'containerd was restarted mid-transfer').toBeDefined()
    await restarted
    const r = resultFor(run, n1)
    expect(r, describeRun(run)).toBeDefined()
    if (r?.status === 'pushed') {
      expect(run.code).toBe(0)
      expect(r.attempts, 'the restart hit the transfer and the node was retried').toBeGreaterThanOrEqual(2)
      await expectComplete(n1, BIG, big)
    } else {
      expect(run.code, describeRun(run)).toBe(1)
      expect(`${r?.error} ${r?.hint ?? ''}`).toMatch(/containerd/i)
      expect(await imageLine(n1, BIG)).toBeUndefined()
    }
  })
})
