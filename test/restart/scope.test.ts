// push --restart restarts exactly the pods that run the old build, on the nodes pushed to, on the
// real bed with the real control plane (kube-apiserver, kube-scheduler, kube-controller-manager with
// the disruption and job controllers as well): only the namespace of -n, else the context's; a pod
// of a ReplicaSet of its own is evicted, so a PodDisruptionBudget that allows no disruption keeps it
// (reported, exit code 1); a Job's pod, a CronJob's too, is left alone and said so; a bare pod that
// was `kubectl debug`ged (ephemeral containers) is created again, and the manifest kept for a
// refused re-creation is what `kubectl create -f` takes.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import YAML from 'yaml'
import {startBed, type Bed} from '../bed/bed.js'
import {makeImage, type MakeImageOptions} from '../bed/images.js'
import {CONTROLLERS} from '../kube-real/apiserver.js'
import {type Cluster, startCluster} from '../kube-real/cluster.js'
import {type JsonObject, arr, corePath, obj, str} from '../kube-real/rest.js'
import {runCli} from '../push/cli.js'
import {until as waitUntil} from './until.js'

const IMAGE = 'docker.io/sl-rscope/app:1'
const REPO = 'docker.io/sl-rscope/app'
const SA = 'system:serviceaccount:sideload:sideload'

let bed: Bed
let cluster: Cluster
let node: string
let dir: string
let stateDir: string
/** the service account's kubeconfig, its context's namespace "shop" */
let shopKubeconfig: string
const builds: Record<string, {out: string; digest: string}> = {}

