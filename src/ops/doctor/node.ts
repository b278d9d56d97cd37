import {ContainerdClient, CriClient, criSnapshotter, ctrActiveIngests, LEASE_IMAGE_LABEL, type LeftoverLease, leftoverLeases, nativeIngests, nativeLeftovers} from '../../containerd/index.js'
import {formatPlatform} from '../../image/index.js'
import {type NodeTarget, probeNode, SOCKET_CANDIDATES} from '../../nodes/index.js'
import {ctrTable} from '../../nodes/ctr.js'
import {type SshConnection, type SshPool, isSshError} from '../../ssh/index.js'
import {type AddCheck, CheckTimeout, hintOf, message, withTimeout} from './check.js'
import {checkLeftovers} from './leftovers.js'

/** SSH (reachability, host key, login), containerd socket, version, snapshotter, sudo ctr. */
export async function checkNode(t: NodeTarget, pool: SshPool, timeoutMs: number, add: AddCheck): Promise<void> {
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

async function checkNativeContainerd(t: NodeTarget, conn: SshConnection, socket: string, platform: string, timeoutMs: number, add: AddCheck): Promise<void> {
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

async function checkCtrContainerd(t: NodeTarget, conn: SshConnection, socket: string, platform: string, timeoutMs: number, add: AddCheck): Promise<void> {
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
