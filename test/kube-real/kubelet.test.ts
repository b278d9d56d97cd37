// The kubelet and scheduler stand-ins as clients of the real API server, on real bed nodes: their
// truth is each node's own containerd, their rights those the Node authorizer gives a node.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {type Bed, startBed} from '../bed/bed.js'
import {makeImage} from '../bed/images.js'
import {REPO_ROOT, kubectl} from './kubectl.js'
import {type Cluster, startCluster} from './cluster.js'
import {normalizeImageRef} from './kubelet.js'
import {Rest, RestError, arr, corePath, obj, str} from './rest.js'

const IMAGE = 'local/centos-stream-8-systemd:latest'

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms = 8000): Promise<T> {
  const end = Date.now() + ms
  for (;;) {
    const v = await probe()
    if (v !== undefined) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(r => setTimeout(r, 50))
  }
}

describe('kubelet stand-in with a node identity, on the real API server', () => {
  let bed: Bed
  let cluster: Cluster
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'slbt-kubelet-'))

  beforeAll(async () => {
    bed = await startBed({name: 'slbt-kubelet', nodes: 2})
    cluster = await startCluster(bed, {resyncMs: 500, pullBackoffMs: 1000})
  })
  afterAll(async () => {
    await cluster?.stop()
    await bed?.down()
    fs.rmSync(tmp, {recursive: true, force: true})
  })

  it('normalises image names like the CRI', () => {
    expect(normalizeImageRef('nginx')).toBe('docker.io/library/nginx:latest')
    expect(normalizeImageRef(IMAGE)).toBe('docker.io/local/centos-stream-8-systemd:latest')
    expect(normalizeImageRef('registry.local:5000/a/b')).toBe('registry.local:5000/a/b:latest')
    expect(normalizeImageRef('localhost/x:1')).toBe('localhost/x:1')
    expect(normalizeImageRef(`x@sha256:${'0'.repeat(64)}`)).toBe(`docker.io/library/x@sha256:${'0'.repeat(64)}`)
  })

  it('registers each node as that node; a node may not read a pod bound to another', async () => {
    const [n1, n2] = bed.nodes
    const node = await cluster.admin.get(corePath('nodes', undefined, n1.name))
    expect(arr(obj(node.status).addresses)).toContainEqual({type: 'InternalIP', address: n1.ip})
    expect(str(obj(obj(node.status).nodeInfo).containerRuntimeVersion)).toMatch(/^containerd:\/\/(1\.6\.|2\.)/)
    expect(arr(obj(node.spec).taints)).toEqual([])
    // the server, not us, decides: node 1's identity is refused node 2's pod
    await cluster.createPod('default', 'on-n2', n2.name, 'local/other:1.0')
    const cert = cluster.server.clientCert(`system:node:${n1.name}`, ['system:nodes'])
    const asN1 = new Rest({url: cluster.server.url, caPath: cluster.server.caPath, certPath: cert.certPath, keyPath: cert.keyPath})
    try {
      const err = await asN1.get(corePath('pods', 'default', 'on-n2')).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(RestError)
      expect((err as RestError).status).toBe(403)
      expect((err as RestError).message).toContain(`User "system:node:${n1.name}" cannot get resource "pods"`)
    } finally {
      asN1.close()
    }
  })

  it('the field pod: scheduled by Binding, ErrImageNeverPull until the image is in the node\'s containerd, then Running', async () => {
    const node = bed.nodes[0]
    const applied = await kubectl(cluster.server.adminKubeconfigPath, ['apply', '-f', path.join(REPO_ROOT, 'manifests', 'example-pod.yaml')])
    expect(applied.stdout.trim()).toBe('pod/centos-stream-8 created')
    await cluster.bindPod('default', 'centos-stream-8', node.name)
    const bound = await cluster.getPod('default', 'centos-stream-8')
    expect(str(obj(bound?.spec).nodeName)).toBe(node.name)

    await waitFor('ErrImageNeverPull', async () => (await cluster.podStatus('default', 'centos-stream-8')).waiting.includes('ErrImageNeverPull') || undefined)
    const stuck = await cluster.getPod('default', 'centos-stream-8')
    expect(obj(obj(arr(obj(stuck?.status).containerStatuses)[0]?.state).waiting).message)
      .toBe(`Container image "${IMAGE}" is not present with pull policy of Never`)
    expect(obj(stuck?.status).hostIP).toBe(node.ip)
    // re-syncs later it is still stuck, and the warning's count grows; kubectl shows what a user sees
    await new Promise(r => setTimeout(r, 2000))
    const events = await cluster.admin.list(corePath('events', 'default'), {fieldSelector: 'involvedObject.name=centos-stream-8,reason=ErrImageNeverPull'})
    expect(events.items).toHaveLength(1)
    expect(Number(events.items[0].count)).toBeGreaterThanOrEqual(2)
    expect(obj(events.items[0].source)).toEqual({component: 'kubelet', host: node.name})
    const scheduled = await cluster.admin.list(corePath('events', 'default'), {fieldSelector: 'involvedObject.name=centos-stream-8,reason=Scheduled'})
    expect(scheduled.items[0]?.message).toBe(`Successfully assigned default/centos-stream-8 to ${node.name}`)
    const shown = await kubectl(cluster.server.adminKubeconfigPath, ['get', 'pods', '-o', 'wide'])
    expect(shown.stdout).toMatch(new RegExp(`centos-stream-8\\s+0/1\\s+ErrImageNeverPull\\s+0\\s+\\S+\\s+\\S+\\s+${node.name}`))

    const archive = path.join(tmp, 'image.tar')
    await makeImage({name: IMAGE, layers: [{sizeBytes: 4096, seed: 'kubelet'}], format: 'oci', out: archive})
    const imported = await bed.exec(node, ['ctr', '-n', 'k8s.io', 'images', 'import', '-'], {input: fs.readFileSync(archive)})
    expect(imported.code, imported.stderr).toBe(0)
    await waitFor('Running', async () => (await cluster.podStatus('default', 'centos-stream-8')).phase === 'Running' || undefined, 5000)
    const {imageIDs} = await cluster.podStatus('default', 'centos-stream-8')
    expect(imageIDs[0]).toMatch(/^docker\.io\/local\/centos-stream-8-systemd@sha256:[0-9a-f]{64}$/)
  })

  it('with IfNotPresent and no image: ErrImagePull then ImagePullBackOff', async () => {
    await cluster.createPod('default', 'absent', bed.nodes[1].name, 'local/absent:1.0', {policy: 'IfNotPresent'})
    const reasons = new Set<string>()
    await waitFor('ImagePullBackOff', async () => {
      for (const r of (await cluster.podStatus('default', 'absent')).waiting) reasons.add(r)
      return reasons.has('ImagePullBackOff') || undefined
    })
    expect([...reasons]).toContain('ErrImagePull')
  })

  it('confirms a graceful deletion of its pod, as a kubelet does (the pod is gone, not stuck Terminating)', async () => {
    await cluster.createPod('default', 'doomed', bed.nodes[1].name, 'local/absent:1.0')
    const deleted = await kubectl(cluster.server.adminKubeconfigPath, ['delete', 'pod', 'doomed', '--wait=true', '--timeout=20s'])
    expect(deleted.code, deleted.stderr).toBe(0)
    expect(await cluster.getPod('default', 'doomed')).toBeUndefined()
  })
})

