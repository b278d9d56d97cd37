// The seed's loop end to end on today's daemons: a standalone buildkitd with a containerd worker
// writes the image into the build machine's containerd 2.x (k8s.io), build-and-push takes it
// from there to the pod's node (containerd 2.x) over SSH, and the kubelet stand-in runs it. The pod
// lives in the real kube-apiserver; sideload has rbac.yaml's service account.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {type Bed, type BedNode, startBed} from '../bed/bed.js'
import {type BuildMachine, startBuildMachine} from '../build/buildkitd.js'
import {type Cluster, startCluster} from '../kube-real/cluster.js'
import {corePath} from '../kube-real/rest.js'
import {CriClient} from '../../src/containerd/index.js'
import {runCli} from '../push/cli.js'

describe('build-and-push --pod with a standalone buildkitd building into k8s.io', () => {
  let bm: BuildMachine
  let bed: Bed
  let cluster: Cluster
  let kubeconfig: string
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'slbt-bapk-'))

  beforeAll(async () => {
    ;[bm, bed] = await Promise.all([startBuildMachine('slb-bapk-b', work), startBed({name: 'slb-bapk', nodes: 2, containerd: '2'})])
    cluster = await startCluster(bed, {runContainers: true, resyncMs: 500})
    kubeconfig = cluster.kubeconfig
  }, 180_000)
  afterAll(async () => {
    await cluster?.stop()
    await Promise.all([bed?.down(), bm?.down()])
    fs.rmSync(work, {recursive: true, force: true})
  })

  const waitingReason = async (name: string): Promise<string | undefined> => (await cluster.podStatus('default', name)).waiting[0]

  it('the field pod (centos-stream-8) stuck in ErrImageNeverPull: built into k8s.io, pushed to its node only, Running', async () => {
    const [node1, node2]: BedNode[] = bed.nodes
    const image = 'local/centos-stream-8-systemd:latest'
    await cluster.admin.create(corePath('pods', 'default'), {
      apiVersion: 'v1', kind: 'Pod',
      metadata: {name: 'centos-stream-8'},
      spec: {nodeName: node2.name, containers: [{name: 'centos-stream-8', image, imagePullPolicy: 'Never', command: ['sh', '-c', 'exec sleep 3600']}]},
    })
    await cluster.kubelet.syncNow()
    expect(await waitingReason('centos-stream-8')).toBe('ErrImageNeverPull')

    const dir = path.join(work, 'ctx')
    fs.mkdirSync(dir)
    fs.writeFileSync(path.join(dir, 'Dockerfile'), 'FROM docker.io/library/busybox:sideload-test\nCOPY motd /etc/motd\nRUN echo systemd-stand-in > /init-name\n')
    fs.writeFileSync(path.join(dir, 'motd'), 'centos stream 8, side-loaded\n')
    const knownHosts = path.join(work, 'known_hosts')
    fs.copyFileSync(bed.knownHostsPath, knownHosts)
    const run = await runCli(
      ['build-and-push', dir, '--pod', 'centos-stream-8', '--kubeconfig', kubeconfig, '--builder', 'buildkit', '--pull', 'missing',
        '--ssh-key', bed.keyPath, '--known-hosts', knownHosts, '--ssh-config', '/dev/null', '--progress', 'quiet', '--json', '--timeout', '60'],
      {env: {BUILDKIT_HOST: bm.buildkitAddress, CONTAINERD_ADDRESS: bm.containerdAddress}},
    )
    expect(run.code, run.stderr).toBe(0)
    const r = JSON.parse(run.stdout) as {image: string; node: string; ok: boolean; push: {results: Array<{status: string; mode: string}>}; pod: {outcome: {state: string}}}
    expect(r).toMatchObject({image: 'docker.io/local/centos-stream-8-systemd:latest', node: node2.name, ok: true, pod: {outcome: {state: 'running'}}})
    expect(r.push.results).toMatchObject([{status: 'pushed', mode: 'native'}])
    expect((await cluster.podStatus('default', 'centos-stream-8')).phase).toBe('Running')

    // built straight into the build machine's containerd (k8s.io), where nerdctl sees it
    const listed = await bm.nerdctl(['images', '--format', '{{.Repository}}:{{.Tag}}'])
    expect(listed.stdout.split('\n')).toContain('local/centos-stream-8-systemd:latest')
    // the node's CRI sees the very manifest the build machine holds
    const built = (await bm.ctr(['images', 'ls'])).split('\n').find((l) => l.startsWith(`${r.image} `))?.trim().split(/\s+/)[2]
    const cri = new CriClient(node2.hostSocketPath)
    try {
      expect((await cri.imageStatus(r.image))?.repoDigests).toContain(`docker.io/local/centos-stream-8-systemd@${built}`)
    } finally {
      cri.close()
    }
    expect(await bed.ctr(node1, ['images', 'ls', '-q'])).not.toContain('centos-stream-8')
  }, 120_000)
})
