import {formatPlatform} from '../image/index.js'
import {type ResolvedTarget, SshError, type SshPool} from '../ssh/index.js'
import {CtrNode} from './ctr.js'
import {CTR_PATHS, CTR_SUBCOMMAND_OF, probeNode, SOCKET_CANDIDATES} from './detect.js'
import {NativeNode} from './native.js'
import type {ImageNode, NodeTarget} from './node.js'

/**
 * Connect to a node and pick how to import there: natively when this SSH user can open the
 * containerd socket, else `sudo -n ctr` (chosen automatically; `importMode` forces one).
 */
export async function openNode(target: NodeTarget, pool: SshPool): Promise<ImageNode> {
  const conn = await pool.get(sshTargetOf(target, pool))
  const mode = target.importMode ?? 'auto'
  if (mode !== 'ctr') {
    // Fast path (no probe shell on the node): the first socket sshd lets us open is the one. The
    // probe below (a shell: ~0.15 s) only runs when none opens, to pick ctr or explain why.
    for (const path of target.containerdSocket ? [target.containerdSocket] : SOCKET_CANDIDATES) {
      const stream = await conn.tryOpenUnixSocket(path)
      if (stream) return NativeNode.open(target.name, conn, path, {platform: target.platform, snapshotter: target.snapshotter}, stream)
    }
  }
  const probe = await probeNode(conn, target.containerdSocket)
  const platform = target.platform ?? probe.platform
  if (!platform) throw new SshError('command', `could not tell its platform (uname -m gave nothing)`, {hint: 'pass --platform'})
  const socket = probe.sockets.find((s) => s.accessible) ?? probe.sockets[0]
  const searched = target.containerdSocket ? [target.containerdSocket] : [...SOCKET_CANDIDATES]
  if (!socket) {
    throw new SshError('command', `no containerd socket found (looked at ${searched.join(', ')})`, {
      hint: 'is containerd running on the node? If its socket lives elsewhere, set containerdSocket for this node in the config file or pass --containerd-socket',
    })
  }
  const facts = {platform, snapshotter: target.snapshotter}
  if (mode === 'native' || (mode === 'auto' && socket.accessible)) {
    if (!socket.accessible) {
      throw new SshError('channel', `user ${probe.user} cannot open ${socket.path} (permission denied)`, {
        hint: `connect as root, add ${probe.user} to the socket's group, or use --import-mode ctr (sudo -n ctr)`,
      })
    }
    return NativeNode.open(target.name, conn, socket.path, facts)
  }
  const asRoot = probe.user === 'root'
  if (!probe.ctr) {
    throw new SshError('command', `no ctr found on the node (looked on the PATH and at ${CTR_PATHS.slice(1).join(', ')}, and for ${CTR_SUBCOMMAND_OF.join(', ')})`, {
      hint: `connect as root: sideload then talks to ${socket.path} itself and needs no ctr`,
    })
  }
  const ctrShown = probe.ctr.join(' ')
  if (!asRoot && !probe.sudoCtr) {
    throw new SshError('auth', `user ${probe.user} can neither open ${socket.path} nor run \`sudo -n ${ctrShown}\``, {
      hint: `connect as root, add ${probe.user} to the socket's group, or allow it ctr in sudoers: "${probe.user} ALL=(root) NOPASSWD: ${ctrShown}"`,
    })
  }
  const snapshotter = target.snapshotter ?? probe.criSnapshotter
  if (!snapshotter) {
    throw new SshError('command', `could not tell which snapshotter the kubelet uses (\`containerd config dump\` did not show it)`, {
      hint: 'pass --snapshotter NAME (or set snapshotter for this node in the config file)',
    })
  }
  return new CtrNode(target.name, {...facts, platform, snapshotter, socket: socket.path, mode: 'ctr', ctr: probe.ctr, ctrVersion: probe.ctrVersion,
    registryConfigPath: probe.registryConfigPath, sandboxImage: probe.sandboxImage}, conn, asRoot)
}

/** Where the node's SSH connection goes: its target as ssh_config resolves it, its own key first. */
export function sshTargetOf(target: NodeTarget, pool: SshPool): ResolvedTarget {
  const resolved = pool.resolve(target.sshTarget)
  return target.sshKey ? {...resolved, identityFiles: [target.sshKey, ...resolved.identityFiles]} : resolved
}

export function describeNode(node: ImageNode): string {
  return `${node.name} (${formatPlatform(node.facts.platform)}, ${node.facts.mode}${node.facts.snapshotter ? `, ${node.facts.snapshotter}` : ''})`
}
