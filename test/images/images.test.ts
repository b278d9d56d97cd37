// images, rm and prune on the real bed (containerd 2.x, or 1.6 with SIDELOAD_BED_CONTAINERD=1.6),
// nodes named by --host: natively as root and through `sudo -n ctr` as the non-root user.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startBed, type Bed, type BedNode} from '../bed/bed.js'
import {makeImage, type ImageInfo, type MakeImageOptions} from '../bed/images.js'
import {runCli} from '../push/cli.js'
import {contentDigests, ctrRecords, resultLine} from './helpers.js'

let bed: Bed
let dir: string
const REPO = 'docker.io/sl-images/app'
const OTHER = 'docker.io/sl-images/other:1'
const FOREIGN = 'docker.io/sl-images/foreign:1'

const ssh = (): string[] => ['--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath]
const host = (node: BedNode, user = 'root'): string[] => ['--host', `${user}@${node.ip}`]
const users = (): Array<[string, string]> => [['root', 'native'], [bed.nonRootUser, 'ctr']]

async function build(tag: string, seed: string): Promise<{opts: MakeImageOptions; info: ImageInfo}> {
  const opts: MakeImageOptions = {name: `${REPO}:${tag}`, layers: [{busybox: true}, {sizeBytes: 256 << 10, seed}], format: 'oci', out: path.join(dir, `${tag}.tar`)}
  return {opts, info: await makeImage(opts)}
}

/** A record sideload did not write, as ctr or a pull makes one (ctr's tag copies the labels: ours are dropped). */
async function plantForeign(node: BedNode): Promise<void> {
  await bed.ctr(node, ['images', 'tag', `${REPO}:1`, FOREIGN])
  await bed.ctr(node, ['images', 'label', FOREIGN, 'sideload.dev/pushed-at=', 'sideload.dev/source=', 'sideload.dev/digest='])
}

async function push(opts: MakeImageOptions, node: BedNode, user = 'root'): Promise<void> {
  const run = await runCli(['push', '--archive', opts.out, ...host(node, user), ...ssh(), '--progress', 'quiet'])
  expect(run.code, run.stderr).toBe(0)
}

describe('images, rm and prune on the bed', () => {
  const built: Record<string, {opts: MakeImageOptions; info: ImageInfo}> = {}
  beforeAll(async () => {
    bed = await startBed({name: 'images-e2e', nodes: 3})
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sideload-images-'))
    for (const [tag, seed] of [['1', 'a'], ['2', 'b'], ['3', 'c'], ['4', 'd']]) built[tag] = await build(tag, seed)
    built.other = {opts: {name: OTHER, layers: [{sizeBytes: 128 << 10, seed: 'o'}], format: 'oci', out: path.join(dir, 'other.tar')}, info: undefined as unknown as ImageInfo}
    built.other.info = await makeImage(built.other.opts)
  })
  afterAll(async () => {
    await bed?.down()
    if (dir) fs.rmSync(dir, {recursive: true, force: true})
  })

  it('labels every record it pushes: pushed-at (RFC 3339 UTC) and source, beside the pin — natively and through sudo ctr', async () => {
    for (const [i, [user]] of users().entries()) {
      const node = bed.nodes[i]
      const before = Date.now()
      await push(built['1'].opts, node, user)
      const labels = (await ctrRecords(bed, node)).get(`${REPO}:1`)!
      expect(labels['io.cri-containerd.pinned']).toBe('pinned')
      expect(labels['sideload.dev/pushed-at']).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)
      expect(Date.parse(labels['sideload.dev/pushed-at'])).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000)
      expect(labels['sideload.dev/source']).toBe(`archive:${built['1'].opts.out}`)
    }
  })

  it('images: per node, what `ctr -n k8s.io images ls` lists (every record, as an image or one of its records), sizes, pins, sideload\'s and when', async () => {
    for (const [i, [user]] of users().entries()) {
      const node = bed.nodes[i]
      await push(built.other.opts, node, user)
      const run = await runCli(['images', ...host(node, user), ...ssh(), '--json'])
      expect(run.code, run.stderr).toBe(0)
      const [n] = resultLine(run.stdout).nodes!
      const listed = n.images!.flatMap((img) => [img.name, ...img.aliases]).sort()
      expect(listed).toEqual([...(await ctrRecords(bed, node)).keys()].sort())
      const app = n.images!.find((img) => img.name === `${REPO}:1`)!
      expect(app).toMatchObject({pinned: true, sideload: true, source: `archive:${built['1'].opts.out}`, digest: built['1'].info.targetDigest})
      expect(app.pods).toBeUndefined() // named by --host: pods are not known
      // the content the image keeps on the node: manifest, config, layers
      expect(app.sizeBytes).toBe(built['1'].info.totalBytes)
      // a filter by repository; the table for people
      const filtered = resultLine((await runCli(['images', 'sl-images/other', ...host(node, user), ...ssh(), '--json'])).stdout)
      expect(filtered.nodes![0].images!.map((img) => img.name)).toEqual([OTHER])
      const table = await runCli(['images', ...host(node, user), ...ssh()])
      expect(table.stdout).toMatch(/^NODE\s+IMAGE\s+DIGEST\s+SIZE\s+PINNED\s+PUSHED\s+PODS/)
    }
  })

  it('images: a node that cannot be reached is a row of its own; the others answer; exit 1', async () => {
    const down = bed.nodes[2]
    await bed.stopSshd(down)
    try {
      const run = await runCli(['images', ...host(bed.nodes[0]), ...host(down), ...ssh(), '--json'])
      expect(run.code).toBe(1)
      const nodes = resultLine(run.stdout).nodes!
      expect(nodes.map((n) => n.node)).toEqual([`root@${bed.nodes[0].ip}`, `root@${down.ip}`])
      expect(nodes[0].images!.length).toBeGreaterThan(0)
      expect(nodes[1].error).toMatch(/ECONNREFUSED|cannot connect/)
      const table = await runCli(['images', ...host(bed.nodes[0]), ...host(down), ...ssh()])
      expect(table.stdout).toMatch(new RegExp(`root@${down.ip.replace(/\./g, '\\.')}\\s+\\(no answer`))
      expect(table.stderr).toContain(`root@${down.ip}`)
    } finally {
      await bed.startSshd(down)
    }
  })

  it('rm removes an unused image: its records and pin go, its content goes with GC; refuses an image sideload did not push unless --any', async () => {
    for (const [i, [user]] of users().entries()) {
      const node = bed.nodes[i]
      await push(built['2'].opts, node, user)
      const own = built['2'].info.layerDigests.at(-1)!
      expect(await contentDigests(bed, node)).toContain(own)
      // a node named by --host: pods cannot be checked, so --force
      const refused = await runCli(['rm', `${REPO}:2`, ...host(node, user), ...ssh(), '--json'])
      expect(refused.code).toBe(1)
      expect(resultLine(refused.stdout).rows![0]).toMatchObject({status: 'refused', reason: 'pods-unknown'})
      const run = await runCli(['rm', `${REPO}:2`, ...host(node, user), ...ssh(), '--force', '--json'])
      expect(run.code, run.stdout + run.stderr).toBe(0)
      const result = resultLine(run.stdout)
      expect(result.rows![0]).toMatchObject({image: `${REPO}:2`, status: 'removed'})
      expect(result.freed![0].bytes).toBeGreaterThanOrEqual(256 << 10)
      const records = await ctrRecords(bed, node)
      expect([...records.keys()].filter((r) => r.startsWith(`${REPO}:2`) || r.includes(built['2'].info.targetDigest!))).toEqual([])
      expect(await contentDigests(bed, node)).not.toContain(own)
      // the busybox layer stays: app:1 still has it
      expect(await contentDigests(bed, node)).toContain(built['1'].info.layerDigests[0])

      // an image sideload did not push (a record of its own, as ctr or a pull would make it)
      await plantForeign(node)
      const foreign = await runCli(['rm', 'sl-images/foreign:1', ...host(node, user), ...ssh(), '--force'])
      expect(foreign.code).toBe(1)
      expect(foreign.stderr).toMatch(/not sideload's to remove: written by a registry pull, ctr or nerdctl, not by sideload; hint: pass --any/)
      expect((await ctrRecords(bed, node)).has('docker.io/sl-images/foreign:1')).toBe(true)
      const any = await runCli(['rm', 'sl-images/foreign:1', ...host(node, user), ...ssh(), '--force', '--any'])
      expect(any.code, any.stderr).toBe(0)
      expect((await ctrRecords(bed, node)).has('docker.io/sl-images/foreign:1')).toBe(false)
      expect((await ctrRecords(bed, node)).has(`${REPO}:1`)).toBe(true)
      // an image no node has: exit 1, said so
      const none = await runCli(['rm', 'sl-images/nothing:9', ...host(node, user), ...ssh(), '--force'])
      expect(none.code).toBe(1)
      expect(none.stderr).toContain('is on none of the nodes')
    }
  })

  it('prune keeps the newest N per repository, respects --older-than, never touches images it did not push; --dry-run changes nothing', async () => {
    for (const [i, [user]] of users().entries()) {
      const node = bed.nodes[i]
      for (const tag of ['2', '3', '4']) await push(built[tag].opts, node, user)
      await plantForeign(node)
      // pushed long ago: 1 (20 days), 2 (10 days); 3 (1 day) and 4 (now) are recent
      const daysAgo = (d: number): string => new Date(Date.now() - d * 86_400_000).toISOString().replace(/\.\d{3}Z$/, 'Z')
      await bed.ctr(node, ['images', 'label', `${REPO}:1`, `sideload.dev/pushed-at=${daysAgo(20)}`])
      await bed.ctr(node, ['images', 'label', `${REPO}:2`, `sideload.dev/pushed-at=${daysAgo(10)}`])
      await bed.ctr(node, ['images', 'label', `${REPO}:3`, `sideload.dev/pushed-at=${daysAgo(1)}`])
      const before = [...(await ctrRecords(bed, node)).keys()].sort()
      const contentBefore = (await contentDigests(bed, node)).sort()

      const dry = await runCli(['prune', '--keep', '1', '--older-than', '7d', '--dry-run', ...host(node, user), ...ssh(), '--force', '--json'])
      expect(dry.code, dry.stderr).toBe(0)
      const planned = resultLine(dry.stdout).nodes![0]
      expect(planned.removed!.map((r) => r.name)).toEqual([`${REPO}:1`, `${REPO}:2`]) // oldest first
      expect(planned.kept!.map((k) => k.name).sort()).toEqual([`${REPO}:3`, `${REPO}:4`, OTHER].sort())
      expect([...(await ctrRecords(bed, node)).keys()].sort()).toEqual(before)
      expect((await contentDigests(bed, node)).sort()).toEqual(contentBefore)

      const run = await runCli(['prune', '--keep', '1', '--older-than', '7d', ...host(node, user), ...ssh(), '--force'])
      expect(run.code, run.stderr).toBe(0)
      expect(run.stdout).toMatch(new RegExp(`${user}@${node.ip.replace(/\./g, '\\.')}: freed \\d`))
      const after = await ctrRecords(bed, node)
      expect(after.has(`${REPO}:1`)).toBe(false)
      expect(after.has(`${REPO}:2`)).toBe(false)
      expect(after.has(`${REPO}:3`)).toBe(true)
      expect(after.has(`${REPO}:4`)).toBe(true)
      expect(after.has(OTHER)).toBe(true)
      expect(after.has('docker.io/sl-images/foreign:1')).toBe(true) // not sideload's
      // keep 1 without --older-than: only the newest of each repository stays
      const all = await runCli(['prune', '--keep', '1', ...host(node, user), ...ssh(), '--force', '--json'])
      expect(resultLine(all.stdout).nodes![0].removed!.map((r) => r.name)).toEqual([`${REPO}:3`])
      // a --host node without --force: its pods cannot be checked, nothing is removed
      const unchecked = await runCli(['prune', '--keep', '0', ...host(node, user), ...ssh()])
      expect(unchecked.code).toBe(1)
      expect(unchecked.stderr).toMatch(/cannot tell which pods use its images.*hint: name it with --node/)
      expect((await ctrRecords(bed, node)).has(`${REPO}:4`)).toBe(true)
    }
  })
})
