// manifests/rbac.yaml grants exactly what src/kube/access.ts says sideload calls, and it works when
// applied with kubectl: the service account it binds can run expose, and cannot do more.
import {describe, expect, it} from 'vitest'
import {API_ACCESS} from '../../src/kube/access.js'
import {KubeClient} from '../../src/kube/client.js'
import {expose, unexpose} from '../../src/ops/expose.js'
import {startApiServer} from '../kube/apiserver.js'
import {kubectl} from '../kube/kubectl.js'
import {startKubelet} from '../kube/kubelet.js'
import {RBAC_PATH, clusterRoleRules} from './rbac.js'

describe('manifests/rbac.yaml', () => {
  it('grants exactly API_ACCESS, core group only, no wildcards', () => {
    const granted = new Set<string>()
    for (const rule of clusterRoleRules()) {
      expect(rule.apiGroups).toEqual([''])
      for (const r of rule.resources ?? []) for (const v of rule.verbs ?? []) granted.add(`${v} ${r}`)
    }
    const needed = new Set(Object.entries(API_ACCESS).flatMap(([r, verbs]) => verbs.map(v => `${v} ${r}`)))
    expect([...granted].sort()).toEqual([...needed].sort())
    expect([...granted].some(g => g.includes('*'))).toBe(false)
  })
})

describe('manifests/rbac.yaml applied with kubectl', () => {
  it('creates the service account and role; that service account can expose and nothing more', async () => {
    const server = await startApiServer()
    const kubelet = startKubelet({store: server.store, nodes: [{name: 'slbt-rbac-1', ip: '198.18.253.1'}], resyncMs: 60_000,
      hasImage: async () => true})
    try {
      const applied = await kubectl(server.kubeconfigPath, ['apply', '-f', RBAC_PATH])
      expect(applied.stderr).toBe('')
      expect(applied.stdout.trim().split('\n')).toEqual([
        'namespace/sideload created',
        'serviceaccount/sideload created',
        'clusterrole.rbac.authorization.k8s.io/sideload created',
        'clusterrolebinding.rbac.authorization.k8s.io/sideload created',
      ])
      server.store.create('pods', 'default', {metadata: {name: 'web-0'}, spec: {nodeName: 'slbt-rbac-1', containers: [{name: 'c', image: 'local/web:1'}]}})
      await kubelet.syncNow()
      const {kubeconfigPath} = server.serviceAccountKubeconfig('sideload', 'sideload')
      const r = await expose({kubeconfig: kubeconfigPath, namespace: 'default', pod: 'web-0', port: 22})
      expect(r.action).toBe('created')
      expect((await unexpose({kubeconfig: kubeconfigPath, namespace: 'default', pod: 'web-0'})).serviceDeleted).toBe(true)

      const client = KubeClient.load({kubeconfig: kubeconfigPath, namespace: 'default'})
      const denied = await client.core.deleteNamespacedPod({name: 'web-0', namespace: 'default'}).catch((e: unknown) => e)
      expect(String((denied as {body?: unknown}).body)).toContain('User \\"system:serviceaccount:sideload:sideload\\" cannot delete resource \\"pods\\" in API group \\"\\" in the namespace \\"default\\"')
      const noSecrets = await kubectl(kubeconfigPath, ['get', 'clusterroles'])
      expect(noSecrets.stderr).toContain('clusterroles.rbac.authorization.k8s.io is forbidden: User "system:serviceaccount:sideload:sideload" cannot list resource "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope')
    } finally {
      await kubelet.stop()
      await server.stop()
    }
  })
})
