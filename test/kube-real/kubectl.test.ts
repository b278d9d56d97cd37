// The field's kubectl commands, run unchanged with the real Debian kubectl 1.20 against the real
// kube-apiserver and the kubelet stand-in (with its node's identity).
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {type RealApiServer, startRealApiServer} from './apiserver.js'
import {type Kubelet, bindPod, startKubelet} from './kubelet.js'
import {REPO_ROOT, kubectl, kubectlSpawn} from './kubectl.js'
import {Rest, corePath, obj} from './rest.js'

const NODE = 'kt-kubectl-node-1'
const NODE_IP = '198.18.250.11'
const IMAGE_REF = 'docker.io/local/centos-stream-8-systemd:latest'
const MANIFEST = path.join(REPO_ROOT, 'manifests', 'example-pod.yaml')

describe('the field commands with the real kubectl', () => {
  let server: RealApiServer
  let kubelet: Kubelet
  let kc: string
  // the "node's containerd" of this file: the kubelet stand-in asks it whether the image is there
  const images = new Set<string>()

  beforeAll(async () => {
    server = await startRealApiServer()
    kc = server.adminKubeconfigPath
    kubelet = await startKubelet({
      server, nodes: [{name: NODE, ip: NODE_IP, containerRuntimeVersion: 'containerd://2.3.7'}], resyncMs: 400, pullBackoffMs: 1000,
      hasImage: async (node, ref) => node === NODE && images.has(ref),
    })
  })
  afterAll(async () => {
    await kubelet?.stop()
    await server?.stop()
  })

  it('kubectl apply creates the example pod (validation on, as the field runs it)', async () => {
    const r = await kubectl(kc, ['apply', '-f', MANIFEST])
    expect(r.stderr).toBe('')
    expect(r.stdout.trim()).toBe('pod/centos-stream-8 created')
    const again = await kubectl(kc, ['apply', '-f', MANIFEST])
    expect(again.stdout.trim()).toBe('pod/centos-stream-8 unchanged')
    const pod = await kubectl(kc, ['get', 'pod', 'centos-stream-8', '-o', 'json'])
    expect(pod.stdout).toContain('kubectl.kubernetes.io/last-applied-configuration')
  })

  it('kubectl get pods -o wide shows ErrImageNeverPull and the node', async () => {
    await bindPod(server, 'default', 'centos-stream-8', NODE)
    await kubelet.syncNow()
    const r = await kubectl(kc, ['get', 'pods', '-o', 'wide'])
    expect(r.code).toBe(0)
    const [header, row] = r.stdout.trim().split('\n')
    expect(header.split(/\s{2,}/)).toEqual(['NAME', 'READY', 'STATUS', 'RESTARTS', 'AGE', 'IP', 'NODE', 'NOMINATED NODE', 'READINESS GATES'])
    const cells = row.split(/\s+/)
    expect(cells[0]).toBe('centos-stream-8')
    expect(cells[1]).toBe('0/1')
    expect(cells[2]).toBe('ErrImageNeverPull')
    expect(cells[5]).toMatch(/^10\.244\.\d+\.\d+$/)
    expect(cells[6]).toBe(NODE)
  })

  it('kubectl expose refuses the unlabelled pod, then works after kubectl label', async () => {
    const refused = await kubectl(kc, ['expose', 'pods', 'centos-stream-8', '--type=NodePort', '--port=22'])
    expect(refused.code).not.toBe(0)
    expect(refused.stderr).toContain('the pod has no labels and cannot be exposed')

    const labeled = await kubectl(kc, ['label', 'pods', 'centos-stream-8', 'run=dev'])
    expect(labeled.stdout.trim()).toBe('pod/centos-stream-8 labeled')
    const exposed = await kubectl(kc, ['expose', 'pods', 'centos-stream-8', '--type=NodePort', '--port=22'])
    expect(exposed.stderr).toBe('')
    expect(exposed.stdout.trim()).toBe('service/centos-stream-8 exposed')

    const svc = await kubectl(kc, ['get', 'svc', '-o', 'wide'])
    const line = svc.stdout.split('\n').find(l => l.startsWith('centos-stream-8 '))
    expect(line).toBeDefined()
    const cells = (line ?? '').split(/\s+/)
    expect(cells[1]).toBe('NodePort')
    expect(cells[2]).toMatch(/^10\.96\.\d+\.\d+$/)
    expect(cells[3]).toBe('<none>')
    expect(cells[4]).toMatch(/^22:3\d{4}\/TCP$/)
    expect(cells[6]).toBe('run=dev')
    expect(svc.stdout).toMatch(/^kubernetes\s+ClusterIP\s+10\.96\.0\.1\s+<none>\s+443\/TCP/m)

    // a second expose is an AlreadyExists from the server
    const twice = await kubectl(kc, ['expose', 'pods', 'centos-stream-8', '--type=NodePort', '--port=22'])
    expect(twice.stderr).toContain('Error from server (AlreadyExists): services "centos-stream-8" already exists')
  })

  it('kubectl get events shows the kubelet warnings with growing counts', async () => {
    await kubelet.syncNow()
    await kubelet.syncNow()
    const r = await kubectl(kc, ['get', 'events', '-o', 'wide'])
    expect(r.code).toBe(0)
    const lines = r.stdout.split('\n')
    expect(lines[0].split(/\s{2,}/)).toEqual(['LAST SEEN', 'TYPE', 'REASON', 'OBJECT', 'SUBOBJECT', 'SOURCE', 'MESSAGE', 'FIRST SEEN', 'COUNT', 'NAME'])
    const never = lines.find(l => /\sErrImageNeverPull\s/.test(l))
    expect(never).toMatch(/Warning\s+ErrImageNeverPull\s+pod\/centos-stream-8\s+spec\.containers\{centos-stream-8\}\s+kubelet, kt-kubectl-node-1\s+Container image "local\/centos-stream-8-systemd:latest" is not present with pull policy of Never/)
    const count = Number((never ?? '').trim().split(/\s+/).at(-2))
    expect(count).toBeGreaterThanOrEqual(3)
    expect(lines.some(l => /Warning\s+Failed\s+pod\/centos-stream-8.*Error: ErrImageNeverPull/.test(l))).toBe(true)
    expect(lines.some(l => /Normal\s+Scheduled\s+pod\/centos-stream-8.*Successfully assigned default\/centos-stream-8 to kt-kubectl-node-1/.test(l))).toBe(true)

    const narrow = await kubectl(kc, ['get', 'events', '--field-selector', 'involvedObject.name=centos-stream-8,reason=ErrImageNeverPull'])
    expect(narrow.stdout.trim().split('\n')).toHaveLength(2)
  })

  it('kubectl get pods -w sees the pod go Running once the image is on the node', async () => {
    const watch = kubectlSpawn(kc, ['get', 'pods', '-w'])
    let out = ''
    watch.stdout.on('data', (d: Buffer) => (out += d.toString()))
    try {
      await waitFor(() => out.includes('ErrImageNeverPull'), 10_000)
      images.add(IMAGE_REF)
      await waitFor(() => /centos-stream-8\s+1\/1\s+Running/.test(out), 10_000)
    } finally {
      watch.kill('SIGTERM')
    }
    const lines = out.trim().split('\n')
    expect(lines[0]).toMatch(/^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE$/)
    expect(lines.filter(l => l.startsWith('NAME'))).toHaveLength(1)
    const events = await kubectl(kc, ['get', 'events'])
    expect(events.stdout).toMatch(/Normal\s+Pulled\s+pod\/centos-stream-8\s+Container image "local\/centos-stream-8-systemd:latest" already present on machine/)
    expect(events.stdout).toMatch(/Normal\s+Started\s+pod\/centos-stream-8\s+Started container centos-stream-8/)
  })

  it('kubectl get nodes -o wide shows the registered node', async () => {
    const r = await kubectl(kc, ['get', 'nodes', '-o', 'wide'])
    expect(r.stdout).toMatch(new RegExp(`^${NODE}\\s+Ready\\s+<none>\\s+\\S+\\s+v1\\.36\\.\\d+\\s+${NODE_IP.replace(/\./g, '\\.')}\\s+<none>\\s+Debian GNU/Linux 12 \\(bookworm\\)\\s+.+?\\s+containerd://2\\.3\\.7`, 'm'))
  })

  it('a token without rights gets the real Forbidden message', async () => {
    const kubeconfigPath = await server.userWithRole('viewer', {verbs: ['get', 'list'], resources: ['pods']})
    const ok = await kubectl(kubeconfigPath, ['get', 'pods'])
    expect(ok.code).toBe(0)
    const r = await kubectl(kubeconfigPath, ['label', 'pods', 'centos-stream-8', 'team=a'])
    expect(r.stderr).toContain('Error from server (Forbidden): pods "centos-stream-8" is forbidden: User "viewer" cannot patch resource "pods" in API group "" in the namespace "default"')
  })
})

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`condition not met within ${ms} ms`)
    await new Promise(r => setTimeout(r, 50))
  }
}

