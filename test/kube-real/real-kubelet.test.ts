// The whole story with the REAL kubelet (v1.36.3) on a bed node: the field pod (hostNetwork, no CNI
// here) is reported ErrImageNeverPull by the kubelet itself, `sideload fix` (the built CLI) sends
// the image over SSH into that node's containerd, and the kubelet runs the container under runc.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import YAML from 'yaml'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {type Bed, startBed} from '../bed/bed.js'
import {makeImage} from '../bed/images.js'
import {type CliRun, runCli} from '../push/cli.js'
import {type RealApiServer, startRealApiServer} from './apiserver.js'
import {bindPod} from './kubelet.js'
import {REPO_ROOT, kubectl} from './kubectl.js'
import {type RealKubelet, SANDBOX_IMAGE, nodeSummary, startRealKubelet} from './real-kubelet.js'
import {type JsonObject, Rest, arr, corePath, obj, str} from './rest.js'

const IMAGE = 'local/centos-stream-8-systemd:latest'

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms: number, log?: () => string): Promise<T> {
  const end = Date.now() + ms
  for (;;) {
    const v = await probe()
    if (v !== undefined) return v
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}${log ? `\n--- kubelet.log\n${log()}` : ''}`)
    await new Promise(r => setTimeout(r, 200))
  }
}

const cli = (args: string[]): Promise<CliRun> => runCli(args, {env: {NO_COLOR: '1'}})

/** cgroup dirs under /sys/fs/cgroup/<controller>/ whose names a kubelet or the CRI would create */
function kubeCgroups(): string[] {
  const out: string[] = []
  for (const ctl of fs.readdirSync('/sys/fs/cgroup')) {
    let entries: string[] = []
    try {
      entries = fs.readdirSync(path.join('/sys/fs/cgroup', ctl))
    } catch {
      continue
    }
    for (const e of entries) if (/^(kubepods|kubelet|system\.slice|kube-)/.test(e)) out.push(`${ctl}/${e}`)
  }
  return out.sort()
}

describe('the real kubelet on a bed node', () => {
  let bed: Bed
  let server: RealApiServer
  let kubelet: RealKubelet
  let admin: Rest
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'slbt-realkubelet-'))
  const cgroupsBefore = kubeCgroups()
  const tunables = ['vm/overcommit_memory', 'kernel/panic', 'kernel/panic_on_oops', 'vm/panic_on_oom']
  const readTunables = () => tunables.map(t => `${t}=${fs.readFileSync(`/proc/sys/${t}`, 'utf8').trim()}`)
  const tunablesBefore = readTunables()
  const hostPaths = ['/var/lib/kubelet', '/var/log/containers', '/var/log/pods', '/usr/libexec/kubernetes', '/etc/kubernetes']
  const hostPathsBefore = hostPaths.filter(p => fs.existsSync(p))

  beforeAll(async () => {
    bed = await startBed({name: 'slbt-realkubelet', nodes: 1, containerd: '2'})
    server = await startRealApiServer()
    admin = new Rest({url: server.url, caPath: server.caPath, certPath: server.adminCert.certPath, keyPath: server.adminCert.keyPath})
    kubelet = await startRealKubelet(bed, bed.nodes[0], server)
  }, 120_000)
  afterAll(async () => {
    // SIDELOAD_KUBELET_LOG=<file>: keep the kubelet's log (the bed's folder goes with the bed)
    if (process.env.SIDELOAD_KUBELET_LOG && kubelet) fs.copyFileSync(kubelet.logPath, process.env.SIDELOAD_KUBELET_LOG)
    await kubelet?.stop()
    admin?.close()
    await server?.stop()
    await bed?.down()
    fs.rmSync(tmp, {recursive: true, force: true})
  }, 120_000)

  it('registers its node as system:node:<node>, with the node\'s containerd 2.x as runtime', async () => {
    const node = bed.nodes[0]
    const n = await waitFor('the Node object', async () => admin.tryGet(corePath('nodes', undefined, node.name)), 30_000, () => kubelet.logTail())
    expect(arr(obj(n.status).addresses)).toContainEqual({type: 'InternalIP', address: node.ip})
    expect(str(obj(obj(n.status).nodeInfo).kubeletVersion)).toBe('v1.36.3')
    const s = await waitFor('the Ready condition', async () => {
      const v = await nodeSummary(admin, node.name)
      return v.ready ? v : undefined
    }, 30_000, () => kubelet.logTail())
    expect(s.runtime).toMatch(/^containerd:\/\/v?2\.\d+\.\d+/)
    // no CNI here: NotReady, with the not-ready taint the kubelet registers (hostNetwork pods run all the same)
    expect(s.ready).toBe('False')
    expect(s.message).toContain('NetworkReady=false reason:NetworkPluginNotReady')
    expect(s.taints).toContain('node.kubernetes.io/not-ready:NoSchedule')
    expect(await bed.ctr(node, ['images', 'ls', '-q'])).toContain(SANDBOX_IMAGE)
  }, 60_000)

  it('the field pod (hostNetwork): ErrImageNeverPull from the kubelet, then sideload fix, and it runs under runc in the node', async () => {
    const node = bed.nodes[0]
    // what kube-controller-manager's root-ca-cert-publisher puts in every namespace (the pod's token volume needs it)
    await admin.create(corePath('configmaps', 'default'), {metadata: {name: 'kube-root-ca.crt'}, data: {'ca.crt': fs.readFileSync(server.caPath, 'utf8')}})
      .catch(() => undefined)
    const pod = YAML.parse(fs.readFileSync(path.join(REPO_ROOT, 'manifests', 'example-pod.yaml'), 'utf8')) as JsonObject
    obj(pod.spec).hostNetwork = true
    const manifest = path.join(tmp, 'pod.yaml')
    fs.writeFileSync(manifest, YAML.stringify(pod))
    const applied = await kubectl(server.adminKubeconfigPath, ['apply', '-f', manifest])
    expect(applied.code, applied.stderr).toBe(0)
    // bound by a Binding, as kube-scheduler binds: the real scheduler would not place it (the node is
    // NotReady for want of CNI and carries the kubelet's not-ready taint; nothing here tolerates it)
    await bindPod(server, 'default', 'centos-stream-8', node.name)

    const waiting = async () => {
      const p = await admin.tryGet(corePath('pods', 'default', 'centos-stream-8'))
      return obj(obj(arr(obj(p?.status).containerStatuses)[0]?.state).waiting)
    }
    const stuck = await waitFor('ErrImageNeverPull from the real kubelet', async () => {
      const w = await waiting()
      return w.reason === 'ErrImageNeverPull' ? w : undefined
    }, 60_000, () => kubelet.logTail())
    expect(stuck.message).toBe(`Container image "${IMAGE}" is not present with pull policy of Never`)
    const events = await admin.list(corePath('events', 'default'), {fieldSelector: 'involvedObject.name=centos-stream-8,reason=ErrImageNeverPull'})
    expect(obj(events.items[0]?.source)).toEqual({component: 'kubelet', host: node.name})

    // the image, as a user has it: an archive; sideload (rbac.yaml's service account) finds the node and sends it
    const archive = path.join(tmp, 'image.tar')
    await makeImage({name: `docker.io/${IMAGE}`, layers: [{busybox: true}, {sizeBytes: 64 << 10, seed: 'real-kubelet'}], format: 'oci', out: archive})
    const {kubeconfigPath} = await server.serviceAccountKubeconfig()
    const run = await cli(['fix', '--kubeconfig', kubeconfigPath, '-n', 'default', '--archive', archive, '--timeout', '90s',
      '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath])
    expect(run.code, `${run.stdout}${run.stderr}\n--- kubelet.log\n${kubelet.logTail()}`).toBe(0)
    expect(run.stdout).toMatch(new RegExp(`default/centos-stream-8\\s+${node.name}\\s+${IMAGE}\\s+pushed\\s+Running`))

    const running = await admin.get(corePath('pods', 'default', 'centos-stream-8'))
    const cs = arr(obj(running.status).containerStatuses)[0]
    expect(str(obj(running.status).phase)).toBe('Running')
    expect(Object.keys(obj(cs.state))).toEqual(['running'])
    expect(str(cs.imageID)).toMatch(/^docker\.io\/local\/centos-stream-8-systemd@sha256:[0-9a-f]{64}$/)
    // the container really runs in the node: a runc task of the node's containerd, its process in the node's network
    const id = str(cs.containerID).replace(/^containerd:\/\//, '')
    expect(id).toMatch(/^[0-9a-f]{64}$/)
    const task = new RegExp(`^${id}\\s+(\\d+)\\s+RUNNING$`, 'm').exec(await bed.ctr(node, ['tasks', 'ls']))
    expect(task).not.toBeNull()
    const info = JSON.parse(await bed.ctr(node, ['containers', 'info', id])) as {Runtime: {Name: string}; Labels: Record<string, string>}
    expect(info.Runtime.Name).toBe('io.containerd.runc.v2')
    expect(info.Labels['io.kubernetes.pod.name']).toBe('centos-stream-8')
    expect(info.Labels['io.kubernetes.container.name']).toBe('centos-stream-8')
    const pid = Number(task?.[1])
    expect(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ')).toContain('sleep 2147483647')
    expect(fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8')).toContain(`:/k8s.io/${id}`)
    // hostNetwork: the node's network namespace, not the host's
    expect(fs.readlinkSync(`/proc/${pid}/ns/net`)).toBe(`net:[${fs.statSync(`/run/netns/slbed-${bed.name}-1`).ino}]`)
    expect(fs.readlinkSync(`/proc/${pid}/ns/net`)).not.toBe(fs.readlinkSync('/proc/self/ns/net'))
  }, 240_000)

  it('stopping leaves nothing behind: no task, no kubelet, no cgroup of its own', async () => {
    const node = bed.nodes[0]
    const ids = await kubelet.criContainers()
    await kubelet.stop()
    expect(bed.processes(node).filter(c => c.includes('bin/kubelet ') || /sleep 2147483647|containerd-shim/.test(c))).toEqual([])
    const tasks = (await bed.ctr(node, ['tasks', 'ls'])).split('\n').slice(1).filter(Boolean)
    expect(tasks).toEqual([])
    for (const id of ids) for (const ctl of fs.readdirSync('/sys/fs/cgroup')) expect(fs.existsSync(path.join('/sys/fs/cgroup', ctl, 'k8s.io', id))).toBe(false)
    expect(kubeCgroups()).toEqual(cgroupsBefore)
    // nothing on the host: its hard-coded paths were the node's own, the kernel tunables untouched
    expect(hostPaths.filter(p => fs.existsSync(p))).toEqual(hostPathsBefore)
    expect(readTunables()).toEqual(tunablesBefore)
    const mounts = (await bed.exec(node, ['cat', '/proc/self/mounts'])).stdout
    expect(mounts).not.toContain(kubelet.dir)
  }, 60_000)
})
