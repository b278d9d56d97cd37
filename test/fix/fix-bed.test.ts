// `sideload fix` end to end: real bed nodes (sshd + containerd), the real API server and the kubelet
// stand-in whose truth is each node's containerd. Each test uses its own namespace and image.
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {makeImage, type ImageInfo} from '../bed/images.js'
import {corePath} from '../kube-real/rest.js'
import {KubeClient} from '../../src/kube/client.js'
import {fix, PUSHED_AT_ANNOTATION} from '../../src/ops/fix/index.js'
import {cli, createNamespace, createPod, type FixBed, nodeImages, podStatus, startFixBed} from './fixture.js'

let fb: FixBed
const ssh = () => ({identityFiles: [fb.bed.keyPath], knownHostsPath: fb.bed.knownHostsPath})
const sshArgs = () => ['--ssh-key', fb.bed.keyPath, '--known-hosts', fb.bed.knownHostsPath]

async function archive(name: string): Promise<{file: string; info: ImageInfo}> {
  const file = path.join(fb.tmp, `${name.replace(/[^a-z0-9]/g, '_')}.tar`)
  const info = await makeImage({name, layers: [{busybox: true}, {sizeBytes: 256 << 10, seed: name}], format: 'oci', out: file})
  return {file, info}
}

describe('sideload fix on real nodes', () => {
  beforeAll(async () => {
    fb = await startFixBed('slbt-fix')
  })
  afterAll(async () => {
    await fb?.down()
  })

  it('sends the image to exactly the two nodes whose pods are stuck, once each, and the pods run', async () => {
    const {bed, kubelet} = fb
    const [n1, n2, n3] = bed.nodes
    const image = 'docker.io/local/fix-op:1.0'
    const {file, info} = await archive(image)
    await createNamespace(fb, 'op')
    await createPod(fb, 'op', 'a1', n1.name, 'local/fix-op:1.0')
    await createPod(fb, 'op', 'a2', n1.name, 'local/fix-op:1.0', {init: true})
    await createPod(fb, 'op', 'b1', n2.name, 'local/fix-op:1.0')
    await kubelet.syncNow()
    expect((await podStatus(fb, 'op', 'a2')).waiting).toContain('ErrImageNeverPull')

    const client = KubeClient.load({kubeconfig: fb.kubeconfig, namespace: 'op'})
    const result = await fix({client, source: {kind: 'archive', path: file}, ssh: ssh(), timeoutMs: 20_000})
    expect(result.diagnoses).toEqual([])
    expect(result.transfers.map(t => t.node).sort()).toEqual([n1.name, n2.name])
    for (const t of result.transfers) {
      expect(t.image).toBe(image)
      expect(t.push?.status).toBe('pushed')
      expect(t.push?.sentBytes).toBeGreaterThanOrEqual(info.layerDigests.length > 0 ? 256 << 10 : 1)
    }
    expect(result.transfers.find(t => t.node === n1.name)?.pods.sort()).toEqual(['op/a1', 'op/a2'])
    expect(result.rows.map(r => `${r.pod}:${r.action}:${r.result}`).sort()).toEqual(['a1:pushed:Running', 'a2:pushed:Running', 'b1:pushed:Running'])
    expect(result.ok).toBe(true)
    expect(await nodeImages(bed, n1)).toContain(image)
    expect(await nodeImages(bed, n2)).toContain(image)
    expect(await nodeImages(bed, n3)).not.toContain(image)
    for (const pod of ['a1', 'a2', 'b1']) {
      expect((await podStatus(fb, 'op', pod)).phase).toBe('Running')
      expect((await fb.cluster.getPod('op', pod))?.metadata).toMatchObject({annotations: {[PUSHED_AT_ANNOTATION]: expect.any(String)}})
    }

    // again: nothing stuck, nothing sent
    const again = await fix({client, source: {kind: 'archive', path: file}, ssh: ssh(), timeoutMs: 5000})
    expect(again).toMatchObject({rows: [], transfers: [], ok: true})
  })

  it('the built CLI: --dry-run prints the plan and sends nothing; then fix repairs, node 1 untouched', async () => {
    const {bed, kubelet} = fb
    const [n1, n2, n3] = bed.nodes
    const image = 'docker.io/local/fix-cli:2.0'
    const {file} = await archive(image)
    await createNamespace(fb, 'cli')
    await createPod(fb, 'cli', 'web-b', n2.name, 'local/fix-cli:2.0')
    await createPod(fb, 'cli', 'web-c', n3.name, 'local/fix-cli:2.0')
    await kubelet.syncNow()

    const plan = await cli(['fix', '--kubeconfig', fb.kubeconfig, '-n', 'cli', '--archive', file, '--dry-run', ...sshArgs()])
    expect(plan.code, plan.stderr).toBe(0)
    expect(plan.stdout).toMatch(/POD\s+NODE\s+IMAGE\s+ACTION\s+RESULT/)
    expect(plan.stdout).toMatch(new RegExp(`cli/web-b\\s+${n2.name}\\s+local/fix-cli:2.0\\s+would push\\s+ErrImageNeverPull`))
    expect(await nodeImages(bed, n2)).not.toContain(image)
    // no source answering: still the plan, each row saying why nothing could be sent; exit 1
    const blind = await cli(['fix', '--kubeconfig', fb.kubeconfig, '-n', 'cli', '--containerd-address', 'unix:///nonexistent/sideload-fix.sock', '--dry-run', ...sshArgs()])
    expect(blind.code).toBe(1)
    expect(blind.stdout).toMatch(new RegExp(`cli/web-b\\s+${n2.name}\\s+local/fix-cli:2.0\\s+would push\\s+source unavailable: cannot (list|read)`))
    expect(blind.stdout).toMatch(new RegExp(`cli/web-c\\s+${n3.name}\\s+local/fix-cli:2.0\\s+would push\\s+source unavailable`))
    expect(blind.stdout).toMatch(/hint: .*containerd/)

    const run = await cli(['fix', '--kubeconfig', fb.kubeconfig, '-n', 'cli', '--archive', file, '--timeout', '20s', ...sshArgs()])
    expect(run.code, run.stdout + run.stderr).toBe(0)
    expect(run.stdout).toMatch(new RegExp(`cli/web-b\\s+${n2.name}\\s+local/fix-cli:2.0\\s+pushed\\s+Running`))
    expect(run.stdout).toMatch(new RegExp(`cli/web-c\\s+${n3.name}\\s+local/fix-cli:2.0\\s+pushed\\s+Running`))
    expect((await podStatus(fb, 'cli', 'web-b')).phase).toBe('Running')
    expect((await podStatus(fb, 'cli', 'web-c')).phase).toBe('Running')
    expect(await nodeImages(bed, n1)).not.toContain(image)

    const json = await cli(['fix', '--kubeconfig', fb.kubeconfig, '-n', 'cli', '--archive', file, '--json', ...sshArgs()])
    expect(json.code).toBe(0)
    expect(JSON.parse(json.stdout)).toMatchObject({rows: [], transfers: [], ok: true})
  })

  it('an Always-policy pod gets the diagnosis and nothing is pushed; exit code 1', async () => {
    const {bed, kubelet} = fb
    const [n1] = bed.nodes
    const {file} = await archive('docker.io/local/fix-always:latest')
    await createNamespace(fb, 'always')
    await fb.cluster.admin.create(corePath('pods', 'always'), {metadata: {name: 'web-1', ownerReferences: [{apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-7d9', uid: '2b9c1f0e-0000-4000-8000-000000000001', controller: true}]},
      spec: {nodeName: n1.name, containers: [{name: 'web', image: 'local/fix-always'}]}})
    await kubelet.syncNow()
    const client = KubeClient.load({kubeconfig: fb.kubeconfig, namespace: 'always'})
    const result = await fix({client, source: {kind: 'archive', path: file}, ssh: ssh(), timeoutMs: 5000})
    expect(result.transfers).toEqual([])
    expect(result.ok).toBe(false)
    expect(result.diagnoses).toHaveLength(1)
    expect(result.diagnoses[0].kind).toBe('pull-policy-always')
    expect(await nodeImages(bed, n1)).not.toContain('docker.io/local/fix-always:latest')

    const run = await cli(['fix', '--kubeconfig', fb.kubeconfig, '-n', 'always', '--archive', file, ...sshArgs()])
    expect(run.code).toBe(1)
    expect(run.stdout).toMatch(/always\/web-1\s+\S+\s+local\/fix-always\s+not pushed\s+imagePullPolicy Always/)
    expect(run.stdout).toContain('ReplicaSet "web-7d9"')
    expect(run.stdout).toContain('imagePullPolicy: IfNotPresent')
  })

  it('an image the source lacks is named, with what the source has; nothing is pushed', async () => {
    const {bed, kubelet} = fb
    const [, n2] = bed.nodes
    const {file} = await archive('docker.io/local/fix-other:1.0')
    await createNamespace(fb, 'missing')
    await createPod(fb, 'missing', 'lost', n2.name, 'local/fix-absent:3.1')
    await kubelet.syncNow()
    const client = KubeClient.load({kubeconfig: fb.kubeconfig, namespace: 'missing'})
    const result = await fix({client, source: {kind: 'archive', path: file}, ssh: ssh(), timeoutMs: 5000})
    expect(result.ok).toBe(false)
    expect(result.transfers).toEqual([])
    const d = result.diagnoses.find(x => x.kind === 'not-in-source')
    expect(d?.hint).toContain('docker.io/local/fix-absent:3.1 is not in the archive')
    expect(d?.hint).toContain('It has: docker.io/local/fix-other:1.0')
    expect(result.rows).toMatchObject([{pod: 'lost', action: 'not pushed', result: 'image not in the source', ok: false}])

    // the default source, a local containerd, is not there: say so and how to pick another
    const sock = path.join(fb.tmp, 'no-containerd.sock')
    const run = await cli(['fix', '--kubeconfig', fb.kubeconfig, '-n', 'missing', '--containerd-address', `unix://${sock}`, ...sshArgs()])
    expect(run.code).toBe(1)
    expect(run.stderr).toContain(`error: cannot list the images from the local containerd at unix://${sock}: nothing answers there (no such socket); hint: `)
    expect(run.stderr).toContain('--source docker|DIR or --archive FILE')
    expect(run.stderr).not.toMatch(/on the node|Resolution note|UNAVAILABLE/)
  })

  it('takes the image from a containerd (a bed node\'s socket as the build machine) to the other nodes', async () => {
    const {bed, kubelet} = fb
    const [n1, n2, n3] = bed.nodes
    const image = 'docker.io/local/fix-ctrd:1.0'
    const {file} = await archive(image)
    const fs = await import('node:fs')
    const imported = await bed.exec(n1, ['ctr', '-n', 'k8s.io', 'images', 'import', '-'], {input: fs.readFileSync(file)})
    expect(imported.code, imported.stderr).toBe(0)
    await createNamespace(fb, 'ctrd')
    await createPod(fb, 'ctrd', 'x2', n2.name, 'local/fix-ctrd:1.0')
    await createPod(fb, 'ctrd', 'x3', n3.name, 'local/fix-ctrd:1.0')
    await kubelet.syncNow()
    const run = await cli(['fix', '--kubeconfig', fb.kubeconfig, '-n', 'ctrd', '--source', 'containerd', '--containerd-address', n1.hostSocketPath,
      '--timeout', '20s', '--json', ...sshArgs()])
    expect(run.code, run.stdout + run.stderr).toBe(0)
    const result = JSON.parse(run.stdout) as {transfers: {node: string; push: {status: string; sentBytes: number}}[]}
    expect(result.transfers.map(t => t.node).sort()).toEqual([n2.name, n3.name])
    for (const t of result.transfers) expect(t.push).toMatchObject({status: 'pushed'})
    expect((await podStatus(fb, 'ctrd', 'x2')).phase).toBe('Running')
    expect((await podStatus(fb, 'ctrd', 'x3')).phase).toBe('Running')
  })

  it('an unscheduled pod is reported; with --wait-scheduled fix waits for its node, then repairs it', async () => {
    const {bed} = fb
    const [n1, n2, n3] = bed.nodes
    const image = 'docker.io/local/fix-sched:1.0'
    const {file} = await archive(image)
    await createNamespace(fb, 'sched')
    await createPod(fb, 'sched', 'later', undefined, 'local/fix-sched:1.0')
    const client = KubeClient.load({kubeconfig: fb.kubeconfig, namespace: 'sched'})
    const now = await fix({client, source: {kind: 'archive', path: file}, ssh: ssh(), timeoutMs: 5000})
    expect(now.ok).toBe(false)
    expect(now.transfers).toEqual([])
    expect(now.diagnoses).toMatchObject([{kind: 'unscheduled', pod: 'later'}])
    expect(now.rows).toMatchObject([{pod: 'later', node: '<none>', action: 'not pushed', result: 'not scheduled'}])

    const waiting = fix({client, source: {kind: 'archive', path: file}, ssh: ssh(), timeoutMs: 20_000, waitScheduled: true})
    await new Promise(r => setTimeout(r, 1000))
    await fb.cluster.bindPod('sched', 'later', n3.name)
    const result = await waiting
    expect(result.diagnoses).toEqual([])
    expect(result.transfers.map(t => `${t.node}:${t.push?.status}`)).toEqual([`${n3.name}:pushed`])
    expect(result.rows).toMatchObject([{pod: 'later', node: n3.name, action: 'pushed', result: 'Running', ok: true}])
    expect(await nodeImages(bed, n1)).not.toContain(image)
    expect(await nodeImages(bed, n2)).not.toContain(image)
  })
})