describe('init containers with the kubelet stand-in', () => {
  it('shows Init:ErrImageNeverPull, then PodInitializing is passed once the init image is there', async () => {
    const server = await startRealApiServer()
    const kc = server.adminKubeconfigPath
    const admin = new Rest({url: server.url, caPath: server.caPath, certPath: server.adminCert.certPath, keyPath: server.adminCert.keyPath})
    const images = new Set<string>(['docker.io/local/app:1.0'])
    const kubelet = await startKubelet({server, nodes: [{name: 'kt-init-1', ip: '198.18.250.21', containerRuntimeVersion: 'containerd://2.3.7'}], resyncMs: 300,
      hasImage: async (_n, ref) => images.has(ref)})
    try {
      await admin.create(corePath('pods', 'default'), {metadata: {name: 'with-init'}, spec: {nodeName: 'kt-init-1',
        initContainers: [{name: 'prepare', image: 'local/prepare:1.0', imagePullPolicy: 'Never'}],
        containers: [{name: 'app', image: 'local/app:1.0'}]}})
      await kubelet.syncNow()
      const stuck = await kubectl(kc, ['get', 'pods'])
      expect(stuck.stdout).toMatch(/^with-init\s+0\/1\s+Init:ErrImageNeverPull\s+0\s+/m)
      const pod = await admin.get(corePath('pods', 'default', 'with-init'))
      expect(JSON.stringify(obj(pod.status))).toContain('"reason":"PodInitializing"')
      expect(JSON.stringify(obj(pod.status))).toContain('containers with incomplete status: [prepare]')
      images.add('docker.io/local/prepare:1.0')
      await kubelet.syncNow()
      const running = await kubectl(kc, ['get', 'pods'])
      expect(running.stdout).toMatch(/^with-init\s+1\/1\s+Running\s+0\s+/m)
    } finally {
      await kubelet.stop()
      admin.close()
      await server.stop()
    }
  })
})
