// Kubernetes nodes as push targets (address choice, config overrides, selection) and API failures that
// name the resource and the way out, against the real API server and with the built CLI.
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {KubeClient} from '../../src/kube/client.js'
import {type KubeError, isKubeError} from '../../src/kube/errors.js'
import {fix} from '../../src/ops/fix/index.js'
import {resolveNodeTargets} from '../../src/ops/targets.js'
import {type RealApiServer, startRealApiServer} from '../kube-real/apiserver.js'
import {Rest, corePath} from '../kube-real/rest.js'
import {cli} from './fixture.js'

let server: RealApiServer
let admin: Rest
let kubeconfig: string
let tmp: string

async function node(name: string, addresses: {type: string; address: string}[], labels: Record<string, string> = {}, arch = 'arm64'): Promise<void> {
  // as its kubelet registers it (Node objects keep their status on create)
  await admin.create(corePath('nodes'), {
    metadata: {name, labels: {'kubernetes.io/hostname': name, ...labels}},
    status: {addresses, nodeInfo: {architecture: arch, operatingSystem: 'linux', containerRuntimeVersion: 'containerd://1.6.20'},
      conditions: [{type: 'Ready', status: 'True'}]},
  })
}

describe('node targets and API errors', () => {
  beforeAll(async () => {
    server = await startRealApiServer()
    admin = new Rest({url: server.url, caPath: server.caPath, certPath: server.adminCert.certPath, keyPath: server.adminCert.keyPath})
    kubeconfig = (await server.serviceAccountKubeconfig()).kubeconfigPath
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'slbt-fix-targets-'))
    await node('n-internal', [{type: 'Hostname', address: 'n-internal.lan'}, {type: 'ExternalIP', address: '203.0.113.5'}, {type: 'InternalIP', address: '10.0.0.5'}], {pool: 'gpu'})
    await node('n-external', [{type: 'Hostname', address: 'n-external.lan'}, {type: 'ExternalIP', address: '203.0.113.6'}], {pool: 'gpu'})
    await node('n-hostname', [{type: 'Hostname', address: 'n-hostname.lan'}], {}, 'amd64')
    await admin.create(corePath('pods', 'default'), {metadata: {name: 'on-ext'}, spec: {nodeName: 'n-external', containers: [{name: 'c', image: 'app:1'}]}})
    await admin.create(corePath('pods', 'default'), {metadata: {name: 'pending'}, spec: {containers: [{name: 'c', image: 'app:1'}]}})
  })
  afterAll(async () => {
    admin?.close()
    await server?.stop()
    fs.rmSync(tmp, {recursive: true, force: true})
  })

  it('address: InternalIP, else ExternalIP, else Hostname; platform from nodeInfo; per-node config overrides', async () => {
    const client = KubeClient.load({kubeconfig})
    const config = {defaults: {sshUser: 'admin'}, nodes: {'n-hostname': {address: '192.0.2.9', sshUser: 'core', sshPort: 2222, sshKey: '/keys/core', containerdSocket: '/run/k3s/containerd/containerd.sock'}}}
    const {targets} = await resolveNodeTargets(client, {allNodes: true}, config)
    expect(targets.map(t => [t.name, t.sshTarget])).toEqual([
      ['n-external', 'admin@203.0.113.6'],
      ['n-hostname', 'core@192.0.2.9:2222'],
      ['n-internal', 'admin@10.0.0.5'],
    ])
    expect(targets[2].platform).toEqual({os: 'linux', architecture: 'arm64'})
    expect(targets[1]).toMatchObject({sshKey: '/keys/core', containerdSocket: '/run/k3s/containerd/containerd.sock', platform: {architecture: 'amd64'}})
    // flags win over the config
    const flagged = await resolveNodeTargets(client, {nodes: ['n-hostname']}, config, {sshUser: 'root'})
    expect(flagged.targets.map(t => t.sshTarget)).toEqual(['root@192.0.2.9:2222'])
  })

  it('selection: --node, --pod (its node), --node-selector, the union once each', async () => {
    const client = KubeClient.load({kubeconfig})
    const names = async (sel: Parameters<typeof resolveNodeTargets>[1]) =>
      (await resolveNodeTargets(client, sel, {defaults: {}, nodes: {}})).targets.map(t => t.name)
    expect(await names({pods: ['on-ext']})).toEqual(['n-external'])
    expect(await names({nodeSelector: 'pool=gpu'})).toEqual(['n-external', 'n-internal'])
    expect(await names({nodeSelector: 'pool=gpu', nodes: ['n-hostname', 'n-internal'], pods: ['on-ext']})).toEqual(['n-external', 'n-hostname', 'n-internal'])
    await expect(names({nodeSelector: 'pool=tpu'})).rejects.toThrow(/no node matches --node-selector pool=tpu/)
    await expect(names({pods: ['pending']})).rejects.toThrow(/pod default\/pending is not scheduled/)
    // a --node the cluster does not have is a target of its own that fails, naming the nodes there are
    const {targets} = await resolveNodeTargets(client, {nodes: ['nope', 'n-internal']}, {defaults: {}, nodes: {}})
    expect(targets.map(t => t.name)).toEqual(['n-internal', 'nope'])
    const nope = targets.find(t => t.name === 'nope')?.unavailable as (Error & {hint?: string}) | undefined
    expect(nope?.message).toBe('node nope is not in the cluster')
    expect(nope?.hint).toMatch(/^the cluster's nodes: .*n-internal.* \(kubectl get nodes\)$/)
    expect(targets.find(t => t.name === 'n-internal')?.unavailable).toBeUndefined()
  })

  it('forbidden with a restricted token: names the resource and the RBAC manifest', async () => {
    // a user whose Role lets it get pods and nothing more
    const restricted = await server.userWithRole('viewer', {verbs: ['get'], resources: ['pods']})
    const client = KubeClient.load({kubeconfig: restricted})
    const err = await fix({client, source: {kind: 'archive', path: '/nonexistent.tar'}}).catch((e: unknown) => e)
    expect(isKubeError(err, 'forbidden')).toBe(true)
    expect((err as Error).message).toMatch(/not allowed to list pods in namespace "default"/)
    expect((err as KubeError).hint).toContain('manifests/rbac.yaml')
    const run = await cli(['fix', '--kubeconfig', restricted, '--archive', '/nonexistent.tar'])
    expect(run.code).toBe(1)
    expect(run.stderr).toMatch(/not allowed to list pods in namespace "default"/)
    expect(run.stderr).toContain('kubectl apply -f manifests/rbac.yaml')
  })

  it('--pod that does not exist: names the pod and namespace', async () => {
    const run = await cli(['fix', '--kubeconfig', kubeconfig, '--pod', 'ghost', '-n', 'default', '--archive', '/nonexistent.tar'])
    expect(run.code).toBe(1)
    expect(run.stderr).toMatch(/pod "ghost" in namespace "default" not found/)
    expect(run.stderr).toContain('kubectl get pods -n default')
  })

  it('connection refused: names the server and what to check', async () => {
    const port = await new Promise<number>(resolve => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port
        s.close(() => resolve(p))
      })
    })
    const dead = path.join(tmp, 'dead-kubeconfig')
    fs.writeFileSync(dead, fs.readFileSync(kubeconfig, 'utf8').replace(/server: https:\/\/[^\s]+/, `server: https://127.0.0.1:${port}`))
    const run = await cli(['fix', '--kubeconfig', dead, '--archive', '/nonexistent.tar'])
    expect(run.code).toBe(1)
    expect(run.stderr).toContain(`cannot reach the Kubernetes API server https://127.0.0.1:${port} (connection refused) to list pods`)
    expect(run.stderr).toContain('kubectl cluster-info')
  })
})
