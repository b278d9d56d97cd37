// manifests/fix-watch.yaml: consistent with manifests/rbac.yaml (namespace, service account), every
// volume it mounts is defined, and the built CLI accepts its arguments.
import * as fs from 'node:fs'
import * as path from 'node:path'
import {describe, expect, it} from 'vitest'
import YAML from 'yaml'
import {RBAC_MANIFEST_PATH as RBAC_PATH} from '../kube-real/apiserver.js'
import {cli} from './fixture.js'

const MANIFEST = path.resolve(import.meta.dirname, '..', '..', 'manifests', 'fix-watch.yaml')

interface Doc {
  kind?: string
  metadata?: {name?: string; namespace?: string}
  spec?: {
    replicas?: number
    template: {spec: {
      serviceAccountName?: string
      nodeSelector?: Record<string, string>
      containers: {args: string[]; volumeMounts: {name: string; mountPath: string}[]}[]
      volumes: {name: string; hostPath?: {path: string; type?: string}; secret?: object; configMap?: object}[]
    }}
  }
}

describe('manifests/fix-watch.yaml', () => {
  const docs = YAML.parseAllDocuments(fs.readFileSync(MANIFEST, 'utf8')).map(d => d.toJSON() as Doc)
  const deployment = docs.find(d => d.kind === 'Deployment')

  it('runs one fix --watch as the watcher\'s service account of rbac.yaml, on the build node, with the containerd socket', () => {
    expect(deployment).toBeDefined()
    const rbac = YAML.parseAllDocuments(fs.readFileSync(RBAC_PATH, 'utf8')).map(d => d.toJSON() as Doc)
    const sa = rbac.find(d => d.kind === 'ServiceAccount' && d.metadata?.name === 'sideload-fix-watch')
    const pod = deployment?.spec?.template.spec
    expect(deployment?.metadata?.namespace).toBe(sa?.metadata?.namespace)
    expect(pod?.serviceAccountName).toBe(sa?.metadata?.name)
    expect(deployment?.spec?.replicas).toBe(1)
    expect(pod?.nodeSelector).toEqual({'sideload.dev/build-node': 'true'})
    const c = pod?.containers[0]
    expect(c?.args.slice(0, 2)).toEqual(['fix', '--watch'])
    const volumes = new Map(pod?.volumes.map(v => [v.name, v]))
    for (const m of c?.volumeMounts ?? []) expect(volumes.has(m.name), m.name).toBe(true)
    const sock = c?.volumeMounts.find(m => m.mountPath === '/run/containerd/containerd.sock')
    expect(volumes.get(sock?.name ?? '')?.hostPath).toEqual({path: '/run/containerd/containerd.sock', type: 'Socket'})
    // the key and known_hosts the args name are mounted
    const arg = (flag: string) => c?.args[c.args.indexOf(flag) + 1] ?? ''
    for (const flag of ['--ssh-key', '--known-hosts']) {
      expect(c?.volumeMounts.some(m => arg(flag).startsWith(m.mountPath + '/')), flag).toBe(true)
    }
  })

  it('the built CLI accepts its arguments (fails only for want of a cluster)', async () => {
    const args = deployment?.spec?.template.spec.containers[0].args ?? []
    const run = await cli([...args, '--kubeconfig', '/nonexistent/kubeconfig'])
    expect(run.code).toBe(1)
    // it runs with --json: the error is the result line on stdout, as a pod's log shows it
    expect(JSON.parse(run.stdout.trim().split('\n').pop() ?? '')).toMatchObject({type: 'result', ok: false, error: 'kubeconfig /nonexistent/kubeconfig (--kubeconfig) does not exist'})
  })
})
