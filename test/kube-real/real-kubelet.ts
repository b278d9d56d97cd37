// The REAL kubelet (v1.36.3, built by scripts/build-daemons.sh kube) on one bed node: inside that
// node's network and mount namespaces, against the node's own containerd 2.x CRI socket, with the
// node's identity (system:node:<node>, group system:nodes). Opt-in; nothing else uses it.
//
// What it takes to fit this machine (cgroup v1, no swap, 2 cores, shared with other beds, and no
// CAP_SYS_RESOURCE for anyone: a negative oom_score_adj is refused):
// - KubeletConfiguration: cgroupDriver cgroupfs, failCgroupV1 false, cgroupsPerQOS false,
//   enforceNodeAllocatable [], no eviction thresholds, image GC never, oomScoreAdj 0, everything of
//   its own under <node dir>/kubelet (root dir, pod logs, certs, volume plugins), not /var/lib/kubelet.
// - containerd's CRI: restrict_oom_score_adj (the sandbox's -998 and a Guaranteed pod's -997 are
//   clamped to containerd's own 0; without it runc fails: "nsexec: failed to update
//   /proc/self/oom_score_adj: Permission denied" → "can't get final child's PID from pipe: EOF").
//   The node's config gets it for the kubelet's lifetime (containerd restarted, and again at stop).
// - The API server listens on the host's 127.0.0.1: a TCP forwarder on the bed bridge (host IP)
//   reaches it; the kubeconfig names tls-server-name localhost (the serving certificate's SAN).
// - Paths the kubelet hard-codes, and kernel tunables it would set host-wide: the kubelet runs in
//   a mount namespace of its own, a child of the node's, where the node dir's folders are bound over
//   /var/lib (device-plugins/kubelet.sock; the node's /var/lib/containerd bound in again) and
//   /var/log (/var/log/containers), and files with the
//   values it wants over /proc/sys/{vm/overcommit_memory,kernel/panic,kernel/panic_on_oops,...}
//   (protectKernelDefaults: it only checks them). Its root dir is a shared mount made in the node's
//   namespace first, so the volumes it mounts there propagate to containerd.
// - No registry: the sandbox image containerd's CRI pins (registry.k8s.io/pause:3.10) is made
//   locally (busybox, sleeps forever) and imported into the node. No CNI: pods use hostNetwork (the
//   Node stays NotReady: NetworkPluginNotReady).
// stop() deletes what the kubelet ran (pods on the node, their CRI tasks and cgroups), its mounts,
// and puts the node's containerd config back.
import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import * as net from 'node:net'
import * as path from 'node:path'
import type {Bed, BedNode} from '../bed/bed.js'
import {makeImage} from '../bed/images.js'
import {daemonBinary} from '../daemons/daemons.js'
import type {RealApiServer} from './apiserver.js'
import {Rest, arr, corePath, obj, str} from './rest.js'

/** What containerd 2.x's CRI names as its sandbox image (test/bed/node-files.ts, pinned_images.sandbox). */
export const SANDBOX_IMAGE = 'registry.k8s.io/pause:3.10'

/** What the kubelet wants these to read (pkg/kubelet/cm setupKernelTunables), as /proc/sys paths. */
const KERNEL_TUNABLES: Record<string, string> = {
  'vm/overcommit_memory': '1',
  'vm/panic_on_oom': '0',
  'kernel/panic': '10',
  'kernel/panic_on_oops': '1',
  'kernel/keys/root_maxkeys': '1000000',
  'kernel/keys/root_maxbytes': '25000000',
}

export interface RealKubeletOptions {
  /** kubelet -v (default 2) */
  verbosity?: number
  /** how often the kubelet looks at the runtime (PLEG relist is 1 s regardless); default 10s */
  syncFrequency?: string
}

export interface RealKubelet {
  node: BedNode
  /** <node dir>/kubelet: root dir, config, kubeconfig, logs of pods */
  dir: string
  logPath: string
  /** the last lines of the kubelet's log */
  logTail(lines?: number): string
  /** the CRI's containers of the node (ctr -n k8s.io containers ls -q), sandboxes included */
  criContainers(): Promise<string[]>
  stop(): Promise<void>
}

