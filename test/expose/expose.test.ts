// sideload expose against the real kube-apiserver (its NodePort allocator, its validation, its RBAC),
// as manifests/rbac.yaml's service account; the kubelet stand-in reports the pods Running.
import {spawn} from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {KubeClient} from '../../src/kube/client.js'
import {KubeError} from '../../src/kube/errors.js'
import {EXPOSE_LABEL, ExposeError, expose, serviceNameFor, exposeLabelValue, unexpose} from '../../src/ops/expose.js'
import {type RealApiServer, freePort, startRealApiServer} from '../kube-real/apiserver.js'
import {type Kubelet, startKubelet} from '../kube-real/kubelet.js'
import {type JsonObject, Rest, corePath, obj} from '../kube-real/rest.js'

const NODES = [
  {name: 'slbt-expose-b', ip: '198.18.251.12', containerRuntimeVersion: 'containerd://2.3.7'},
  {name: 'slbt-expose-a', ip: '198.18.251.11', containerRuntimeVersion: 'containerd://2.3.7'},
]
const BIN = path.resolve(import.meta.dirname, '..', '..', 'bin', 'run.js')

describe('sideload expose', () => {
  let server: RealApiServer
  let admin: Rest
  let kubelet: Kubelet
  let kubeconfig: string
  let client: KubeClient
  const images = new Set(['docker.io/local/app:1.0'])

  const makePod = async (name: string, opts: {labels?: Record<string, string>; node?: string; image?: string; ports?: number[]; pullPolicy?: string} = {}): Promise<void> => {
    const container: JsonObject = {name: 'main', image: opts.image ?? 'local/app:1.0'}
    if (opts.pullPolicy) container.imagePullPolicy = opts.pullPolicy
    if (opts.ports) container.ports = opts.ports.map(p => ({containerPort: p}))
    const metadata: JsonObject = {name}
    if (opts.labels) metadata.labels = opts.labels
    await admin.create(corePath('pods', 'default'), {apiVersion: 'v1', kind: 'Pod', metadata,
      spec: {nodeName: opts.node ?? NODES[0].name, containers: [container]}})
    await kubelet.syncNow()
  }
  const podLabels = async (name: string): Promise<Record<string, string>> =>
    obj(obj((await admin.get(corePath('pods', 'default', name))).metadata).labels) as Record<string, string>
  const service = (name: string): Promise<JsonObject | undefined> => admin.tryGet(corePath('services', 'default', name))
  const serviceSpec = async (name: string): Promise<JsonObject> => obj((await admin.get(corePath('services', 'default', name))).spec)
  const selected = async (selector: Record<string, string>): Promise<string[]> =>
    (await admin.list(corePath('pods', 'default'), {labelSelector: Object.entries(selector).map(([k, v]) => `${k}=${v}`).join(',')}))
      .items.map(p => String(obj(p.metadata).name))

  beforeAll(async () => {
    server = await startRealApiServer()
    admin = new Rest({url: server.url, caPath: server.caPath, certPath: server.adminCert.certPath, keyPath: server.adminCert.keyPath})
    kubelet = await startKubelet({server, nodes: NODES, resyncMs: 60_000, hasImage: async (_node, ref) => images.has(ref)})
    kubeconfig = (await server.serviceAccountKubeconfig()).kubeconfigPath
    client = KubeClient.load({kubeconfig})
  }, 60_000)
  afterAll(async () => {
    await kubelet?.stop()
    admin?.close()
    await server?.stop()
  })

  it('labels an unlabelled pod and selects on that label only; prints the pod\'s node first', async () => {
    await makePod('centos-stream-8', {node: NODES[0].name})
    const r = await expose({kubeconfig, pod: 'centos-stream-8', port: 22, sshUser: 'admin'})
    expect(r.action).toBe('created')
    expect(r.selector).toEqual({[EXPOSE_LABEL]: 'centos-stream-8'})
    expect(r.addedLabel).toEqual({key: EXPOSE_LABEL, value: 'centos-stream-8'})
    expect(await podLabels('centos-stream-8')).toEqual({[EXPOSE_LABEL]: 'centos-stream-8'})
    const spec = await serviceSpec('centos-stream-8')
    expect(spec.type).toBe('NodePort')
    expect(spec.selector).toEqual({[EXPOSE_LABEL]: 'centos-stream-8'})
    expect(r.nodePort).toBe((spec.ports as JsonObject[])[0].nodePort)
    expect(r.nodePort).toBeGreaterThanOrEqual(30000)
    expect(r.endpoints.map(e => `${e.node} ${e.address}:${e.port} ${e.podNode}`)).toEqual([
      `slbt-expose-b 198.18.251.12:${r.nodePort} true`,
      `slbt-expose-a 198.18.251.11:${r.nodePort} false`,
    ])
    expect(r.endpoints[0].ssh).toBe(`ssh admin@198.18.251.12 -p ${r.nodePort}`)
  })

  it('selects one replica alone when its labels match its siblings', async () => {
    await makePod('web-1', {labels: {app: 'web'}})
    await makePod('web-2', {labels: {app: 'web'}})
    await admin.patch(corePath('pods', 'default', 'web-1'), {metadata: {ownerReferences: [
      {apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-5d8f', uid: '0f6e3c9a-1b2c-4d5e-8f90-123456789abc', controller: true}]}}, 'merge')
    const r = await expose({client, pod: 'web-1', port: 80})
    expect(r.warnings).toEqual(['pod web-1 is managed by ReplicaSet web-5d8f: a replacement pod will not carry sideload.dev/expose=web-1, so run expose again for the new pod'])
    expect(r.selector).toEqual({[EXPOSE_LABEL]: 'web-1'})
    expect(await selected((await serviceSpec('web-1')).selector as Record<string, string>)).toEqual(['web-1'])
    expect(await podLabels('web-1')).toEqual({app: 'web', [EXPOSE_LABEL]: 'web-1'})
    expect(await podLabels('web-2')).toEqual({app: 'web'})
  })

  it('uses the pod\'s own labels when they select it alone, and the one declared port as target', async () => {
    await makePod('db-0', {labels: {app: 'db', role: 'primary'}, ports: [5432]})
    const r = await expose({client, pod: 'db-0', port: 15432})
    expect(r.selector).toEqual({app: 'db', role: 'primary'})
    expect(r.addedLabel).toBeUndefined()
    expect(r.targetPort).toBe(5432)
    expect(((await serviceSpec('db-0')).ports as JsonObject[])[0]).toMatchObject({port: 15432, targetPort: 5432, protocol: 'TCP'})
    expect(await podLabels('db-0')).toEqual({app: 'db', role: 'primary'})
  })

  it('picks the target port among declared ports by protocol, and asks when it cannot', async () => {
    await admin.create(corePath('pods', 'default'), {apiVersion: 'v1', kind: 'Pod', metadata: {name: 'dns-0', labels: {app: 'dns'}}, spec: {nodeName: NODES[0].name,
      containers: [{name: 'main', image: 'local/app:1.0', ports: [{containerPort: 5353, protocol: 'UDP', name: 'dns'}, {containerPort: 8080, name: 'metrics'}, {containerPort: 9090, name: 'admin'}]}]}})
    await kubelet.syncNow()
    const udp = await expose({client, pod: 'dns-0', port: 53, protocol: 'UDP'})
    expect(udp.targetPort).toBe(5353)
    expect(((await serviceSpec('dns-0')).ports as JsonObject[])[0]).toMatchObject({port: 53, targetPort: 5353, protocol: 'UDP'})
    const ambiguous = await expose({client, pod: 'dns-0', port: 80, name: 'dns-0-tcp'}).catch((e: unknown) => e)
    expect((ambiguous as Error).message).toBe('pod dns-0 declares several TCP ports (8080/TCP (metrics) in main, 9090/TCP (admin) in main) and none is 80: pass --target-port')
    const named = await expose({client, pod: 'dns-0', port: 80, name: 'dns-0-tcp', targetPort: 'metrics'})
    expect(named.targetPort).toBe('metrics')
    const unknown = await expose({client, pod: 'dns-0', port: 80, name: 'dns-0-x', targetPort: 'nope'}).catch((e: unknown) => e)
    expect((unknown as Error).message).toBe('pod dns-0 declares no port named "nope" (--target-port)')
  })

  it('is idempotent: a re-run changes nothing, a new target port updates in place and keeps the node port', async () => {
    const first = await expose({client, pod: 'centos-stream-8', port: 22})
    expect(first.action).toBe('unchanged')
    const rv = obj((await service('centos-stream-8'))?.metadata).resourceVersion
    const again = await expose({client, pod: 'centos-stream-8', port: 22})
    expect(again.action).toBe('unchanged')
    expect(obj((await service('centos-stream-8'))?.metadata).resourceVersion).toBe(rv)
    const changed = await expose({client, pod: 'centos-stream-8', port: 22, targetPort: 2222})
    expect(changed.action).toBe('updated')
    expect(changed.nodePort).toBe(first.nodePort)
    expect(((await serviceSpec('centos-stream-8')).ports as JsonObject[])[0]).toMatchObject({port: 22, targetPort: 2222, nodePort: first.nodePort})
  })

  it('pins a node port, and explains a taken or out-of-range one', async () => {
    await makePod('pinned', {labels: {app: 'pinned'}})
    const r = await expose({client, pod: 'pinned', port: 22, nodePort: 30222})
    expect(r.nodePort).toBe(30222)

    await makePod('second', {labels: {app: 'second'}})
    const taken = await expose({client, pod: 'second', port: 22, nodePort: 30222}).catch((e: unknown) => e)
    expect(taken).toBeInstanceOf(ExposeError)
    expect((taken as Error).message).toContain('node port 30222 is already allocated by service default/pinned')
    expect((taken as Error).message).toContain('spec.ports[0].nodePort: Invalid value: 30222: provided port is already allocated')
    expect((taken as Error).message).toContain('choose another --node-port')
    expect(await service('second')).toBeUndefined()

    const range = await expose({client, pod: 'second', port: 22, nodePort: 2222}).catch((e: unknown) => e)
    expect((range as Error).message).toContain("--node-port 2222 is outside the cluster's node port range")
    expect((range as Error).message).toContain('The range of valid ports is 30000-32767')
    const bad = await expose({client, pod: 'second', port: 70000}).catch((e: unknown) => e)
    expect((bad as Error).message).toBe('--port 70000 is not a port: use a number from 1 to 65535')
  })

  it('--delete removes the service and only the label it added', async () => {
    const r = await unexpose({client, pod: 'web-1'})
    expect(r).toMatchObject({serviceDeleted: true, labelRemoved: EXPOSE_LABEL})
    expect(await service('web-1')).toBeUndefined()
    expect(await podLabels('web-1')).toEqual({app: 'web'})
    const db = await unexpose({client, pod: 'db-0'})
    expect(db).toMatchObject({serviceDeleted: true})
    expect(db.labelRemoved).toBeUndefined()
    expect(await podLabels('db-0')).toEqual({app: 'db', role: 'primary'})
    const none = await unexpose({client, pod: 'web-1'})
    expect(none.serviceDeleted).toBe(false)
  })

  it('names a missing pod, a pod that is not running, and a service it does not own', async () => {
    const missing = await expose({client, pod: 'nope', port: 22}).catch((e: unknown) => e)
    expect(missing).toBeInstanceOf(KubeError)
    expect((missing as KubeError).message).toBe('pod "nope" in namespace "default" not found (pods "nope" not found)')
    expect((missing as KubeError).hint).toMatch(/^check the name and the namespace/)

    await makePod('stuck', {image: 'local/missing:1.0', pullPolicy: 'Never'})
    const stuck = await expose({client, pod: 'stuck', port: 22}).catch((e: unknown) => e)
    expect(stuck).toBeInstanceOf(ExposeError)
    expect((stuck as Error).message).toContain('pod stuck is Pending, not Running (container main: ErrImageNeverPull: Container image "local/missing:1.0" is not present with pull policy of Never)')
    expect((stuck as Error).message).toContain('run `sideload fix`')
    const forced = await expose({client, pod: 'stuck', port: 22, allowNotRunning: true})
    expect(forced.action).toBe('created')

    await admin.create(corePath('services', 'default'), {apiVersion: 'v1', kind: 'Service', metadata: {name: 'foreign'}, spec: {ports: [{port: 1}]}})
    await makePod('foreign', {labels: {app: 'foreign'}})
    const foreign = await expose({client, pod: 'foreign', port: 22}).catch((e: unknown) => e)
    expect((foreign as Error).message).toContain('service default/foreign already exists and was not created by sideload; pass --name')
  })

  it('says which right is missing and where the RBAC manifest is', async () => {
    // a client-certificate user bound by a Role to pods only, created as the admin with kubectl
    const kubeconfigPath = await server.userWithRole('pods-only', {verbs: ['get', 'list', 'patch'], resources: ['pods']})
    const err = await expose({kubeconfig: kubeconfigPath, pod: 'centos-stream-8', port: 22}).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(KubeError)
    expect((err as Error).message).toContain('not allowed to get service "centos-stream-8" in namespace "default": services "centos-stream-8" is forbidden: User "pods-only" cannot get resource "services"')
    expect((err as KubeError).hint).toContain('manifests/rbac.yaml')
  })

  it('names the server it cannot reach', async () => {
    // a loopback port nobody listens on (the kernel's pick, released)
    const deadUrl = `https://127.0.0.1:${await freePort()}`
    const text = fs.readFileSync(server.adminKubeconfigPath, 'utf8').replace(server.url, deadUrl)
    const deadKubeconfig = path.join(server.dir, 'dead.kubeconfig')
    fs.writeFileSync(deadKubeconfig, text)
    const refused = await expose({kubeconfig: deadKubeconfig, pod: 'x', port: 22}).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(KubeError)
    expect((refused as Error).message).toContain(`cannot reach the Kubernetes API server ${deadUrl} (connection refused) to get pod "x"`)
  })

  it('derives valid service names and label values from long pod names', () => {
    const long = `a${'b'.repeat(80)}.example`
    expect(serviceNameFor('centos-stream-8')).toBe('centos-stream-8')
    expect(serviceNameFor('0abc.def')).toMatch(/^abc-def-[0-9a-f]{8}$/)
    expect(serviceNameFor(long).length).toBeLessThanOrEqual(63)
    expect(exposeLabelValue(long).length).toBeLessThanOrEqual(63)
    expect(exposeLabelValue(long)).toMatch(/^a[b]+-[0-9a-f]{8}$/)
  })

  it('the CLI prints JSON, and --until-exit removes the service on SIGINT', async () => {
    await makePod('until', {node: NODES[1].name})
    const child = spawn(process.execPath, [BIN, 'expose', 'until', '--port', '22', '--until-exit', '--json', '--kubeconfig', kubeconfig],
      {stdio: ['ignore', 'pipe', 'pipe']})
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    const exited = new Promise<number>(resolve => child.on('close', c => resolve(c ?? -1)))
    const end = Date.now() + 20_000
    while (!out.includes('\n')) {
      if (Date.now() > end) throw new Error(`no output from the CLI: ${err}`)
      await new Promise(r => setTimeout(r, 50))
    }
    const result = JSON.parse(out.split('\n')[0]) as {service: string; nodePort: number; endpoints: {node: string; podNode: boolean}[]}
    expect(result.service).toBe('until')
    expect(result.endpoints[0]).toMatchObject({node: NODES[1].name, podNode: true})
    expect(await service('until')).toBeDefined()
    expect(await podLabels('until')).toEqual({[EXPOSE_LABEL]: 'until'})
    child.kill('SIGINT')
    expect(await exited).toBe(0)
    expect(JSON.parse(out.trim().split('\n')[1])).toMatchObject({serviceDeleted: true, labelRemoved: EXPOSE_LABEL, signal: 'SIGINT'})
    expect(await service('until')).toBeUndefined()
    expect(await podLabels('until')).toEqual({})
  })
})
