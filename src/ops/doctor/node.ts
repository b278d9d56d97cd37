import {formatPlatform} from '../../image/index.js'
import {type ImageNode, type NodeTarget, openNode} from '../../nodes/index.js'
import {type SshConnection, type SshPool, isSshError} from '../../ssh/index.js'
import {errorInfo} from '../../ui/errors.js'
import {type AddCheck, CheckTimeout, hintOf, message, withTimeout} from './check.js'
import {checkLeftovers, type LeftoverSource} from './leftovers.js'
import type {P2pOptions} from '../p2p.js'
import {checkP2p} from './p2p.js'

const START_CONTAINERD = 'start containerd on the node (systemctl start containerd) and check its log (journalctl -u containerd)'

/**
 * SSH (reachability, host key, login), then the node opened as push opens it (openNode): its
 * containerd, snapshotter and leftovers as that node reports them, and whether sudo ctr is needed;
 * with p2p, whether it can pull from its peers (its registry mirror).
 */
export async function checkNode(t: NodeTarget, pool: SshPool, timeoutMs: number, add: AddCheck, p2p?: P2pOptions['via']): Promise<void> {
  const conn = await checkSsh(t, pool, timeoutMs, add)
  if (!conn) return
  const node = await checkOpen(t, pool, timeoutMs, add)
  if (node) {
    try {
      if (await checkContainerd(t, node, conn, timeoutMs, add)) {
        await checkSnapshotter(t, node, pool, timeoutMs, add)
        await checkLeftovers(t, leftoverSource(node), conn, timeoutMs, add)
      }
    } finally {
      await node.close()
    }
  }
  checkSudoCtr(t, conn, node, add)
  if (p2p) await checkP2p(t, conn, timeoutMs, add)
}

/** The SSH connection (from the pool push uses too) and the host key it was made with. */
async function checkSsh(t: NodeTarget, pool: SshPool, timeoutMs: number, add: AddCheck): Promise<SshConnection | undefined> {
  let conn: SshConnection
  try {
    conn = await withTimeout(pool.get(t.sshTarget), timeoutMs + 5000, `SSH to ${t.sshTarget}`)
  } catch (err) {
    const hostKey = isSshError(err, 'host-key-unknown') || isSshError(err, 'host-key-changed') || isSshError(err, 'host-key-revoked')
    add({check: hostKey ? 'host-key' : 'ssh', target: t.name, status: 'fail', detail: message(err),
      hint: hintOf(err) ?? (isSshError(err, 'unreachable') || err instanceof CheckTimeout
        ? `is sshd running on ${t.sshTarget} and reachable from here? (ssh ${t.sshTarget} true)` : undefined)})
    return undefined
  }
  const hk = conn.hostKey
  add({check: 'ssh', target: t.name, status: 'ok', detail: `${conn.target.user}@${conn.target.host}:${conn.target.port}`})
  if (hk) {
    add({check: 'host-key', target: t.name, status: 'ok',
      detail: `${hk.type} ${hk.fingerprint} ${hk.recorded ? `recorded now in ${hk.file ?? 'known_hosts'}` : `known (${hk.file ?? 'known_hosts'})`}`})
  }
  return conn
}

/** openNode within the time limit; a node that opens after it is closed. */
async function openWithin(t: NodeTarget, pool: SshPool, timeoutMs: number): Promise<ImageNode> {
  const opening = openNode(t, pool)
  try {
    return await withTimeout(opening, timeoutMs, `containerd on ${t.name}`)
  } catch (err) {
    if (err instanceof CheckTimeout) void opening.then((node) => node.close(), () => undefined)
    throw err
  }
}

/** The node opened as push opens it; undefined, with a failed containerd row, when push could not open it either. */
async function checkOpen(t: NodeTarget, pool: SshPool, timeoutMs: number, add: AddCheck): Promise<ImageNode | undefined> {
  try {
    return await openWithin(t, pool, timeoutMs)
  } catch (err) {
    const info = errorInfo(err, t.name)
    add({check: 'containerd', target: t.name, status: 'fail', detail: info.message, hint: info.hint ?? START_CONTAINERD})
    return undefined
  }
}

/** containerd's version, the socket and the import push uses; whether containerd answers. */
async function checkContainerd(t: NodeTarget, node: ImageNode, conn: SshConnection, timeoutMs: number, add: AddCheck): Promise<boolean> {
  const {facts} = node
  if (facts.mode === 'ctr') return checkCtrContainerd(t, node, conn, timeoutMs, add)
  // NativeNode.open asked containerd its version: it answers
  add({check: 'containerd', target: t.name, status: 'ok', detail: `${facts.containerdVersion} at ${facts.socket} (native import, ${formatPlatform(facts.platform)})`})
  return true
}