function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`
}

/** A TCP forwarder on `host`:random → 127.0.0.1:`port` (the API server listens on loopback only). */
async function forwarder(host: string, port: number): Promise<{port: number; close(): Promise<void>}> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer(client => {
    const upstream = net.connect({host: '127.0.0.1', port})
    sockets.add(client).add(upstream)
    const drop = () => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    client.on('error', drop).on('close', drop)
    upstream.on('error', drop).on('close', drop)
    client.pipe(upstream).pipe(client)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, host, () => resolve())
  })
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise<void>(resolve => {
      for (const s of sockets) s.destroy()
      server.close(() => resolve())
    }),
  }
}

function kubeletConfig(dir: string, node: BedNode, opts: RealKubeletOptions): string {
  // JSON is YAML; the kubelet reads either
  return JSON.stringify({
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    cgroupDriver: 'cgroupfs',
    failCgroupV1: false,
    failSwapOn: false,
    cgroupsPerQOS: false,
    enforceNodeAllocatable: [],
    protectKernelDefaults: true,
    oomScoreAdj: 0,
    evictionHard: {},
    evictionSoft: {},
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    imageMinimumGCAge: '24h',
    containerRuntimeEndpoint: `unix://${node.containerdSocket}`,
    imageServiceEndpoint: `unix://${node.containerdSocket}`,
    podLogsDir: path.join(dir, 'pod-logs'),
    volumePluginDir: path.join(dir, 'volume-plugins'),
    authentication: {anonymous: {enabled: false}, webhook: {enabled: false}, x509: {}},
    authorization: {mode: 'AlwaysAllow'},
    address: node.ip,
    port: 10250,
    readOnlyPort: 0,
    healthzBindAddress: node.ip,
    healthzPort: 10248,
    syncFrequency: opts.syncFrequency ?? '10s',
    registerNode: true,
    serializeImagePulls: true,
    resolvConf: '/etc/resolv.conf',
    localStorageCapacityIsolation: true,
    logging: {format: 'text', verbosity: opts.verbosity ?? 2},
  }, null, 2)
}

async function healthz(ip: string): Promise<boolean> {
  try {
    const r = await fetch(`http://${ip}:10248/healthz`, {signal: AbortSignal.timeout(1000)})
    return r.status === 200
  } catch {
    return false
  }
}

