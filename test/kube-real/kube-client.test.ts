// src/kube against the real API server: node addresses and platforms, pods and events as the
// kubelet stand-in writes them, and the pod watch: resumed where it was when the server ends it
// (its request timeout), listed again after 410 Gone (an API server restart over compacted
// history), refused for good when RBAC says no.
import type {V1Pod} from '@kubernetes/client-node'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {KubeClient, clusterNode, nodeAddress, nodePlatform} from '../../src/kube/client.js'
import type {KubeError} from '../../src/kube/errors.js'
import {type RealApiServer, startRealApiServer} from './apiserver.js'
import {type Kubelet, startKubelet} from './kubelet.js'
import {Rest, corePath} from './rest.js'

describe('src/kube on the real API server', () => {
  let server: RealApiServer
  let admin: Rest
  let kubelet: Kubelet
  const pod = (name: string, node?: string) => ({metadata: {name, labels: {app: 'x'}},
    spec: {...(node ? {nodeName: node} : {}), containers: [{name: 'c', image: 'local/x:1', imagePullPolicy: 'Never'}]}})

  beforeAll(async () => {
    // watches end after 3-6 s, as they do after 30-60 min on a default server
    server = await startRealApiServer({minRequestTimeoutSeconds: 3})
    admin = new Rest({url: server.url, caPath: server.caPath, certPath: server.adminCert.certPath, keyPath: server.adminCert.keyPath})
    kubelet = await startKubelet({server, nodes: [{name: 'slbt-kc-1', ip: '198.18.252.1', architecture: 'arm64', containerRuntimeVersion: 'containerd://2.3.7'}],
      resyncMs: 60_000, hasImage: async () => false})
    await server.ensureNamespace('team-a')
  })
  afterAll(async () => {
    await kubelet?.stop()
    admin?.close()
    await server?.stop()
  })

  it('reads node addresses and platforms, lists pods and events', async () => {
    const client = KubeClient.load({kubeconfig: server.adminKubeconfigPath})
    const nodes = await client.listNodes()
    expect(nodes.map(n => [nodeAddress(n), nodePlatform(n)])).toEqual([['198.18.252.1', {os: 'linux', architecture: 'arm64'}]])
    expect(clusterNode(nodes[0])).toEqual({name: 'slbt-kc-1', address: '198.18.252.1', platform: 'linux/arm64',
      containerRuntime: 'containerd://2.3.7', ready: true})
    await admin.create(corePath('pods', 'team-a'), pod('p1', 'slbt-kc-1'))
    await kubelet.syncNow()
    const pods = await client.listPods({fieldSelector: 'spec.nodeName=slbt-kc-1'})
    expect(pods.items.map(p => `${p.metadata?.namespace}/${p.metadata?.name} ${p.status?.containerStatuses?.[0]?.state?.waiting?.reason}`))
      .toEqual(['team-a/p1 ErrImageNeverPull'])
    const events = await client.listEvents('team-a', 'involvedObject.name=p1')
    expect(events.map(e => e.reason).sort()).toEqual(['ErrImageNeverPull', 'Failed'])
  })

  it('watchPods resumes a watch the server ended without listing; lists again after 410 Gone', async () => {
    const client = KubeClient.load({kubeconfig: server.adminKubeconfigPath, namespace: 'team-a'})
    const seen: string[] = []
    const relists: string[] = []
    const watches = () => server.audit().filter(e => e.user === 'kube-real-admin' && e.verb === 'watch' && e.resource === 'pods' && e.namespace === 'team-a')
    const w = client.watchPods({namespace: 'team-a', onEvent: (t, p: V1Pod) => seen.push(`${t} ${p.metadata?.name}`),
      onRelist: rv => relists.push(rv), onError: e => seen.push(`error ${e.message}`)})
    try {
      await waitFor(() => seen.includes('ADDED p1'))
      await admin.create(corePath('pods', 'team-a'), pod('p2'))
      await waitFor(() => seen.includes('ADDED p2'))
      expect(relists).toHaveLength(1)
      // the server ends the watch (its request timeout): resumed from the last version seen, no list
      await waitFor(() => watches().length >= 2, 15_000)
      await admin.create(corePath('pods', 'team-a'), pod('p3'))
      await waitFor(() => seen.includes('ADDED p3'))
      expect(relists).toHaveLength(1)
      // the API server restarts over compacted history: the resume gets 410 Gone, only a list catches up
      await admin.create(corePath('pods', 'team-a'), pod('p4'))
      await waitFor(() => seen.includes('ADDED p4'))
      await server.ensureNamespace('team-b') // history moves on past the watch's last version
      await server.compactEtcd()
      await server.restartApiServer()
      await waitFor(() => relists.length >= 2, 20_000)
      await admin.delete(corePath('pods', 'team-a', 'p3'))
      await waitFor(() => seen.includes('DELETED p3'))
      expect(seen.filter(s => s.startsWith('error'))).toEqual([])
    } finally {
      w.stop()
    }
  })

  it('a watch that is forbidden from the start ends with a KubeError naming the RBAC manifest', async () => {
    const kubeconfig = await server.userWithRole('no-watch', {verbs: ['list'], resources: ['pods'], namespace: 'team-a'})
    const client = KubeClient.load({kubeconfig})
    const started = Date.now()
    const err = await new Promise<Error>(resolve => {
      client.watchPods({namespace: 'team-a', onEvent: () => undefined, onError: resolve})
    })
    expect(err.message).toContain('not allowed to watch pods in namespace "team-a"')
    expect((err as KubeError).hint).toContain('manifests/rbac.yaml')
    // final at once: the grace for refusals applies only to a watch that was working
    expect(Date.now() - started).toBeLessThan(5000)
  })
})

async function waitFor(cond: () => boolean, ms = 8000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`condition not met within ${ms} ms`)
    await new Promise(r => setTimeout(r, 20))
  }
}