/** The ctr import: why not native (unless --import-mode ctr asked for it), and whether containerd answers ctr. */
async function checkCtrContainerd(t: NodeTarget, node: ImageNode, conn: SshConnection, timeoutMs: number, add: AddCheck): Promise<boolean> {
  const {socket, platform} = node.facts
  const user = conn.target.user
  const ctr = ctrCommand(conn, socket, node.facts.ctr)
  if (t.importMode !== 'ctr') {
    add({check: 'containerd', target: t.name, status: 'warn',
      detail: `${user} cannot open ${socket} (permission denied); imports go through ${ctr.shown} (slower: no resume)`,
      hint: `connect as root or add ${user} to the socket's group for the native import`})
  }
  try {
    const out = await withTimeout(conn.execCapture([...ctr.argv, 'version']), timeoutMs, `${ctr.shown} version`)
    const server = /Server:[\s\S]*?Version:\s*(\S+)/.exec(out.stdout)?.[1]
    if (out.code !== 0 || !server) {
      add({check: 'containerd', target: t.name, status: 'fail', detail: `${ctr.shown} version failed: ${out.stderr.trim().split('\n').slice(-2).join('; ') || `exit ${out.code}`}`,
        hint: START_CONTAINERD})
      return false
    }
    add({check: 'containerd', target: t.name, status: 'ok', detail: `${server} at ${socket} (ctr import, ${formatPlatform(platform)})`})
    return true
  } catch (err) {
    add({check: 'containerd', target: t.name, status: 'fail', detail: message(err), hint: hintOf(err)})
    return false
  }
}

/** The node's ctr (where its distribution puts it) at the node's socket, as the ctr import runs it: through sudo -n unless root. */
function ctrCommand(conn: SshConnection, socket: string, ctr: string[] = ['ctr']): {argv: string[]; shown: string} {
  const sudo = conn.target.user === 'root' ? [] : ['sudo', '-n']
  return {argv: [...sudo, ...ctr, '--address', socket], shown: [...sudo, ...ctr].join(' ')}
}

/**
 * The snapshotter push unpacks into. When one is configured, the node is opened again without it,
 * to hear which one its CRI uses: images unpacked into another are unpacked again at first start.
 */
async function checkSnapshotter(t: NodeTarget, node: ImageNode, pool: SshPool, timeoutMs: number, add: AddCheck): Promise<void> {
  if (!t.snapshotter) {
    add({check: 'snapshotter', target: t.name, status: 'ok', detail: `${node.facts.snapshotter} (CRI)`})
    return
  }
  let cri: string | undefined
  try {
    const asFound = await openWithin({...t, snapshotter: undefined}, pool, timeoutMs)
    cri = asFound.facts.snapshotter
    await asFound.close()
  } catch (err) {
    add({check: 'snapshotter', target: t.name, status: 'warn', detail: `the CRI plugin did not say: ${message(err)}`,
      hint: `pushes unpack into ${t.snapshotter}, as configured`})
    return
  }
  if (t.snapshotter !== cri) {
    add({check: 'snapshotter', target: t.name, status: 'warn', detail: `configured ${t.snapshotter}, but the CRI uses ${cri}`,
      hint: 'images unpacked into another snapshotter are unpacked again at first start; drop the snapshotter setting'})
  } else add({check: 'snapshotter', target: t.name, status: 'ok', detail: `${cri} (CRI)`})
}

/** Leases and ingests through the node itself, the way push reaches it. */
function leftoverSource(node: ImageNode): LeftoverSource {
  return {leases: () => node.leftoverLeases(), ingests: () => node.leftoverIngests()}
}

/** Whether the import needs sudo ctr, and may use it. */
function checkSudoCtr(t: NodeTarget, conn: SshConnection, node: ImageNode | undefined, add: AddCheck): void {
  const user = conn.target.user
  if (user === 'root') add({check: 'sudo-ctr', target: t.name, status: 'ok', detail: 'not needed (root)'})
  else if (node?.facts.mode === 'ctr') add({check: 'sudo-ctr', target: t.name, status: 'ok', detail: `${user} may run sudo -n ctr`})
  else if (node) add({check: 'sudo-ctr', target: t.name, status: 'ok', detail: `not needed: ${user} can open the socket`})
  // not opened: the containerd row says why (openNode names sudo ctr when that is what is missing)
}
