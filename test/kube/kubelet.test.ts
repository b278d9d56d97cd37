// The kubelet stand-in against a real bed node: its truth is the node's own containerd.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {CoreV1Api, KubeConfig, type V1Pod} from '@kubernetes/client-node'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {type Bed, startBed} from '../bed/bed.js'
import {makeImage} from '../bed/images.js'
import {type ApiServer, startApiServer} from './apiserver.js'
import {type Kubelet, bindPod, normalizeImageRef, startKubelet} from './kubelet.js'
import {REPO_ROOT, kubectl} from './kubectl.js'

const IMAGE = 'local/centos-stream-8-systemd:latest'

describe('kubelet stand-in on a real bed node', () => {
  let bed: Bed
  let server: ApiServer
  let kubelet: Kubelet
  let core: CoreV1Api
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'slbt-kubelet-'))
  const checks: string[] = []

  beforeAll(async () => {
    bed = await startBed({name: 'slbt-kubelet', nodes: 1})
    server = await startApiServer()
    const node = bed.nodes[0]
    kubelet = startKubelet({
      store: server.store, nodes: [{name: node.name, ip: node.ip}], resyncMs: 500,
      hasImage: async (nodeName, ref) => {
        checks.push(`${nodeName} ${ref}`)
        const names = (await bed.ctr(node, ['images', 'ls', '-q'])).split('\n').map(s => s.trim())
        return names.includes(ref)
      },
    })
    const kc = new KubeConfig()
    kc.loadFromFile(server.kubeconfigPath)
    core = kc.makeApiClient(CoreV1Api)
  })
  afterAll(async () => {
    await kubelet?.stop()
    await server?.stop()
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

  it('keeps the pod in ErrImageNeverPull until the image is imported into the node, then Running', async () => {
    const node = bed.nodes[0]
    const registered = await core.readNode({name: node.name})
    expect(registered.status?.addresses).toContainEqual({type: 'InternalIP', address: node.ip})
    expect(registered.status?.nodeInfo?.containerRuntimeVersion).toBe('containerd://1.6.20')
    expect(registered.status?.nodeInfo?.architecture).toBe('amd64')

    const applied = await kubectl(server.kubeconfigPath, ['apply', '-f', path.join(REPO_ROOT, 'manifests', 'example-pod.yaml')])
    expect(applied.stdout.trim()).toBe('pod/centos-stream-8 created')
    bindPod(server.store, 'default', 'centos-stream-8', node.name)

    const stuck = await waitForPod(core, p => p.status?.containerStatuses?.[0]?.state?.waiting?.reason === 'ErrImageNeverPull')
    expect(stuck.status?.containerStatuses?.[0]?.state?.waiting?.message)
      .toBe(`Container image "${IMAGE}" is not present with pull policy of Never`)
    expect(stuck.status?.phase).toBe('Pending')
    expect(stuck.status?.hostIP).toBe(node.ip)
    // several re-syncs later it is still stuck, and the warning's count grows
    await new Promise(r => setTimeout(r, 2000))
    const events = await core.listNamespacedEvent({namespace: 'default', fieldSelector: 'involvedObject.name=centos-stream-8,reason=ErrImageNeverPull'})
    expect(events.items).toHaveLength(1)
    expect(events.items[0].count).toBeGreaterThanOrEqual(3)
    expect((await core.readNamespacedPod({name: 'centos-stream-8', namespace: 'default'})).status?.phase).toBe('Pending')
    expect(checks).toContain(`${node.name} docker.io/local/centos-stream-8-systemd:latest`)

    const archive = path.join(tmp, 'image.tar')
    await makeImage({name: IMAGE, layers: [{sizeBytes: 4096, seed: 'kubelet'}], format: 'oci', out: archive})
    const imported = await bed.exec(node, ['ctr', '-n', 'k8s.io', 'images', 'import', '-'], {input: fs.readFileSync(archive)})
    expect(imported.code, imported.stderr).toBe(0)

    const running = await waitForPod(core, p => p.status?.phase === 'Running', 5000)
    expect(running.status?.containerStatuses?.[0]).toMatchObject({ready: true, started: true})
    expect(running.status?.conditions?.find(c => c.type === 'Ready')?.status).toBe('True')
    const pulled = await core.listNamespacedEvent({namespace: 'default', fieldSelector: 'involvedObject.name=centos-stream-8,reason=Pulled'})
    expect(pulled.items[0]?.message).toBe(`Container image "${IMAGE}" already present on machine`)
  })

  it('with IfNotPresent and no image: ErrImagePull then ImagePullBackOff', async () => {
    const node = bed.nodes[0]
    await core.createNamespacedPod({namespace: 'default', body: {
      metadata: {name: 'absent'}, spec: {nodeName: node.name, containers: [{name: 'c', image: 'local/absent:1.0'}]},
    }})
    const reasons = new Set<string>()
    await waitForPod(core, p => {
      const r = p.status?.containerStatuses?.[0]?.state?.waiting?.reason
      if (r) reasons.add(r)
      return r === 'ImagePullBackOff'
    }, 5000, 'absent')
    expect([...reasons]).toContain('ErrImagePull')
  })
})

async function waitForPod(core: CoreV1Api, cond: (p: V1Pod) => boolean, ms = 5000, name = 'centos-stream-8'): Promise<V1Pod> {
  const end = Date.now() + ms
  for (;;) {
    const p = await core.readNamespacedPod({name, namespace: 'default'})
    if (cond(p)) return p
    if (Date.now() > end) throw new Error(`pod ${name} did not reach the state; last status ${JSON.stringify(p.status)}`)
    await new Promise(r => setTimeout(r, 50))
  }
}
