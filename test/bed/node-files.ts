// What a node is configured with: its containerd config (1.6 or 2.x), sshd config, host key.
import * as fsp from 'node:fs/promises'
import * as path from 'node:path'
import type {ContainerdLine} from './bed.js'
import {CONTAINERD_SOCKET, NodePaths} from './layout.js'
import {must} from './processes.js'

/** The CRI's CNI config dir, inside the node's own /etc/containerd (the default, /etc/cni/net.d, is created on the host). */
export const NODE_CNI_CONF_DIR = '/etc/containerd/cni/net.d'

/** The binaries a 2.x node runs, bind-mounted over Debian's in the node's mount namespace. */
export const CONTAINERD2_BINARIES = ['containerd', 'ctr', 'containerd-shim-runc-v2']

/** Where a node's registry host config is (`<dir>/<registry>/hosts.toml`) when NodeOptions.registryConfigPath is on. */
export const NODE_REGISTRY_CONFIG_PATH = '/etc/containerd/certs.d'

/**
 * `registryConfigPath`: the CRI reads registry hosts from NODE_REGISTRY_CONFIG_PATH (`config_path`)
 * and keeps layers after unpacking (`discard_unpacked_layers = false`), as a node-to-node mirror
 * such as Spegel needs.
 */
export function containerdConfig(p: NodePaths, snapshotter: string, line: ContainerdLine, opts: {registryConfigPath?: boolean} = {}): string {
  // containerd 2.3 reads a version 4 config (its own; no migration at start), 1.6 version 2
  // (2.3's version 4 config names its servers as plugins; version 2 has [grpc] and [ttrpc])
  const servers = line === '2'
    ? `  [plugins.'io.containerd.server.v1.grpc']
    address = "${CONTAINERD_SOCKET}"
  [plugins.'io.containerd.server.v1.ttrpc']
    address = "${CONTAINERD_SOCKET}.ttrpc"`
    : ''
  const head = `version = ${line === '2' ? 4 : 2}
root = "/var/lib/containerd"
state = "/run/containerd"
${line === '2' ? '' : `
[grpc]
  address = "${CONTAINERD_SOCKET}"

[ttrpc]
  address = "${CONTAINERD_SOCKET}.ttrpc"
`}
[plugins]
${servers}`
  if (line === '2') {
    // the CRI image settings live in their own plugin on 2.x (io.containerd.cri.v1.images)
    return `${head}
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "${snapshotter}"${opts.registryConfigPath ? `
    discard_unpacked_layers = false
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = "${NODE_REGISTRY_CONFIG_PATH}"` : ''}
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = "registry.k8s.io/pause:3.10"
  [plugins.'io.containerd.cri.v1.runtime']
    netns_mounts_under_state_dir = true
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      conf_dir = "${NODE_CNI_CONF_DIR}"
  # NRI's socket defaults to /var/run/nri/nri.sock, one path for every node on this host: each
  # node's own run dir instead (two nodes on one socket: the second containerd exits at start)
  [plugins.'io.containerd.nri.v1.nri']
    socket_path = "/run/containerd/nri.sock"
# node dir on the host: ${p.dir}
`
  }
  return `${head}
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.6"
    netns_mounts_under_state_dir = true${opts.registryConfigPath ? `
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "${NODE_REGISTRY_CONFIG_PATH}"` : ''}
    [plugins."io.containerd.grpc.v1.cri".cni]
      conf_dir = "${NODE_CNI_CONF_DIR}"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "${snapshotter}"${opts.registryConfigPath ? `
      discard_unpacked_layers = false` : ''}
  [plugins."io.containerd.internal.v1.opt"]
    path = "/var/lib/containerd/opt"
# node dir on the host: ${p.dir}
`
}

export function sshdConfig(ip: string, snapshotter: string): string {
  return [
    `ListenAddress ${ip}:22`,
    'HostKey /etc/ssh/ssh_host_ed25519_key',
    'PermitRootLogin prohibit-password',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'AuthorizedKeysFile /etc/ssh/authorized_keys/%u',
    'AllowStreamLocalForwarding yes',
    'AllowTcpForwarding yes',
    'Ciphers aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr,aes256-ctr',
    'MaxStartups 100:30:200',
    'MaxSessions 100',
    'PrintMotd no',
    'Subsystem sftp internal-sftp',
    'LogLevel VERBOSE',
    ...(snapshotter === 'overlayfs' ? [] : [`SetEnv CONTAINERD_SNAPSHOTTER=${snapshotter}`]),
    '',
  ].join('\n')
}

export async function readPub(file: string): Promise<string> {
  const [type, key] = (await fsp.readFile(file, 'utf8')).trim().split(/\s+/)
  return `${type} ${key}`
}

export async function newHostKey(p: NodePaths, comment: string): Promise<string> {
  const key = path.join(p.etcSsh, 'ssh_host_ed25519_key')
  await fsp.rm(key, {force: true})
  await fsp.rm(`${key}.pub`, {force: true})
  await must('generating a node host key', 'ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', key])
  return readPub(`${key}.pub`)
}
