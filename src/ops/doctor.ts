// `sideload doctor`: check, one by one, everything sideload needs (kubeconfig, API server, RBAC
// verbs, each node's SSH, host key, containerd, sudo ctr, a local builder) and say how to fix
// what fails. Every check is a row; nothing here changes the cluster or the nodes.
import {AuthorizationV1Api, VersionApi, type V1Node} from '@kubernetes/client-node'
import {resolveBuilder, type BuilderChoice} from './build/index.js'
import {BuildkitClient, describeBuilder} from '../buildkit/client.js'
import {accessFor, type NodeAccess, type SideloadConfig} from '../config/config.js'
import {ContainerdClient, CriClient, criSnapshotter, ctrActiveIngests, describeIngest, describeLeftover, LEASE_IMAGE_LABEL, type LeftoverIngest, type LeftoverLease, leftoverLeases, nativeIngests, nativeLeftovers, PS_IMPORTS_ARGV, runningImports} from '../containerd/index.js'
import {API_ACCESS, RBAC_MANIFEST, RESTART_ACCESS, type ApiResource} from '../kube/access.js'
import {KubeClient} from '../kube/client.js'
import {type KubeTarget, type KubeTargetOptions, loadKubeTarget} from '../kube/config.js'
import {describeKubeError} from '../kube/errors.js'
import {formatPlatform} from '../image/index.js'
import {type NodeTarget, probeNode, SOCKET_CANDIDATES} from '../nodes/index.js'
import {ctrTable} from '../nodes/ctr.js'
import {type PoolOptions, type SshConnection, SshPool, isSshError} from '../ssh/index.js'
import {hostTarget} from './host-targets.js'
import {nodeTarget} from './targets.js'

export type CheckStatus = 'ok' | 'warn' | 'fail'

/** One line of the doctor's report. */
export interface DoctorCheck {
  /** What was checked: kubeconfig, api-server, rbac, node, ssh, host-key, containerd, snapshotter, leftovers (sideload's leases), ingests, imports, sudo-ctr, builder. */
  check: string
  /** What it was checked on: a context, a resource, a node, "local". */
  target: string
  status: CheckStatus
  /** What was found. */
  detail: string
  /** How to fix it (for warn and fail). */
  hint?: string
}

export interface DoctorOptions extends KubeTargetOptions {
  /** Kubernetes nodes to check (--node); default: every node, unless only --host was given. */
  nodes?: string[]
  /** Nodes named by SSH target (--host), no cluster needed. */
  hosts?: string[]
  config?: SideloadConfig
  /** Node settings from flags (socket, snapshotter, import mode). */
  nodeFlags?: NodeAccess
  ssh?: PoolOptions
  /** Which builder to look for (default auto: BuildKit daemon, else dockerd). */
  builder?: BuilderChoice
  /** Limit for each network check (default 15 s). */
  timeoutMs?: number
  /** Called for each check as soon as it is known (live output). */
  onCheck?: (check: DoctorCheck) => void
}

export interface DoctorResult {
  checks: DoctorCheck[]
  /** No check failed (warnings allowed). */
  ok: boolean
}

class CheckTimeout extends Error {}

/** Nodes checked at once (each holds one SSH connection while checked). */
const NODE_JOBS = 8

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CheckTimeout(`${what}: no answer within ${Math.round(ms / 1000)} s`)), ms)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}

function message(err: unknown): string {
  const e = err as {hint?: unknown; message?: unknown}
  const text = String(e?.message ?? err)
  // SshError puts its hint into the message too; the hint has its own column here
  return typeof e?.hint === 'string' ? text.replace(`\n  hint: ${e.hint}`, '') : text
}

function hintOf(err: unknown): string | undefined {
  const hint = (err as {hint?: unknown})?.hint
  return typeof hint === 'string' ? hint : undefined
}

