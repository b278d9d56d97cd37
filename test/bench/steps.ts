// What the bench blocks share: commands on a bed's nodes (ssh, scp, kind's import, emptying a
// node) and the built CLI's `sideload push`, timed, its result checked (bench.ts, p2p.ts).
import * as path from 'node:path'
import {fileURLToPath} from 'node:url'
import type {Bed, BedNode} from '../bed/bed.js'
import {median, run, type RunResult} from './measure.js'

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const CLI = path.join(REPO, 'bin/run.js')
export const CIPHER = 'aes128-gcm@openssh.com'
export const MB = 1024 * 1024

/** Samples per metric, in the order measured. */
export class Samples {
  readonly values = new Map<string, number[]>()
  add(key: string, value: number): void {
    const list = this.values.get(key) ?? []
    list.push(value)
    this.values.set(key, list)
  }
  median(key: string): number | undefined {
    const list = this.values.get(key)
    return list && list.length > 0 ? median(list) : undefined
  }
}

// ---------------------------------------------------------------------------------------------
// the bed: commands on the nodes

/** nerdctl's own state on a node: its default (/var/lib/nerdctl) is a host path all nodes share. */
const NODE_NERDCTL_ROOT = '/var/lib/containerd/nerdctl'

export class Nodes {
  constructor(
    readonly bed: Bed,
    /** nerdctl for this bed's nodes (absolute host path, visible inside them); undefined: none works here. */
    readonly nerdctl?: string,
    readonly nerdctlVersion?: string,
  ) {}

  ssh(node: BedNode, command: string): string[] {
    return ['ssh', '-c', CIPHER, ...this.bed.sshArgs(node), command]
  }

