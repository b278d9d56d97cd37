// src/kube against the test API server: kubeconfig resolution like kubectl, typed helpers, and the
// pod watch that lists again after 410 Expired.
import * as fs from 'node:fs'
import * as path from 'node:path'
import YAML from 'yaml'
import type {V1Pod} from '@kubernetes/client-node'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {KubeClient, clusterNode, nodeAddress, nodePlatform} from '../../src/kube/client.js'
import {KubeConfigError, loadKubeTarget} from '../../src/kube/config.js'
import type {KubeError} from '../../src/kube/errors.js'
import {type ApiServer, startApiServer} from './apiserver.js'
import {type Kubelet, startKubelet} from './kubelet.js'

describe('src/kube', () => {
  let server: ApiServer
  let kubelet: Kubelet
  let dir: string

  beforeAll(async () => {
    server = await startApiServer()
    dir = server.dir
    kubelet = startKubelet({store: server.store, nodes: [{name: 'slbt-kc-1', ip: '198.18.252.1', architecture: 'arm64'}],
      resyncMs: 60_000, hasImage: async () => false})
    server.store.create('namespaces', undefined, {metadata: {name: 'team-a'}})
  })
  afterAll(async () => {
    await kubelet?.stop()
    await server?.stop()
  })

  /** A second kubeconfig with two contexts: "other" (namespace team-a) and "broken" (missing cluster). */
  const secondConfig = (): string => {
    const admin = YAML.parse(fs.readFileSync(server.kubeconfigPath, 'utf8')) as {
      clusters: {name: string; cluster: object}[]; users: {name: string; user: object}[]
    }
    const file = path.join(dir, 'second.yaml')
    fs.writeFileSync(file, YAML.stringify({
      apiVersion: 'v1', kind: 'Config',
      clusters: [{name: 'other-cluster', cluster: admin.clusters[0].cluster}],
      users: [{name: 'other-user', user: admin.users[0].user}],
      contexts: [
        {name: 'other', context: {cluster: 'other-cluster', user: 'other-user', namespace: 'team-a'}},
        {name: 'broken', context: {cluster: 'nowhere', user: 'other-user'}},
      ],
      'current-context': 'other',
    }))
    return file
  }

  it('resolves the kubeconfig like kubectl: --kubeconfig, KUBECONFIG list (first wins), --context, --namespace', () => {
    const second = secondConfig()
    const byFlag = loadKubeTarget({kubeconfig: server.kubeconfigPath, env: {KUBECONFIG: second}})
    expect(byFlag).toMatchObject({context: 'admin@sideload-test', namespace: 'default', server: server.url})
    const merged = loadKubeTarget({env: {KUBECONFIG: [path.join(dir, 'missing.yaml'), second, server.kubeconfigPath].join(':')}})
    expect(merged.context).toBe('other')
    expect(merged.namespace).toBe('team-a')
    expect(merged.files).toEqual([second, server.kubeconfigPath])
    const ctx = loadKubeTarget({context: 'admin@sideload-test', env: {KUBECONFIG: `${second}:${server.kubeconfigPath}`}})
    expect(ctx.namespace).toBe('default')
    expect(loadKubeTarget({kubeconfig: second, namespace: 'kube-system'}).namespace).toBe('kube-system')
    const home = path.join(dir, 'home')
    fs.mkdirSync(path.join(home, '.kube'), {recursive: true})
    fs.copyFileSync(second, path.join(home, '.kube', 'config'))
    expect(loadKubeTarget({env: {HOME: home}}).context).toBe('other')

    expect(() => loadKubeTarget({kubeconfig: second, context: 'nope'})).toThrow(/context "nope" is not in .*second\.yaml \(contexts: other, broken\)/)
    expect(() => loadKubeTarget({kubeconfig: second, context: 'broken'})).toThrow(/context "broken" names cluster "nowhere", which is not in/)
    expect(() => loadKubeTarget({env: {HOME: path.join(dir, 'empty-home')}})).toThrow(KubeConfigError)
    expect(() => loadKubeTarget({env: {HOME: path.join(dir, 'empty-home')}})).toThrow('no kubeconfig found: pass --kubeconfig FILE, set KUBECONFIG, or create ~/.kube/config')
    expect(() => loadKubeTarget({kubeconfig: path.join(dir, 'absent')})).toThrow(/does not exist/)
  })

  it('reads node addresses and platforms, lists pods and events', async () => {
    const client = KubeClient.load({kubeconfig: server.kubeconfigPath})
    const nodes = await client.listNodes()
    expect(nodes.map(n => [nodeAddress(n), nodePlatform(n)])).toEqual([['198.18.252.1', {os: 'linux', architecture: 'arm64'}]])
    expect(clusterNode(nodes[0])).toEqual({name: 'slbt-kc-1', address: '198.18.252.1', platform: 'linux/arm64',
      containerRuntime: 'containerd://1.6.20', ready: true})
    server.store.create('pods', 'team-a', {metadata: {name: 'p1', labels: {app: 'x'}}, spec: {nodeName: 'slbt-kc-1', containers: [{name: 'c', image: 'local/x:1', imagePullPolicy: 'Never'}]}})
    await kubelet.syncNow()
    const pods = await client.listPods({fieldSelector: 'spec.nodeName=slbt-kc-1'})
    expect(pods.items.map(p => `${p.metadata?.namespace}/${p.metadata?.name} ${p.status?.containerStatuses?.[0]?.state?.waiting?.reason}`))
      .toEqual(['team-a/p1 ErrImageNeverPull'])
    const events = await client.listEvents('team-a', 'involvedObject.name=p1')
    expect(events.map(e => e.reason).sort()).toEqual(['ErrImageNeverPull', 'Failed'])
  })

  it('watchPods follows changes and lists again after 410 Expired', async () => {
    const client = KubeClient.load({kubeconfig: server.kubeconfigPath, namespace: 'team-a'})
    const seen: string[] = []
    const relists: string[] = []
    const w = client.watchPods({namespace: 'team-a', onEvent: (t, p: V1Pod) => seen.push(`${t} ${p.metadata?.name}`),
      onRelist: rv => relists.push(rv), onError: e => seen.push(`error ${e.message}`)})
    try {
      await waitFor(() => seen.includes('ADDED p1'))
      server.store.create('pods', 'team-a', {metadata: {name: 'p2'}, spec: {containers: [{name: 'c', image: 'x:1'}]}})
      await waitFor(() => seen.includes('ADDED p2'))
      expect(relists).toHaveLength(1)
      // a dropped connection resumes from the last version seen, without listing again
      server.dropWatches()
      server.store.create('pods', 'team-a', {metadata: {name: 'p3'}, spec: {containers: [{name: 'c', image: 'x:1'}]}})
      await waitFor(() => seen.includes('ADDED p3'))
      expect(relists).toHaveLength(1)
      // history dropped while disconnected: the resume gets 410 Expired and must list again
      server.dropWatches()
      server.store.create('pods', 'team-a', {metadata: {name: 'p4'}, spec: {containers: [{name: 'c', image: 'x:1'}]}})
      server.store.delete('pods', 'team-a', 'p2')
      server.store.compact()
      await waitFor(() => seen.includes('ADDED p4'))
      expect(relists).toHaveLength(2)
      // the pod deleted while the history was lost is reported DELETED by the re-list
      expect(seen).toContain('DELETED p2')
      expect(server.requests.some(r => r.url.includes('watch=true') && r.url.includes(`resourceVersion=`))).toBe(true)
      server.store.delete('pods', 'team-a', 'p3')
      await waitFor(() => seen.includes('DELETED p3'))
      expect(seen.filter(s => s.startsWith('error'))).toEqual([])
    } finally {
      w.stop()
    }
  })

  it('a watch that is forbidden ends with a KubeError naming the RBAC manifest', async () => {
    const {kubeconfigPath} = server.addUser('no-watch', {rules: [{verbs: ['list'], resources: ['pods']}]})
    const client = KubeClient.load({kubeconfig: kubeconfigPath})
    const err = await new Promise<Error>(resolve => {
      client.watchPods({namespace: 'team-a', onEvent: () => undefined, onError: resolve})
    })
    expect(err.message).toContain('not allowed to watch pods in namespace "team-a"')
    expect((err as KubeError).hint).toContain('manifests/rbac.yaml')
  })
})

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`condition not met within ${ms} ms`)
    await new Promise(r => setTimeout(r, 20))
  }
}
