// push --restart on the real bed with the real control plane: kube-apiserver, kube-scheduler and
// kube-controller-manager (deployment, replicaset, resourcequota… controllers), the kubelet stand-in
// reporting each container's imageID from the node's containerd. A new build of a tag pods already
// run goes to their node (-A: the pods of every namespace); without --restart they are named with
// the command that restarts them;
// with it the Deployment is rolled out and the bare pod created again, both on the same node, both
// running the new digest; a bare pod whose re-creation is refused keeps its manifest on disk.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import YAML from 'yaml'
import {startBed, type Bed} from '../bed/bed.js'
import {makeImage, type MakeImageOptions} from '../bed/images.js'
import {type Cluster, startCluster} from '../kube-real/cluster.js'
import {type JsonObject, arr, corePath, obj, str} from '../kube-real/rest.js'
import {runCli} from '../push/cli.js'
import {until} from './until.js'

const IMAGE = 'docker.io/sl-restart/app:1'
const REPO = 'docker.io/sl-restart/app'

let bed: Bed
let cluster: Cluster
let dir: string
let stateDir: string
const builds: Record<string, {opts: MakeImageOptions; digest: string}> = {}

const args = (): string[] => ['--kubeconfig', cluster.kubeconfig, '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath, '--progress', 'quiet']
const cli = (a: string[]) => runCli(a, {env: {XDG_STATE_HOME: stateDir}, timeoutMs: 240_000})


/** The pods of a namespace, not being deleted, whose only container runs `digest`: name → {node, uid}. */
async function running(ns: string, digest: string): Promise<Map<string, {node: string; uid: string}>> {
  const out = new Map<string, {node: string; uid: string}>()
  for (const p of (await cluster.admin.list(corePath('pods', ns))).items) {
    const m = obj(p.metadata)
    if (m.deletionTimestamp) continue
    const s = arr(obj(p.status).containerStatuses)[0]
    if (s && obj(s.state).running && str(s.imageID) === `${REPO}@${digest}`) out.set(str(m.name), {node: str(obj(p.spec).nodeName), uid: str(m.uid)})
  }
  return out
}

function deployment(ns: string, name: string, node: string): JsonObject {
  const labels = {app: name}
  return {apiVersion: 'apps/v1', kind: 'Deployment', metadata: {name, namespace: ns},
    spec: {replicas: 1, selector: {matchLabels: labels}, template: {metadata: {labels},
      spec: {nodeSelector: {'kubernetes.io/hostname': node}, terminationGracePeriodSeconds: 5,
        containers: [{name: 'main', image: IMAGE, imagePullPolicy: 'Never', command: ['sleep', '3600']}]}}}}
}

describe('push --restart', () => {
  beforeAll(async () => {
    bed = await startBed({name: 'restart', nodes: 2})
    cluster = await startCluster(bed, {scheduler: true, controllers: true, resyncMs: 2000})
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sideload-restart-'))
    stateDir = path.join(dir, 'state')
    for (const [v, seed] of [['v1', 'a'], ['v2', 'b'], ['v3', 'c']]) {
      const opts: MakeImageOptions = {name: IMAGE, layers: [{busybox: true}, {sizeBytes: 64 << 10, seed}], format: 'oci', out: path.join(dir, `${v}.tar`)}
      builds[v] = {opts, digest: (await makeImage(opts)).targetDigest!}
    }
    const node = bed.nodes[0].name
    const first = await cli(['push', '--archive', builds.v1.opts.out, '--node', node, ...args()])
    expect(first.code, first.stderr).toBe(0)
    for (const ns of ['shop', 'quota']) await cluster.createNamespace(ns)
    await cluster.admin.create('/apis/apps/v1/namespaces/shop/deployments', deployment('shop', 'web', node))
    await cluster.createPod('shop', 'solo', node, IMAGE)
    await cluster.createPod('quota', 'lonely', node, IMAGE)
    await until('web and solo running v1', async () => ((await running('shop', builds.v1.digest)).size === 2 ? true : undefined))
    await until('lonely running v1', async () => ((await running('quota', builds.v1.digest)).size === 1 ? true : undefined))
  }, 300_000)
  afterAll(async () => {
    await cluster?.stop()
    await bed?.down()
    if (dir) fs.rmSync(dir, {recursive: true, force: true})
  })

  it('without --restart: the push warns which pods keep the old image and prints the command that restarts them', async () => {
    const run = await cli(['push', '--archive', builds.v2.opts.out, '--node', bed.nodes[0].name, ...args(), '-A'])
    expect(run.code, run.stderr).toBe(0)
    const pods = await running('shop', builds.v1.digest)
    const web = [...pods.keys()].find((n) => n.startsWith('web-'))!
    expect(run.stderr).toContain(`shop/${web} on ${bed.nodes[0].name} (deployment/web)`)
    expect(run.stderr).toContain(`shop/solo on ${bed.nodes[0].name}`)
    expect(run.stderr).toContain('quota/lonely')
    expect(run.stderr).toContain(`restart them with: sideload push --archive ${builds.v2.opts.out} --node ${bed.nodes[0].name} --kubeconfig ${cluster.kubeconfig}`)
    expect(run.stderr).toMatch(/--progress quiet -A --restart/)
    expect(run.stderr).toContain('kubectl rollout restart deployment/web -n shop')
    // nothing restarted
    expect((await running('shop', builds.v1.digest)).size).toBe(2)
  })

  it('--restart: the Deployment is rolled out and the bare pod created again, on the same node, running the new digest; a refused re-creation keeps its manifest', async () => {
    const node = bed.nodes[0].name
    const before = await running('shop', builds.v1.digest)
    // quota/lonely cannot come back: a quota of 0 pods in its namespace (admission refuses the create)
    await cluster.admin.create(corePath('resourcequotas', 'quota'), {apiVersion: 'v1', kind: 'ResourceQuota', metadata: {name: 'no-pods'}, spec: {hard: {pods: '0'}}})
    await until('the quota counted', async () => (obj(obj((await cluster.admin.get(corePath('resourcequotas', 'quota', 'no-pods'))).status).used).pods !== undefined ? true : undefined))

    // the same command again, with --restart: the image is up to date, the pods are restarted
    const run = await cli(['push', '--archive', builds.v2.opts.out, '--node', node, ...args(), '-A', '--restart'])
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(1)
    expect(run.stdout).toMatch(/up to date/)
    expect(run.stdout).toMatch(/restart shop\/deployment\/web: rolled out: web-\S+ on \S+: running/)
    expect(run.stdout).toMatch(/restart shop\/pod\/solo: re-created: solo on \S+: running/)

    const now = await running('shop', builds.v2.digest)
    expect(now.size).toBe(2)
    for (const [name, p] of now) {
      expect(p.node).toBe(node)
      expect(before.get(name)?.uid).not.toBe(p.uid)
    }
    expect([...now.keys()].some((n) => n.startsWith('web-') && !before.has(n))).toBe(true)
    expect(now.has('solo')).toBe(true)
    // the old ones are gone
    expect((await running('shop', builds.v1.digest)).size).toBe(0)

    // the refused one: reported with the way back, its manifest intact on disk
    expect(run.stderr).toMatch(/quota\/lonely: error: deleted to restart it, but creating it again failed: .*exceeded quota: no-pods/)
    const file = /its manifest is kept in (\S+\.yaml)/.exec(run.stderr)?.[1]
    expect(file).toBeDefined()
    expect(run.stderr).toContain(`kubectl create -f ${file}`)
    expect(file!.startsWith(path.join(stateDir, 'sideload', 'pods'))).toBe(true)
    const manifest = YAML.parse(fs.readFileSync(file!, 'utf8')) as JsonObject
    expect(manifest).toMatchObject({apiVersion: 'v1', kind: 'Pod', metadata: {name: 'lonely', namespace: 'quota'}})
    expect(obj(manifest.spec).nodeName).toBe(node)
    expect(arr(obj(manifest.spec).containers)[0]).toMatchObject({name: 'main', image: IMAGE})
    expect(manifest.status).toBeUndefined()
    expect(obj(manifest.metadata).uid).toBeUndefined()
    expect(obj(manifest.metadata).resourceVersion).toBeUndefined()
    // and it is what brings the pod back once the quota allows it
    await cluster.admin.delete(corePath('resourcequotas', 'quota', 'no-pods'))
    await until('the quota gone from admission', async () => {
      const r = await cluster.server.kubectl(cluster.server.adminKubeconfigPath, ['create', '-f', file!])
      return r.code === 0 ? true : undefined
    }, 60_000)
    await until('lonely running v2', async () => ((await running('quota', builds.v2.digest)).get('lonely')?.node === node ? true : undefined))
  })
})