/** Check everything sideload needs; never throws for what it checks (each failure is a row). */
export async function doctor(opts: DoctorOptions = {}): Promise<DoctorResult> {
  const checks: DoctorCheck[] = []
  const timeoutMs = opts.timeoutMs ?? 15_000
  const add = (c: DoctorCheck): void => {
    checks.push(c)
    opts.onCheck?.(c)
  }
  const config = opts.config ?? {defaults: {}, nodes: {}}
  const hostsOnly = (opts.hosts?.length ?? 0) > 0 && (opts.nodes?.length ?? 0) === 0
  const kubeNodes = await checkKube(opts, hostsOnly, timeoutMs, add)

  const targets: NodeTarget[] = []
  for (const node of kubeNodes) {
    const name = node.metadata?.name ?? ''
    try {
      targets.push(nodeTarget(node, accessFor(config, name, opts.nodeFlags)))
    } catch (err) {
      add({check: 'node', target: name, status: 'fail', detail: message(err)})
    }
  }
  for (const host of opts.hosts ?? []) {
    try {
      targets.push(hostTarget(host, config, opts.nodeFlags))
    } catch (err) {
      add({check: 'ssh', target: host, status: 'fail', detail: message(err), hint: hintOf(err)})
    }
  }
  const keys = [...(opts.ssh?.identityFiles ?? []), ...targets.flatMap((t) => (t.sshKey ? [t.sshKey] : []))]
  const pool = new SshPool({...opts.ssh, identityFiles: keys.length ? [...new Set(keys)] : undefined})
  try {
    // up to NODE_JOBS nodes at a time, rows in node order
    const perNode: DoctorCheck[][] = targets.map(() => [])
    let next = 0
    await Promise.all(Array.from({length: Math.min(NODE_JOBS, targets.length)}, async () => {
      for (let i = next++; i < targets.length; i = next++) await checkNode(targets[i], pool, timeoutMs, (c) => perNode[i].push(c))
    }))
    for (const rows of perNode) for (const r of rows) add(r)
  } finally {
    await pool.closeAll()
  }
  await checkBuilder(opts.builder ?? {kind: 'auto'}, timeoutMs, add)
  return {checks, ok: checks.every((c) => c.status !== 'fail')}
}

