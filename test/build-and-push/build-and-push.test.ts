// build-and-push end to end: a real dockerd (its embedded BuildKit) builds the image a pod waits
// for, the image goes from the build output to the pod's bed node over SSH, the kubelet stand-in
// (a client of the real kube-apiserver with the node's identity) really runs the container there,
// the pod is Running; a failed build leaves nothing on any node. sideload has rbac.yaml's service account.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {type Bed, type BedNode, startBed} from '../bed/bed.js'
import {type TestDockerd, startDockerd, writeBusyboxArchive} from '../build/dockerd.js'
import {type Cluster, startCluster} from '../kube-real/cluster.js'
import {corePath} from '../kube-real/rest.js'
import {CriClient} from '../../src/containerd/index.js'
import {BuildFailedError} from '../../src/ops/build/index.js'
import {type CliRun, runCli} from '../push/cli.js'
import {BuildAndPushError, type BuildAndPushOptions, buildAndPush} from '../../src/ops/build-and-push.js'

const cli = (args: string[]): Promise<CliRun> => runCli(args, {timeoutMs: 90_000})

describe('build-and-push with dockerd, bed nodes, the real API server and the kubelet stand-in', () => {
  let dockerd: TestDockerd
  let bed: Bed
  let cluster: Cluster
  let kubeconfig: string
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'slbt-bap-'))
  const knownHosts = path.join(work, 'known_hosts')
  const sshFlags = (): string[] => ['--ssh-key', bed.keyPath, '--known-hosts', knownHosts, '--ssh-config', '/dev/null']

  const context = (name: string, dockerfile: string): string => {
    const dir = path.join(work, name)
    fs.mkdirSync(dir, {recursive: true})
    fs.writeFileSync(path.join(dir, 'Dockerfile'), dockerfile)
    fs.writeFileSync(path.join(dir, 'hello.txt'), `hello from ${name}\n`)
    return dir
  }
  const options = ({dir, ...o}: Omit<BuildAndPushOptions, 'build' | 'kubeconfig' | 'ssh'> & {dir: string}): BuildAndPushOptions => ({
    ...o, kubeconfig,
    build: {context: dir, builder: {kind: 'docker', dockerHost: dockerd.host}, workDir: work},
    ssh: {identityFiles: [bed.keyPath], knownHostsPath: knownHosts, agent: false, resolve: {configPath: null}},
    waitTimeoutMs: 30_000,
  })
  const createPod = async (name: string, node: BedNode | undefined, image: string): Promise<void> => {
    await cluster.createPod('default', name, node?.name, image, {policy: 'Never', command: ['sh', '-c', 'exec sleep 3600']})
  }
  const waitingReason = async (name: string): Promise<string | undefined> => (await cluster.podStatus('default', name)).waiting[0]
  const images = async (n: BedNode): Promise<string[]> => (await bed.ctr(n, ['images', 'ls', '-q'])).split('\n').filter(Boolean).sort()
  const content = async (n: BedNode): Promise<string[]> => (await bed.ctr(n, ['content', 'ls', '-q'])).split('\n').filter(Boolean).sort()

  beforeAll(async () => {
    ;[dockerd, bed] = await Promise.all([startDockerd('slbap'), startBed({name: 'slbt-bap', nodes: 2})])
    cluster = await startCluster(bed, {runContainers: true, resyncMs: 500})
    kubeconfig = cluster.kubeconfig
    fs.copyFileSync(bed.knownHostsPath, knownHosts)
    const base = path.join(work, 'busybox.tar')
    await writeBusyboxArchive(base, 'sltest/busybox:1')
    await dockerd.docker(['load', '-i', base])
  }, 120_000)
  afterAll(async () => {
    await cluster?.stop()
    await bed?.down()
    await dockerd?.stop()
    fs.rmSync(work, {recursive: true, force: true})
  })

  it('builds the image of a pod stuck in ErrImageNeverPull, lands it on the pod\'s node only, and the pod runs', async () => {
    const [node1, node2] = bed.nodes
    const image = 'local/bap-web:1.0'
    await createPod('web', node2, image)
    await cluster.kubelet.syncNow()
    expect(await waitingReason('web')).toBe('ErrImageNeverPull')

    const dir = context('web', 'FROM sltest/busybox:1\nCOPY hello.txt /hello.txt\nRUN echo built > /built.txt\n')
    const r = await buildAndPush(options({pod: 'web', dir}))
    expect(r.warnings).toEqual([])
    expect(r.ok).toBe(true)
    expect(r.image).toBe('docker.io/local/bap-web:1.0')
    expect(r.node).toBe(node2.name)
    expect(r.push.results).toMatchObject([{node: node2.name, status: 'pushed', mode: 'native'}])
    expect(r.pod).toEqual({namespace: 'default', name: 'web', container: 'main', outcome: {state: 'running'}})
    expect((await cluster.podStatus('default', 'web')).phase).toBe('Running')

    // the CRI on node2 sees exactly the image dockerd built (same config digest = image ID)
    const cri = new CriClient(node2.hostSocketPath)
    try {
      const seen = await cri.imageStatus(r.image)
      expect(seen?.id).toBe(r.build.digest)
    } finally {
      cri.close()
    }
    expect(await bed.ctr(node2, ['images', 'ls', `name==${r.image}`])).toContain('io.cri-containerd.pinned=pinned')
    expect(await images(node1)).not.toContain(r.image)
    // nothing left in the work dir: the spooled docker save is gone
    expect(fs.readdirSync(work).filter((f) => f.startsWith('sideload-') || f.includes('spool'))).toEqual([])
  }, 60_000)

  it('a failing build exits non-zero and leaves nothing on any node', async () => {
    await createPod('broken', bed.nodes[0], 'local/bap-broken:1.0')
    const before = await Promise.all(bed.nodes.map(async (n) => ({images: await images(n), content: await content(n)})))
    const dir = context('broken', 'FROM sltest/busybox:1\nRUN echo compiling && exit 3\n')
    await expect(buildAndPush(options({pod: 'broken', dir}))).rejects.toBeInstanceOf(BuildFailedError)

    const run = await cli(['build-and-push', dir, '--pod', 'broken', '--kubeconfig', kubeconfig, '--builder', 'docker', '--docker-host', dockerd.host, '--progress', 'plain', ...sshFlags()])
    expect(run.code).toBe(1)
    expect(run.stderr).toContain('exit code: 3')
    expect(run.stdout).toBe('')
    const after = await Promise.all(bed.nodes.map(async (n) => ({images: await images(n), content: await content(n)})))
    expect(after).toEqual(before)
    await cluster.kubelet.syncNow()
    expect(await waitingReason('broken')).toBe('ErrImageNeverPull')
  }, 60_000)

  it('the CLI: build, push, the pod runs, then --expose; and --node for a pod not created yet', async () => {
    const [node1, node2] = bed.nodes
    await createPod('api', node1, 'local/bap-api:2')
    const dir = context('api', 'FROM sltest/busybox:1\nCOPY hello.txt /srv/hello.txt\n')
    const run = await cli(['build-and-push', dir, '--pod', 'api', '--expose', '8080', '--kubeconfig', kubeconfig,
      '--builder', 'docker', '--docker-host', dockerd.host, '--progress', 'quiet', ...sshFlags()])
    expect(run.stderr).toBe('')
    expect(run.code).toBe(0)
    const lines = run.stdout.split('\n')
    expect(lines[0]).toMatch(/^built docker\.io\/local\/bap-api:2 in \S+ \(/)
    expect(lines[1]).toMatch(new RegExp(`^pushed to node ${node1.name}: \\S+ \\S+ sent, .* already there \\(native, `))
    expect(lines[2]).toBe('pod default/api container main: running')
    expect(lines[3]).toMatch(/^service\/api created: NodePort \d+ → pod api port 8080\/TCP \(namespace default\)$/)
    expect(await images(node1)).toContain('docker.io/local/bap-api:2')

    // the pod does not exist yet: the image goes to the node named, the result says so
    const later = await buildAndPush(options({pod: 'later', node: node2.name, tag: 'local/bap-api:2', dir}))
    expect(later.ok).toBe(true)
    expect(later.node).toBe(node2.name)
    expect(later.pod).toBeUndefined()
    expect(later.warnings).toEqual([`pod default/later does not exist yet: the image goes to ${node2.name}; not waiting for the pod`])
    expect(await images(node2)).toContain('docker.io/local/bap-api:2')
  }, 60_000)

  it('the image lands but the container cannot start: the new waiting reason is reported, not a success', async () => {
    const node = bed.nodes[0]
    await cluster.admin.create(corePath('pods', 'default'), {
      apiVersion: 'v1', kind: 'Pod',
      metadata: {name: 'badcmd'},
      spec: {nodeName: node.name, containers: [{name: 'main', image: 'local/bap-badcmd:1', imagePullPolicy: 'IfNotPresent', command: ['/no/such/binary']}]},
    })
    const dir = context('badcmd', 'FROM sltest/busybox:1\nCOPY hello.txt /hello.txt\n')
    const r = await buildAndPush(options({pod: 'badcmd', dir}))
    expect(r.push.ok).toBe(true)
    expect(await images(node)).toContain('docker.io/local/bap-badcmd:1')
    expect(r.ok).toBe(false)
    expect(r.pod?.outcome).toMatchObject({state: 'waiting', reason: 'CreateContainerError'})
  }, 60_000)

  it('refuses before building when the kubelet would ignore the image (:latest → imagePullPolicy Always) or the pod is unscheduled', async () => {
    // no imagePullPolicy: the API server defaults it (an untagged image → Always)
    await cluster.admin.create(corePath('pods', 'default'), {apiVersion: 'v1', kind: 'Pod', metadata: {name: 'latest'},
      spec: {nodeName: bed.nodes[0].name, containers: [{name: 'main', image: 'local/bap-latest'}]}})
    // no nodeName and no scheduler: it stays unscheduled
    await cluster.admin.create(corePath('pods', 'default'), {apiVersion: 'v1', kind: 'Pod', metadata: {name: 'pending'},
      spec: {containers: [{name: 'main', image: 'local/bap-pending:1', imagePullPolicy: 'Never'}]}})
    // a context that cannot build: reaching the builder would fail differently
    const dir = context('never-built', 'FROM sltest/busybox:1\nRUN exit 9\n')
    const always = await buildAndPush(options({pod: 'latest', dir})).catch((e: unknown) => e)
    expect(always).toBeInstanceOf(BuildAndPushError)
    expect((always as Error).message).toContain('imagePullPolicy: Always')
    expect((always as Error).message).toContain('hint: set imagePullPolicy: IfNotPresent (or Never)')
    const pending = await buildAndPush(options({pod: 'pending', dir})).catch((e: unknown) => e)
    expect(pending).toBeInstanceOf(BuildAndPushError)
    expect((pending as Error).message).toContain('is not scheduled to a node yet')
    expect((pending as Error).message).toContain('--node / --host')
  })
})
