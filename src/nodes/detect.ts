import type {SshConnection} from '../ssh/index.js'
import {validateRemotePath} from '../ssh/index.js'
import {parsePlatform, type Platform} from '../image/index.js'

/** Where distributions put containerd's socket (field-notes.md), most common first. */
export const SOCKET_CANDIDATES = [
  '/run/containerd/containerd.sock',
  '/run/k3s/containerd/containerd.sock',
  '/var/snap/microk8s/common/run/containerd.sock',
] as const

export interface SocketProbe {
  path: string
  /** The SSH user may open it (root, or in the socket's group). */
  accessible: boolean
}

export interface NodeProbe {
  sockets: SocketProbe[]
  platform?: Platform
  user: string
  /** `sudo -n ctr` works for this user (only asked when no socket is accessible). */
  sudoCtr: boolean
}

/** uname -m → GOARCH-style architecture (what OCI platforms and kubelet's nodeInfo use). */
export function architectureFromUname(machine: string): Platform | undefined {
  const m = machine.trim()
  const table: Record<string, Platform> = {
    x86_64: {os: 'linux', architecture: 'amd64'},
    amd64: {os: 'linux', architecture: 'amd64'},
    aarch64: {os: 'linux', architecture: 'arm64', variant: 'v8'},
    arm64: {os: 'linux', architecture: 'arm64', variant: 'v8'},
    armv7l: {os: 'linux', architecture: 'arm', variant: 'v7'},
    armv6l: {os: 'linux', architecture: 'arm', variant: 'v6'},
    i686: {os: 'linux', architecture: '386'},
    i386: {os: 'linux', architecture: '386'},
    ppc64le: {os: 'linux', architecture: 'ppc64le'},
    s390x: {os: 'linux', architecture: 's390x'},
    riscv64: {os: 'linux', architecture: 'riscv64'},
  }
  return table[m] ?? (m ? parsePlatform(`linux/${m}`) : undefined)
}

/**
 * One SSH exec that tells us, for each candidate socket, whether it exists and whether this
 * user can open it, plus the machine type and whether `sudo -n ctr` is allowed. The script is
 * fixed text; candidate paths are validated and passed as quoted arguments, never spliced.
 */
export async function probeNode(conn: SshConnection, socketOverride?: string): Promise<NodeProbe> {
  const candidates = socketOverride ? [validateRemotePath(socketOverride)] : [...SOCKET_CANDIDATES]
  const script = [
    'echo "user $(id -un)"',
    'echo "machine $(uname -m)"',
    'rw=no',
    'for p in "$@"; do if [ -S "$p" ]; then if [ -r "$p" ] && [ -w "$p" ]; then echo "socket rw $p"; rw=yes; else echo "socket denied $p"; fi; fi; done',
    // sudo + ctr cost ~0.15 s: asked only when no socket can be opened directly (the ctr fallback).
    'if [ "$rw" = no ]; then if sudo -n ctr --version >/dev/null 2>&1; then echo "sudo-ctr yes"; else echo "sudo-ctr no"; fi; fi',
  ].join('; ')
  const out = await conn.execCapture(['sh', '-c', script, 'sideload-probe', ...candidates], {check: true})
  const probe: NodeProbe = {sockets: [], user: '', sudoCtr: false}
  for (const line of out.stdout.split('\n')) {
    const [key, a, b] = line.split(' ')
    if (key === 'user') probe.user = a ?? ''
    else if (key === 'machine') probe.platform = architectureFromUname(a ?? '')
    else if (key === 'sudo-ctr') probe.sudoCtr = a === 'yes'
    else if (key === 'socket' && b) probe.sockets.push({path: b, accessible: a === 'rw'})
  }
  return probe
}