export async function startRealKubelet(bed: Bed, node: BedNode, server: RealApiServer, opts: RealKubeletOptions = {}): Promise<RealKubelet> {
  if (node.containerdLine !== '2') throw new Error(`the real kubelet needs a containerd 2.x node; ${node.name} runs 1.6`)
  const kubeletBin = daemonBinary('kube', 'kubelet')
  const dir = path.join(bed.nodeDir(node), 'kubelet')
  const logPath = path.join(bed.nodeDir(node), 'log', 'kubelet.log')
  const pidFile = path.join(bed.nodeDir(node), 'kubelet.pid')
  await fsp.mkdir(dir, {recursive: true, mode: 0o750})
  for (const d of ['root', 'pki', 'pod-logs', 'volume-plugins', 'var-log', 'var-lib', 'sysctl']) await fsp.mkdir(path.join(dir, d), {recursive: true})
  const rootDir = path.join(dir, 'root')
  const containerdConfig = path.join(bed.nodeDir(node), 'etc-containerd', 'config.toml')
  const originalConfig = await fsp.readFile(containerdConfig, 'utf8')

  const fwd = await forwarder(bed.hostIp, server.port)
  let started = false
  const cleanups: Array<() => Promise<void>> = [() => fwd.close()]
  const criContainers = async (): Promise<string[]> =>
    (await bed.ctr(node, ['containers', 'ls', '-q']).catch(() => '')).split('\n').map(l => l.trim()).filter(Boolean)

  const stop = async (): Promise<void> => {
    // 1. the pods on this node, deleted as the admin would; the kubelet stops their containers
    if (started) {
      const admin = new Rest({url: server.url, caPath: server.caPath, certPath: server.adminCert.certPath, keyPath: server.adminCert.keyPath})
      try {
        const pods = (await admin.list(corePath('pods'), {fieldSelector: `spec.nodeName=${node.name}`}).catch(() => ({items: []}))).items
        for (const p of pods) {
          const m = obj(p.metadata)
          await admin.delete(corePath('pods', str(m.namespace), str(m.name)), {gracePeriodSeconds: 0}).catch(() => undefined)
        }
        const deadline = Date.now() + 20_000
        while (Date.now() < deadline && (await runningTasks()).length > 0) await new Promise(r => setTimeout(r, 250))
      } finally {
        admin.close()
      }
    }
    // 2. the kubelet
    const pid = Number((await fsp.readFile(pidFile, 'utf8').catch(() => '0')).trim())
    if (pid > 0) {
      try {
        process.kill(pid, 'SIGTERM')
      } catch {
        // gone
      }
      const deadline = Date.now() + 10_000
      while (Date.now() < deadline && fs.existsSync(`/proc/${pid}`)) await new Promise(r => setTimeout(r, 50))
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone
      }
      await fsp.rm(pidFile, {force: true})
    }
    // 3. whatever the CRI still runs (a test that failed half-way): killed, deleted with its cgroups
    const ids = await criContainers()
    for (const id of ids) {
      await bed.exec(node, ['sh', '-c', `ctr -n k8s.io tasks kill -s SIGKILL ${shq(id)} 2>/dev/null; sleep 0.2; ctr -n k8s.io tasks rm -f ${shq(id)} 2>/dev/null; true`])
    }
    for (const id of ids) {
      // cgroup v1: one folder per controller; v2: one
      for (const cg of [...fs.readdirSync('/sys/fs/cgroup').map(ctl => path.join('/sys/fs/cgroup', ctl, 'k8s.io', id)), path.join('/sys/fs/cgroup', 'k8s.io', id)]) {
        if (fs.existsSync(cg)) await fsp.rmdir(cg).catch(() => undefined)
      }
    }
    // 4. the node's mounts under the kubelet's folder (its shared root dir, volumes left mounted)
    const mounts = (await bed.exec(node, ['cat', '/proc/self/mounts'])).stdout.split('\n').map(l => l.split(' ')[1]).filter((m): m is string => !!m)
    const ours = mounts.filter(m => m === dir || m.startsWith(`${dir}/`))
    for (const m of ours.sort((a, b) => b.length - a.length)) await bed.exec(node, ['umount', '-l', m])
    // 5. the node's containerd as it was
    if ((await fsp.readFile(containerdConfig, 'utf8').catch(() => originalConfig)) !== originalConfig) {
      await fsp.writeFile(containerdConfig, originalConfig)
      await bed.stopContainerd(node)
      await bed.startContainerd(node)
    }
    for (const c of cleanups.reverse()) await c().catch(() => undefined)
  }
  const runningTasks = async (): Promise<string[]> =>
    (await bed.ctr(node, ['tasks', 'ls']).catch(() => '')).split('\n').slice(1).filter(l => /\sRUNNING\s*$/.test(l)).map(l => l.split(/\s+/)[0])

  try {
    // the sandbox image: busybox sleeping forever, under the name the CRI pins
    const archive = path.join(dir, 'pause.tar')
    await makeImage({name: SANDBOX_IMAGE, layers: [{busybox: true}], format: 'oci', out: archive})
    await bed.ctr(node, ['images', 'import', archive])
    await fsp.rm(archive, {force: true})

    // identity and configuration
    const cert = server.clientCert(`system:node:${node.name}`, ['system:nodes'])
    // through the forwarder on the bed bridge; the serving certificate names localhost
    const kubeconfig = server.writeKubeconfig(path.join(dir, 'kubeconfig'), {
      apiVersion: 'v1', kind: 'Config',
      clusters: [{name: 'kube-real', cluster: {server: `https://${bed.hostIp}:${fwd.port}`, 'certificate-authority': server.caPath, 'tls-server-name': 'localhost'}}],
      users: [{name: node.name, user: {'client-certificate': cert.certPath, 'client-key': cert.keyPath}}],
      contexts: [{name: 'kubelet', context: {cluster: 'kube-real', user: node.name}}],
      'current-context': 'kubelet',
    })
    const config = path.join(dir, 'config.yaml')
    fs.writeFileSync(config, kubeletConfig(dir, node, opts))

    // containerd's CRI may not ask for a negative oom_score_adj here (no CAP_SYS_RESOURCE)
    const runtimeTable = "  [plugins.'io.containerd.cri.v1.runtime']\n"
    if (!originalConfig.includes(runtimeTable)) throw new Error(`${containerdConfig} has no ${runtimeTable.trim()} table`)
    await fsp.writeFile(containerdConfig, originalConfig.replace(runtimeTable, `${runtimeTable}    restrict_oom_score_adj = true\n`))
    await bed.stopContainerd(node)
    await bed.startContainerd(node)

    // the root dir: a shared mount in the node's namespace (the kubelet's volume mounts reach containerd)
    const shared = await bed.exec(node, ['sh', '-ec', `mount --bind ${shq(rootDir)} ${shq(rootDir)}; mount --make-rshared ${shq(rootDir)}`])
    if (shared.code !== 0) throw new Error(`making ${rootDir} a shared mount in node ${node.name} failed: ${shared.stderr}`)
    // the kubelet's own mount namespace: the node's own /var/lib and /var/log, kernel tunables as it wants them
    // (/var/lib/containerd stays where it was: the kubelet stats the image filesystem the CRI names)
    await fsp.mkdir(path.join(dir, 'var-lib', 'containerd'), {recursive: true})
    const script: string[] = [
      `mount --rbind /var/lib/containerd ${shq(path.join(dir, 'var-lib', 'containerd'))}`,
      `mount --rbind ${shq(path.join(dir, 'var-lib'))} /var/lib`,
      `mount --bind ${shq(path.join(dir, 'var-log'))} /var/log`,
    ]
    for (const [key, want] of Object.entries(KERNEL_TUNABLES)) {
      const f = path.join(dir, 'sysctl', key.replace(/\//g, '.'))
      fs.writeFileSync(f, `${want}\n`)
      script.push(`[ "$(cat /proc/sys/${key})" = ${want} ] || mount --bind ${shq(f)} /proc/sys/${key}`)
    }
    const argv = [
      kubeletBin,
      `--config=${config}`,
      `--kubeconfig=${kubeconfig}`,
      `--root-dir=${rootDir}`,
      `--cert-dir=${path.join(dir, 'pki')}`,
      `--hostname-override=${node.name}`,
      `--node-ip=${node.ip}`,
    ]
    script.push(`exec ${argv.map(shq).join(' ')}`)

    started = true
    // unshare without --fork: the pid bed.startDaemon records is the kubelet's
    await bed.startDaemon(node, 'kubelet', ['unshare', '--mount', '--propagation', 'unchanged', '--', 'sh', '-ec', script.join('\n')],
      () => healthz(node.ip))
    return {
      node, dir, logPath, criContainers, stop,
      logTail(lines = 40) {
        try {
          return fs.readFileSync(logPath, 'utf8').split('\n').slice(-lines).join('\n')
        } catch {
          return ''
        }
      },
    }
  } catch (err) {
    const tail = (() => {
      try {
        return fs.readFileSync(logPath, 'utf8').split('\n').slice(-30).join('\n')
      } catch {
        return ''
      }
    })()
    await stop().catch(() => undefined)
    throw new Error(`${(err as Error).message}${tail ? `\n--- kubelet.log\n${tail}` : ''}`)
  }
}

/** The node as the real kubelet registered it: Ready condition (reason, message), runtime version. */
export async function nodeSummary(admin: Rest, name: string): Promise<{ready: string; reason: string; message: string; runtime: string; taints: string[]}> {
  const n = await admin.get(corePath('nodes', undefined, name))
  const ready = arr(obj(n.status).conditions).find(c => c.type === 'Ready') ?? {}
  return {
    ready: str(ready.status), reason: str(ready.reason), message: str(ready.message),
    runtime: str(obj(obj(n.status).nodeInfo).containerRuntimeVersion),
    taints: arr(obj(n.spec).taints).map(t => `${str(t.key)}:${str(t.effect)}`),
  }
}
