// Every blob sideload sends or finds on a node carries containerd's distribution-source label for
// the image's registry and repository, as a pull writes it (what Spegel needs to serve a blob to
// its peers), through both import paths: native (root) and `sudo ctr` (a non-root user), on a
// containerd 2.x node and a 1.6 node.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {distributionSource, distributionSourceLabels} from '../../src/containerd/labels.js'
import {ctrContentTable} from '../../src/nodes/ctr-output.js'
import {startBed, type Bed, type BedNode} from '../bed/bed.js'
import {makeImage, type ImageInfo, type MakeImageOptions} from '../bed/images.js'
import {jsonResult, runCli} from '../push/cli.js'

const SOURCE = 'containerd.io/distribution.source'
let bed: Bed
let dir: string

const sshArgs = (): string[] => ['--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath, '--progress', 'quiet', '--json']

async function push(node: BedNode, archive: string, user = 'root'): Promise<{status: string; mode?: string}> {
  const run = await runCli(['push', '--archive', archive, '--host', `${user}@${node.ip}`, ...sshArgs()])
  expect(run.code, run.stderr + run.stdout).toBe(0)
  return jsonResult(run.stdout).results[0]
}

/** Each blob's labels, as `ctr content ls` shows them on the node. */
async function contentLabels(node: BedNode): Promise<Map<string, Record<string, string>>> {
  return new Map(ctrContentTable(await bed.ctr(node, ['content', 'ls'])).map((r) => [r.digest, r.labels]))
}

function blobsOf(info: ImageInfo): string[] {
  return [...new Set([info.targetDigest!, ...info.manifestDigests, info.configDigest, ...info.layerDigests])]
}

const common = (a: ImageInfo, b: ImageInfo): string[] => blobsOf(a).filter((d) => blobsOf(b).includes(d))
const only = (a: ImageInfo, b: ImageInfo): string[] => blobsOf(a).filter((d) => !blobsOf(b).includes(d))

/** Each of these blobs carries `key` = `value` (all of the value's repositories). */
async function expectSource(node: BedNode, digests: string[], key: string, value: string): Promise<void> {
  expect(digests.length).toBeGreaterThan(0)
  const labels = await contentLabels(node)
  for (const digest of digests) {
    expect(labels.get(digest), `blob ${digest} on ${node.name}`).toBeDefined()
    expect(labels.get(digest)![`${SOURCE}.${key}`], `${SOURCE}.${key} of ${digest} on ${node.name}`).toBe(value)
  }
}

describe('the distribution-source label, as containerd\'s pull computes it', () => {
  it('keys on the registry host without its port, the repository path as value', () => {
    expect(distributionSource('docker.io/library/busybox:1')).toEqual({key: `${SOURCE}.docker.io`, repository: 'library/busybox'})
    expect(distributionSource('busybox')).toEqual({key: `${SOURCE}.docker.io`, repository: 'library/busybox'})
    expect(distributionSource('localhost:5000/team/app@sha256:' + 'a'.repeat(64))).toEqual({key: `${SOURCE}.localhost`, repository: 'team/app'})
    expect(distributionSource('[::1]:5000/app:1')).toEqual({key: `${SOURCE}.::1`, repository: 'app'})
    expect(distributionSource('Not A Name')).toBeUndefined()
  })
  it('adds a repository to the sorted set a blob has; nothing when it is there or would pass 4096 bytes', () => {
    const s = distributionSource('r.example/c:1')!
    expect(distributionSourceLabels(undefined, s)).toEqual({[s.key]: 'c'})
    expect(distributionSourceLabels({[s.key]: 'b,d'}, s)).toEqual({[s.key]: 'b,c,d'})
    expect(distributionSourceLabels({[s.key]: 'b,c'}, s)).toEqual({})
    expect(distributionSourceLabels({[s.key]: 'x'.repeat(4096 - s.key.length - 1)}, s)).toEqual({})
    expect(distributionSourceLabels({}, undefined)).toEqual({})
  })
})

describe('distribution-source labels on every blob sideload sends or finds', () => {
  const images: Record<string, {opts: MakeImageOptions; info: ImageInfo}> = {}
  beforeAll(async () => {
    bed = await startBed({name: 'slbt-spegel-labels', nodes: 2, nodeOptions: {1: {containerd: '2'}, 2: {containerd: '1.6'}}})
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sideload-spegel-labels-'))
    const make = async (key: string, name: string, layers: MakeImageOptions['layers']): Promise<void> => {
      const opts: MakeImageOptions = {name, layers, format: 'oci', out: path.join(dir, `${key}.tar`)}
      images[key] = {opts, info: await makeImage(opts)}
    }
    const shared: MakeImageOptions['layers'] = [{busybox: true}, {sizeBytes: 1 << 20, seed: 'app'}]
    await make('app', 'docker.io/sl-src/app:1', shared)
    // the same blobs under another repository of the same registry, and of another registry (with a port)
    await make('other', 'docker.io/sl-src/other:1', shared)
    await make('reg', 'registry.example:5000/team/app:2', shared)
    // through sudo ctr: one layer shared with app, one new
    await make('ctr', 'docker.io/sl-src/ctr:1', [{busybox: true}, {sizeBytes: 512 << 10, seed: 'ctr'}])
    await make('ctr2', 'docker.io/sl-src/ctr2:1', [{busybox: true}, {sizeBytes: 512 << 10, seed: 'ctr'}])
  })
  afterAll(async () => {
    await bed?.down()
    if (dir) fs.rmSync(dir, {recursive: true, force: true})
  })

  for (const [i, line] of [[0, '2.x'], [1, '1.6']] as const) {
    it(`native import (root), containerd ${line}: sent blobs carry it; blobs found get their repository added, sorted as containerd appends`, async () => {
      const node = bed.nodes[i]
      const {app, other, reg} = {app: images.app.info, other: images.other.info, reg: images.reg.info}
      expect(await push(node, images.app.opts.out)).toMatchObject({status: 'pushed', mode: 'native'})
      await expectSource(node, blobsOf(app), 'docker.io', 'sl-src/app')
      // the same blobs (but its index, which names it) under another repository: found, and labelled with it too
      expect(await push(node, images.other.opts.out)).toMatchObject({status: 'pushed', mode: 'native'})
      await expectSource(node, common(app, other), 'docker.io', 'sl-src/app,sl-src/other')
      await expectSource(node, only(other, app), 'docker.io', 'sl-src/other')
      await expectSource(node, only(app, other), 'docker.io', 'sl-src/app')
      // another registry: its own key, the host without its port (as containerd's pull writes it)
      expect(await push(node, images.reg.opts.out)).toMatchObject({status: 'pushed', mode: 'native'})
      await expectSource(node, blobsOf(reg), 'registry.example', 'team/app')
      await expectSource(node, common(app, other), 'docker.io', 'sl-src/app,sl-src/other')
      // up to date: unchanged, nothing duplicated
      expect(await push(node, images.app.opts.out)).toMatchObject({status: 'up to date'})
      await expectSource(node, common(app, other), 'docker.io', 'sl-src/app,sl-src/other')
      await expectSource(node, only(app, other), 'docker.io', 'sl-src/app')
    })

    it(`sudo ctr import (non-root), containerd ${line}: ctr content label after the import, on sent and found blobs`, async () => {
      const node = bed.nodes[i]
      const {app, ctr, ctr2} = {app: images.app.info, ctr: images.ctr.info, ctr2: images.ctr2.info}
      expect(await push(node, images.ctr.opts.out, bed.nonRootUser)).toMatchObject({status: 'pushed', mode: 'ctr'})
      await expectSource(node, only(ctr, app), 'docker.io', 'sl-src/ctr')
      // the busybox layer was there (from app and other): it has all three now
      expect(common(ctr, app)).toEqual([ctr.layerDigests[0]])
      await expectSource(node, common(ctr, app), 'docker.io', 'sl-src/app,sl-src/ctr,sl-src/other')
      // every blob but the index found, only the name is new
      expect(await push(node, images.ctr2.opts.out, bed.nonRootUser)).toMatchObject({status: 'pushed', mode: 'ctr'})
      await expectSource(node, common(ctr, ctr2).filter((d) => !blobsOf(app).includes(d)), 'docker.io', 'sl-src/ctr,sl-src/ctr2')
      await expectSource(node, only(ctr2, ctr), 'docker.io', 'sl-src/ctr2')
      expect(await push(node, images.ctr2.opts.out, bed.nonRootUser)).toMatchObject({status: 'up to date'})
      await expectSource(node, only(ctr2, ctr), 'docker.io', 'sl-src/ctr2')
    })
  }
})
