import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startBed, type Bed, type BedNode} from '../bed/bed.js'
import {spoilBlob} from '../bed/archive-edit.js'
import {changeLastLayer, makeImage, type ImageInfo, type MakeImageOptions} from '../bed/images.js'
import {jsonResult, runCli} from './cli.js'

let bed: Bed
let dir: string
const NAME = 'docker.io/sl-push/app:1'

function sshArgs(): string[] {
  return ['--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath, '--progress', 'quiet']
}
const hosts = (nodes: BedNode[], user = 'root') => nodes.flatMap((n) => ['--host', `${user}@${n.ip}`])

async function checkLine(node: BedNode, name: string): Promise<string | undefined> {
  return (await bed.ctr(node, ['images', 'check'])).split('\n').find((l) => l.startsWith(`${name} `))
}
async function imageLine(node: BedNode, name: string): Promise<string | undefined> {
  return (await bed.ctr(node, ['images', 'ls'])).split('\n').find((l) => l.startsWith(`${name} `))
}

describe('sideload push on the real bed', () => {
  let base: MakeImageOptions
  let v1: ImageInfo
  beforeAll(async () => {
    bed = await startBed({name: 'push-e2e', nodes: 4, nodeOptions: {4: {rootSizeMb: 24}}})
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sideload-push-'))
    base = {name: NAME, layers: [{busybox: true}, {sizeBytes: 3 << 20, seed: 'a'}, {sizeBytes: 2 << 20, seed: 'b'}], format: 'oci', out: path.join(dir, 'v1.tar')}
    v1 = await makeImage(base)
  })
  afterAll(async () => {
    await bed?.down()
    if (dir) fs.rmSync(dir, {recursive: true, force: true})
  })

  it('pushes a 3-layer image to 3 nodes: complete, unpacked, pinned, same digest', async () => {
    const three = bed.nodes.slice(0, 3)
    const run = await runCli(['push', '--archive', base.out, ...hosts(three), ...sshArgs(), '--json'])
    expect(run.code, run.stderr).toBe(0)
    const result = jsonResult(run.stdout)
    expect(result.results.map((r) => r.status)).toEqual(['pushed', 'pushed', 'pushed'])
    for (const node of three) {
      expect(await checkLine(node, NAME)).toMatch(/complete \(\d+\/\d+\)\s.*true/)
      const line = await imageLine(node, NAME)
      expect(line).toContain(v1.targetDigest ?? v1.manifestDigests[0])
      expect(line).toContain('io.cri-containerd.pinned=pinned')
    }
    expect(result.results.every((r) => r.mode === 'native')).toBe(true)
  })

  it('a push by --host never loads the Kubernetes client (~70 MB of peak RSS and ~0.4 s of start-up)', async () => {
    const log = path.join(dir, 'modules.log')
    const run = await runCli(['push', '--archive', base.out, ...hosts(bed.nodes.slice(0, 1)), ...sshArgs(), '--json'],
      {env: {NODE_OPTIONS: `--import ${path.join(__dirname, 'module-probe.mjs')}`, SL_MODULE_LOG: log}})
    expect(run.code, run.stderr).toBe(0)
    const loaded = fs.readFileSync(log, 'utf8').split('\n')
    expect(loaded.some((u) => u.includes('/dist/bundle/commands/push.js')), 'the probe saw the push').toBe(true)
    expect(loaded.filter((u) => u.includes('@kubernetes/client-node'))).toEqual([])
  })

  it('re-push after changing only the last layer sends only that layer; an identical re-push sends nothing', async () => {
    const three = bed.nodes.slice(0, 3)
    const v2opts = changeLastLayer(base, 'c', path.join(dir, 'v2.tar'))
    const v2 = await makeImage(v2opts)
    const run = await runCli(['push', '--archive', v2opts.out, ...hosts(three), ...sshArgs(), '--json'])
    expect(run.code, run.stderr).toBe(0)
    const lastLayer = v2.platforms[0].layerSizes.at(-1)!
    for (const r of jsonResult(run.stdout).results) {
      expect(r.status).toBe('pushed')
      expect(r.sentBytes).toBeGreaterThanOrEqual(lastLayer)
      expect(r.sentBytes).toBeLessThan(lastLayer + 8192) // + manifest, config, index
    }
    const again = await runCli(['push', '--archive', v2opts.out, ...hosts(three), ...sshArgs(), '--json'])
    expect(again.code, again.stderr).toBe(0)
    for (const r of jsonResult(again.stdout).results) {
      expect(r.status).toBe('up to date')
      expect(r.sentBytes).toBe(0)
    }
    // the plain table for people
    const table = await runCli(['push', '--archive', v2opts.out, ...hosts(three.slice(0, 1)), ...sshArgs()])
    expect(table.stdout).toMatch(/^NODE\s+IMAGE\s+RESULT\s+SENT\s+SKIPPED\s+TIME/)
    expect(table.stdout).toContain('up to date')
  })

  it('falls back to sudo -n ctr for a non-root user, sending only missing blobs', async () => {
    const node = bed.nodes[2]
    const opts: MakeImageOptions = {name: 'docker.io/sl-push/ctr:1', layers: [{busybox: true}, {sizeBytes: 1 << 20, seed: 'ctr'}], format: 'oci', out: path.join(dir, 'ctr.tar')}
    await makeImage(opts)
    // the node already holds the base image (with the same busybox layer)
    const seeded = await runCli(["push", "--archive", base.out, "--host", `root@${node.ip}`, ...sshArgs()])
    expect(seeded.code, seeded.stderr).toBe(0)
    const run = await runCli(['push', '--archive', opts.out, '--host', `${bed.nonRootUser}@${node.ip}`, ...sshArgs(), '--json'])
    expect(run.code, run.stderr + run.stdout).toBe(0)
    const [r] = jsonResult(run.stdout).results
    expect(r).toMatchObject({status: 'pushed', mode: 'ctr'})
    // the busybox layer was already on the node from the first test: not sent again
    expect(r.skippedBytes).toBeGreaterThan(0)
    expect(await checkLine(node, 'docker.io/sl-push/ctr:1')).toMatch(/complete.*true/)
    expect(await imageLine(node, 'docker.io/sl-push/ctr:1')).toContain('io.cri-containerd.pinned=pinned')
    // no temporary import name left behind
    expect(await bed.ctr(node, ['images', 'ls', '-q'])).not.toContain('sideload.invalid')
    const again = await runCli(['push', '--archive', opts.out, '--host', `${bed.nonRootUser}@${node.ip}`, ...sshArgs(), '--json'])
    expect(jsonResult(again.stdout).results[0]).toMatchObject({status: 'up to date', sentBytes: 0})
  })

  it('reads an archive from stdin (nerdctl save | sideload push --archive -)', async () => {
    const node = bed.nodes[1]
    const run = await runCli(['push', '--archive', '-', '--host', `root@${node.ip}`, ...sshArgs(), '--json'], {input: fs.readFileSync(base.out)})
    expect(run.code, run.stderr).toBe(0)
    expect(jsonResult(run.stdout).results[0]).toMatchObject({image: NAME, status: 'pushed'})
    expect(await imageLine(node, NAME)).toContain(v1.targetDigest ?? v1.manifestDigests[0])
  })

  it('sends only the node\'s platform from a multi-platform image', async () => {
    const opts: MakeImageOptions = {name: 'docker.io/sl-push/multi:1', layers: [{sizeBytes: 1 << 20, seed: 'm'}], platforms: ['linux/amd64', 'linux/arm64'], format: 'oci', out: path.join(dir, 'multi.tar')}
    const info = await makeImage(opts)
    const node = bed.nodes[0]
    const run = await runCli(['push', '--archive', opts.out, '--host', `root@${node.ip}`, ...sshArgs(), '--json'])
    expect(run.code, run.stderr).toBe(0)
    const content = await bed.ctr(node, ['content', 'ls', '-q'])
    const amd = info.platforms.find((p) => p.platform === 'linux/amd64')!
    const arm = info.platforms.find((p) => p.platform === 'linux/arm64')!
    expect(content).toContain(amd.layerDigests[0])
    expect(content).not.toContain(arm.layerDigests[0])
    expect(await imageLine(node, 'docker.io/sl-push/multi:1')).toContain(info.indexDigest)
  })

  it('fails one bad node clearly while the others succeed; nothing half-imported', async () => {
    const [good, , , full] = bed.nodes
    const big: MakeImageOptions = {name: 'docker.io/sl-push/big:1', layers: [{sizeBytes: 40 << 20, seed: 'big'}], format: 'oci', out: path.join(dir, 'big.tar')}
    await makeImage(big)
    const run = await runCli(['push', '--archive', big.out, '--host', `root@${good.ip}`, '--host', `root@${full.ip}`, ...sshArgs(), '--json'])
    expect(run.code).toBe(1)
    const results = jsonResult(run.stdout).results
    expect(results.find((r) => r.node === `root@${good.ip}`)?.status).toBe('pushed')
    const failed = results.find((r) => r.node === `root@${full.ip}`)!
    expect(failed.status).toBe('failed')
    expect(failed.error).toMatch(/no space left/i)
    expect(failed.error).toContain(full.ip)
    expect(await imageLine(full, 'docker.io/sl-push/big:1')).toBeUndefined()
  })

  it('names the file for a corrupt or truncated archive and the image missing from it', async () => {
    const node = bed.nodes[0]
    const truncated = path.join(dir, 'truncated.tar')
    fs.writeFileSync(truncated, fs.readFileSync(base.out).subarray(0, 5000))
    let run = await runCli(['push', '--archive', truncated, '--host', `root@${node.ip}`, ...sshArgs()])
    expect(run.code).not.toBe(0)
    expect(run.stderr).toContain(truncated)
    const garbage = path.join(dir, 'garbage.tar')
    fs.writeFileSync(garbage, 'this is not a tar file at all'.repeat(100))
    run = await runCli(['push', '--archive', garbage, '--host', `root@${node.ip}`, ...sshArgs()])
    expect(run.code).not.toBe(0)
    expect(run.stderr).toContain(garbage)
    // a layer whose bytes do not match its digest, natively and through sudo ctr: named, with what to do
    const good = path.join(dir, 'flip-source.tar')
    const image = await makeImage({name: 'docker.io/sl-push/flip:1', layers: [{sizeBytes: 2 << 20, seed: 'flip'}], format: 'oci', out: good})
    const flipped = path.join(dir, 'flipped.tar')
    await spoilBlob(good, flipped, image.platforms[0].layerDigests.at(-1)!, 'flip')
    run = await runCli(['push', '--archive', flipped, '--host', `root@${bed.nodes[2].ip}`, '--host', `${bed.nonRootUser}@${bed.nodes[2].ip}`, ...sshArgs(), '--json'])
    expect(run.code).toBe(1)
    const results = jsonResult(run.stdout).results
    expect(results.map((r) => r.status)).toEqual(['failed', 'failed'])
    for (const r of results) {
      expect(r.error, r.node).toMatch(new RegExp(`${flipped} is corrupt: blob sha256:`))
      expect(r.hint, r.node).toMatch(/save, build or pull it again/)
    }
    run = await runCli(['push', 'docker.io/sl-push/nope:9', '--archive', base.out, '--host', `root@${node.ip}`, ...sshArgs()])
    expect(run.code).not.toBe(0)
    expect(run.stderr).toMatch(/nope:9/)
    expect(run.stderr).toContain('docker.io/sl-push/app:1') // lists what the archive has
  })

  it('refuses an unknown and a changed host key, and reports an unreachable node and a missing socket', async () => {
    const node = bed.nodes[1]
    const emptyKnownHosts = path.join(dir, 'empty_known_hosts')
    fs.writeFileSync(emptyKnownHosts, '')
    let run = await runCli(['push', '--archive', base.out, '--host', `root@${node.ip}`, '--ssh-key', bed.keyPath, '--known-hosts', emptyKnownHosts, '--progress', 'quiet'])
    expect(run.code).toBe(1)
    expect(run.stderr).toMatch(/SHA256:[A-Za-z0-9+/]+/)
    expect(run.stderr).toContain('--trust-new-host-keys')
    expect(fs.readFileSync(emptyKnownHosts, 'utf8')).toBe('')

    const unreachable = await runCli(['push', '--archive', base.out, '--host', `root@${bed.nodes[0].ip.replace(/\.\d+$/, '.250')}`, '--host', `root@${bed.nodes[0].ip}`, ...sshArgs(), '--json'])
    expect(unreachable.code).toBe(1)
    const results = jsonResult(unreachable.stdout).results
    expect(results.find((r) => r.status === 'failed')?.error).toMatch(/\.250/)
    expect(results.filter((r) => r.status !== 'failed')).toHaveLength(1)

    await bed.stopContainerd(node)
    try {
      run = await runCli(['push', '--archive', base.out, '--host', `root@${node.ip}`, ...sshArgs()])
      expect(run.code).toBe(1)
      expect(run.stderr).toMatch(/no containerd socket found/)
      expect(run.stderr).toContain('hint')
    } finally {
      await bed.startContainerd(node)
    }

    await bed.regenerateHostKey(node)
    run = await runCli(['push', '--archive', base.out, '--host', `root@${node.ip}`, ...sshArgs(), '--trust-new-host-keys'])
    expect(run.code).toBe(1)
    expect(run.stderr).toMatch(/changed/i)
    expect(run.stderr).toContain('ssh-keygen -R')
  }, 120_000)

  it('refuses an image name crafted for shell injection before anything runs on a node', async () => {
    const marker = `/tmp/sideload-pwned-${process.pid}`
    const evil = `docker.io/x/y:1$(touch ${marker})`
    const run = await runCli(['push', evil, '--archive', base.out, '--host', `${bed.nonRootUser}@${bed.nodes[0].ip}`, ...sshArgs(), '--import-mode', 'ctr'])
    expect(run.code).not.toBe(0)
    expect(fs.existsSync(marker)).toBe(false)
    const onNode = await bed.exec(bed.nodes[0], ['test', '-e', marker])
    expect(onNode.code).not.toBe(0)
  })
})
