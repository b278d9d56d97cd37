// `sideload push --p2p spegel --seeds K` on six containerd 2.x nodes, each running Spegel (static
// bootstrap, on its own IP): sideload sends the image to K seeds only, the other nodes' containerd
// pull it by digest through the CRI, and Spegel serves it from the seeds. There is no registry (the
// server in hosts.toml is a port where nothing listens), so a node can only get it node to node —
// or, when its pull fails, by the direct push sideload falls back to.
import {execFileSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startBed, type Bed, type BedNode} from '../bed/bed.js'
import {makeImage, type ImageInfo, type MakeImageOptions} from '../bed/images.js'
import {runCli, type CliRun} from '../push/cli.js'
import {startPush} from '../faults/cli.js'
import {startCluster} from '../kube-real/cluster.js'
import {mirrorToOwnSpegel, startSpegel, waitFindable} from './spegel.js'

const NODES = 6
let bed: Bed
let dir: string

interface P2pResult {node: string; image: string; status: string; via?: string; p2pError?: string; sentBytes: number; mode?: string}

function resultOf(run: CliRun): {ok: boolean; results: P2pResult[]} {
  const line = run.stdout.trim().split('\n').reverse().find((l) => l.includes('"type":"result"'))
  if (!line) throw new Error(`no result line:\n${run.stdout}\n${run.stderr}`)
  return JSON.parse(line)
}

