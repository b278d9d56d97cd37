// npm run bench [-- --quick] [-- --runs N] [-- --runs-1.6 N] [-- --runs-p2p N] [-- --only p2p] [-- --out FILE] [-- --keep-bed]
//
// Benchmarks sideload against the limits of this machine and the tools people use today, all
// measured in the same run on test beds this script starts itself (issues 9 and 13). Every push
// row is measured twice: on three containerd 2.x nodes and on three containerd 1.6 nodes (one
// block of rows each, rounds interleaved). The manual baseline is the seed's workflow: `nerdctl
// save` on a containerd 2.x build machine, scp, `nerdctl load` on the node. Every ratio is
// measured ÷ a baseline from the same run; absolute times are for context only. Medians over
// --runs (default 3; 1 with --quick); the 1.6 block gets --runs-1.6 (default 2; 1 with --quick)
// to keep the full run under 10 minutes. Prints markdown tables and writes JSON (bench-results/).
// Last, the p2p block (p2p.ts): `push --p2p spegel` against a direct fan-out and kind-style on six
// 2.x nodes with Spegel, from a client behind a 1 Gbit/s link; it gets --runs-p2p (default 1 in
// the full run, six nodes only, to stay near 10 minutes; `--only p2p` runs that block alone, with
// --runs rounds and the same on three nodes too, to say from how many nodes the hand-off pays).
import {execFile} from 'node:child_process'
import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import * as os from 'node:os'
import * as path from 'node:path'
import {promisify} from 'node:util'
import {startBed, type Bed, type BedNode, type ContainerdLine} from '../bed/bed.js'
import {changeLastLayer, type ImageInfo, type MakeImageOptions} from '../bed/images.js'
import {startBuildMachine, type BuildMachine} from '../build/buildkitd.js'
import {daemonBinary, daemonVersion} from '../daemons/daemons.js'
import {startFixCluster} from './fix-cluster.js'
import {cachedImage} from './images.js'
import {run, runParallel, timed} from './measure.js'
import {renderMarkdown, type BenchReport, type ReportBlock, type Row} from './report.js'
import {P2P_BLOCK, p2pReportBlock, p2pRows, paysFrom, runP2pBlock, type P2pOutcome} from './p2p.js'
import {CIPHER, CLI, MB, NODE_ARCHIVE, Nodes, REPO, Samples, sideloadPush} from './steps.js'

const SSH2_CAT = path.join(REPO, 'test/bench/ssh2-cat.ts')
const SHAPED_MBIT = 1000

interface Args {
  quick: boolean
  runs: number
  /** Rounds on the containerd 1.6 nodes. */
  runs16: number
  out: string
  keepBed: boolean
  /** Only the limits and today's tools (no sideload): for checking the bed and the baselines. */
  baselinesOnly: boolean
  /** Run one block alone (`p2p`). */
  only?: 'p2p'
  /** Rounds of the p2p block. */
  runsP2p: number
}

function parseArgs(argv: string[]): Args {
  const args: Args = {quick: false, runs: 3, runs16: 0, out: '', keepBed: false, baselinesOnly: false, runsP2p: 0}
  let runsGiven = false
  let runs16Given = false
  let runsP2pGiven = false
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--quick') args.quick = true
    else if (a === '--keep-bed') args.keepBed = true
    else if (a === '--baselines-only') args.baselinesOnly = true
    else if (a === '--out') args.out = argv[++i] ?? ''
    else if (a === '--runs') {
      args.runs = Number(argv[++i])
      runsGiven = true
    } else if (a === '--runs-1.6') {
      args.runs16 = Number(argv[++i])
      runs16Given = true
    } else if (a === '--runs-p2p') {
      args.runsP2p = Number(argv[++i])
      runsP2pGiven = true
    } else if (a === '--only' && argv[i + 1] === 'p2p') {
      args.only = 'p2p'
      i++
    } else {
      process.stderr.write(`unknown argument ${a}\nusage: npm run bench [-- --quick] [-- --runs N] [-- --runs-1.6 N] [-- --runs-p2p N] [-- --only p2p] [-- --out FILE] [-- --keep-bed] [-- --baselines-only]\n`)
      process.exit(2)
    }
  }
  if (args.quick && !runsGiven) args.runs = 1
  if (!Number.isInteger(args.runs) || args.runs < 1) throw new Error('--runs needs a positive integer')
  // the 1.6 block: one round fewer than the 2.x block (the full run stays under 10 minutes)
  if (!runs16Given) args.runs16 = Math.max(1, args.runs - 1)
  if (!Number.isInteger(args.runs16) || args.runs16 < 1) throw new Error('--runs-1.6 needs a positive integer')
  args.runs16 = Math.min(args.runs16, args.runs)
  // the p2p block: one round in the full run (it stays near 10 minutes), --runs when run alone
  if (!runsP2pGiven) args.runsP2p = args.only === 'p2p' ? args.runs : 1
  if (!Number.isInteger(args.runsP2p) || args.runsP2p < 1) throw new Error('--runs-p2p needs a positive integer')
  if (args.only && args.baselinesOnly) throw new Error('--only p2p has no baselines-only form')
  if (!args.out) args.out = path.join(REPO, 'bench-results', `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
  return args
}

const log = (msg: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`)
}

