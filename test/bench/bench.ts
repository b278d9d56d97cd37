// npm run bench [-- --quick] [-- --out FILE] [-- --keep-bed]
//
// Benchmarks sideload against the limits of this machine and the tools people use today, all
// measured in the same run on a test bed this script starts itself (issue 9). Every ratio is
// measured ÷ a baseline from the same run; absolute times are for context only. Medians over
// --runs (default 3; 1 with --quick). Prints a markdown table and writes JSON (bench-results/).
import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import * as os from 'node:os'
import * as path from 'node:path'
import {fileURLToPath} from 'node:url'
import {startBed, type Bed, type BedNode} from '../bed/bed.js'
import {changeLastLayer, type ImageInfo, type MakeImageOptions} from '../bed/images.js'
import {startFixCluster, type FixCluster} from './fix-cluster.js'
import {cachedImage} from './images.js'
import {median, run, runParallel, timed, type RunResult} from './measure.js'
import {renderMarkdown, type BenchReport, type Row} from './report.js'

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const CLI = path.join(REPO, 'bin/run.js')
const CIPHER = 'aes128-gcm@openssh.com'
const SSH2_CAT = path.join(REPO, 'test/bench/ssh2-cat.ts')
const MB = 1024 * 1024
const SHAPED_MBIT = 1000

interface Args {
  quick: boolean
  runs: number
  out: string
  keepBed: boolean
  /** Only the limits and today's tools (no sideload): for checking the bed and the baselines. */
  baselinesOnly: boolean
}

function parseArgs(argv: string[]): Args {
  const args: Args = {quick: false, runs: 3, out: '', keepBed: false, baselinesOnly: false}
  let runsGiven = false
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--quick') args.quick = true
    else if (a === '--keep-bed') args.keepBed = true
    else if (a === '--baselines-only') args.baselinesOnly = true
    else if (a === '--out') args.out = argv[++i] ?? ''
    else if (a === '--runs') {
      args.runs = Number(argv[++i])
      runsGiven = true
    } else {
      process.stderr.write(`unknown argument ${a}\nusage: npm run bench [-- --quick] [-- --runs N] [-- --out FILE] [-- --keep-bed] [-- --baselines-only]\n`)
      process.exit(2)
    }
  }
  if (args.quick && !runsGiven) args.runs = 1
  if (!Number.isInteger(args.runs) || args.runs < 1) throw new Error('--runs needs a positive integer')
  if (!args.out) args.out = path.join(REPO, 'bench-results', `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
  return args
}

const log = (msg: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`)
}

