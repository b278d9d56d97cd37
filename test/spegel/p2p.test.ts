// A sideloaded image is served node to node by Spegel: sideload pushes to node 1 only, node 2
// pulls the image by name through its containerd (the CRI's PullImage, as `sideload push --p2p
// spegel` will ask it, and `ctr images pull --hosts-dir`), and gets every blob from node 1's Spegel:
// there is no registry (the registry's server address in hosts.toml has nothing listening), so the
// pull can only succeed peer to peer.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import * as grpc from '@grpc/grpc-js'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import * as protoLoader from '@grpc/proto-loader'
import {startBed, type Bed, type BedNode} from '../bed/bed.js'
import {makeImage, type ImageInfo, type MakeImageOptions} from '../bed/images.js'
import {jsonResult, runCli} from '../push/cli.js'
import {httpGet, mirrorToOwnSpegel, REGISTRY_PORT, spegelMetrics, startSpegel} from './spegel.js'

let bed: Bed
let dir: string

/** The CRI's PullImage on the node's containerd socket: the image reference the CRI pulled. */
function criPull(node: BedNode, image: string): Promise<string> {
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(path.join(import.meta.dirname, 'cri-pull.proto'), {keepCase: true})) as unknown as {runtime: {v1: {ImageService: new (address: string, creds: grpc.ChannelCredentials) => grpc.Client}}}
  const Ctor = pkg.runtime.v1.ImageService
  const client = new Ctor(`unix:${node.hostSocketPath}`, grpc.credentials.createInsecure())
  const svc = client as unknown as Record<string, (req: object, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: {image_ref: string}) => void) => void>
  return new Promise<string>((resolve, reject) => {
    svc.PullImage.call(svc, {image: {image}}, {deadline: Date.now() + 120_000}, (err, res) => (err ? reject(err) : resolve(res.image_ref)))
  }).finally(() => client.close())
}

/**
 * Waits until the node's Spegel resolves the tag from a peer (the seed's Spegel advertises what
 * containerd's events tell it, and a lookup that found no peer is cached for a few seconds): what
 * `--p2p spegel` must wait for before it asks the other nodes to pull. Returns the milliseconds waited.
 */
