// The test API server's semantics, checked with @kubernetes/client-node (the client sideload uses).
import {ApiException, CoreV1Api, KubeConfig, PatchStrategy, Watch, setHeaderOptions, type V1Pod} from '@kubernetes/client-node'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {type ApiServer, startApiServer} from './apiserver.js'

function pod(name: string, image = 'local/app:1.0', extra: Partial<V1Pod> = {}): V1Pod {
  return {metadata: {name, labels: {app: 'demo'}}, spec: {containers: [{name: 'main', image}]}, ...extra}
}

/** The Status body an ApiException carries. */
function statusOf(e: unknown): {code: number; reason: string; message: string; details?: {causes?: {field: string; message: string}[]}} {
  if (!(e instanceof ApiException)) throw e
  const body: unknown = typeof e.body === 'string' ? JSON.parse(e.body) : e.body
  return body as ReturnType<typeof statusOf>
}

async function failure(p: Promise<unknown>): Promise<ReturnType<typeof statusOf>> {
  try {
    await p
  } catch (e) {
    return statusOf(e)
  }
  throw new Error('expected the API call to fail')
}

interface Seen {
  type: string
  object: {kind?: string; code?: number; reason?: string; message?: string; metadata?: {name?: string; resourceVersion?: string}}
}

async function collectWatch(kc: KubeConfig, path: string, query: Record<string, string>, until: (seen: Seen[]) => boolean, ms = 5000): Promise<Seen[]> {
  const seen: Seen[] = []
  let req: AbortController | undefined
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`watch saw only ${JSON.stringify(seen.map(s => s.type))}`)), ms)
    void new Watch(kc).watch(path, query, (type, object) => {
      seen.push({type, object: object as Seen['object']})
      if (until(seen)) {
        clearTimeout(timer)
        resolve()
      }
    }, () => {
      if (until(seen)) {
        clearTimeout(timer)
        resolve()
      }
    }).then(r => (req = r), reject)
  })
  req?.abort()
  return seen
}