/** kubeconfig, API server, RBAC; returns the nodes to check (those named, or all). */
async function checkKube(opts: DoctorOptions, hostsOnly: boolean, timeoutMs: number, add: (c: DoctorCheck) => void): Promise<V1Node[]> {
  let target: KubeTarget
  try {
    target = loadKubeTarget(opts)
  } catch (err) {
    // push --host works without a cluster: then a missing kubeconfig is only a warning
    const explicit = opts.kubeconfig !== undefined || opts.context !== undefined
    add({check: 'kubeconfig', target: opts.kubeconfig ?? '-', status: hostsOnly && !explicit ? 'warn' : 'fail', detail: message(err),
      hint: hostsOnly && !explicit ? 'only needed for fix, expose and --node/--pod targets' : 'pass --kubeconfig FILE or --context NAME, or set KUBECONFIG'})
    return []
  }
  add({check: 'kubeconfig', target: target.context || '(in-cluster)', status: 'ok',
    detail: `${target.files.join(', ') || 'service account'}; server ${target.server}, namespace ${target.namespace}`})

  try {
    const v = await withTimeout(target.config.makeApiClient(VersionApi).getCode(), timeoutMs, `API server ${target.server}`)
    add({check: 'api-server', target: target.server, status: 'ok', detail: `Kubernetes ${v.gitVersion}`})
  } catch (err) {
    const e = err instanceof CheckTimeout ? err : describeKubeError(err, {verb: 'get', resource: 'version'}, target.server)
    add({check: 'api-server', target: target.server, status: 'fail', detail: message(e),
      hint: 'check the server address and that it is reachable from here (VPN, firewall); kubectl version shows the same'})
    return []
  }

  // every right sideload uses; those only --restart needs are a warning when missing, not a failure
  const rights = [
    ...(Object.keys(API_ACCESS) as ApiResource[]).map((resource) => ({group: '', resource, verbs: API_ACCESS[resource] as readonly string[], onlyFor: undefined})),
    ...Object.entries(RESTART_ACCESS).flatMap(([group, resources]) => Object.entries(resources as Record<string, readonly string[]>)
      .map(([resource, verbs]) => ({group, resource, verbs, onlyFor: '--restart'}))),
  ]
  const auth = target.config.makeApiClient(AuthorizationV1Api)
  for (const {group, resource, verbs, onlyFor} of rights) {
    const namespace = resource === 'nodes' ? undefined : target.namespace
    const name = group ? `${resource}.${group}` : resource
    const label = onlyFor ? `${name} (${onlyFor})` : name
    const missing: string[] = []
    try {
      for (const verb of verbs) {
        const review = await withTimeout(auth.createSelfSubjectAccessReview({body: {
          apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview',
          spec: {resourceAttributes: {verb, resource, group, namespace}},
        }}), timeoutMs, 'SelfSubjectAccessReview')
        if (!review.status?.allowed) missing.push(verb)
      }
    } catch (err) {
      add({check: 'rbac', target: label, status: 'warn', detail: `cannot ask the API server what this user may do: ${message(err)}`,
        hint: 'kubectl auth can-i --list shows the rights; sideload needs those in ' + RBAC_MANIFEST})
      break
    }
    const where = namespace ? ` in namespace ${namespace}` : ''
    if (missing.length === 0) {
      add({check: 'rbac', target: label, status: 'ok', detail: `${verbs.join(', ')}${where}`})
    } else {
      add({check: 'rbac', target: label, status: onlyFor ? 'warn' : 'fail',
        detail: `not allowed: ${missing.join(', ')} ${name}${where}${onlyFor ? ` (needed only for ${onlyFor})` : ''}`,
        hint: `kubectl apply -f ${RBAC_MANIFEST}, then bind the ClusterRole "sideload" to this user (kubectl create clusterrolebinding sideload --clusterrole=sideload --user=USER)`})
    }
  }

  if (hostsOnly) return []
  const client = new KubeClient(target)
  try {
    if (opts.nodes?.length) {
      const found: V1Node[] = []
      for (const name of opts.nodes) {
        try {
          found.push(await withTimeout(client.getNode(name), timeoutMs, `get node ${name}`))
        } catch (err) {
          add({check: 'node', target: name, status: 'fail', detail: message(err), hint: 'kubectl get nodes lists the names'})
        }
      }
      return found
    }
    const all = await withTimeout(client.listNodes(), timeoutMs, 'list nodes')
    if (all.length === 0) add({check: 'node', target: '-', status: 'warn', detail: 'the cluster has no nodes'})
    return all
  } catch (err) {
    add({check: 'node', target: '-', status: 'fail', detail: message(err)})
    return []
  }
}