async function waitResolvable(node: BedNode, repository: string, tag: string, timeoutMs = 20_000): Promise<number> {
  const url = `http://${node.ip}:${REGISTRY_PORT}/v2/${repository}/manifests/${tag}?ns=docker.io`
  const start = Date.now()
  while ((await httpGet(url)).status !== 200) {
    if (Date.now() - start > timeoutMs) throw new Error(`${node.name}'s Spegel did not resolve ${repository}:${tag} within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 100))
  }
  return Date.now() - start
}

function blobsOf(info: ImageInfo): string[] {
  return [...new Set([info.targetDigest!, ...info.manifestDigests, info.configDigest, ...info.layerDigests])]
}

/** Sum of a metric over every label set that includes `labels` (e.g. `cache="hit"`). */
function metric(m: Map<string, number>, name: string, ...labels: string[]): number {
  let sum = 0
  for (const [k, v] of m) if ((k === name || k.startsWith(`${name}{`)) && labels.every((l) => k.includes(l))) sum += v
  return sum
}

describe('Spegel serves a sideloaded image from one node to another (containerd 2.x)', () => {
  let seed: BedNode
  let peer: BedNode
  let pids: number[] = []
  beforeAll(async () => {
    bed = await startBed({name: 'slbt-spegel-p2p', nodes: 2, containerd: '2', nodeOptions: {1: {registryConfigPath: true}, 2: {registryConfigPath: true}}})
    ;[seed, peer] = bed.nodes
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sideload-spegel-p2p-'))
    // no registry anywhere: the server is the bed host's discard port, where nothing listens
    for (const node of bed.nodes) await mirrorToOwnSpegel(bed, node, 'docker.io', `http://${bed.hostIp}:9`)
    await startSpegel(bed, bed.nodes)
    pids = bed.nodes.map((n) => Number(fs.readFileSync(path.join(bed.nodeDir(n), 'spegel.pid'), 'utf8')))
  })
  afterAll(async () => {
    await bed?.down()
    if (dir) fs.rmSync(dir, {recursive: true, force: true})
  })

  it('node 2 pulls through its own Spegel every blob of what sideload pushed to node 1', async () => {
    const opts: MakeImageOptions = {name: 'docker.io/sl-p2p/app:1', layers: [{busybox: true}, {sizeBytes: 3 << 20, seed: 'p2p-a'}, {sizeBytes: 1 << 20, seed: 'p2p-b'}], format: 'oci', out: path.join(dir, 'app.tar')}
    const info = await makeImage(opts)
    // before: node 2 cannot get it (Spegel finds no peer with it, the server is not there)
    await expect(criPull(peer, opts.name)).rejects.toThrow()

    // pushed while Spegel runs on node 1: it learns the blobs from containerd's events
    const run = await runCli(['push', '--archive', opts.out, '--host', `root@${seed.ip}`, '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath, '--json'])
    expect(run.code, run.stderr).toBe(0)
    expect(jsonResult(run.stdout).results[0]).toMatchObject({status: 'pushed', mode: 'native'})
    const advertised = await spegelMetrics(seed)
    expect(metric(advertised, 'spegel_advertised_content_digests', 'registry="docker.io"')).toBeGreaterThanOrEqual(blobsOf(info).length)

    await waitResolvable(peer, 'sl-p2p/app', '1')
    const served = metric(await spegelMetrics(peer), 'spegel_mirror_requests_total', 'cache="hit"', 'registry="docker.io"')
    const ref = await criPull(peer, opts.name)
    expect(ref).toBe(info.configDigest) // the CRI's image ID
    // complete, unpacked, the same digest as on node 1
    const check = (await bed.ctr(peer, ['images', 'check'])).split('\n').find((l) => l.startsWith(`${opts.name} `))
    expect(check).toMatch(/complete \(\d+\/\d+\)\s.*true/)
    expect((await bed.ctr(peer, ['images', 'ls'])).split('\n').find((l) => l.startsWith(`${opts.name} `))).toContain(info.targetDigest)
    const content = await bed.ctr(peer, ['content', 'ls', '-q'])
    for (const d of blobsOf(info)) expect(content).toContain(d)
    // every blob (and the tag) came through node 2's Spegel from node 1's
    const hits = metric(await spegelMetrics(peer), 'spegel_mirror_requests_total', 'cache="hit"', 'registry="docker.io"')
    expect(hits - served).toBeGreaterThanOrEqual(info.layerDigests.length + 2)
  })

  it('the same through ctr images pull --hosts-dir, a second image', async () => {
    const opts: MakeImageOptions = {name: 'docker.io/sl-p2p/other:2', layers: [{busybox: true}, {sizeBytes: 2 << 20, seed: 'p2p-c'}], format: 'oci', out: path.join(dir, 'other.tar')}
    const info = await makeImage(opts)
    const run = await runCli(['push', '--archive', opts.out, '--host', `root@${seed.ip}`, '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath, '--json'])
    expect(run.code, run.stderr).toBe(0)
    await waitResolvable(peer, 'sl-p2p/other', '2')
    const pull = await bed.exec(peer, ['ctr', '-n', 'k8s.io', 'images', 'pull', '--hosts-dir', '/etc/containerd/certs.d', '--snapshotter', peer.snapshotter, opts.name], {timeoutMs: 120_000})
    expect(pull.code, pull.stderr + pull.stdout).toBe(0)
    const content = await bed.ctr(peer, ['content', 'ls', '-q'])
    for (const d of blobsOf(info)) expect(content).toContain(d)
  })

  it('control: an image imported without the labels (plain ctr import) resolves by name through node 2\'s Spegel, then its content is not found', async () => {
    const opts: MakeImageOptions = {name: 'docker.io/sl-p2p/unlabelled:1', layers: [{sizeBytes: 1 << 20, seed: 'p2p-u'}], format: 'oci', out: path.join(dir, 'unlabelled.tar')}
    const info = await makeImage(opts)
    const imported = await bed.exec(seed, ['ctr', '-n', 'k8s.io', 'images', 'import', '--local', '--no-unpack', opts.out], {timeoutMs: 60_000})
    expect(imported.code, imported.stderr).toBe(0)
    const labels = await bed.ctr(seed, ['content', 'ls'])
    expect(labels.split('\n').find((l) => l.startsWith(info.layerDigests[0]))).not.toContain('containerd.io/distribution.source')
    // Spegel on node 1 advertises the tag (its name) once it has given up on each unlabelled
    // blob's event (~0.6 s of retries apiece, one event at a time)
    await waitResolvable(peer, 'sl-p2p/unlabelled', '1')
    const pull = await bed.exec(peer, ['ctr', '-n', 'k8s.io', 'images', 'pull', '--hosts-dir', '/etc/containerd/certs.d', '--snapshotter', peer.snapshotter, opts.name], {timeoutMs: 120_000})
    expect(pull.code).not.toBe(0)
    expect(pull.stderr).toMatch(new RegExp(`${info.manifestDigests[0]}.*not found`))
    expect(await bed.ctr(peer, ['content', 'ls', '-q'])).not.toContain(info.layerDigests[0])
  })

  it('Spegel goes with its node: nothing of it is left after the bed is down', async () => {
    expect(pids.every((pid) => pid > 1)).toBe(true)
    const dirs = bed.nodes.map((n) => bed.nodeDir(n))
    await bed.down()
    for (const pid of pids) expect(fs.existsSync(`/proc/${pid}`), `spegel ${pid}`).toBe(false)
    for (const d of dirs) expect(fs.existsSync(d)).toBe(false)
  })
})