describe('test API server with @kubernetes/client-node', () => {
  let server: ApiServer
  let kc: KubeConfig
  let core: CoreV1Api

  beforeAll(async () => {
    server = await startApiServer({bookmarkIntervalMs: 200})
    kc = new KubeConfig()
    kc.loadFromFile(server.kubeconfigPath)
    core = kc.makeApiClient(CoreV1Api)
  })
  afterAll(async () => {
    await server?.stop()
  })

  it('creates a pod the way the API returns it: uid, resourceVersion, managedFields, defaults', async () => {
    const created = await core.createNamespacedPod({namespace: 'default', body: pod('shape')})
    expect(created.metadata?.uid).toMatch(/^[0-9a-f-]{36}$/)
    expect(Number(created.metadata?.resourceVersion)).toBeGreaterThan(0)
    expect(created.metadata?.creationTimestamp).toBeInstanceOf(Date)
    expect(created.metadata?.managedFields?.[0]?.operation).toBe('Update')
    expect(created.spec?.containers[0].imagePullPolicy).toBe('IfNotPresent')
    expect(created.spec?.restartPolicy).toBe('Always')
    expect(created.status?.phase).toBe('Pending')
    const latest = await core.createNamespacedPod({namespace: 'default', body: pod('latest', 'local/app:latest')})
    expect(latest.spec?.containers[0].imagePullPolicy).toBe('Always')
    const untagged = await core.createNamespacedPod({namespace: 'default', body: pod('untagged', 'local/app')})
    expect(untagged.spec?.containers[0].imagePullPolicy).toBe('Always')
    const digest = await core.createNamespacedPod({namespace: 'default', body: pod('digest', `local/app@sha256:${'a'.repeat(64)}`)})
    expect(digest.spec?.containers[0].imagePullPolicy).toBe('IfNotPresent')
  })

  it('answers 404 NotFound with the real Status body', async () => {
    const s = await failure(core.readNamespacedPod({name: 'nope', namespace: 'default'}))
    expect(s).toMatchObject({code: 404, reason: 'NotFound', message: 'pods "nope" not found'})
    const ns = await failure(core.listNamespacedPod({namespace: 'no-such-ns'}).then(() =>
      core.createNamespacedPod({namespace: 'no-such-ns', body: pod('x')})))
    expect(ns.message).toBe('namespaces "no-such-ns" not found')
  })

  it('answers 409 AlreadyExists and 409 Conflict on a stale resourceVersion', async () => {
    await core.createNamespacedPod({namespace: 'default', body: pod('dup')})
    const s = await failure(core.createNamespacedPod({namespace: 'default', body: pod('dup')}))
    expect(s).toMatchObject({code: 409, reason: 'AlreadyExists', message: 'pods "dup" already exists'})

    const first = await core.readNamespacedPod({name: 'dup', namespace: 'default'})
    const stale = structuredClone(first)
    first.metadata!.labels = {app: 'demo', v: '2'}
    const updated = await core.replaceNamespacedPod({name: 'dup', namespace: 'default', body: first})
    expect(Number(updated.metadata?.resourceVersion)).toBeGreaterThan(Number(stale.metadata?.resourceVersion))
    stale.metadata!.labels = {app: 'demo', v: '3'}
    const c = await failure(core.replaceNamespacedPod({name: 'dup', namespace: 'default', body: stale}))
    expect(c).toMatchObject({code: 409, reason: 'Conflict',
      message: 'Operation cannot be fulfilled on pods "dup": the object has been modified; please apply your changes to the latest version and try again'})
  })

  it('answers 422 Invalid for a pod update that changes the pull policy', async () => {
    const p = await core.readNamespacedPod({name: 'shape', namespace: 'default'})
    p.spec!.containers[0].imagePullPolicy = 'Never'
    const s = await failure(core.replaceNamespacedPod({name: 'shape', namespace: 'default', body: p}))
    expect(s.code).toBe(422)
    expect(s.reason).toBe('Invalid')
    expect(s.message).toMatch(/^Pod "shape" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers\[\*\].image`/)
  })

  it('allocates cluster IPs and node ports, and rejects taken or out-of-range node ports with 422', async () => {
    const svc = await core.createNamespacedService({namespace: 'default', body: {
      metadata: {name: 'pinned'}, spec: {type: 'NodePort', selector: {app: 'demo'}, ports: [{port: 22, nodePort: 30080}]},
    }})
    expect(svc.spec?.clusterIP).toMatch(/^10\.96\.\d+\.\d+$/)
    expect(svc.spec?.ports?.[0]).toMatchObject({port: 22, nodePort: 30080, protocol: 'TCP', targetPort: 22})
    expect(svc.spec?.externalTrafficPolicy).toBe('Cluster')

    const taken = await failure(core.createNamespacedService({namespace: 'default', body: {
      metadata: {name: 'taken'}, spec: {type: 'NodePort', selector: {app: 'demo'}, ports: [{port: 22, nodePort: 30080}]},
    }}))
    expect(taken).toMatchObject({code: 422, reason: 'Invalid',
      message: 'Service "taken" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated'})
    expect(taken.details?.causes?.[0]).toMatchObject({field: 'spec.ports[0].nodePort', message: 'Invalid value: 30080: provided port is already allocated'})

    const range = await failure(core.createNamespacedService({namespace: 'default', body: {
      metadata: {name: 'range'}, spec: {type: 'NodePort', ports: [{port: 22, nodePort: 2222}]},
    }}))
    expect(range.message).toBe('Service "range" is invalid: spec.ports[0].nodePort: Invalid value: 2222: provided port is not in the valid range. The range of valid ports is 30000-32767')

    // an update that omits the node port keeps the allocated one; deleting frees it
    const again = await core.readNamespacedService({name: 'pinned', namespace: 'default'})
    again.spec!.ports = [{port: 22}]
    const kept = await core.replaceNamespacedService({name: 'pinned', namespace: 'default', body: again})
    expect(kept.spec?.ports?.[0].nodePort).toBe(30080)
    await core.deleteNamespacedService({name: 'pinned', namespace: 'default'})
    const reused = await core.createNamespacedService({namespace: 'default', body: {
      metadata: {name: 'reused'}, spec: {type: 'NodePort', ports: [{port: 22, nodePort: 30080}]},
    }})
    expect(reused.spec?.ports?.[0].nodePort).toBe(30080)
  })

  it('patches with strategic merge, JSON merge and JSON patch', async () => {
    await core.createNamespacedPod({namespace: 'default', body: pod('patchme')})
    const smp = await core.patchNamespacedPod({name: 'patchme', namespace: 'default', body: {metadata: {labels: {run: 'dev'}}}},
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch))
    expect(smp.metadata?.labels).toEqual({app: 'demo', run: 'dev'})
    const merge = await core.patchNamespacedPod({name: 'patchme', namespace: 'default', body: {metadata: {labels: {app: null}}}},
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch))
    expect(merge.metadata?.labels).toEqual({run: 'dev'})
    const json = await core.patchNamespacedPod({name: 'patchme', namespace: 'default',
      body: [{op: 'add', path: '/metadata/annotations', value: {'sideload.dev/note': 'x'}}]},
    setHeaderOptions('Content-Type', PatchStrategy.JsonPatch))
    expect(json.metadata?.annotations).toEqual({'sideload.dev/note': 'x'})
    const failedTest = await failure(core.patchNamespacedPod({name: 'patchme', namespace: 'default',
      body: [{op: 'test', path: '/metadata/labels/run', value: 'prod'}]}, setHeaderOptions('Content-Type', PatchStrategy.JsonPatch)))
    expect(failedTest.code).toBe(422)
    // a patch naming an old resourceVersion is a precondition
    const stale = await failure(core.patchNamespacedPod({name: 'patchme', namespace: 'default',
      body: {metadata: {resourceVersion: smp.metadata?.resourceVersion, labels: {x: 'y'}}}},
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch)))
    expect(stale.reason).toBe('Conflict')
  })

  it('filters lists by label and field selectors, and rejects unknown fields', async () => {
    await core.createNamespacedPod({namespace: 'default', body: pod('on-a', 'x:1', {spec: {nodeName: 'node-a', containers: [{name: 'c', image: 'x:1'}]}})})
    await core.createNamespacedPod({namespace: 'default', body: {metadata: {name: 'other', labels: {app: 'other', tier: 'web'}}, spec: {containers: [{name: 'c', image: 'x:1'}]}}})
    const byNode = await core.listPodForAllNamespaces({fieldSelector: 'spec.nodeName=node-a'})
    expect(byNode.items.map(p => p.metadata?.name)).toEqual(['on-a'])
    const byName = await core.listNamespacedPod({namespace: 'default', fieldSelector: 'metadata.name=other,status.phase=Pending'})
    expect(byName.items.map(p => p.metadata?.name)).toEqual(['other'])
    const notDemo = await core.listNamespacedPod({namespace: 'default', labelSelector: 'app!=demo,tier in (web,db)'})
    expect(notDemo.items.map(p => p.metadata?.name)).toEqual(['other'])
    const noTier = await core.listNamespacedPod({namespace: 'default', labelSelector: '!tier,app=demo'})
    expect(noTier.items.map(p => p.metadata?.name)).not.toContain('other')
    const bad = await failure(core.listNamespacedPod({namespace: 'default', fieldSelector: 'spec.bogus=1'}))
    expect(bad).toMatchObject({code: 400, reason: 'BadRequest', message: 'field label not supported: spec.bogus'})

    await core.createNamespacedEvent({namespace: 'default', body: {metadata: {name: 'on-a.1'}, involvedObject: {kind: 'Pod', name: 'on-a', namespace: 'default'}, reason: 'Test', message: 'm', type: 'Normal'}})
    const evs = await core.listNamespacedEvent({namespace: 'default', fieldSelector: 'involvedObject.name=on-a'})
    expect(evs.items.map(e => e.reason)).toEqual(['Test'])
  })

  it('watches resume after a resourceVersion, send bookmarks, and report 410 Expired when it is too old', async () => {
    const list = await core.listNamespacedPod({namespace: 'default'})
    const rv = list.metadata?.resourceVersion ?? ''
    await core.createNamespacedPod({namespace: 'default', body: pod('w1')})
    await core.deleteNamespacedPod({name: 'w1', namespace: 'default'})
    const seen = await collectWatch(kc, '/api/v1/namespaces/default/pods', {resourceVersion: rv, allowWatchBookmarks: 'true'},
      s => s.some(e => e.type === 'BOOKMARK'))
    expect(seen.filter(e => e.type !== 'BOOKMARK').map(e => `${e.type} ${e.object.metadata?.name}`)).toEqual(['ADDED w1', 'DELETED w1'])
    const bookmark = seen.find(e => e.type === 'BOOKMARK')
    expect(Number(bookmark?.object.metadata?.resourceVersion)).toBeGreaterThan(Number(rv))

    // no resourceVersion: synthetic ADDED for what exists
    const initial = await collectWatch(kc, '/api/v1/namespaces/default/pods', {fieldSelector: 'metadata.name=shape'}, s => s.length >= 1)
    expect(initial[0]).toMatchObject({type: 'ADDED', object: {metadata: {name: 'shape'}}})

    server.store.compact()
    const expired = await collectWatch(kc, '/api/v1/namespaces/default/pods', {resourceVersion: rv}, s => s.length >= 1)
    expect(expired[0].type).toBe('ERROR')
    expect(expired[0].object).toMatchObject({kind: 'Status', code: 410, reason: 'Expired'})
    expect(expired[0].object.message).toMatch(/^too old resource version: \d+ \(\d+\)$/)
    const list410 = await failure(core.listNamespacedPod({namespace: 'default', resourceVersion: rv, resourceVersionMatch: 'Exact'}))
    expect(list410).toMatchObject({code: 410, reason: 'Expired', message: 'The resourceVersion for the provided list is too old.'})
  })

  it('keeps only watchWindow changes: resuming from further back is 410 Expired', async () => {
    const small = await startApiServer({watchWindow: 3})
    try {
      const skc = new KubeConfig()
      skc.loadFromFile(small.kubeconfigPath)
      const score = skc.makeApiClient(CoreV1Api)
      const first = await score.createNamespacedPod({namespace: 'default', body: pod('win-0')})
      const rv0 = first.metadata?.resourceVersion ?? ''
      for (let i = 1; i <= 2; i++) await score.createNamespacedPod({namespace: 'default', body: pod(`win-${i}`)})
      const inWindow = await collectWatch(skc, '/api/v1/namespaces/default/pods', {resourceVersion: rv0}, s => s.length >= 2)
      expect(inWindow.map(e => `${e.type} ${e.object.metadata?.name}`)).toEqual(['ADDED win-1', 'ADDED win-2'])
      for (let i = 3; i <= 5; i++) await score.createNamespacedPod({namespace: 'default', body: pod(`win-${i}`)})
      const tooOld = await collectWatch(skc, '/api/v1/namespaces/default/pods', {resourceVersion: rv0}, s => s.length >= 1)
      expect(tooOld[0]).toMatchObject({type: 'ERROR', object: {code: 410, reason: 'Expired'}})
    } finally {
      await small.stop()
    }
  })

  it('a watch filtered by labels sees a pod leave the selection as DELETED', async () => {
    const created = await core.createNamespacedPod({namespace: 'default', body: pod('leaver')})
    const rv = created.metadata?.resourceVersion ?? ''
    await core.patchNamespacedPod({name: 'leaver', namespace: 'default', body: {metadata: {labels: {app: 'gone'}}}},
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch))
    const seen = await collectWatch(kc, '/api/v1/namespaces/default/pods', {resourceVersion: rv, labelSelector: 'app=demo'}, s => s.length >= 1)
    expect(seen[0]).toMatchObject({type: 'DELETED', object: {metadata: {name: 'leaver'}}})
  })

  it('answers 403 Forbidden for a token lacking the right, and accepts client certificates', async () => {
    const {kubeconfigPath} = server.addUser('reader', {rules: [{verbs: ['get', 'list', 'watch'], resources: ['pods']}]})
    const rkc = new KubeConfig()
    rkc.loadFromFile(kubeconfigPath)
    const reader = rkc.makeApiClient(CoreV1Api)
    await reader.readNamespacedPod({name: 'shape', namespace: 'default'})
    const s = await failure(reader.createNamespacedService({namespace: 'default', body: {metadata: {name: 'x'}, spec: {ports: [{port: 1}]}}}))
    expect(s).toMatchObject({code: 403, reason: 'Forbidden',
      message: 'services is forbidden: User "reader" cannot create resource "services" in API group "" in the namespace "default"'})
    const nodes = await failure(reader.listNode())
    expect(nodes.message).toBe('nodes is forbidden: User "reader" cannot list resource "nodes" in API group "" at the cluster scope')
    server.setRules('reader', 'all')
    await reader.listNode()

    const cert = server.addCertUser('certy', {rules: [{verbs: ['list'], resources: ['namespaces']}]})
    const ckc = new KubeConfig()
    ckc.loadFromFile(cert.kubeconfigPath)
    const ns = await ckc.makeApiClient(CoreV1Api).listNamespace()
    expect(ns.items.map(n => n.metadata?.name)).toEqual(['default', 'kube-node-lease', 'kube-public', 'kube-system'])
  })
})