describe('the real kube-scheduler with the kubelet stand-in\'s nodes', () => {
  let bed: Bed
  let cluster: Cluster

  beforeAll(async () => {
    bed = await startBed({name: 'slbt-sched', nodes: 2})
    cluster = await startCluster(bed, {resyncMs: 500, scheduler: true})
  })
  afterAll(async () => {
    await cluster?.stop()
    await bed?.down()
  })

  it('binds new pods to the Ready nodes, and the kubelet of that node reports them stuck', async () => {
    for (let i = 0; i < 4; i++) await cluster.createPod('default', `s${i}`, undefined, 'local/sched:1.0')
    const nodes = await waitFor('all four bound', async () => {
      const names = await Promise.all([0, 1, 2, 3].map(async i => str(obj((await cluster.getPod('default', `s${i}`))?.spec).nodeName)))
      return names.every(Boolean) ? names : undefined
    })
    // kube-scheduler spreads them (NodeResourcesBalancedAllocation / PodTopologySpread defaults): both nodes used
    expect(new Set(nodes)).toEqual(new Set(bed.nodes.map(n => n.name)))
    await waitFor('s0 stuck', async () => (await cluster.podStatus('default', 's0')).waiting.includes('ErrImageNeverPull') || undefined)
    const scheduled = await cluster.admin.list('/apis/events.k8s.io/v1/namespaces/default/events', {fieldSelector: 'regarding.name=s0'})
    expect(scheduled.items.map(e => `${str(e.reportingController)} ${str(e.reason)}`)).toContain('default-scheduler Scheduled')
  })
})
