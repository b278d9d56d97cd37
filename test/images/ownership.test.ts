// Only what is ours (issue 26), on the real bed (containerd 2.x, or 1.6 with
// SIDELOAD_BED_CONTAINERD=1.6), natively as root and through `sudo -n ctr` as the non-root user:
// a record someone else wrote under the pushed name is refused (or left as it is when it holds the
// same image), never labelled, listed or pruned as sideload's; what the node's CRI needs (its
// sandbox image, a container's image) is never removed, --force or not.
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

const ssh = (): string[] => ['--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath]
const host = (node: BedNode, user = 'root'): string[] => ['--host', `${user}@${node.ip}`]
/** [user, the node it works on]: root natively on node 0, the sudo-ctr user on node 1 */
const users = (): Array<[string, BedNode]> => [['root', bed.nodes[0]], [bed.nonRootUser, bed.nodes[1]]]

interface Built {
  opts: MakeImageOptions
  info: ImageInfo
}

async function build(name: string, seed: string, file: string): Promise<Built> {
  const opts: MakeImageOptions = {name, layers: [{sizeBytes: 192 << 10, seed}], format: 'oci', out: path.join(dir, file)}
  return {opts, info: await makeImage(opts)}
}

/** name → target digest of every record (`ctr images ls`: NAME TYPE DIGEST …). */
async function targets(node: BedNode): Promise<Map<string, string>> {
  const [, ...rows] = (await bed.ctr(node, ['images', 'ls'])).split('\n')
  return new Map(rows.filter((r) => r.trim()).map((r) => {
    const [name, , digest] = r.trim().split(/\s+/)
    return [name, digest]
  }))
}

/** An image record written by `ctr images import`, as a user or a vendor's installer makes one. */
async function ctrImport(node: BedNode, archive: string): Promise<void> {
  await bed.ctr(node, ['images', 'import', archive])
}

/** Nothing of a push left behind: no temporary name, no lease of ours. */
async function nothingLeft(node: BedNode): Promise<void> {
  expect([...(await targets(node)).keys()].filter((n) => n.startsWith('sideload.invalid/'))).toEqual([])
  expect(await bed.ctr(node, ['leases', 'ls'])).not.toContain('sideload/image')
}

describe('only what is ours', () => {
  const built: Record<string, Built> = {}
  beforeAll(async () => {
    bed = await startBed({name: 'images-own', nodes: 3})
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sideload-own-'))
    built.theirs = await build('docker.io/acc.local/sys:v1', 'theirs', 'theirs.tar')
    built.ours = await build('docker.io/acc.local/sys:v1', 'ours', 'ours.tar')
    built.mine = await build('docker.io/sl-own/app:mine', 'same', 'mine.tar')
    built.stopped = await build('docker.io/sl-own/stopped:1', 'stopped', 'stopped.tar')
    built.idle = await build('docker.io/sl-own/idle:1', 'idle', 'idle.tar')
  })
  afterAll(async () => {
    await bed?.down()
    if (dir) fs.rmSync(dir, {recursive: true, force: true})
  })

  it('a record of the same name that ctr imported survives a push: refused, naming the record and its digest; the other nodes go on; --replace overwrites it', async () => {
    const theirs = built.theirs.info.targetDigest!
    const ours = built.ours.info.targetDigest!
    expect(theirs).not.toBe(ours)
    for (const [user, node] of users()) {
      await ctrImport(node, built.theirs.opts.out)
      const before = (await ctrRecords(bed, node)).get('docker.io/acc.local/sys:v1')
      const other = bed.nodes[2]
      const run = await runCli(['push', '--archive', built.ours.opts.out, ...host(node, user), ...host(other), ...ssh(), '--json'])
      expect(run.code).toBe(1)
      const results = (resultLine(run.stdout) as unknown as {results: Array<{node: string; status: string; error?: string; hint?: string; reason?: string}>}).results
      const refused = results.find((r) => r.node === `${user}@${node.ip}`)!
      expect(refused).toMatchObject({status: 'failed', reason: 'not-ours'})
      expect(refused.error).toContain('docker.io/acc.local/sys:v1')
      expect(refused.error).toContain(theirs.slice(0, 19))
      expect(refused.error).toContain('written by a registry pull, ctr or nerdctl, not by sideload')
      expect(refused.hint).toContain('--replace')
      expect(results.find((r) => r.node === `root@${other.ip}`)!.status).not.toBe('failed')
      // the node's record is exactly as it was; nothing of the push is left there
      expect((await targets(node)).get('docker.io/acc.local/sys:v1')).toBe(theirs)
      expect((await ctrRecords(bed, node)).get('docker.io/acc.local/sys:v1')).toEqual(before)
      await nothingLeft(node)
      // the error in a terminal: one line, the node named once
      const plain = await runCli(['push', '--archive', built.ours.opts.out, ...host(node, user), ...ssh(), '--progress', 'plain'])
      expect(plain.code).toBe(1)
      expect(plain.stderr).toMatch(/image docker\.io\/acc\.local\/sys:v1 on the node is not sideload's: it holds sha256:[0-9a-f]{12}, written by .*; the push would replace it with sha256:[0-9a-f]{12}; hint: push it under another name, or pass --replace/)

      const replaced = await runCli(['push', '--archive', built.ours.opts.out, ...host(node, user), ...ssh(), '--replace', '--progress', 'quiet'])
      expect(replaced.code, replaced.stderr).toBe(0)
      expect((await targets(node)).get('docker.io/acc.local/sys:v1')).toBe(ours)
      expect((await ctrRecords(bed, node)).get('docker.io/acc.local/sys:v1')!['sideload.dev/digest']).toBe(ours)
      // ours now: a re-push of our own tag needs no flag
      const again = await runCli(['push', '--archive', built.ours.opts.out, ...host(node, user), ...ssh(), '--json'])
      expect(again.code, again.stderr).toBe(0)
    }
  })

  it('a record another wrote that holds the pushed image is left exactly as it is (no labels, no pin); the image is never listed as ours nor pruned', async () => {
    const mineName = 'docker.io/sl-own/app:mine'
    const theirs = 'docker.io/sl-own/app:1.25'
    for (const [user, node] of users()) {
      // the same name, the same content, imported by ctr: up to date, and the record stays another's
      await ctrImport(node, built.mine.opts.out)
      const imported = (await ctrRecords(bed, node)).get(mineName)!
      expect(imported['sideload.dev/digest']).toBeUndefined()
      const same = await runCli(['push', '--archive', built.mine.opts.out, ...host(node, user), ...ssh(), '--json'])
      expect(same.code, same.stderr).toBe(0)
      const [r] = (resultLine(same.stdout) as unknown as {results: Array<{status: string; kept?: string}>}).results
      expect(r.status).toBe('up to date')
      expect(r.kept).toContain('written by a registry pull, ctr or nerdctl, not by sideload')
      expect((await ctrRecords(bed, node)).get(mineName)).toEqual(imported)
      const listedOnce = await runCli(['images', mineName, ...host(node, user), ...ssh(), '--json'])
      expect(resultLine(listedOnce.stdout).nodes![0].images!.find((i) => i.name === mineName)).toMatchObject({sideload: false, pinned: false})

      // that content under another's tag, and under a tag of ours in the same repository (`nginx:1.25` and `nginx:mine`)
      await bed.ctr(node, ['images', 'tag', mineName, theirs])
      await bed.ctr(node, ['images', 'rm', mineName])
      const before = (await ctrRecords(bed, node)).get(theirs)!
      const mine = await runCli(['push', '--archive', built.mine.opts.out, ...host(node, user), ...ssh(), '--progress', 'quiet'])
      expect(mine.code, mine.stderr).toBe(0)
      expect((await ctrRecords(bed, node)).get(theirs)).toEqual(before)
      const listed = await runCli(['images', 'sl-own/app', ...host(node, user), ...ssh(), '--json'])
      const images = resultLine(listed.stdout).nodes![0].images!
      expect(images.find((i) => i.name === theirs)).toMatchObject({sideload: false})
      expect(images.find((i) => i.name === 'docker.io/sl-own/app:mine')).toMatchObject({sideload: true})

      const pruned = await runCli(['prune', '--keep', '0', ...host(node, user), ...ssh(), '--force', '--json'])
      expect(pruned.code, pruned.stderr).toBe(0)
      const removed = resultLine(pruned.stdout).nodes![0].removed!.map((i) => i.name)
      expect(removed).toContain('docker.io/sl-own/app:mine')
      expect(removed).not.toContain(theirs)
      const after = await targets(node)
      expect(after.get(theirs)).toBe(built.mine.info.targetDigest)
      expect(after.has(mineName)).toBe(false)
      // its content stays with it
      expect(await contentDigests(bed, node)).toEqual(expect.arrayContaining(built.mine.info.layerDigests))
    }
  })

  it('rm and prune never remove the CRI\'s sandbox image (pushed by sideload) nor a stopped container\'s image, --force or not', async () => {
    for (const [user, node] of users()) {
      const config = (await bed.exec(node, ['cat', '/etc/containerd/config.toml'])).stdout
      const sandbox = /^\s*(?:sandbox|sandbox_image)\s*=\s*"([^"]+)"/m.exec(config)![1]
      // an air-gapped node: the pause image can only come from sideload
      const pause = await build(sandbox, `pause-${user}`, `pause-${user}.tar`)
      for (const b of [pause, built.stopped, built.idle]) {
        const run = await runCli(['push', '--archive', b.opts.out, ...host(node, user), ...ssh(), '--replace', '--progress', 'quiet'])
        expect(run.code, run.stderr).toBe(0)
      }
      // a container that ran and stopped (no task), as the CRI leaves an exited one
      await bed.ctr(node, ['containers', 'create', 'docker.io/sl-own/stopped:1', `sl-stopped-${user}`])
      try {
        const pruned = await runCli(['prune', '--keep', '0', ...host(node, user), ...ssh(), '--force', '--json'])
        expect(pruned.code, pruned.stderr).toBe(0)
        const n = resultLine(pruned.stdout).nodes![0]
        expect(n.removed!.map((i) => i.name)).toContain('docker.io/sl-own/idle:1')
        const kept = new Map(n.kept!.map((k) => [k.name, k.why]))
        expect(kept.get(pause.info.name)).toMatch(/the node needs it: it is the sandbox image/)
        expect(kept.get('docker.io/sl-own/stopped:1')).toMatch(/the node needs it: container sl-stopped-/)
        const records = await targets(node)
        expect(records.has(pause.info.name)).toBe(true)
        expect(records.has('docker.io/sl-own/stopped:1')).toBe(true)
        expect(records.has('docker.io/sl-own/idle:1')).toBe(false)

        const rm = await runCli(['rm', pause.info.name, 'docker.io/sl-own/stopped:1', ...host(node, user), ...ssh(), '--force', '--json'])
        expect(rm.code).toBe(1)
        const rows = resultLine(rm.stdout).rows!
        expect(rows.map((r) => [r.image, r.status, r.reason])).toEqual([[pause.info.name, 'refused', 'needed-by-node'], ['docker.io/sl-own/stopped:1', 'refused', 'needed-by-node']])
        expect((await targets(node)).has(pause.info.name)).toBe(true)
      } finally {
        await bed.ctr(node, ['containers', 'rm', `sl-stopped-${user}`]).catch(() => undefined)
      }
      // the container gone, its image can go
      const rm = await runCli(['rm', 'docker.io/sl-own/stopped:1', ...host(node, user), ...ssh(), '--force'])
      expect(rm.code, rm.stderr).toBe(0)
    }
  })
})