const args = (kubeconfig: string): string[] => ['--kubeconfig', kubeconfig, '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath, '--progress', 'quiet']
const cli = (a: string[]) => runCli(a, {env: {XDG_STATE_HOME: stateDir}, timeoutMs: 240_000})

const until = <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> =>
  waitUntil(what, probe, timeoutMs, () => cluster.server.logs().slice(-2000))

interface RunningPod {
  name: string
  uid: string
  /** the digest its container runs */
  digest: string
  ephemeral: number
}

/** The pods of a namespace (not being deleted) whose container "main" runs, with the digest it runs. */
async function runningPods(ns: string): Promise<RunningPod[]> {
  const out: RunningPod[] = []
  for (const p of (await cluster.admin.list(corePath('pods', ns))).items) {
    const m = obj(p.metadata)
    if (m.deletionTimestamp) continue
    const s = arr(obj(p.status).containerStatuses).find((c) => c.name === 'main')
    if (!s || !obj(s.state).running) continue
    out.push({name: str(m.name), uid: str(m.uid), digest: str(s.imageID).replace(`${REPO}@`, ''), ephemeral: arr(obj(p.spec).ephemeralContainers).length})
  }
  return out
}

const podSpec = (): JsonObject => ({nodeSelector: {'kubernetes.io/hostname': node}, terminationGracePeriodSeconds: 5,
  containers: [{name: 'main', image: IMAGE, imagePullPolicy: 'Never', command: ['sleep', '3600']}]})

function replicaSet(name: string): JsonObject {
  return {apiVersion: 'apps/v1', kind: 'ReplicaSet', metadata: {name},
    spec: {replicas: 1, selector: {matchLabels: {app: name}}, template: {metadata: {labels: {app: name}}, spec: podSpec()}}}
}

function job(name: string, owner?: JsonObject): JsonObject {
  return {apiVersion: 'batch/v1', kind: 'Job', metadata: {name, ...(owner ? {ownerReferences: [owner]} : {})},
    spec: {backoffLimit: 0, template: {spec: {...podSpec(), restartPolicy: 'Never'}}}}
}

/** A bare pod on the node, then an ephemeral container added to it as `kubectl debug` does (the pods/ephemeralcontainers subresource). */
async function debuggedPod(ns: string, name: string): Promise<void> {
  await cluster.createPod(ns, name, node, IMAGE)
  await cluster.admin.patch(corePath('pods', ns, name, 'ephemeralcontainers'), {spec: {ephemeralContainers: [
    {name: 'debugger', image: IMAGE, imagePullPolicy: 'Never', command: ['sleep', '3600'], targetContainerName: 'main'}]}}, 'strategic')
}

describe('push --restart: which pods, and how', () => {
  beforeAll(async () => {
    bed = await startBed({name: 'rscope', nodes: 1})
    cluster = await startCluster(bed, {scheduler: true, resyncMs: 2000})
    // with the controllers PodDisruptionBudgets and Jobs need
    await cluster.server.startControllerManager([...CONTROLLERS, 'disruption-controller', 'job-controller'])
    node = bed.nodes[0].name
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sideload-rscope-'))
    stateDir = path.join(dir, 'state')
    for (const [v, seed] of [['v1', 'a'], ['v2', 'b']]) {
      const opts: MakeImageOptions = {name: IMAGE, layers: [{busybox: true}, {sizeBytes: 64 << 10, seed}], format: 'oci', out: path.join(dir, `${v}.tar`)}
      builds[v] = {out: opts.out, digest: (await makeImage(opts)).targetDigest!}
    }
    shopKubeconfig = (await cluster.server.serviceAccountKubeconfig({namespace: 'shop'})).kubeconfigPath
    const first = await cli(['push', '--archive', builds.v1.out, '--node', node, ...args(cluster.kubeconfig)])
    expect(first.code, first.stderr).toBe(0)

    for (const ns of ['shop', 'other', 'debugged']) await cluster.createNamespace(ns)
    const apps = '/apis/apps/v1/namespaces/shop'
    const batch = '/apis/batch/v1/namespaces/shop'
    await debuggedPod('shop', 'solo')
    await cluster.admin.create(`${apps}/replicasets`, replicaSet('free'))
    await cluster.admin.create(`${apps}/replicasets`, replicaSet('guarded'))
    await cluster.admin.create('/apis/policy/v1/namespaces/shop/poddisruptionbudgets', {apiVersion: 'policy/v1', kind: 'PodDisruptionBudget',
      metadata: {name: 'guarded'}, spec: {minAvailable: 1, selector: {matchLabels: {app: 'guarded'}}}})
    await cluster.admin.create(`${batch}/jobs`, job('batch'))
    // a Job of a CronJob, as the CronJob controller makes it (the CronJob itself is suspended)
    const cron = await cluster.admin.create(`${batch}/cronjobs`, {apiVersion: 'batch/v1', kind: 'CronJob', metadata: {name: 'nightly'},
      spec: {schedule: '0 3 * * *', suspend: true, jobTemplate: {spec: obj(job('x').spec)}}})
    await cluster.admin.create(`${batch}/jobs`, job('nightly-1', {apiVersion: 'batch/v1', kind: 'CronJob', name: 'nightly', uid: str(obj(cron.metadata).uid),
      controller: true, blockOwnerDeletion: true}))
    // the same image, on the same node, in another namespace
    await cluster.createPod('other', 'elsewhere', node, IMAGE)
    await debuggedPod('debugged', 'probed')

    await until('the shop pods running v1', async () => ((await runningPods('shop')).filter((p) => p.digest === builds.v1.digest).length === 5 ? true : undefined))
    await until('elsewhere and probed running v1', async () =>
      ((await runningPods('other')).length === 1 && (await runningPods('debugged')).length === 1 ? true : undefined))
    // the budget counted: it allows no disruption while its only pod is needed
    await until('the budget computed', async () => {
      const pdb = await cluster.admin.get('/apis/policy/v1/namespaces/shop/poddisruptionbudgets/guarded')
      const st = obj(pdb.status)
      return st.observedGeneration === obj(pdb.metadata).generation && st.currentHealthy === 1 && st.disruptionsAllowed === 0 ? true : undefined
    })
  }, 300_000)
  afterAll(async () => {
    await cluster?.stop()
    await bed?.down()
    if (dir) fs.rmSync(dir, {recursive: true, force: true})
  })

  it('without --restart: the warning names the context namespace\'s pods only, and says a Job\'s pods are left alone', async () => {
    const run = await cli(['push', '--archive', builds.v2.out, '--node', node, ...args(shopKubeconfig)])
    expect(run.code, run.stderr).toBe(0)
    const shop = await runningPods('shop')
    const free = shop.find((p) => p.name.startsWith('free-'))!
    const batch = shop.find((p) => p.name.startsWith('batch-'))!
    const restartable = /warning: pods (.*?) still run the old image of [^;]+; restart them with: .*?--restart/.exec(run.stderr)?.[1]
    expect(restartable, run.stderr).toBeDefined()
    expect(restartable).toContain(`shop/solo on ${node}`)
    expect(restartable).toContain(`shop/${free.name} on ${node} (replicaset/free)`)
    expect(restartable).not.toContain('batch-')
    expect(run.stderr).toContain(`shop/${batch.name} on ${node} still runs the old image of ${IMAGE}: pod of Job batch: not restarted; jobs run to completion — re-run the job`)
    expect(run.stderr).not.toContain('elsewhere')
    expect(run.stderr).not.toContain('probed')
  })

  it('--restart, in the context\'s namespace: the bare pod re-created, the ReplicaSet\'s pod evicted, the guarded one kept by its budget (exit 1), the Jobs\' pods left alone, other namespaces untouched', async () => {
    const before = new Map((await runningPods('shop')).map((p) => [p.name, p]))
    const elsewhere = (await runningPods('other'))[0]
    const probed = (await runningPods('debugged'))[0]
    const auditFrom = cluster.server.audit().length
    const run = await cli(['push', '--archive', builds.v2.out, '--node', node, ...args(shopKubeconfig), '--restart'])
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(1)
    expect(run.stdout).toMatch(/up to date/)
    const name = (prefix: string): string => [...before.keys()].find((n) => n.startsWith(prefix))!

    // the bare pod, once debugged: created again without its ephemeral containers, running the new build
    expect(before.get('solo')?.ephemeral).toBe(1)
    expect(run.stdout).toMatch(new RegExp(`restart shop/pod/solo: re-created: solo on ${node}: running`))
    // a ReplicaSet of its own: its pod evicted, and the ReplicaSet creates a new one
    expect(run.stdout).toContain(`restart shop/pod/${name('free-')}: evicted for its owner to re-create: ReplicaSet free creates it again`)
    // the budget allows no disruption: that pod keeps running, its row says why and what to do
    const guarded = name('guarded-')
    expect(run.stdout).toContain(`restart shop/pod/${guarded}: not restarted: kept by a PodDisruptionBudget`)
    expect(run.stderr).toContain(`shop/${guarded}: error: not restarted: evicting it would violate its PodDisruptionBudget (The disruption budget guarded needs 1 healthy pods and has 1 currently); ` +
      'hint: restart it once the budget allows one more pod down (kubectl get pdb -n shop; more replicas of ReplicaSet guarded make room)')
    expect(run.stderr).toContain(`kubectl delete pod ${guarded} -n shop`)
    // a Job's pods (a CronJob's too) are left alone, said so, with the way to run them again
    expect(run.stdout).toContain('restart shop/job/batch: left alone: pod of Job batch: not restarted; jobs run to completion — re-run the job')
    expect(run.stdout).toContain('restart shop/job/nightly-1: left alone: pod of Job nightly-1 (CronJob nightly): not restarted; jobs run to completion — ' +
      'the CronJob\'s next run starts new pods; to run it now: kubectl create job --from=cronjob/nightly nightly-rerun -n shop')
    // nothing of another namespace
    expect(run.stdout).not.toMatch(/other\/|debugged\//)

    const after = await until('solo and the new pod of free running v2', async () => {
      const pods = await runningPods('shop')
      const v2 = pods.filter((p) => p.digest === builds.v2.digest)
      return v2.some((p) => p.name === 'solo') && v2.some((p) => p.name.startsWith('free-')) ? pods : undefined
    })
    const now = new Map(after.map((p) => [p.name, p]))
    expect(now.get('solo')?.uid).not.toBe(before.get('solo')?.uid)
    expect(now.get('solo')?.ephemeral).toBe(0)
    expect(now.has(name('free-'))).toBe(false)
    for (const kept of [guarded, name('batch-'), name('nightly-1-')]) expect(now.get(kept), kept).toEqual(before.get(kept))
    expect((await runningPods('other'))[0]).toEqual(elsewhere)
    expect((await runningPods('debugged'))[0]).toEqual(probed)

    // as the service account, through exactly rbac.yaml's rights: evictions, no pod deleted but the bare one
    const calls = cluster.server.audit().slice(auditFrom).filter((e) => e.user === SA)
    expect(calls.filter((e) => e.code === 403)).toEqual([])
    const evictions = calls.filter((e) => e.verb === 'create' && e.resource === 'pods/eviction').map((e) => `${e.name}:${e.code < 300 ? 'evicted' : e.code}`).sort()
    expect(evictions).toEqual([`${name('free-')}:evicted`, `${guarded}:429`].sort())
    expect(calls.filter((e) => e.verb === 'delete' && e.resource === 'pods').map((e) => e.name)).toEqual(['solo'])
  })

  it('-n: a debugged pod whose re-creation is refused keeps a manifest kubectl create -f takes', async () => {
    // no more pods in its namespace: a quota of 0 (admission refuses the create)
    await cluster.admin.create(corePath('resourcequotas', 'debugged'), {apiVersion: 'v1', kind: 'ResourceQuota', metadata: {name: 'no-pods'}, spec: {hard: {pods: '0'}}})
    await until('the quota counted', async () => (obj(obj((await cluster.admin.get(corePath('resourcequotas', 'debugged', 'no-pods'))).status).used).pods !== undefined ? true : undefined))
    const run = await cli(['push', '--archive', builds.v2.out, '--node', node, ...args(shopKubeconfig), '-n', 'debugged', '--restart'])
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(1)
    expect(run.stdout).not.toMatch(/shop\//)
    expect(run.stderr).toMatch(/debugged\/probed: error: deleted to restart it, but creating it again failed: .*exceeded quota: no-pods/)
    const file = /its manifest is kept in (\S+\.yaml)/.exec(run.stderr)?.[1]
    expect(file, run.stderr).toBeDefined()
    const manifest = YAML.parse(fs.readFileSync(file!, 'utf8')) as JsonObject
    expect(obj(manifest.spec).ephemeralContainers).toBeUndefined()
    expect(obj(manifest.spec).nodeName).toBe(node)

    await cluster.admin.delete(corePath('resourcequotas', 'debugged', 'no-pods'))
    // the API server takes it as it is (validation and admission, nothing written), then for real
    const dryRun = await until('kubectl create --dry-run=server -f', async () => {
      const r = await cluster.server.kubectl(cluster.server.adminKubeconfigPath, ['create', '--dry-run=server', '-f', file!])
      return r.code === 0 || !/quota/.test(r.stderr) ? r : undefined
    }, 60_000)
    expect(dryRun.stderr).toBe('')
    expect(dryRun.stdout.trim()).toBe('pod/probed created (server dry run)')
    const created = await cluster.server.kubectl(cluster.server.adminKubeconfigPath, ['create', '-f', file!])
    expect(created.code, created.stderr).toBe(0)
    await until('probed running v2', async () => ((await runningPods('debugged')).find((p) => p.name === 'probed')?.digest === builds.v2.digest ? true : undefined))
  })
})