/** SSH (reachability, host key, login), containerd socket, version, snapshotter, sudo ctr. */
async function checkNode(t: NodeTarget, pool: SshPool, timeoutMs: number, add: (c: DoctorCheck) => void): Promise<void> {
  let conn: SshConnection
  try {
    conn = await withTimeout(pool.get(t.sshTarget), timeoutMs + 5000, `SSH to ${t.sshTarget}`)
  } catch (err) {
    const hostKey = isSshError(err, 'host-key-unknown') || isSshError(err, 'host-key-changed') || isSshError(err, 'host-key-revoked')
    add({check: hostKey ? 'host-key' : 'ssh', target: t.name, status: 'fail', detail: message(err),
      hint: hintOf(err) ?? (isSshError(err, 'unreachable') || err instanceof CheckTimeout
        ? `is sshd running on ${t.sshTarget} and reachable from here? (ssh ${t.sshTarget} true)` : undefined)})
    return
  }
  const hk = conn.hostKey
  add({check: 'ssh', target: t.name, status: 'ok', detail: `${conn.target.user}@${conn.target.host}:${conn.target.port}`})
  if (hk) {
    add({check: 'host-key', target: t.name, status: 'ok',
      detail: `${hk.type} ${hk.fingerprint} ${hk.recorded ? `recorded now in ${hk.file ?? 'known_hosts'}` : `known (${hk.file ?? 'known_hosts'})`}`})
  }

  let probe
  try {
    probe = await withTimeout(probeNode(conn, t.containerdSocket), timeoutMs, 'probe')
  } catch (err) {
    add({check: 'containerd', target: t.name, status: 'fail', detail: `cannot inspect the node: ${message(err)}`, hint: hintOf(err)})
    return
  }
  const asRoot = probe.user === 'root'
  const socket = probe.sockets.find((s) => s.accessible) ?? probe.sockets[0]
  const platform = probe.platform ? formatPlatform(probe.platform) : 'unknown platform'
  if (!socket) {
    const searched = t.containerdSocket ? [t.containerdSocket] : [...SOCKET_CANDIDATES]
    add({check: 'containerd', target: t.name, status: 'fail', detail: `no containerd socket (looked at ${searched.join(', ')})`,
      hint: `is containerd running on the node (systemctl status containerd)? If its socket is elsewhere, pass --containerd-socket or set containerdSocket for ${t.name} in the config file`})
  } else if (socket.accessible) {
    await checkNativeContainerd(t, conn, socket.path, platform, timeoutMs, add)
  } else {
    add({check: 'containerd', target: t.name, status: probe.sudoCtr ? 'warn' : 'fail',
      detail: `${probe.user} cannot open ${socket.path} (permission denied)${probe.sudoCtr ? '; imports go through sudo -n ctr (slower: no resume)' : ''}`,
      hint: `connect as root or add ${probe.user} to the socket's group for the native import`})
    if (probe.sudoCtr) await checkCtrContainerd(t, conn, socket.path, platform, timeoutMs, add)
  }

  if (asRoot) add({check: 'sudo-ctr', target: t.name, status: 'ok', detail: 'not needed (root)'})
  else if (probe.sudoCtr) add({check: 'sudo-ctr', target: t.name, status: 'ok', detail: `${probe.user} may run sudo -n ctr`})
  else if (socket?.accessible) add({check: 'sudo-ctr', target: t.name, status: 'ok', detail: `not needed: ${probe.user} can open the socket`})
  else {
    add({check: 'sudo-ctr', target: t.name, status: 'fail', detail: `${probe.user} may not run sudo -n ctr`,
      hint: `connect as root, or allow it in sudoers: "${probe.user} ALL=(root) NOPASSWD: /usr/bin/ctr"`})
  }
}

async function checkNativeContainerd(t: NodeTarget, conn: SshConnection, socket: string, platform: string, timeoutMs: number, add: (c: DoctorCheck) => void): Promise<void> {
  let local: string
  try {
    local = await withTimeout(conn.forwardUnixSocket(socket), timeoutMs, `forwarding ${socket}`)
  } catch (err) {
    add({check: 'containerd', target: t.name, status: 'fail', detail: `cannot reach ${socket} through SSH: ${message(err)}`,
      hint: hintOf(err) ?? 'the node\'s sshd must allow stream-local forwarding (AllowStreamLocalForwarding yes), or use --import-mode ctr'})
    return
  }
  const client = new ContainerdClient(`unix://${local}`, {namespace: 'k8s.io', displayName: `node ${t.name}`})
  const cri = new CriClient(`unix://${local}`, `node ${t.name}`)
  try {
    try {
      const v = await withTimeout(client.version(), timeoutMs, `containerd at ${socket}`)
      add({check: 'containerd', target: t.name, status: 'ok', detail: `${v.version} at ${socket} (native import, ${platform})`})
    } catch (err) {
      add({check: 'containerd', target: t.name, status: 'fail', detail: `containerd at ${socket} does not answer: ${message(err)}`,
        hint: 'start containerd on the node (systemctl start containerd) and check its log (journalctl -u containerd)'})
      return
    }
    try {
      const s = await withTimeout(criSnapshotter(client, cri), timeoutMs, 'CRI status')
      if (t.snapshotter && t.snapshotter !== s) {
        add({check: 'snapshotter', target: t.name, status: 'warn', detail: `configured ${t.snapshotter}, but the CRI uses ${s}`,
          hint: 'images unpacked into another snapshotter are unpacked again at first start; drop the snapshotter setting'})
      } else add({check: 'snapshotter', target: t.name, status: 'ok', detail: `${s} (CRI)`})
    } catch (err) {
      add({check: 'snapshotter', target: t.name, status: t.snapshotter ? 'warn' : 'fail', detail: `the CRI plugin did not say: ${message(err)}`,
        hint: t.snapshotter ? `pushes unpack into ${t.snapshotter}, as configured` : (hintOf(err) ?? 'pass --snapshotter NAME')})
    }
    await checkLeftovers(t, {leases: () => nativeLeftovers(client), ingests: () => nativeIngests(client)}, conn, timeoutMs, add)
  } finally {
    cri.close()
    client.close()
  }
}