/**
 * Waits (≤ 10 s) until no shell is left in the beds' nodes. Every SSH session on a node starts
 * root's login shell, and the nodes share the host's /root: its .bashrc may run things like
 * `pyenv rehash`, which holds a lock file in /root while it runs. Tearing a bed down SIGKILLs
 * whatever is in it, so a shell killed there leaves the lock behind, and every later shell on the
 * machine then waits 60 s for it.
 */
async function settle(bedNames: string[]): Promise<void> {
  const namespaces = (await run(['ip', 'netns', 'list'], {allowFailure: true})).stdout
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter((ns) => ns && bedNames.some((b) => new RegExp(`-${b}-\\d+$`).test(ns)))
  const deadline = Date.now() + 10_000
  for (;;) {
    let shells = 0
    for (const ns of namespaces) {
      const pids = (await run(['ip', 'netns', 'pids', ns], {allowFailure: true})).stdout.split('\n').filter(Boolean)
      for (const pid of pids) {
        const comm = (await fsp.readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim()
        if (comm === 'bash' || comm === 'sh' || comm.startsWith('pyenv')) shells++
      }
    }
    if (shells === 0 || Date.now() > deadline) return
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

/** The containerd version a node runs, from `ctr version` (server): `2.3.7`, `1.6.20`. */
async function containerdVersionOf(bed: Bed, node: BedNode): Promise<string> {
  const r = await bed.exec(node, ['ctr', 'version'], {timeoutMs: 30_000})
  const m = /Server:\s*\n\s*Version:\s*v?(\d+\.\d+\.\d+)/.exec(r.stdout)
  if (r.code !== 0 || !m) throw new Error(`ctr version on ${node.name} gave no server version (exit ${r.code}): ${(r.stderr || r.stdout).trim()}`)
  return m[1]
}

/**
 * nerdctl 2.x loads through containerd's transfer service (containerd ≥ 1.7): on 1.6 it fails with
 * "unknown service containerd.services.streaming.v1.Streaming". The 1.6 nodes get nerdctl v1.7.7,
 * the last line that imports client-side, built once from test/bench/nerdctl-1.7 (Go module proxy)
 * into .cache/bench/.
 */
const NERDCTL_16_VERSION = 'v1.7.7'

async function nerdctlFor16(): Promise<{path?: string; error?: string}> {
  const out = path.join(REPO, '.cache/bench', `nerdctl-${NERDCTL_16_VERSION}`, 'nerdctl')
  if (fs.existsSync(out)) return {path: out}
  log(`building nerdctl ${NERDCTL_16_VERSION} for the containerd 1.6 nodes' manual baseline (once, into ${path.dirname(out)})`)
  const tmp = `${out}.${process.pid}.tmp`
  try {
    await fsp.mkdir(path.dirname(out), {recursive: true})
    await promisify(execFile)('go', [
      'build', '-ldflags', `-s -w -X github.com/containerd/nerdctl/pkg/version.Version=${NERDCTL_16_VERSION}`, '-o', tmp, 'github.com/containerd/nerdctl/cmd/nerdctl',
    ], {cwd: path.join(REPO, 'test/bench/nerdctl-1.7'), env: {...process.env, GOTOOLCHAIN: 'local', GOFLAGS: '-buildvcs=false', CGO_ENABLED: '1'}, maxBuffer: 16 * MB, timeout: 900_000})
    await fsp.rename(tmp, out)
    return {path: out}
  } catch (err) {
    await fsp.rm(tmp, {force: true})
    const e = err as {stderr?: string; message?: string}
    return {error: (e.stderr || e.message || String(err)).trim().split('\n').slice(-3).join(' ')}
  }
}

const FIX_PODS = 20

/** `sideload fix` for 20 stuck pods on the bed's nodes (its own API server and kubelet stand-in, up only for this step). */
async function sideloadFix(bed: Bed, ns: string, image: string, archive: string): Promise<{ms: number; transfers: number; repeated: number}> {
  const cluster = await startFixCluster(bed)
  try {
    await cluster.stuckPods(ns, image, FIX_PODS)
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
    const stuck = await cluster.notRunning(ns)
    if (stuck.length > 0) throw new Error(`sideload fix left ${stuck.length} pod(s) of ${ns} not Running: ${stuck.join(', ')}`)
    const pushed = (parsed.transfers ?? []).filter((t) => t.push?.status === 'pushed')
    const pairs = new Set(pushed.map((t) => `${t.image}|${t.node}`))
    return {ms: r.ms, transfers: pushed.length, repeated: pushed.length - pairs.size}
  } finally {
    await cluster.stop()
  }
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

/** One kind of node: three nodes on one containerd line, and every push row measured on them. */
interface Block {
  id: string
  line: ContainerdLine
  /** `2.3.7`, `1.6.20` */
  version: string
  bed: Bed
  n: Nodes
  runs: number
  /** Rows left out of this block (the 1.6 block under --quick: the run stays near 2 minutes). */
  skip: {shaped: boolean; fix: boolean; noUnpack: boolean}
  s: Samples
  /** Why the manual baseline differs from the seed's commands here (no nerdctl works on these nodes). */
  manualNote?: string
}

/** The seed's build machine: containerd 2.x with the bench image in k8s.io, where nerdctl save reads it. */
interface Source {
  bm: BuildMachine
  /** Where `nerdctl save` writes (the host's disk; the build machine sees the host's files). */
  savePath: string
}

/** What does not depend on the nodes' containerd: start-up, SSH round trips, raw copies (on the first block's bed). */
async function commonRound(round: number, block: Block, img: Images, s: Samples, quick: boolean): Promise<void> {
  const {bed, n} = block
  const [n1] = bed.nodes
  const all = bed.nodes
  const base = img.base.path
  log(`run ${round}: start-up and round trips`)
  for (let i = 0; i < (quick ? 3 : 5); i++) {
    s.add('node-e', (await run([process.execPath, '-e', ''])).ms)
    s.add('help', (await run([process.execPath, CLI, '--help'])).ms)
    s.add('ssh-true', (await run(n.ssh(n1, 'true'))).ms)
  }
  s.add('rss-help', (await run([process.execPath, CLI, '--help'], {rss: true})).maxRssBytes ?? Number.NaN)

  log(`run ${round}: limits (raw copy)`)
  s.add('raw-1', (await run(n.ssh(n1, 'cat > /dev/null'), {stdinFile: base})).ms)
  const viaSsh2 = await run([process.execPath, '--import', 'tsx', SSH2_CAT, n1.ip, bed.keyPath, base])
  const ssh2 = JSON.parse(viaSsh2.stdout.trim()) as {connectMs: number; transferMs: number}
  s.add('raw-1-ssh2', ssh2.connectMs + ssh2.transferMs)
  s.add('raw-1-ssh2-transfer', ssh2.transferMs)
  // three nodes at once: a limit for context only (no row uses it), left out of --quick
  if (!quick) s.add('raw-3', (await runParallel(all.map((node) => ({argv: n.ssh(node, 'cat > /dev/null'), opts: {stdinFile: base}})))).ms)
  await n.shapeAll(all, SHAPED_MBIT)
  try {
    s.add('raw-1-shaped', (await run(n.ssh(n1, 'cat > /dev/null'), {stdinFile: base})).ms)
    if (!quick) s.add('raw-3-shaped', (await runParallel(all.map((node) => ({argv: n.ssh(node, 'cat > /dev/null'), opts: {stdinFile: base}})))).ms)
  } finally {
    await n.unshapeAll(all)
  }
}

/** The manual workflow of the seed: nerdctl save on the build machine, scp to the node, nerdctl load there. */
async function manualWorkflow(block: Block, node: BedNode, src: Source, image: string): Promise<void> {
  const {n, s} = block
  await fsp.rm(src.savePath, {force: true})
  const save = await timed(async () => {
    const r = await src.bm.nerdctl(['save', '-o', src.savePath, image])
    if (r.code !== 0) throw new Error(`nerdctl save ${image} on the build machine failed: ${r.stderr}`)
  })
  const copy = (await run(n.scp(node, src.savePath, NODE_ARCHIVE))).ms
  const load = (await run(n.ssh(node, n.nerdctl ? n.nerdctlLoad(node, NODE_ARCHIVE) : n.ctrImport(node, NODE_ARCHIVE)), {timeoutMs: 300_000})).ms
  s.add('manual-save', save)
  s.add('manual-copy', copy)
  s.add('manual-load', load)
  s.add('manual', save + copy + load)
}

async function blockRound(round: number, block: Block, img: Images, src: Source, opts: {baselinesOnly: boolean; quick: boolean; withFix: boolean}): Promise<void> {
  const {baselinesOnly, quick} = opts
  const {bed, n, s} = block
  const [n1] = bed.nodes
  const all = bed.nodes
  const base = img.base.path
  const changed = img.changed.path
  const name = img.base.name
  const tag = `run ${round}, containerd ${block.version}`

  log(`${tag}: node-side import, manual (nerdctl save, scp, ${n.nerdctl ? 'nerdctl load' : 'ctr import'}), kind-style`)
  await n.reset(n1)
  await bed.exec(n1, ['cp', base, NODE_ARCHIVE])
  s.add('import-disk', await timed(async () => {
    const r = await bed.exec(n1, n.ctrImport(n1, NODE_ARCHIVE).split(' '), {timeoutMs: 300_000})
    if (r.code !== 0) throw new Error(`node-side ctr import failed on ${n1.name}: ${r.stderr}`)
  }))
  await n.reset(n1)
  await manualWorkflow(block, n1, src, name)
  await n.reset(n1)
  s.add('kind-1', (await run(n.ssh(n1, n.ctrImport(n1, '-')), {stdinFile: base})).ms)
  await n.resetAll(all)
  s.add('kind-3', (await runParallel(all.map((node) => ({argv: n.ssh(node, n.ctrImport(node, '-')), opts: {stdinFile: base}})))).ms)

  if (!baselinesOnly) {
    log(`${tag}: sideload, one node`)
    await n.reset(n1)
    const first = await sideloadPush(bed, {image: name, archive: base, nodes: [n1]}, true)
    s.add('push-1', first.ms)
    s.add('rss-170-1', first.maxRssBytes ?? Number.NaN)
    for (const [phase, ms] of Object.entries(first.phases ?? {})) s.add(`push-1-phase-${phase}`, ms)
    const delta = await sideloadPush(bed, {image: name, archive: changed, nodes: [n1]})
    s.add('delta-ms', delta.ms)
    s.add('delta-bytes', delta.sentBytes)
    await n.reset(n1)
    s.add('push-1-local', (await sideloadPush(bed, {image: name, containerdAddress: src.bm.containerdAddress, nodes: [n1]})).ms)
    if (!block.skip.noUnpack) {
      await n.reset(n1)
      s.add('push-1-nounpack', (await sideloadPush(bed, {image: name, archive: base, nodes: [n1], extra: ['--no-unpack']})).ms)
    }

    log(`${tag}: sideload, three nodes`)
    await n.resetAll(all)
    const three = await sideloadPush(bed, {image: name, archive: base, nodes: all}, true)
    s.add('push-3', three.ms)
    s.add('rss-170', three.maxRssBytes ?? Number.NaN)
    const again = await sideloadPush(bed, {image: name, archive: base, nodes: all})
    s.add('identical-3', again.ms)
    s.add('identical-3-bytes', again.sentBytes)

    if (opts.withFix && !block.skip.fix) {
      log(`${tag}: sideload fix, ${FIX_PODS} stuck pods on ${all.length} nodes`)
      await n.resetAll(all)
      const outcome = await sideloadFix(bed, `bench-${round}`, name, base)
      s.add('fix-20', outcome.ms)
      s.add('fix-transfers', outcome.transfers)
      s.add('fix-repeated-transfers', outcome.repeated)
    }
  }

  if (block.skip.shaped) return
  log(`${tag}: on a link shaped to ${SHAPED_MBIT} Mbit/s`)
  await n.shapeAll(all, SHAPED_MBIT)
  try {
    await n.reset(n1)
    s.add('kind-1-shaped', (await run(n.ssh(n1, n.ctrImport(n1, '-')), {stdinFile: base})).ms)
    if (!quick) {
      await n.resetAll(all)
      s.add('kind-3-shaped', (await runParallel(all.map((node) => ({argv: n.ssh(node, n.ctrImport(node, '-')), opts: {stdinFile: base}})))).ms)
    }
    if (baselinesOnly) return
    await n.reset(n1)
    s.add('push-1-shaped', (await sideloadPush(bed, {image: name, archive: base, nodes: [n1]})).ms)
    const d = await sideloadPush(bed, {image: name, archive: changed, nodes: [n1]})
    s.add('delta-ms-shaped', d.ms)
    if (quick) return // --quick stays under 2 minutes: no --no-unpack or 3-node rows on the shaped link
    await n.reset(n1)
    s.add('push-1-nounpack-shaped', (await sideloadPush(bed, {image: name, archive: base, nodes: [n1], extra: ['--no-unpack']})).ms)
    await n.resetAll(all)
    s.add('push-3-shaped', (await sideloadPush(bed, {image: name, archive: base, nodes: all})).ms)
  } finally {
    await n.unshapeAll(all)
  }
}

async function bigRun(block: Block, img: Images): Promise<void> {
  if (!img.big) return
  const {bed, n, s} = block
  log(`containerd ${block.version}: peak memory, ${(img.big.archiveBytes / MB).toFixed(0)} MB image to ${bed.nodes.length} nodes`)
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

const COMMON_BLOCK = 'client'

/** Rows that do not depend on the nodes' containerd: the client's start-up and memory, the SSH library. */
function commonRows(common: Samples): Row[] {
  const m = (k: string) => common.median(k)
  const sec = (k: string) => {
    const v = m(k)
    return v === undefined ? undefined : v / 1000
  }
  return [
    {
      block: COMMON_BLOCK, scenario: 'raw copy through ssh2 (the SSH library sideload uses), 1 node (context)', unit: 's', measured: sec('raw-1-ssh2'), baseline: sec('raw-1'),
      baselineLabel: 'raw copy, OpenSSH', goal: '—', context: true,
    },
    {block: COMMON_BLOCK, scenario: 'peak RSS of `sideload --help` (context: the CLI before any work)', unit: 'MB', measured: toMb(m('rss-help')), baselineLabel: '', goal: '—', context: true},
    {block: COMMON_BLOCK, scenario: '`sideload --help` start-up', unit: 's', measured: sec('help'), baseline: sec('node-e'), baselineLabel: '`node -e ""`', maxRatio: 4, goal: '≤ 4 × `node -e ""`'},
  ]
}

function blockRows(block: Block, common: Samples, img: Images, opts: {quick: boolean; fix: boolean}): Row[] {
  const s = block.s
  const m = (k: string) => s.median(k)
  const sec = (k: string) => {
    const v = m(k)
    return v === undefined ? undefined : v / 1000
  }
  const csec = (k: string) => {
    const v = common.median(k)
    return v === undefined ? undefined : v / 1000
  }
  const rows: Row[] = []
  const add = (row: Row): void => {
    rows.push({...row, block: block.id})
  }
  const ratioRow = (scenario: string, measuredKey: string, baselineLabel: string, baseline: number | undefined, maxRatio: number, unit: Row['unit'] = 's'): void => {
    const measured = unit === 's' ? sec(measuredKey) : m(measuredKey)
    const notMeasured = measured === undefined && opts.quick ? 'not measured (--quick)' : undefined
    add({scenario, unit, measured, baseline, baselineLabel, maxRatio, goal: `≤ ${maxRatio} × ${baselineLabel}`, ...(notMeasured ? {notMeasured} : {})})
  }
  const importDisk = sec('import-disk')
  ratioRow('first push, ~170 MB, 1 node', 'push-1', 'node-side import from disk', importDisk, 1.05)
  ratioRow('first push, ~170 MB, 1 node', 'push-1', 'kind-style, 1 node', sec('kind-1'), 0.95)
  const loadStep = block.n.nerdctl ? `nerdctl ${block.n.nerdctlVersion} load` : 'ctr import'
  add({
    scenario: 'first push from the build machine\'s containerd, 1 node, against the manual workflow', unit: 's', measured: sec('push-1-local'), baseline: sec('manual'),
    baselineLabel: `manual: nerdctl save, scp, ${loadStep}`, maxRatio: 1, goal: '≤ 1 × manual',
    ...(block.manualNote ? {note: block.manualNote} : {}),
  })
  add({
    scenario: 'first push from the build machine\'s containerd, 1 node (context)', unit: 's', measured: sec('push-1-local'), baseline: sec('push-1'),
    baselineLabel: 'first push from the archive', goal: '—', context: true,
  })
  const rawShaped = csec('raw-1-shaped')
  const maxShaped = rawShaped !== undefined && importDisk !== undefined ? Math.max(rawShaped, importDisk) : undefined
  ratioRow(`first push, 1 node, ${SHAPED_MBIT} Mbit/s link`, 'push-1-shaped', 'max(raw copy @1G, node-side import)', maxShaped, 1.1)
  ratioRow(`first push, 1 node, ${SHAPED_MBIT} Mbit/s link`, 'push-1-shaped', 'kind-style @1G, 1 node', sec('kind-1-shaped'), 0.95)
  ratioRow('first push --no-unpack, 1 node', 'push-1-nounpack', 'raw copy, 1 node', csec('raw-1'), 1.15)
  ratioRow(`first push --no-unpack, 1 node, ${SHAPED_MBIT} Mbit/s link`, 'push-1-nounpack-shaped', 'raw copy @1G, 1 node', rawShaped, 1.15)
  add({
    scenario: 'first push: time in the transfer phase (first to last byte event) (context)', unit: 's', measured: sec('push-1-phase-transfer'), baseline: csec('raw-1-ssh2-transfer'),
    baselineLabel: 'ssh2 raw copy, transfer only', goal: '—', context: true,
  })
  ratioRow('first push, 3 nodes', 'push-3', 'kind-style, 3 nodes in parallel', sec('kind-3'), 0.95)
  ratioRow(`first push, 3 nodes, ${SHAPED_MBIT} Mbit/s links`, 'push-3-shaped', 'kind-style @1G, 3 nodes', sec('kind-3-shaped'), 0.95)
  const lastLayer = img.changed.platforms[0].layerSizes.at(-1) ?? 0
  const otherLayers = img.changed.platforms[0].layerSizes.slice(0, -1).reduce((a, b) => a + b, 0)
  const deltaExpected = img.changed.totalBytes - otherLayers // last layer + config + manifest
  add({
    scenario: 're-push, last 5 MB layer changed: bytes sent', unit: 'MB', measured: toMb(m('delta-bytes')), baseline: toMb(deltaExpected),
    baselineLabel: `layer ${(lastLayer / MB).toFixed(2)} MB + manifest + config`, maxRatio: 1.05, goal: '≤ 1.05 × (layer + manifest + config)',
  })
  ratioRow('re-push, last 5 MB layer changed: time', 'delta-ms', 'kind-style, 1 node', sec('kind-1'), 0.15)
  ratioRow(`re-push, last layer changed, ${SHAPED_MBIT} Mbit/s link: time`, 'delta-ms-shaped', 'kind-style @1G, 1 node', sec('kind-1-shaped'), 0.15)
  add({scenario: 'identical re-push, 3 nodes: bytes sent', unit: 'MB', measured: toMb(m('identical-3-bytes')), baselineLabel: 'no blob sent', goal: '0 bytes', maxAbsolute: 0})
  const help = csec('help')
  const sshTrue = csec('ssh-true')
  ratioRow('identical re-push, 3 nodes: time', 'identical-3', '`sideload --help` + `ssh node true`', help !== undefined && sshTrue !== undefined ? help + sshTrue : undefined, 2)
  const rss170 = toMb(m('rss-170'))
  add({scenario: 'peak RSS, ~170 MB image to 3 nodes', unit: 'MB', measured: rss170, baselineLabel: '', goal: '≤ 150 MB', maxAbsolute: 150})
  if (img.big) {
    const rss1g = toMb(m('rss-1g'))
    add({scenario: 'peak RSS, ~1 GB image to 3 nodes', unit: 'MB', measured: rss1g, baselineLabel: '', goal: '≤ 150 MB', maxAbsolute: 150})
    add({scenario: 'peak RSS, 1 GB vs 170 MB image', unit: 'MB', measured: rss1g, baseline: rss170, baselineLabel: 'peak RSS with the 170 MB image', maxRatio: 1.1, goal: '≤ 1.1 × the 170 MB figure'})
  } else {
    add({scenario: 'peak RSS, ~1 GB image to 3 nodes', unit: 'MB', baselineLabel: '', goal: '≤ 150 MB; within 10 % of the 170 MB figure', notMeasured: 'not measured (--quick)'})
  }
  if (opts.fix && !block.skip.fix) {
    const transfers = m('fix-transfers')
    const repeated = m('fix-repeated-transfers')
    add({
      scenario: `${FIX_PODS} pods stuck on one image across 3 nodes, \`fix\`: transfers`, unit: 'count', measured: transfers, baseline: 3,
      baselineLabel: '(image, node) pairs', maxRatio: 1, goal: 'one transfer per (image, node)',
      ...(repeated !== undefined && repeated > 0 ? {note: `${repeated} pair(s) sent twice`} : {}),
    })
    ratioRow(`${FIX_PODS} pods stuck on one image across 3 nodes, \`fix\`: time`, 'fix-20', '3-node first push', sec('push-3'), 1.2)
  } else {
    add({
      scenario: `${FIX_PODS} pods stuck on one image across 3 nodes, \`fix\``, unit: 's', baselineLabel: '3-node first push', goal: 'one transfer per (image, node); ≤ 1.2 × 3-node first push',
      notMeasured: opts.fix ? 'not measured (--quick)' : 'not measured (fix not landed)',
    })
  }
  return rows
}

function toMb(bytes: number | undefined): number | undefined {
  return bytes === undefined ? undefined : bytes / MB
}

function blockNote(block: Block, args: Args): string | undefined {
  const notes: string[] = []
  if (block.runs < args.runs) notes.push(`fewer rounds (${block.runs} of ${args.runs}, --runs-1.6): the full run stays near 10 minutes`)
  const skipped = [block.skip.noUnpack ? '`--no-unpack`' : '', block.skip.shaped ? `${SHAPED_MBIT} Mbit/s` : '', block.skip.fix ? '`fix`' : ''].filter(Boolean)
  if (skipped.length > 0) notes.push(`--quick: no ${skipped.join(', ')} rows here`)
  return notes.length > 0 ? notes.join('; ') : undefined
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  if (process.getuid?.() !== 0) throw new Error('the bench starts a test bed (network namespaces, containerd, sshd): run it as root')
  const started = Date.now()
  if (!args.baselinesOnly && !fs.existsSync(path.join(REPO, 'dist/commands/push.js'))) {
    throw new Error('dist/commands/push.js is missing: run `npm run build` first (the bench runs the built CLI, start-up included)')
  }
  const onlyP2p = args.only === 'p2p'
  const withP2p = !args.baselinesOnly
  const img = await prepareImages(!args.quick && !onlyP2p)
  const workDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'slbench-'))
  const bedName = (suffix: string) => `slbench-${process.pid}-${suffix}`
  const suffixes = [...(onlyP2p ? [] : ['c2', 'c16', 'bm']), ...(withP2p ? ['p2p'] : [])]
  const beds: Array<{down(): Promise<void>}> = []
  let interrupted = false
  const downAll = async () => {
    await settle(suffixes.map(bedName))
    await Promise.all(beds.splice(0).map((b) => b.down().catch(() => undefined)))
    await fsp.rm(workDir, {recursive: true, force: true})
  }
  const onSignal = () => {
    interrupted = true
    log('interrupted: removing the beds')
    void downAll().finally(() => process.exit(130))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)

  const withFix = !args.baselinesOnly && !onlyP2p && (await fixLanded())
  const common = new Samples()
  const blocks: Block[] = []
  let snapshotter = ''
  let nerdctl16: {path?: string; error?: string} = {}
  if (!onlyP2p) {
    const nerdctl2 = daemonBinary('nerdctl', 'nerdctl')
    nerdctl16 = await nerdctlFor16()
    if (nerdctl16.error) log(`nerdctl ${NERDCTL_16_VERSION} could not be built (${nerdctl16.error}); the 1.6 nodes' manual baseline loads with ctr import instead`)
    log(`starting beds ${bedName('c2')} (3 nodes, containerd 2.x), ${bedName('c16')} (3 nodes, containerd 1.6) and build machine ${bedName('bm')}`)
    const starting = await Promise.allSettled([
      startBed({name: bedName('c2'), nodes: 3, containerd: '2'}),
      startBed({name: bedName('c16'), nodes: 3, containerd: '1.6'}),
      startBuildMachine(bedName('bm'), workDir),
    ])
    for (const r of starting) if (r.status === 'fulfilled') beds.push(r.value)
    const failed = starting.find((r) => r.status === 'rejected')
    if (failed) {
      await downAll()
      throw (failed as PromiseRejectedResult).reason
    }
    const [bed2, bed16, bm] = starting.map((r) => (r as PromiseFulfilledResult<unknown>).value) as [Bed, Bed, BuildMachine]
    snapshotter = bed2.nodes[0].snapshotter
    try {
      const lines = [
        [bed2, '2', nerdctl2, daemonVersion('nerdctl'), args.runs],
        [bed16, '1.6', nerdctl16.path, NERDCTL_16_VERSION, args.runs16],
      ] as const
      for (const [bed, line, nerdctl, nerdctlVersion, runs] of lines) {
        const version = await containerdVersionOf(bed, bed.nodes[0])
        blocks.push({
          id: `containerd-${version}`, line, version, bed, n: new Nodes(bed, nerdctl, nerdctlVersion), runs, s: new Samples(),
          skip: {shaped: args.quick && line === '1.6', fix: args.quick && line === '1.6', noUnpack: args.quick && line === '1.6'},
          ...(nerdctl ? {} : {manualNote: `load step: ctr import; nerdctl ${NERDCTL_16_VERSION} could not be built`}),
        })
      }
      // the image sits in the build machine's k8s.io as `nerdctl build` leaves it (named, unpacked); not timed
      const loaded = await bm.nerdctl(['load', '-i', img.base.path])
      if (loaded.code !== 0) throw new Error(`nerdctl load into the build machine failed: ${loaded.stderr}`)
      const src: Source = {bm, savePath: path.join(workDir, 'app.tar')}
      for (let round = 1; round <= args.runs; round++) {
        await commonRound(round, blocks[0], img, common, args.quick)
        for (const block of blocks) {
          if (round <= block.runs) await blockRound(round, block, img, src, {baselinesOnly: args.baselinesOnly, quick: args.quick, withFix})
        }
      }
      if (!args.baselinesOnly) for (const block of blocks) await bigRun(block, img)
    } finally {
      if (!args.keepBed && !interrupted) await downAll()
      else if (args.keepBed) log(`beds kept (npm run bed -- down --name NAME for ${bedName('c2')}, ${bedName('c16')}, ${bedName('bm')})`)
    }
  }

  // the p2p block: its own bed, started once the others are gone (six nodes with Spegel share the 2 cores)
  let p2p: P2pOutcome | undefined
  // the 3-node rows (from how many nodes the hand-off pays) only when the block runs alone: the full run stays near 10 minutes
  const p2pWithThree = onlyP2p
  if (withP2p && !interrupted) {
    try {
      p2p = await runP2pBlock({
        bedName: bedName('p2p'), image: img.base, runs: args.runsP2p, withThree: p2pWithThree, keepBed: args.keepBed, log,
        started: (bed) => beds.push(bed),
      })
      snapshotter ||= p2p.bed.nodes[0].snapshotter
    } finally {
      if (!args.keepBed && !interrupted) await downAll()
    }
  }
  if (!args.keepBed) await fsp.rm(workDir, {recursive: true, force: true})

  const rows = [
    ...blocks.flatMap((b) => blockRows(b, common, img, {quick: args.quick, fix: withFix})),
    ...(onlyP2p ? [] : commonRows(common)),
    ...(p2p ? p2pRows(p2p.s, img.base, {withThree: p2pWithThree}) : []),
  ]
  const p2pNotes = [
    !onlyP2p && args.runsP2p < args.runs ? `${args.runsP2p} round(s) of ${args.runs} (--runs-p2p): the full run stays near 10 minutes` : '',
    p2pWithThree ? '' : 'six nodes only (the 3-node rows: `npm run bench -- --only p2p`)',
  ].filter(Boolean).join('; ')
  const reportBlocks: ReportBlock[] = [
    ...blocks.map((b) => {
      const note = blockNote(b, args)
      return {id: b.id, title: `containerd ${b.version} nodes (3)`, runs: b.runs, ...(note ? {note} : {})}
    }),
    ...(onlyP2p ? [] : [{id: COMMON_BLOCK, title: 'the client alone (no node containerd involved)', runs: args.runs}]),
    ...(p2p ? [p2pReportBlock(p2p, args.runsP2p, p2pNotes || undefined)] : []),
  ]
  const samples: Record<string, number[]> = Object.fromEntries(common.values)
  for (const b of blocks) for (const [k, v] of b.s.values) samples[`${b.id}/${k}`] = v
  if (p2p) for (const [k, v] of p2p.s.values) samples[`${P2P_BLOCK}/${k}`] = v
  const report: BenchReport = {
    date: new Date().toISOString(),
    machine: {cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? '', memMb: Math.round(os.totalmem() / MB), kernel: os.release(), node: process.version},
    runs: onlyP2p ? args.runsP2p : args.runs,
    quick: args.quick,
    durationS: (Date.now() - started) / 1000,
    snapshotter,
    images: {
      base: {name: img.base.name, archiveMb: img.base.archiveBytes / MB, layers: img.base.platforms[0].layerSizes.length},
      ...(img.big ? {big: {name: img.big.name, archiveMb: img.big.archiveBytes / MB, layers: img.big.platforms[0].layerSizes.length}} : {}),
    },
    samples,
    blocks: reportBlocks,
    rows,
  }
  await fsp.mkdir(path.dirname(args.out), {recursive: true})
  await fsp.writeFile(args.out, `${JSON.stringify(report, null, 2)}\n`)
  process.stdout.write(renderMarkdown(report))
  if (!onlyP2p) log(`manual baseline: nerdctl ${daemonVersion('nerdctl')} save on the build machine (containerd 2.x); scp -c ${CIPHER}; load with nerdctl ${daemonVersion('nerdctl')} on 2.x nodes, ${nerdctl16.path ? `nerdctl ${NERDCTL_16_VERSION}` : 'ctr import'} on 1.6 nodes`)
  if (p2p) log(`p2p: ${paysFrom(p2p.s)}`)
  log(`wrote ${args.out} (${report.durationS.toFixed(0)} s)`)
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
})
