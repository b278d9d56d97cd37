// Which pods use an image, from the real kube-apiserver: Node objects whose InternalIP is a bed
// node, a pod bound to one with its status (containerStatuses[].imageID) written through
// pods/status as the kubelet would. images names the pod, rm refuses the image, prune keeps it.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startBed, type Bed} from '../bed/bed.js'
import {makeImage, type ImageInfo, type MakeImageOptions} from '../bed/images.js'
import {startRealApiServer, type RealApiServer} from '../kube-real/apiserver.js'
import {corePath, Rest} from '../kube-real/rest.js'
import {runCli} from '../push/cli.js'
import {ctrRecords, resultLine} from './helpers.js'

let bed: Bed
let server: RealApiServer
let dir: string
const USED = 'docker.io/sl-pods/used:1'
const UNUSED = 'docker.io/sl-pods/unused:1'
const PENDING = 'docker.io/sl-pods/pending:1'

describe('images, rm and prune with the pods of the real API server', () => {
  let used: {opts: MakeImageOptions; info: ImageInfo}
  let args: () => string[]
  let deletePod: (name: string) => Promise<unknown>
  beforeAll(async () => {
    ;[bed, server] = await Promise.all([startBed({name: 'images-pods', nodes: 2}), startRealApiServer()])
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sideload-images-pods-'))
    const admin = new Rest({url: server.url, caPath: server.caPath, token: server.adminToken})
    for (const n of bed.nodes) {
      await admin.create(corePath('nodes'), {metadata: {name: n.name, labels: {'kubernetes.io/os': 'linux'}},
        status: {addresses: [{type: 'InternalIP', address: n.ip}, {type: 'Hostname', address: n.name}]}})
      // status is a subresource: what the kubelet reports (addresses, nodeInfo)
      await admin.patch(corePath('nodes', undefined, n.name, 'status'), {status: {addresses: [{type: 'InternalIP', address: n.ip}, {type: 'Hostname', address: n.name}],
        nodeInfo: {architecture: 'amd64', operatingSystem: 'linux', containerRuntimeVersion: 'containerd://2', kubeletVersion: 'v1.36.3', kubeProxyVersion: '', machineID: '', systemUUID: '', bootID: '', kernelVersion: '', osImage: ''}}}, 'merge')
    }
    await server.ensureNamespace('demo')
    const opts = (name: string, seed: string): MakeImageOptions => ({name, layers: [{sizeBytes: 128 << 10, seed}], format: 'oci', out: path.join(dir, `${seed}.tar`)})
    used = {opts: opts(USED, 'u'), info: await makeImage(opts(USED, 'u'))}
    const unused = opts(UNUSED, 'n')
    await makeImage(unused)
    const pending = opts(PENDING, 'p')
    await makeImage(pending)
    const kubeconfig = (await server.serviceAccountKubeconfig({namespace: 'demo'})).kubeconfigPath
    args = () => ['--kubeconfig', kubeconfig, '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath]
    for (const o of [used.opts, unused, pending]) {
      const run = await runCli(['push', '--archive', o.out, '--all-nodes', ...args(), '--progress', 'quiet'])
      expect(run.code, run.stderr).toBe(0)
    }
    // a pod on node 1 running USED (init container) and an unrelated container
    const node = bed.nodes[0].name
    await admin.create(corePath('pods', 'demo'), {metadata: {name: 'web', namespace: 'demo'},
      spec: {nodeName: node, initContainers: [{name: 'init', image: USED}], containers: [{name: 'app', image: 'docker.io/library/other:1'}]}})
    await admin.patch(corePath('pods', 'demo', 'web', 'status'), {status: {phase: 'Running',
      initContainerStatuses: [{name: 'init', image: USED, imageID: `docker.io/sl-pods/used@${used.info.targetDigest}`, ready: true, restartCount: 0, state: {terminated: {exitCode: 0}}}],
      containerStatuses: [{name: 'app', image: 'docker.io/library/other:1', imageID: `sha256:${'0'.repeat(64)}`, ready: true, restartCount: 0, state: {running: {}}}]}}, 'merge')
    // a pod bound to node 1 that has not started yet: no status, only the image its spec names
    await admin.create(corePath('pods', 'demo'), {metadata: {name: 'waiting', namespace: 'demo'}, spec: {nodeName: node, containers: [{name: 'app', image: 'sl-pods/pending:1'}]}})
    deletePod = (name) => admin.delete(corePath('pods', 'demo', name), {gracePeriodSeconds: 0})
  }, 180_000)
  afterAll(async () => {
    await Promise.all([bed?.down(), server?.stop()])
    if (dir) fs.rmSync(dir, {recursive: true, force: true})
  })

  it('images --all-nodes names the pods on each node that use an image (by the imageID in their status, init containers too)', async () => {
    const run = await runCli(['images', '--all-nodes', ...args(), '--json'])
    expect(run.code, run.stderr).toBe(0)
    const nodes = resultLine(run.stdout).nodes!
    expect(nodes.map((n) => n.node)).toEqual(bed.nodes.map((n) => n.name))
    const on = (i: number, name: string) => nodes[i].images!.find((img) => img.name === name)!
    expect(on(0, USED).pods).toEqual(['demo/web'])
    expect(on(0, UNUSED).pods).toEqual([])
    expect(on(1, USED).pods).toEqual([]) // the pod is on node 1 only
    const table = await runCli(['images', USED, '--node', bed.nodes[0].name, ...args()])
    expect(table.stdout).toMatch(/docker\.io\/sl-pods\/used:1\s.*\sdemo\/web/)
  })

  it('rm refuses an image a pod on that node uses, naming the pod; removes it from the node where no pod uses it', async () => {
    const run = await runCli(['rm', USED, '--all-nodes', ...args(), '--json'])
    expect(run.code).toBe(1)
    const rows = resultLine(run.stdout).rows!
    expect(rows.find((r) => r.node === bed.nodes[0].name)).toMatchObject({status: 'refused', reason: 'in-use'})
    expect(rows.find((r) => r.node === bed.nodes[0].name)!.error).toContain('demo/web')
    expect(rows.find((r) => r.node === bed.nodes[1].name)).toMatchObject({status: 'removed'})
    expect((await ctrRecords(bed, bed.nodes[0])).has(USED)).toBe(true)
    expect((await ctrRecords(bed, bed.nodes[1])).has(USED)).toBe(false)
    const plain = await runCli(['rm', USED, '--node', bed.nodes[0].name, ...args()])
    expect(plain.stderr).toMatch(/in use by pod demo\/web/)
  })

  it('prune never removes an image a pod uses, nor one a pod bound to the node has yet to start with; removes the unused one', async () => {
    const run = await runCli(['prune', '--keep', '0', '--node', bed.nodes[0].name, ...args(), '--json'])
    expect(run.code, run.stderr).toBe(0)
    const [n] = resultLine(run.stdout).nodes!
    expect(n.removed!.map((r) => r.name)).toEqual([UNUSED])
    expect(n.kept!.sort((a, b) => a.name.localeCompare(b.name))).toEqual([{name: PENDING, why: 'in use by pod demo/waiting'}, {name: USED, why: 'in use by pod demo/web'}])
    const records = await ctrRecords(bed, bed.nodes[0])
    expect(records.has(USED)).toBe(true)
    expect(records.has(PENDING)).toBe(true)
    expect(records.has(UNUSED)).toBe(false)
  })

  it('rm --force does not remove an image a pod bound to the node needs (running or pending); once the pod is gone, rm removes it', async () => {
    for (const [image, pod] of [[USED, 'web'], [PENDING, 'waiting']]) {
      const forced = await runCli(['rm', image, '--node', bed.nodes[0].name, ...args(), '--force', '--json'])
      expect(forced.code).toBe(1)
      const [row] = resultLine(forced.stdout).rows!
      expect(row).toMatchObject({status: 'refused', reason: 'in-use'})
      expect(row.error).toContain(`demo/${pod}`)
      expect((await ctrRecords(bed, bed.nodes[0])).has(image)).toBe(true)
      await deletePod(pod)
      const gone = await runCli(['rm', image, '--node', bed.nodes[0].name, ...args()])
      expect(gone.code, gone.stderr).toBe(0)
      expect((await ctrRecords(bed, bed.nodes[0])).has(image)).toBe(false)
    }
  })
})