/**
 * What interrupted transfers of ours left on the node: the lease each native push holds (label
 * `sideload/image`) is kept on purpose when a connection drops, so a re-run resumes; it expires
 * by itself. Doctor shows them, with how to resume or drop them.
 */
async function checkLeftovers(t: NodeTarget, node: {leases: () => Promise<LeftoverLease[]>; ingests: () => Promise<LeftoverIngest[]>}, conn: SshConnection, timeoutMs: number, add: (c: DoctorCheck) => void): Promise<void> {
  let ours: LeftoverLease[] | undefined
  try {
    ours = await withTimeout(node.leases(), timeoutMs, 'containerd leases')
  } catch (err) {
    add({check: 'leftovers', target: t.name, status: 'warn', detail: `could not list containerd's leases: ${message(err)}`})
  }
  if (ours?.length === 0) add({check: 'leftovers', target: t.name, status: 'ok', detail: 'no interrupted transfer of sideload'})
  else if (ours) {
    add({check: 'leftovers', target: t.name, status: 'warn',
      detail: `${ours.length} interrupted transfer(s) keep partial blobs: ${ours.map((l) => describeLeftover(l)).join('; ')}`,
      hint: `push again to resume them; or drop them: sideload prune, or ctr -n k8s.io leases rm ${ours.map((l) => l.id).join(' ')} (containerd's GC then frees what they held)`})
  }

  // blobs being written or left half-written: sideload's own (native) and `ctr images import`'s
  try {
    const ingests = await withTimeout(node.ingests(), timeoutMs, 'containerd ingests')
    const mine = ingests.filter((i) => i.kind === 'sideload')
    const imports = ingests.filter((i) => i.kind === 'import')
    if (ingests.length === 0) add({check: 'ingests', target: t.name, status: 'ok', detail: 'no partial blob of sideload or of ctr import'})
    else {
      const hints: string[] = []
      if (mine.length) hints.push('sideload\'s go with their push\'s lease (above): push again to resume them, or sideload prune')
      if (imports.length) hints.push('a `ctr images import` (sideload\'s fallback, or another\'s) that is not running any more left them: they go with the lease that ctr could not drop (it expires in 24 h; ctr -n k8s.io leases ls shows it, created when the import started), or wait for the import below to end')
      add({check: 'ingests', target: t.name, status: 'warn',
        detail: [mine.length ? `sideload's: ${mine.map(describeIngest).join(', ')}` : '', imports.length ? `ctr import's: ${imports.map(describeIngest).join(', ')}` : ''].filter(Boolean).join('; '),
        hint: hints.join('; ')})
    }
  } catch (err) {
    add({check: 'ingests', target: t.name, status: 'warn', detail: `could not list containerd's ingests: ${message(err)}`})
  }

  // imports running now (ps shows every user's processes, no root needed)
  try {
    const ps = await withTimeout(conn.execCapture(PS_IMPORTS_ARGV), timeoutMs, 'ps')
    if (ps.code !== 0) throw new Error(ps.stderr.trim() || `ps exited with ${ps.code}`)
    const running = runningImports(ps.stdout)
    if (running.length === 0) add({check: 'imports', target: t.name, status: 'ok', detail: 'no ctr images import running'})
    else {
      add({check: 'imports', target: t.name, status: 'warn',
        detail: `${running.length} ctr images import running: ${running.map((r) => `PID ${r.pid} (${r.user}, for ${r.elapsed}): ${r.command}`).join('; ')}`,
        hint: `a push of sideload ends its import before it reports; one that outlived its push (or someone else's) ends by itself when its input closes; to stop it: kill -TERM ${running.map((r) => r.pid).join(' ')} (as its user: sudo passes it on to ctr)`})
    }
  } catch (err) {
    add({check: 'imports', target: t.name, status: 'warn', detail: `could not list the node's processes: ${message(err)}`})
  }
}

