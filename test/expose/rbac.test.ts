// manifests/rbac.yaml grants exactly what src/kube/access.ts says sideload calls, and it works when
// applied with kubectl to the real kube-apiserver (RBAC): the service account it binds can run
// expose, and cannot do more.
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {allGrants, watchGrants} from '../../src/kube/access.js'
import {expose, unexpose} from '../../src/ops/expose.js'
import {type RealApiServer, startRealApiServer} from '../kube-real/apiserver.js'
import {type Kubelet, startKubelet} from '../kube-real/kubelet.js'
import {Rest, corePath} from '../kube-real/rest.js'
import {RBAC_PATH, grantsOf} from './rbac.js'

describe('manifests/rbac.yaml', () => {
  it('grants exactly API_ACCESS and RESTART_ACCESS (core and apps groups), no wildcards', () => {
    expect(grantsOf('sideload')).toEqual(allGrants())
    expect(grantsOf('sideload').some(g => g.includes('*'))).toBe(false)
  })

  it('gives the in-cluster watcher a role of its own: exactly WATCH_ACCESS, and fix-watch.yaml runs as its account', () => {
    expect(grantsOf('sideload-fix-watch')).toEqual(watchGrants())
    expect(watchGrants().filter(g => /create|delete|services|apps\//.test(g))).toEqual([])
    expect(fs.readFileSync(path.join(path.dirname(RBAC_PATH), 'fix-watch.yaml'), 'utf8')).toMatch(/^\s+serviceAccountName: sideload-fix-watch\b/m)
  })
})

describe('manifests/rbac.yaml applied with kubectl to the real API server', () => {
  let server: RealApiServer
  let kubelet: Kubelet
  let admin: Rest

  beforeAll(async () => {
    server = await startRealApiServer()
    admin = new Rest({url: server.url, caPath: server.caPath, certPath: server.adminCert.certPath, keyPath: server.adminCert.keyPath})
    kubelet = await startKubelet({server, nodes: [{name: 'slbt-rbac-1', ip: '198.18.253.1', containerRuntimeVersion: 'containerd://2.3.7'}],
      resyncMs: 60_000, hasImage: async () => true})
  }, 60_000)
  afterAll(async () => {
    await kubelet?.stop()
    admin?.close()
    await server?.stop()
  })

  it('creates the service account and role; that service account can expose and nothing more', async () => {
    const applied = await server.kubectl(server.adminKubeconfigPath, ['apply', '-f', RBAC_PATH])
    expect(applied.stderr).toBe('')
    expect(applied.stdout.trim().split('\n')).toEqual([
      'namespace/sideload created',
      'serviceaccount/sideload created',
      'clusterrole.rbac.authorization.k8s.io/sideload created',
      'clusterrolebinding.rbac.authorization.k8s.io/sideload created',
      'serviceaccount/sideload-fix-watch created',
      'clusterrole.rbac.authorization.k8s.io/sideload-fix-watch created',
      'clusterrolebinding.rbac.authorization.k8s.io/sideload-fix-watch created',
    ])
    await admin.create(corePath('pods', 'default'), {apiVersion: 'v1', kind: 'Pod', metadata: {name: 'web-0'},
      spec: {nodeName: 'slbt-rbac-1', containers: [{name: 'c', image: 'local/web:1'}]}})
    await kubelet.syncNow()
    // a token for the service account the manifest created (TokenRequest), in a kubeconfig
    const {kubeconfigPath} = await server.serviceAccountKubeconfig({namespace: 'default'})
    const r = await expose({kubeconfig: kubeconfigPath, namespace: 'default', pod: 'web-0', port: 22})
    expect(r.action).toBe('created')
    expect((await unexpose({kubeconfig: kubeconfigPath, namespace: 'default', pod: 'web-0'})).serviceDeleted).toBe(true)

    // --restart's rights are exactly patch (a rollout) on owners, never delete
    const noDeploymentDelete = await server.kubectl(kubeconfigPath, ['delete', 'deployment', 'web', '-n', 'default'])
    expect(noDeploymentDelete.stderr).toContain('User "system:serviceaccount:sideload:sideload" cannot delete resource "deployments" in API group "apps" in the namespace "default"')
    // another owner's pod is evicted (PodDisruptionBudgets hold); a Job is read, never changed
    const evict = await server.kubectl(kubeconfigPath, ['auth', 'can-i', 'create', 'pods', '--subresource=eviction', '-n', 'default'])
    expect(evict.stdout.trim(), evict.stderr).toBe('yes')
    const jobs = await server.kubectl(kubeconfigPath, ['auth', 'can-i', 'get', 'jobs.batch', '-n', 'default'])
    expect(jobs.stdout.trim(), jobs.stderr).toBe('yes')
    const noJobDelete = await server.kubectl(kubeconfigPath, ['auth', 'can-i', 'delete', 'jobs.batch', '-n', 'default'])
    expect(noJobDelete.stdout.trim()).toBe('no')
    const noNodeDelete = await server.kubectl(kubeconfigPath, ['delete', 'node', 'slbt-rbac-1'])
    expect(noNodeDelete.stderr).toContain('cannot delete resource "nodes" in API group "" at the cluster scope')
    const noSecrets = await server.kubectl(kubeconfigPath, ['get', 'clusterroles'])
    expect(noSecrets.stderr).toContain('clusterroles.rbac.authorization.k8s.io is forbidden: User "system:serviceaccount:sideload:sideload" cannot list resource "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope')
  })
})
