// Where the upstream daemons built by scripts/build-daemons.sh are: one folder per name and
// version, pinned in test/daemons/versions.env. Tests and the sandbox find binaries here only.
import * as fs from 'node:fs'
import * as path from 'node:path'

export const REPO_ROOT = path.resolve(import.meta.dirname, '..', '..')

export type DaemonName = 'containerd' | 'buildkit' | 'nerdctl' | 'etcd' | 'kube' | 'spegel'

const VERSION_KEYS: Record<DaemonName, [folder: string, key: string]> = {
  containerd: ['containerd', 'CONTAINERD_VERSION'],
  buildkit: ['buildkit', 'BUILDKIT_VERSION'],
  nerdctl: ['nerdctl', 'NERDCTL_VERSION'],
  etcd: ['etcd', 'ETCD_VERSION'],
  kube: ['kubernetes', 'KUBERNETES_VERSION'],
  spegel: ['spegel', 'SPEGEL_VERSION'],
}

/** The pinned versions (versions.env is shell syntax: KEY=VALUE lines). */
export function daemonVersions(): Record<string, string> {
  const text = fs.readFileSync(path.join(REPO_ROOT, 'test', 'daemons', 'versions.env'), 'utf8')
  const out: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)=(\S+)\s*$/.exec(line)
    if (m) out[m[1]] = m[2]
  }
  return out
}

export function daemonVersion(name: DaemonName): string {
  const [, key] = VERSION_KEYS[name]
  const v = daemonVersions()[key]
  if (!v) throw new Error(`test/daemons/versions.env has no ${key}`)
  return v
}

/** The absolute path of one built binary, e.g. daemonBinary('containerd', 'ctr'); throws with the fix when missing. */
export function daemonBinary(name: DaemonName, binary: string): string {
  const [folder] = VERSION_KEYS[name]
  const cache = process.env.SIDELOAD_DAEMONS_CACHE ?? path.join(REPO_ROOT, '.cache', 'daemons')
  const file = path.join(cache, `${folder}-${daemonVersion(name)}`, 'bin', binary)
  if (!fs.existsSync(file)) {
    throw new Error(`${binary} ${daemonVersion(name)} is not built (no ${file}); run \`scripts/build-daemons.sh ${name}\` (or scripts/setup.sh)`)
  }
  return file
}