async function checkCtrContainerd(t: NodeTarget, conn: SshConnection, socket: string, platform: string, timeoutMs: number, add: (c: DoctorCheck) => void): Promise<void> {
  try {
    const out = await withTimeout(conn.execCapture(['sudo', '-n', 'ctr', '--address', socket, 'version']), timeoutMs, 'sudo -n ctr version')
    const server = /Server:[\s\S]*?Version:\s*(\S+)/.exec(out.stdout)?.[1]
    if (out.code !== 0 || !server) {
      add({check: 'containerd', target: t.name, status: 'fail', detail: `sudo -n ctr version failed: ${out.stderr.trim().split('\n').slice(-2).join('; ') || `exit ${out.code}`}`,
        hint: 'start containerd on the node (systemctl start containerd) and check its log (journalctl -u containerd)'})
      return
    }
    add({check: 'containerd', target: t.name, status: 'ok', detail: `${server} at ${socket} (ctr import, ${platform})`})
  } catch (err) {
    add({check: 'containerd', target: t.name, status: 'fail', detail: message(err), hint: hintOf(err)})
    return
  }
  const ctr = async (args: string[]): Promise<string> => {
    const out = await conn.execCapture(['sudo', '-n', 'ctr', '--address', socket, '--namespace', 'k8s.io', ...args])
    if (out.code !== 0) throw new Error(`sudo -n ctr ${args.join(' ')}: ${out.stderr.trim().split('\n').slice(-2).join('; ') || `exit ${out.code}`}`)
    return out.stdout
  }
  const leases = async (): Promise<LeftoverLease[]> => {
    const ours = ctrTable(await ctr(['leases', 'ls'])).map(({first, labels}) => ({id: first[0], labels})).filter((l) => l.labels[LEASE_IMAGE_LABEL])
    if (ours.length === 0) return []
    const recorded = new Set(ctrTable(await ctr(['images', 'ls'])).map(({first}) => first[0]))
    return leftoverLeases(ours, (image) => recorded.has(image))
  }
  await checkLeftovers(t, {leases, ingests: async () => ctrActiveIngests(await ctr(['content', 'active']))}, conn, timeoutMs, add)
}

async function checkBuilder(choice: BuilderChoice, timeoutMs: number, add: (c: DoctorCheck) => void): Promise<void> {
  const hint = 'only needed for sideload build / build-and-push: start buildkitd or dockerd, or set BUILDKIT_HOST / DOCKER_HOST'
  let endpoint
  try {
    endpoint = resolveBuilder(choice)
  } catch (err) {
    add({check: 'builder', target: 'local', status: 'warn', detail: message(err), hint})
    return
  }
  let client: BuildkitClient | undefined
  try {
    client = await withTimeout(BuildkitClient.connect(endpoint), timeoutMs, describeBuilder(endpoint))
    const workers = await withTimeout(client.listWorkers(), timeoutMs, describeBuilder(endpoint))
    const platforms = [...new Set(workers.flatMap((w) => (w.platforms ?? []).map((p) => `${p.OS}/${p.Architecture}`)))]
    add({check: 'builder', target: 'local', status: 'ok', detail: `${describeBuilder(endpoint)}${platforms.length ? ` (${platforms.join(', ')})` : ''}`})
  } catch (err) {
    add({check: 'builder', target: 'local', status: 'warn', detail: message(err), hint})
  } finally {
    await client?.close().catch(() => undefined)
  }
}
