// Where images come from, as the user names it: an archive, a folder of archives, this machine's
// containerd or the Docker daemon. What each kind is called in messages and records.
import * as fs from 'node:fs'
import * as path from 'node:path'
import {dockerHost} from '../docker/endpoint.js'

export type SourceSpec =
  | {kind: 'archive'; path: string}
  | {kind: 'containerd'; address: string; namespace?: string}
  | {kind: 'docker'; endpoint?: string}
  | {kind: 'archive-dir'; dir: string}

/** The local containerd namespace the kubelet's images live in (nerdctl's `-n k8s.io`). */
export const DEFAULT_SOURCE_NAMESPACE = 'k8s.io'

/** A wrong source named on the command line, or one an operation cannot read. */
export class SourceError extends Error {
  override name = 'SourceError'
}

/** The source flags as given (`--source`, `--archive`, `--containerd-address`, `--containerd-namespace`). */
export interface SourceFlagValues {
  /** containerd (the default), docker, a directory of archives or an archive file */
  source?: string
  archive?: string
  containerdAddress: string
  containerdNamespace: string
}

/** The source the flags name; a --source path is looked at to tell a folder from an archive. */
export function sourceFromFlags(flags: SourceFlagValues): SourceSpec {
  if (flags.archive) return {kind: 'archive', path: flags.archive}
  const source = flags.source
  if (!source || source === 'containerd') return {kind: 'containerd', address: flags.containerdAddress, namespace: flags.containerdNamespace}
  if (source === 'docker') return {kind: 'docker'}
  const stat = fs.statSync(source, {throwIfNoEntry: false})
  if (!stat) throw new SourceError(`--source ${source}: no such file or directory (expected containerd, docker, a directory of archives or an archive file)`)
  return stat.isDirectory() ? {kind: 'archive-dir', dir: source} : {kind: 'archive', path: source}
}

/** The source as messages name it. */
export function describeSource(source: SourceSpec): string {
  switch (source.kind) {
    case 'archive': return `archive ${source.path}`
    case 'archive-dir': return `archive directory ${source.dir}`
    case 'containerd': return `containerd ${source.address} (namespace ${source.namespace ?? DEFAULT_SOURCE_NAMESPACE})`
    case 'docker': return `Docker daemon ${dockerHost(source.endpoint)}`
  }
}

/** What the pushed records say they came from (sideload.dev/source). */
export function sourceLabel(source: SourceSpec): string {
  switch (source.kind) {
    case 'archive': return source.path === '-' ? 'archive:stdin' : `archive:${path.resolve(source.path)}`
    case 'archive-dir': return `archive-dir:${path.resolve(source.dir)}`
    case 'containerd': return 'containerd'
    case 'docker': return 'docker'
  }
}

/** The image archives in a folder (docker/nerdctl save tars, OCI layouts), by name. */
export function archivesIn(dir: string): string[] {
  let entries: string[]
  try {
    entries = fs.readdirSync(dir)
  } catch (err) {
    throw new Error(`cannot read the archive directory ${dir}: ${(err as Error).message}`)
  }
  return entries.filter((f) => /\.(tar|tar\.gz|tgz|oci)$/.test(f)).map((f) => path.join(dir, f)).sort()
}