  scp(node: BedNode, file: string, dest: string): string[] {
    return [
      'scp', '-q', '-c', CIPHER, '-i', this.bed.keyPath,
      '-o', `UserKnownHostsFile=${this.bed.knownHostsPath}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
      '-P', String(node.sshPort), file, `root@${node.ip}:${dest}`,
    ]
  }

  /** What `kind load image-archive` runs on each node (pkg/cluster/nodeutils LoadImageArchive). */
  ctrImport(node: BedNode, from: string): string {
    return `ctr --namespace=k8s.io images import --all-platforms --digests --snapshotter=${node.snapshotter} ${from}`
  }

  /** The archive onto the node's disk from stdin: what `--no-unpack` does at the least (no import). */
  catToDisk(): string {
    return `cat > ${NODE_ARCHIVE}`
  }

  /** The seed's last step, `nerdctl -n k8s.io load`, run on the node (its snapshotter from CONTAINERD_SNAPSHOTTER, set by the node's sshd). */
  nerdctlLoad(node: BedNode, from: string): string {
    if (!this.nerdctl) throw new Error(`no nerdctl for the containerd ${node.containerdLine} nodes`)
    return `${this.nerdctl} --data-root ${NODE_NERDCTL_ROOT} --namespace k8s.io load -i ${from}`
  }

  /** Removes every image, blob, snapshot and lease from the node's k8s.io namespace; verifies it. */
  async reset(node: BedNode): Promise<void> {
    const ctr = (args: string[]) => this.bed.ctr(node, args)
    const images = (await ctr(['images', 'ls', '-q'])).split('\n').filter(Boolean)
    if (images.length > 0) await ctr(['images', 'rm', '--sync', ...images])
    const leases = (await ctr(['leases', 'ls', '-q'])).split('\n').filter(Boolean)
    for (const lease of leases) await ctr(['leases', 'rm', '--sync', lease])
    const content = (await ctr(['content', 'ls', '-q'])).split('\n').filter(Boolean)
    if (content.length > 0) await ctr(['content', 'rm', ...content])
    const left = (await ctr(['content', 'ls', '-q'])).trim()
    if (left) throw new Error(`could not empty the content store of node ${node.name}: ${left.split('\n').length} blob(s) left`)
    await this.bed.exec(node, ['rm', '-f', NODE_ARCHIVE])
  }

  async resetAll(nodes: BedNode[]): Promise<void> {
    await Promise.all(nodes.map((n) => this.reset(n)))
  }

  async shapeAll(nodes: BedNode[], rateMbit: number): Promise<void> {
    for (const n of nodes) await this.bed.shape(n, {rateMbit})
  }

  async unshapeAll(nodes: BedNode[]): Promise<void> {
    for (const n of nodes) await this.bed.unshape(n)
  }
}

/** Where the manual workflow and the node-side import keep the archive: the node's own disk. */
export const NODE_ARCHIVE = '/var/lib/containerd/slbench-archive.tar'

// ---------------------------------------------------------------------------------------------
// sideload

export interface PushOutcome {
  ms: number
  sentBytes: number
  maxRssBytes?: number
  /** The sideload process's CPU time, user + sys (ms; with `usage`). */
  cpuMs?: number
  /** Its busiest thread's (ms; with `threads`). */
  busiestThreadCpuMs?: number
  /** Where the time went, from the NDJSON event timestamps (ms). */
  phases?: PushPhases
  statuses: string[]
  /** The CLI's --json output (events, then the result line). */
  stdout: string
  /** Each node's result line: how it got the image under --p2p (seed, p2p, direct) and why a pull failed. */
  results: NodeResult[]
}

export interface NodeResult {
  node: string
  status: string
  sentBytes?: number
  durationMs?: number
  via?: string
  p2pError?: string
  error?: string
}

export interface PushFlags {
  image: string
  /** Read the image from this archive, or else from this containerd (namespace k8s.io). */
  archive?: string
  containerdAddress?: string
  nodes: BedNode[]
  extra?: string[]
  /** argv prefix the CLI runs under, e.g. `ip netns exec <client ns>` (a client behind its own link). */
  prefix?: string[]
}

function parsePushResult(r: RunResult, argv: string[]): {sentBytes: number; statuses: string[]; results: NodeResult[]} {
  const lines = r.stdout.trim().split('\n')
  for (let i = lines.length - 1; i >= 0; i--) {
    let parsed: unknown
    try {
      parsed = JSON.parse(lines[i])
    } catch {
      continue
    }
    const obj = parsed as {type?: string; results?: NodeResult[]}
    if (obj.type === 'result' && Array.isArray(obj.results)) {
      return {
        sentBytes: obj.results.reduce((s, x) => s + (x.sentBytes ?? 0), 0),
        statuses: obj.results.map((x) => String(x.status)),
        results: obj.results,
      }
    }
  }
  throw new Error(`sideload push printed no {"type":"result"} line: ${argv.join(' ')}\n${r.stdout.slice(-1000)}\n${r.stderr.slice(-1000)}`)
}

/**
 * startup: spawn → first event (node start-up, CLI load, archive index read); connect: → first
 * byte sent (SSH, probe, which blobs are missing); transfer: first → last byte event; finish:
 * → node done (last unpack, image record); exit: → process exit (closing connections).
 */
export interface PushPhases {
  startup: number
  connect: number
  transfer: number
  finish: number
  exit: number
}

function phasesOf(stdout: string, spawnedAt: number, exitedAt: number): PushPhases | undefined {
  const events: Array<{t: number; type: string}> = []
  for (const line of stdout.split('\n')) {
    try {
      const e = JSON.parse(line) as {time?: string; type?: string}
      if (e.time && e.type) events.push({t: Date.parse(e.time), type: e.type})
    } catch {
      // not an event line
    }
  }
  const bytes = events.filter((e) => e.type === 'bytes')
  const done = events.filter((e) => e.type === 'done').at(-1)
  if (events.length === 0 || bytes.length === 0 || !done) return undefined
  const first = events[0].t
  return {
    startup: first - spawnedAt,
    connect: bytes[0].t - first,
    transfer: bytes[bytes.length - 1].t - bytes[0].t,
    finish: done.t - bytes[bytes.length - 1].t,
    exit: exitedAt - done.t,
  }
}

/** `usage`: also the process's peak RSS and CPU time (GNU time around it); `threads`: its busiest thread's CPU time. */
export async function sideloadPush(bed: Bed, flags: PushFlags, usage = false, threads = false): Promise<PushOutcome> {
  const source = flags.archive ? ['--archive', flags.archive] : ['--containerd-address', flags.containerdAddress ?? '', '--containerd-namespace', 'k8s.io']
  const argv = [
    ...(flags.prefix ?? []), process.execPath, CLI, 'push', flags.image, ...source,
    ...flags.nodes.flatMap((n) => ['--host', `root@${n.ip}`]),
    '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath, '--json', ...(flags.extra ?? []),
  ]
  const spawnedAt = Date.now()
  const r = await run(argv, {usage, threads})
  const exitedAt = Date.now()
  const {sentBytes, statuses, results} = parsePushResult(r, argv)
  const bad = statuses.filter((s) => s !== 'pushed' && s !== 'up to date')
  if (bad.length > 0 || statuses.length !== flags.nodes.length) throw new Error(`sideload push did not succeed on every node (${statuses.join(', ')}): ${argv.join(' ')}`)
  return {ms: r.ms, sentBytes, maxRssBytes: r.maxRssBytes, cpuMs: r.cpuMs, busiestThreadCpuMs: r.busiestThreadCpuMs, statuses, results, stdout: r.stdout, phases: phasesOf(r.stdout, spawnedAt, exitedAt)}
}

