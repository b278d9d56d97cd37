import type {SshConnection} from '../ssh/index.js'
import {SshError, validateRemotePath} from '../ssh/index.js'
import {parsePlatform, type Platform} from '../image/index.js'
import {criConfig, type CriConfig} from '../containerd/index.js'

/**
 * Where a node's ctr is when it is not on the PATH (as sudo sees it too): k3s links it into
 * /usr/local/bin, RKE2 keeps it in /var/lib/rancher/rke2/bin, Canonical Kubernetes in its snap.
 */
export const CTR_PATHS = ['ctr', '/usr/local/bin/ctr', '/var/lib/rancher/rke2/bin/ctr', '/snap/k8s/current/bin/ctr'] as const
/** Distributions whose ctr is a subcommand of their own binary (`k0s ctr`, `microk8s ctr`, `k3s ctr`). */
export const CTR_SUBCOMMAND_OF = ['k0s', 'microk8s', 'k3s'] as const

/** Where distributions put containerd's socket (field-notes.md), most common first. */
export const SOCKET_CANDIDATES = [
  '/run/containerd/containerd.sock',
  '/run/k3s/containerd/containerd.sock',
  '/var/snap/microk8s/common/run/containerd.sock',
  '/run/k0s/containerd.sock',
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
  /** `sudo -n <ctr>` works for this user (only asked when no socket is accessible). */
  sudoCtr: boolean
  /**
   * The node's ctr as an argv prefix (CTR_CANDIDATES: on the PATH, else where a distribution puts it:
   * `/var/lib/rancher/rke2/bin/ctr`, `k0s ctr`…), its path absolute as sudoers matches it; undefined: none found.
   */
  ctr?: string[]
  /** The node's ctr, e.g. `v2.3.7` (its flags differ between 1.x and 2.x). */
  ctrVersion?: string
  /** The CRI snapshotter as `containerd config dump` shows it (kind's way), when it could be read. */
  criSnapshotter?: string
  /** The CRI's registry host config directory (`config_path`), when the dump names one. */
  registryConfigPath?: string
  /** The CRI's sandbox (pause) image, when the dump could be read. */
  sandboxImage?: string
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
    // the node's ctr: on the PATH, else where its distribution puts it (fixed text, field-notes.md)
    `ctr=; for c in ${CTR_PATHS.join(' ')}; do p=$(command -v "$c" 2>/dev/null) && { ctr="$p"; break; }; done`,
    `if [ -z "$ctr" ]; then for m in ${CTR_SUBCOMMAND_OF.join(' ')}; do p=$(command -v "$m" 2>/dev/null) && { ctr="$p ctr"; break; }; done; fi`,
    'echo "ctr-path $ctr"',
    // sudo + ctr cost ~0.15 s: asked only when no socket can be opened directly (the ctr fallback).
    'if [ "$rw" = no ]; then if [ -n "$ctr" ] && sudo -n $ctr --version >/dev/null 2>&1; then echo "sudo-ctr yes"; else echo "sudo-ctr no"; fi; fi',
    // for the ctr fallback: its version (flags differ by line) and the CRI snapshotter from the
    // merged config (readable without root); last, as the dump runs to the end of the output
    'echo "ctr-version $([ -n "$ctr" ] && $ctr --version 2>/dev/null)"',
    // a node without a `containerd` on the PATH (k3s, RKE2, k0s embed it) has no dump: nothing fails for that
    'echo config-dump; containerd config dump 2>/dev/null || true',
  ].join('; ')
  const out = await conn.execCapture(['sh', '-c', script, 'sideload-probe', ...candidates], {check: true, what: 'probing the node for containerd (its socket, ctr, sudo, config)'})
  const probe: NodeProbe = {sockets: [], user: '', sudoCtr: false}
  const dumpAt = out.stdout.indexOf('\nconfig-dump\n')
  const head = dumpAt < 0 ? out.stdout : out.stdout.slice(0, dumpAt)
  if (dumpAt >= 0) {
    const dump = out.stdout.slice(dumpAt + '\nconfig-dump\n'.length)
    const cri = criConfig(dump)
    probe.criSnapshotter = cri.snapshotter
    probe.registryConfigPath = cri.registryConfigPath
    probe.sandboxImage = cri.sandboxImage
  }
  for (const line of head.split('\n')) {
    const [key, a, b] = line.split(' ')
    if (key === 'ctr-path') {
      const words = line.slice('ctr-path '.length).trim().split(/\s+/).filter(Boolean)
      if (words.length) probe.ctr = words
    } else if (key === 'ctr-version') probe.ctrVersion = /\bv?(\d+\.\d+\.\d+\S*)\s*$/.exec(line)?.[1]
    else if (key === 'user') probe.user = a ?? ''
    else if (key === 'machine') probe.platform = architectureFromUname(a ?? '')
    else if (key === 'sudo-ctr') probe.sudoCtr = a === 'yes'
    else if (key === 'socket' && b) probe.sockets.push({path: b, accessible: a === 'rw'})
  }
  return probe
}

/**
 * The node's CRI config as `containerd config dump` shows it to this SSH user; undefined when it
 * cannot be read (no `containerd` binary on the PATH, e.g. k3s).
 */
export async function nodeCriConfig(conn: SshConnection): Promise<CriConfig | undefined> {
  const out = await conn.execCapture(['containerd', 'config', 'dump']).catch(() => undefined)
  return out && out.code === 0 && out.stdout.trim() ? criConfig(out.stdout) : undefined
}

/** A node whose containerd names no registry host config: a pull asks no mirror, so --p2p does not ask it to pull. */
export function noMirrorConfigured(): SshError {
  return new SshError('command', 'containerd has no registry config_path (containerd config dump): its pulls ask no mirror', {
    hint: 'set config_path = "/etc/containerd/certs.d" in the CRI registry section of the node\'s containerd config, with a hosts.toml per registry pointing at its mirror (`spegel configuration` writes them)',
  })
}

/** The CRI snapshotter, from `containerd config dump` (kind's way). */
export function criSnapshotterFromConfigDump(dump: string): string | undefined {
  return criConfig(dump).snapshotter
}

/** The major version of a ctr version string (`2.3.7` → 2), or undefined. */
export function ctrMajor(version: string | undefined): number | undefined {
  const m = /^(\d+)\./.exec(version ?? '')
  return m ? Number(m[1]) : undefined
}