/** Samples per metric, in the order measured. */
class Samples {
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

class Nodes {
  constructor(readonly bed: Bed) {}

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
const NODE_ARCHIVE = '/var/lib/containerd/slbench-archive.tar'

// ---------------------------------------------------------------------------------------------
// sideload

interface PushOutcome {
  ms: number
  sentBytes: number
  maxRssBytes?: number
  /** Where the time went, from the NDJSON event timestamps (ms). */
  phases?: PushPhases
  statuses: string[]
}

interface PushFlags {
  image: string
  archive: string
  nodes: BedNode[]
  extra?: string[]
}

function parsePushResult(r: RunResult, argv: string[]): {sentBytes: number; statuses: string[]} {
  const lines = r.stdout.trim().split('\n')
  for (let i = lines.length - 1; i >= 0; i--) {
    let parsed: unknown
    try {
      parsed = JSON.parse(lines[i])
    } catch {
      continue
    }
    const obj = parsed as {type?: string; results?: Array<{status?: string; sentBytes?: number}>}
    if (obj.type === 'result' && Array.isArray(obj.results)) {
      return {sentBytes: obj.results.reduce((s, x) => s + (x.sentBytes ?? 0), 0), statuses: obj.results.map((x) => String(x.status))}
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

async function sideloadPush(bed: Bed, flags: PushFlags, rss = false): Promise<PushOutcome> {
  const argv = [
    process.execPath, CLI, 'push', flags.image, '--archive', flags.archive,
    ...flags.nodes.flatMap((n) => ['--host', `root@${n.ip}`]),
    '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath, '--json', ...(flags.extra ?? []),
  ]
  const spawnedAt = Date.now()
  const r = await run(argv, {rss})
  const exitedAt = Date.now()
  const {sentBytes, statuses} = parsePushResult(r, argv)
  const bad = statuses.filter((s) => s !== 'pushed' && s !== 'up to date')
  if (bad.length > 0 || statuses.length !== flags.nodes.length) throw new Error(`sideload push did not succeed on every node (${statuses.join(', ')}): ${argv.join(' ')}`)
  return {ms: r.ms, sentBytes, maxRssBytes: r.maxRssBytes, statuses, phases: phasesOf(r.stdout, spawnedAt, exitedAt)}
}

const FIX_PODS = 20

/** `sideload fix` for the pods of `ns`; counts transfers and (image, node) pairs sent more than once. */
async function sideloadFix(bed: Bed, cluster: FixCluster, ns: string, archive: string): Promise<{ms: number; transfers: number; repeated: number}> {
  const argv = [
    process.execPath, CLI, 'fix', '--kubeconfig', cluster.kubeconfig, '-n', ns, '--archive', archive,
    '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath, '--timeout', '120s', '--json',
  ]
  const r = await run(argv)
  let parsed: {ok?: boolean; transfers?: Array<{image: string; node: string; push?: {status?: string}}>}
  try {
    parsed = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as typeof parsed
  } catch {
    throw new Error(`sideload fix --json printed no JSON result: ${argv.join(' ')}\n${r.stdout.slice(-1000)}\n${r.stderr.slice(-1000)}`)
  }
  if (!parsed.ok) throw new Error(`sideload fix did not succeed: ${r.stdout.slice(-2000)}`)
  const pushed = (parsed.transfers ?? []).filter((t) => t.push?.status === 'pushed')
  const pairs = new Set(pushed.map((t) => `${t.image}|${t.node}`))
  return {ms: r.ms, transfers: pushed.length, repeated: pushed.length - pairs.size}
}

// ---------------------------------------------------------------------------------------------
// the run

interface Images {
  base: ImageInfo & {path: string}
  changed: ImageInfo & {path: string}
  big?: ImageInfo & {path: string}
}

async function prepareImages(withBig: boolean): Promise<Images> {
  const cacheDir = path.join(REPO, '.cache/bench')
  // ~170 MB: busybox + 4 × 41 MB + a last 5 MB layer (the one a re-push changes)
  const baseOpts: MakeImageOptions = {
    name: 'slbench/app:dev', format: 'oci', out: '',
    layers: [{busybox: true}, ...[1, 2, 3, 4].map((i) => ({sizeBytes: 41 * MB, seed: `bench-${i}`})), {sizeBytes: 5 * MB, seed: 'bench-last-a'}],
  }
  const base = await cachedImage(cacheDir, baseOpts, log)
  const changed = await cachedImage(cacheDir, changeLastLayer(baseOpts, 'bench-last-b', ''), log)
  let big: Images['big']
  if (withBig) {
    const bigOpts: MakeImageOptions = {
      name: 'slbench/big:dev', format: 'oci', out: '',
      layers: [{busybox: true}, ...[1, 2, 3, 4].map((i) => ({sizeBytes: 255 * MB, seed: `bench-big-${i}`})), {sizeBytes: 5 * MB, seed: 'bench-big-last'}],
    }
    big = await cachedImage(cacheDir, bigOpts, log)
  }
  return {base, changed, big}
}

async function oneRun(round: number, bed: Bed, n: Nodes, img: Images, s: Samples, opts: {baselinesOnly: boolean; quick: boolean; fix?: FixCluster}): Promise<void> {
  const {baselinesOnly, quick, fix} = opts
  const [n1] = bed.nodes
  const all = bed.nodes
  const base = img.base.path
  const changed = img.changed.path
  const name = img.base.name
  log(`run ${round}: start-up and round trips`)
  for (let i = 0; i < (quick ? 3 : 5); i++) {
    s.add('node-e', (await run([process.execPath, '-e', ''])).ms)
    s.add('help', (await run([process.execPath, CLI, '--help'])).ms)
    s.add('ssh-true', (await run(n.ssh(n1, 'true'))).ms)
  }
  s.add('rss-help', (await run([process.execPath, CLI, '--help'], {rss: true})).maxRssBytes ?? Number.NaN)

  log(`run ${round}: limits (raw copy, node-side import)`)
  s.add('raw-1', (await run(n.ssh(n1, 'cat > /dev/null'), {stdinFile: base})).ms)
  const viaSsh2 = await run([process.execPath, '--import', 'tsx', SSH2_CAT, n1.ip, bed.keyPath, base])
  const ssh2 = JSON.parse(viaSsh2.stdout.trim()) as {connectMs: number; transferMs: number}
  s.add('raw-1-ssh2', ssh2.connectMs + ssh2.transferMs)
  s.add('raw-1-ssh2-transfer', ssh2.transferMs)
  s.add('raw-3', (await runParallel(all.map((node) => ({argv: n.ssh(node, 'cat > /dev/null'), opts: {stdinFile: base}})))).ms)
  await n.reset(n1)
  await bed.exec(n1, ['cp', base, NODE_ARCHIVE])
  s.add('import-disk', await timed(async () => {
    const r = await bed.exec(n1, n.ctrImport(n1, NODE_ARCHIVE).split(' '), {timeoutMs: 300_000})
    if (r.code !== 0) throw new Error(`node-side ctr import failed on ${n1.name}: ${r.stderr}`)
  }))

  log(`run ${round}: today's tools (manual, kind-style)`)
  await n.reset(n1)
  s.add('manual-1', await timed(async () => {
    await run(n.scp(n1, base, NODE_ARCHIVE))
    await run(n.ssh(n1, n.ctrImport(n1, NODE_ARCHIVE)))
  }))
  await n.reset(n1)
  s.add('kind-1', (await run(n.ssh(n1, n.ctrImport(n1, '-')), {stdinFile: base})).ms)
  await n.resetAll(all)
  s.add('kind-3', (await runParallel(all.map((node) => ({argv: n.ssh(node, n.ctrImport(node, '-')), opts: {stdinFile: base}})))).ms)

  if (baselinesOnly) return
  log(`run ${round}: sideload, one node`)
  await n.reset(n1)
  const first = await sideloadPush(bed, {image: name, archive: base, nodes: [n1]}, true)
  s.add('push-1', first.ms)
  s.add('rss-170-1', first.maxRssBytes ?? Number.NaN)
  for (const [phase, ms] of Object.entries(first.phases ?? {})) s.add(`push-1-phase-${phase}`, ms)
  const delta = await sideloadPush(bed, {image: name, archive: changed, nodes: [n1]})
  s.add('delta-ms', delta.ms)
  s.add('delta-bytes', delta.sentBytes)
  await n.reset(n1)
  s.add('push-1-nounpack', (await sideloadPush(bed, {image: name, archive: base, nodes: [n1], extra: ['--no-unpack']})).ms)

  log(`run ${round}: sideload, three nodes`)
  await n.resetAll(all)
  const three = await sideloadPush(bed, {image: name, archive: base, nodes: all}, true)
  s.add('push-3', three.ms)
  s.add('rss-170', three.maxRssBytes ?? Number.NaN)
  const again = await sideloadPush(bed, {image: name, archive: base, nodes: all})
  s.add('identical-3', again.ms)
  s.add('identical-3-bytes', again.sentBytes)

  if (fix) {
    log(`run ${round}: sideload fix, ${FIX_PODS} stuck pods on ${all.length} nodes`)
    await n.resetAll(all)
    const ns = `bench-${round}`
    await fix.stuckPods(ns, name, FIX_PODS)
    const outcome = await sideloadFix(bed, fix, ns, base)
    s.add('fix-20', outcome.ms)
    s.add('fix-transfers', outcome.transfers)
    s.add('fix-repeated-transfers', outcome.repeated)
    const stuck = fix.notRunning(ns)
    if (stuck.length > 0) throw new Error(`sideload fix left ${stuck.length} pod(s) of ${ns} not Running: ${stuck.join(', ')}`)
    fix.removePods(ns)
  }

  log(`run ${round}: on a link shaped to ${SHAPED_MBIT} Mbit/s`)
  await n.shapeAll(all, SHAPED_MBIT)
  try {
    s.add('raw-1-shaped', (await run(n.ssh(n1, 'cat > /dev/null'), {stdinFile: base})).ms)
    s.add('raw-3-shaped', (await runParallel(all.map((node) => ({argv: n.ssh(node, 'cat > /dev/null'), opts: {stdinFile: base}})))).ms)
    await n.reset(n1)
    s.add('kind-1-shaped', (await run(n.ssh(n1, n.ctrImport(n1, '-')), {stdinFile: base})).ms)
    await n.reset(n1)
    if (baselinesOnly) return
    s.add('push-1-shaped', (await sideloadPush(bed, {image: name, archive: base, nodes: [n1]})).ms)
    const d = await sideloadPush(bed, {image: name, archive: changed, nodes: [n1]})
    s.add('delta-ms-shaped', d.ms)
    if (quick) return // --quick stays under 2 minutes: no --no-unpack or 3-node rows on the shaped link
    await n.reset(n1)
    s.add('push-1-nounpack-shaped', (await sideloadPush(bed, {image: name, archive: base, nodes: [n1], extra: ['--no-unpack']})).ms)
    await n.resetAll(all)
    s.add('kind-3-shaped', (await runParallel(all.map((node) => ({argv: n.ssh(node, n.ctrImport(node, '-')), opts: {stdinFile: base}})))).ms)
    await n.resetAll(all)
    s.add('push-3-shaped', (await sideloadPush(bed, {image: name, archive: base, nodes: all})).ms)
  } finally {
    await n.unshapeAll(all)
  }
}

async function bigRun(bed: Bed, n: Nodes, img: Images, s: Samples): Promise<void> {
  if (!img.big) return
  log(`peak memory: ${(img.big.archiveBytes / MB).toFixed(0)} MB image to ${bed.nodes.length} nodes`)
  await n.resetAll(bed.nodes)
  const r = await sideloadPush(bed, {image: img.big.name, archive: img.big.path, nodes: bed.nodes}, true)
  s.add('rss-1g', r.maxRssBytes ?? Number.NaN)
  s.add('push-3-big', r.ms)
  await n.resetAll(bed.nodes)
}

async function fixLanded(): Promise<boolean> {
  return fs.existsSync(path.join(REPO, 'dist/commands/fix.js'))
}

// ---------------------------------------------------------------------------------------------
// rows

function buildRows(s: Samples, img: Images, opts: {quick: boolean; fix: boolean}): Row[] {
  const m = (k: string) => s.median(k)
  const sec = (k: string) => {
    const v = m(k)
    return v === undefined ? undefined : v / 1000
  }
  const rows: Row[] = []
  const ratioRow = (scenario: string, measuredKey: string, baselineLabel: string, baseline: number | undefined, maxRatio: number, unit: Row['unit'] = 's'): void => {
    const measured = unit === 's' ? sec(measuredKey) : m(measuredKey)
    const notMeasured = measured === undefined && opts.quick ? 'not measured (--quick)' : undefined
    rows.push({scenario, unit, measured, baseline, baselineLabel, maxRatio, goal: `≤ ${maxRatio} × ${baselineLabel}`, ...(notMeasured ? {notMeasured} : {})})
  }
  const importDisk = sec('import-disk')
  ratioRow('first push, ~170 MB, 1 node', 'push-1', 'node-side import from disk', importDisk, 1.05)
  ratioRow('first push, ~170 MB, 1 node', 'push-1', 'kind-style, 1 node', sec('kind-1'), 0.95)
  ratioRow('first push, ~170 MB, 1 node, manual workflow for comparison', 'push-1', 'manual (copy, import there)', sec('manual-1'), 1)
  const rawShaped = sec('raw-1-shaped')
  const maxShaped = rawShaped !== undefined && importDisk !== undefined ? Math.max(rawShaped, importDisk) : undefined
  ratioRow(`first push, 1 node, ${SHAPED_MBIT} Mbit/s link`, 'push-1-shaped', 'max(raw copy @1G, node-side import)', maxShaped, 1.1)
  ratioRow(`first push, 1 node, ${SHAPED_MBIT} Mbit/s link`, 'push-1-shaped', 'kind-style @1G, 1 node', sec('kind-1-shaped'), 0.95)
  ratioRow('first push --no-unpack, 1 node', 'push-1-nounpack', 'raw copy, 1 node', sec('raw-1'), 1.15)
  ratioRow(`first push --no-unpack, 1 node, ${SHAPED_MBIT} Mbit/s link`, 'push-1-nounpack-shaped', 'raw copy @1G, 1 node', rawShaped, 1.15)
  rows.push({
    scenario: 'raw copy through ssh2 (the SSH library sideload uses), 1 node (context)', unit: 's', measured: sec('raw-1-ssh2'), baseline: sec('raw-1'),
    baselineLabel: 'raw copy, OpenSSH', goal: '—', context: true,
  })
  rows.push({
    scenario: 'first push: time in the transfer phase (first to last byte event) (context)', unit: 's', measured: sec('push-1-phase-transfer'), baseline: sec('raw-1-ssh2-transfer'),
    baselineLabel: 'ssh2 raw copy, transfer only', goal: '—', context: true,
  })
  ratioRow('first push, 3 nodes', 'push-3', 'kind-style, 3 nodes in parallel', sec('kind-3'), 0.95)
  ratioRow(`first push, 3 nodes, ${SHAPED_MBIT} Mbit/s links`, 'push-3-shaped', 'kind-style @1G, 3 nodes', sec('kind-3-shaped'), 0.95)
  const lastLayer = img.changed.platforms[0].layerSizes.at(-1) ?? 0
  const otherLayers = img.changed.platforms[0].layerSizes.slice(0, -1).reduce((a, b) => a + b, 0)
  const deltaExpected = img.changed.totalBytes - otherLayers // last layer + config + manifest
  rows.push({
    scenario: 're-push, last 5 MB layer changed: bytes sent', unit: 'MB', measured: toMb(m('delta-bytes')), baseline: toMb(deltaExpected),
    baselineLabel: `layer ${(lastLayer / MB).toFixed(2)} MB + manifest + config`, maxRatio: 1.05, goal: '≤ 1.05 × (layer + manifest + config)',
  })
  ratioRow('re-push, last 5 MB layer changed: time', 'delta-ms', 'kind-style, 1 node', sec('kind-1'), 0.15)
  ratioRow(`re-push, last layer changed, ${SHAPED_MBIT} Mbit/s link: time`, 'delta-ms-shaped', 'kind-style @1G, 1 node', sec('kind-1-shaped'), 0.15)
  const idBytes = m('identical-3-bytes')
  rows.push({scenario: 'identical re-push, 3 nodes: bytes sent', unit: 'MB', measured: toMb(idBytes), baselineLabel: 'no blob sent', goal: '0 bytes', maxAbsolute: 0})
  const help = sec('help')
  const sshTrue = sec('ssh-true')
  ratioRow('identical re-push, 3 nodes: time', 'identical-3', '`sideload --help` + `ssh node true`', help !== undefined && sshTrue !== undefined ? help + sshTrue : undefined, 2)
  rows.push({scenario: 'peak RSS of `sideload --help` (context: the CLI before any work)', unit: 'MB', measured: toMb(m('rss-help')), baselineLabel: '', goal: '—', context: true})
  const rss170 = toMb(m('rss-170'))
  rows.push({scenario: 'peak RSS, ~170 MB image to 3 nodes', unit: 'MB', measured: rss170, baselineLabel: '', goal: '≤ 150 MB', maxAbsolute: 150})
  if (img.big) {
    const rss1g = toMb(m('rss-1g'))
    rows.push({scenario: 'peak RSS, ~1 GB image to 3 nodes', unit: 'MB', measured: rss1g, baselineLabel: '', goal: '≤ 150 MB', maxAbsolute: 150})
    rows.push({scenario: 'peak RSS, 1 GB vs 170 MB image', unit: 'MB', measured: rss1g, baseline: rss170, baselineLabel: 'peak RSS with the 170 MB image', maxRatio: 1.1, goal: '≤ 1.1 × the 170 MB figure'})
  } else {
    rows.push({scenario: 'peak RSS, ~1 GB image to 3 nodes', unit: 'MB', baselineLabel: '', goal: '≤ 150 MB; within 10 % of the 170 MB figure', notMeasured: 'not measured (--quick)'})
  }
  ratioRow('`sideload --help` start-up', 'help', '`node -e ""`', sec('node-e'), 4)
  if (opts.fix) {
    const transfers = m('fix-transfers')
    const repeated = m('fix-repeated-transfers')
    rows.push({
      scenario: `${FIX_PODS} pods stuck on one image across 3 nodes, \`fix\`: transfers`, unit: 'count', measured: transfers, baseline: 3,
      baselineLabel: '(image, node) pairs', maxRatio: 1, goal: 'one transfer per (image, node)',
      ...(repeated !== undefined && repeated > 0 ? {note: `${repeated} pair(s) sent twice`} : {}),
    })
    ratioRow(`${FIX_PODS} pods stuck on one image across 3 nodes, \`fix\`: time`, 'fix-20', '3-node first push', sec('push-3'), 1.2)
  } else {
    rows.push({
      scenario: `${FIX_PODS} pods stuck on one image across 3 nodes, \`fix\``, unit: 's', baselineLabel: '3-node first push', goal: 'one transfer per (image, node); ≤ 1.2 × 3-node first push',
      notMeasured: 'not measured (fix not landed)',
    })
  }
  return rows
}

function toMb(bytes: number | undefined): number | undefined {
  return bytes === undefined ? undefined : bytes / MB
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  if (process.getuid?.() !== 0) throw new Error('the bench starts a test bed (network namespaces, containerd, sshd): run it as root')
  const started = Date.now()
  if (!args.baselinesOnly && !fs.existsSync(path.join(REPO, 'dist/commands/push.js'))) {
    throw new Error('dist/commands/push.js is missing: run `npm run build` first (the bench runs the built CLI, start-up included)')
  }
  const img = await prepareImages(!args.quick)
  const bedName = `slbench-${process.pid}`
  log(`starting bed ${bedName} (3 nodes)`)
  const bed = await startBed({name: bedName, nodes: 3})
  let interrupted = false
  const onSignal = () => {
    interrupted = true
    log('interrupted: removing the bed')
    void bed.down().finally(() => process.exit(130))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  const n = new Nodes(bed)
  const s = new Samples()
  const withFix = !args.baselinesOnly && (await fixLanded())
  let fix: FixCluster | undefined
  try {
    if (withFix) fix = await startFixCluster(bed)
    for (let round = 1; round <= args.runs; round++) await oneRun(round, bed, n, img, s, {baselinesOnly: args.baselinesOnly, quick: args.quick, fix})
    if (!args.baselinesOnly) await bigRun(bed, n, img, s)
  } finally {
    await fix?.stop()
    if (!args.keepBed && !interrupted) await bed.down()
    else if (args.keepBed) log(`bed ${bedName} kept (npm run bed -- down --name ${bedName})`)
  }
  const rows = buildRows(s, img, {quick: args.quick, fix: withFix})
  const report: BenchReport = {
    date: new Date().toISOString(),
    machine: {cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? '', memMb: Math.round(os.totalmem() / MB), kernel: os.release(), node: process.version},
    runs: args.runs,
    quick: args.quick,
    durationS: (Date.now() - started) / 1000,
    snapshotter: bed.nodes[0].snapshotter,
    images: {
      base: {name: img.base.name, archiveMb: img.base.archiveBytes / MB, layers: img.base.platforms[0].layerSizes.length},
      ...(img.big ? {big: {name: img.big.name, archiveMb: img.big.archiveBytes / MB, layers: img.big.platforms[0].layerSizes.length}} : {}),
    },
    samples: Object.fromEntries(s.values),
    rows,
  }
  await fsp.mkdir(path.dirname(args.out), {recursive: true})
  await fsp.writeFile(args.out, `${JSON.stringify(report, null, 2)}\n`)
  process.stdout.write(renderMarkdown(report))
  log(`wrote ${args.out} (${report.durationS.toFixed(0)} s)`)
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
})