function push(archive: string, hosts: string[], extra: string[] = []): Promise<CliRun> {
  return runCli(['push', '--archive', archive, ...hosts.flatMap((h) => ['--host', h]), '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath, '--json', ...extra], {timeoutMs: 300_000})
}

/** The image on the node: complete and unpacked (ctr images check), pinned, at this digest. */
async function expectLanded(node: BedNode, name: string, digest: string): Promise<void> {
  const check = (await bed.ctr(node, ['images', 'check'])).split('\n').find((l) => l.startsWith(`${name} `))
  expect(check, `${node.name}: ${name}`).toMatch(/complete \(\d+\/\d+\)\s.*true/)
  const record = (await bed.ctr(node, ['images', 'ls'])).split('\n').find((l) => l.startsWith(`${name} `))
  expect(record, node.name).toContain(digest)
  expect(record, node.name).toContain('io.cri-containerd.pinned=pinned')
}

/** The size of a blob in an OCI archive (its `blobs/sha256/<hex>` entry, as `tar -tv` lists it). */
function archiveBlobBytes(archive: string, digest: string): number {
  const entry = execFileSync('tar', ['-tvf', archive], {encoding: 'utf8'}).split('\n').find((l) => l.endsWith(`blobs/sha256/${digest.replace('sha256:', '')}`))
  if (!entry) throw new Error(`${archive} has no blob ${digest}`)
  return Number(entry.trim().split(/\s+/)[2])
}

/** What sideload itself sends a node it asks to pull through the containerd API: the image's root blobs (index, manifest). */
function rootBytes(archive: string, info: ImageInfo): number {
  return [...new Set([info.targetDigest!, ...info.manifestDigests])].reduce((sum, d) => sum + archiveBlobBytes(archive, d), 0)
}

/**
 * Every peer pulled from the others: sideload sent a native node only the image's index and
 * manifest (so its mirror is asked for them once: the Spegel bug in p2p.ts), a `sudo ctr` node
 * nothing. Or — when its Spegel answered "not found" through the whole settle time — it was
 * pushed directly and says why. That second way happened on this machine's 2 busy cores before
 * sideload wrote the root blobs itself (Spegel races a request to several peers and gives up on
 * those slower than twice its fastest answer so far, ≥ 100 ms); most peers must still get it peer
 * to peer, and the test prints every fallback so that a run shows how often it happens.
 */
function expectPeers(peers: P2pResult[], sentToPeer: number): void {
  for (const r of peers) {
    if (r.via === 'p2p') expect(r.sentBytes, r.node).toBe(r.mode === 'native' ? sentToPeer : 0)
    else expect(r, r.node).toMatchObject({via: 'direct', p2pError: expect.stringMatching(/not found/)})
  }
  const fellBack = peers.filter((r) => r.via !== 'p2p')
  if (fellBack.length) console.warn(`p2p: ${fellBack.length} of ${peers.length} peers fell back to a direct push: ${JSON.stringify(fellBack)}`)
  expect(peers.length - fellBack.length, JSON.stringify(peers)).toBeGreaterThanOrEqual(Math.ceil(peers.length / 2))
}

describe('push --p2p spegel to six nodes (containerd 2.x, Spegel on each)', () => {
  const root = (n: BedNode): string => `root@${n.ip}`
  beforeAll(async () => {
    bed = await startBed({name: 'slbt-p2p-push', nodes: NODES, containerd: '2', nodeOptions: Object.fromEntries(Array.from({length: NODES}, (_, i) => [i + 1, {registryConfigPath: true}]))})
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sideload-p2p-push-'))
    for (const node of bed.nodes) await mirrorToOwnSpegel(bed, node, 'docker.io', `http://${bed.hostIp}:9`)
    await startSpegel(bed, bed.nodes)
    // a cluster's Spegel has long found its peers; these just started: wait until every node finds
    // what each of the two seeds holds (a small image pushed to each)
    for (const [i, seed] of bed.nodes.slice(0, 2).entries()) {
      const canary: MakeImageOptions = {name: `docker.io/sl-p2p/canary:${i}`, layers: [{sizeBytes: 4096, seed: `canary-${i}`}], format: 'oci', out: path.join(dir, `canary-${i}.tar`)}
      const info = await makeImage(canary)
      const run = await push(canary.out, [root(seed)])
      expect(run.code, run.stderr).toBe(0)
      const waited = await Promise.all(bed.nodes.filter((n) => n !== seed).map((n) => waitFindable(n, 'sl-p2p/canary', info.targetDigest!)))
      if (process.env.P2P_DEBUG) console.log(`canary ${i}: found after ${waited.join(', ')} ms`)
    }
  }, 240_000)
  afterAll(async () => {
    if (process.env.P2P_KEEP) return // debugging: npm run bed -- down --name slbt-p2p-push
    await bed?.down()
    if (dir) fs.rmSync(dir, {recursive: true, force: true})
  })

  it('sends to 2 seeds only; the other 4 pull from them; complete, unpacked and pinned on all 6', async () => {
    const opts: MakeImageOptions = {name: 'docker.io/sl-p2p/fan:1', layers: [{busybox: true}, {sizeBytes: 6 << 20, seed: 'fan-a'}, {sizeBytes: 2 << 20, seed: 'fan-b'}], format: 'oci', out: path.join(dir, 'fan.tar')}
    const info = await makeImage(opts)
    const hosts = bed.nodes.map(root)
    const run = await push(opts.out, hosts, ['--p2p', 'spegel', '--seeds', '2'])
    expect(run.code, run.stderr).toBe(0)
    if (process.env.P2P_DEBUG) {
      for (const n of bed.nodes) console.log(`=== ${n.name} ${n.ip}\n` + fs.readFileSync(path.join(bed.nodeDir(n), 'log', 'spegel.log'), 'utf8').split('\n').slice(-25).join('\n'))
    }
    const results = resultOf(run).results.sort((a, b) => hosts.indexOf(a.node) - hosts.indexOf(b.node))
    expect(results.map((r) => [r.node, r.status])).toEqual(hosts.map((h) => [h, 'pushed']))
    expect(results.slice(0, 2).map((r) => r.via)).toEqual(['seed', 'seed'])
    const peers = results.slice(2)
    const toPeer = rootBytes(opts.out, info)
    expectPeers(peers, toPeer)
    // the client sent the image once per seed (and once per peer that fell back), not six times;
    // a peer that pulled got its manifest (<1 KB) from the client
    const direct = peers.filter((r) => r.via === 'direct').length
    const sent = results.reduce((sum, r) => sum + r.sentBytes, 0)
    expect(sent).toBe((2 + direct) * info.totalBytes + (peers.length - direct) * toPeer)
    for (const node of bed.nodes) await expectLanded(node, opts.name, info.targetDigest!)
    // a second run: every node has it; nothing is pulled or sent
    const again = await push(opts.out, bed.nodes.map(root), ['--p2p', 'spegel'])
    expect(again.code, again.stderr).toBe(0)
    expect(resultOf(again).results.map((r) => r.status)).toEqual(Array(NODES).fill('up to date'))
    expect(again.stdout).not.toContain('pulling from peers')
  }, 300_000)

  it('a node whose Spegel is stopped gets a direct push and says why; a node reached through sudo ctr pulls with ctr', async () => {
    const opts: MakeImageOptions = {name: 'docker.io/sl-p2p/fallback:1', layers: [{busybox: true}, {sizeBytes: 3 << 20, seed: 'fb-a'}], format: 'oci', out: path.join(dir, 'fallback.tar')}
    const info = await makeImage(opts)
    const [, , third, fourth] = bed.nodes
    process.kill(Number(fs.readFileSync(path.join(bed.nodeDir(third), 'spegel.pid'), 'utf8')), 'SIGKILL')
    const hosts = bed.nodes.map((n) => (n === fourth ? `${bed.nonRootUser}@${n.ip}` : root(n)))
    const run = await push(opts.out, hosts, ['--p2p', 'spegel'])
    expect(run.code, run.stderr).toBe(0)
    const byNode = new Map(resultOf(run).results.map((r) => [r.node, r]))
    expect(byNode.get(root(third))).toMatchObject({status: 'pushed', via: 'direct', p2pError: expect.stringMatching(/the mirror at http:\/\/\S+ does not answer \(.*refused/i)})
    expect(byNode.get(root(third))!.sentBytes).toBeGreaterThan(0)
    // the sudo ctr node pulls too: `sudo ctr images pull --hosts-dir <the CRI's config_path>`
    expect(byNode.get(`${bed.nonRootUser}@${fourth.ip}`)).toMatchObject({status: 'pushed', mode: 'ctr'})
    expectPeers([byNode.get(`${bed.nonRootUser}@${fourth.ip}`)!, ...bed.nodes.slice(4).map((n) => byNode.get(root(n))!)], rootBytes(opts.out, info))
    for (const node of bed.nodes) await expectLanded(node, opts.name, info.targetDigest!)
  }, 300_000)

  it('fix --p2p spegel: pods stuck on four nodes (the real API server, the kubelet stand-in): the image goes to two seeds, the other two nodes pull it from them, and every pod runs', async () => {
    const cluster = await startCluster(bed)
    try {
      const opts: MakeImageOptions = {name: 'docker.io/sl-p2p/fixed:1', layers: [{busybox: true}, {sizeBytes: 4 << 20, seed: 'fixed-a'}], format: 'oci', out: path.join(dir, 'fixed.tar')}
      const info = await makeImage(opts)
      // node 3's Spegel was stopped by the test above, node 4 is reached through sudo ctr there: these four run Spegel as root
      const stuck = [bed.nodes[0], bed.nodes[1], bed.nodes[4], bed.nodes[5]]
      await cluster.createNamespace('p2p')
      for (const [i, node] of stuck.entries()) await cluster.createPod('p2p', `web-${i}`, node.name, 'sl-p2p/fixed:1')
      await cluster.kubelet.syncNow()
      expect((await cluster.podStatus('p2p', 'web-3')).waiting).toContain('ErrImageNeverPull')
      const run = await runCli(['fix', '--kubeconfig', cluster.kubeconfig, '-n', 'p2p', '--archive', opts.out!, '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath,
        '--p2p', 'spegel', '--seeds', '2', '--json'], {timeoutMs: 300_000})
      expect(run.code, run.stdout + run.stderr).toBe(0)
      const result = JSON.parse(run.stdout.trim().split('\n').reverse().find((l) => l.includes('"transfers"'))!) as {transfers: {node: string; push?: P2pResult}[]}
      const byNode = new Map(result.transfers.map((t) => [t.node, t.push!]))
      expect([...byNode.keys()].sort()).toEqual(stuck.map((n) => n.name).sort())
      const vias = stuck.map((n) => byNode.get(n.name)!.via)
      expect(vias.filter((v) => v === 'seed')).toHaveLength(2)
      expectPeers(stuck.map((n) => byNode.get(n.name)!).filter((r) => r.via !== 'seed'), rootBytes(opts.out!, info))
      for (const [i, node] of stuck.entries()) {
        expect((await cluster.podStatus('p2p', `web-${i}`)).phase).toBe('Running')
        await expectLanded(node, opts.name, info.targetDigest!)
      }
    } finally {
      await cluster.stop()
    }
  }, 300_000)

  it('Ctrl-C while a sudo ctr node pulls from its peers: exit 130, and no ctr of ours, no lease and no record of the pull is left on it', async () => {
    const opts: MakeImageOptions = {name: 'docker.io/sl-p2p/stopped:1', layers: [{busybox: true}, {sizeBytes: 24 << 20, seed: 'stopped-a'}], format: 'oci', out: path.join(dir, 'stopped.tar')}
    await makeImage(opts)
    const [first, second, , fourth] = bed.nodes
    const ctrHost = `${bed.nonRootUser}@${fourth.ip}`
    await bed.shape(fourth, {rateMbit: 16}) // the 24 MB layer takes ~12 s to come from the peers
    let stoppedAt = 0
    let watching = false
    try {
      const run = await startPush(['--archive', opts.out!, '--host', root(first), '--host', root(second), '--host', ctrHost, '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath,
        '--p2p', 'spegel', '--seeds', '2'], (e, child) => {
        if (!watching && e.target === ctrHost && /pulling from peers/.test(e.message ?? '')) {
          watching = true
          // Ctrl-C once ctr is fetching a layer (an ingest on the node), not between two pull attempts
          void (async () => {
            for (let i = 0; i < 100 && !stoppedAt; i++) {
              if ((await bed.ctr(fourth, ['content', 'active'])).split('\n').slice(1).some((l) => l.trim())) {
                stoppedAt = Date.now()
                child.kill('SIGINT')
              } else await new Promise((r) => setTimeout(r, 200))
            }
          })()
        }
      }, 120_000).done
      const left = bed.processes(fourth).filter((cmd) => /^(sudo -n )?ctr /.test(cmd))
      expect(stoppedAt, 'ctr was fetching on the node when Ctrl-C came').toBeGreaterThan(0)
      expect(run.code, run.stdout + run.stderr).toBe(130)
      expect(left).toEqual([])
      // ctr's own leases carry only its 24 h expiry label: none of the stopped pull is left
      const leases = (await bed.ctr(fourth, ['leases', 'ls'])).split('\n').slice(1).filter((l) => l.trim() && !l.includes('sideload'))
      expect(leases).toEqual([])
      expect((await bed.ctr(fourth, ['images', 'ls', '-q'])).split('\n').filter((l) => l.includes('sl-p2p/stopped'))).toEqual([])
    } finally {
      await bed.unshape(fourth)
    }
  }, 180_000)
})
