// npm run bench [-- --quick] [-- --runs N] [-- --runs-1.6 N] [-- --runs-p2p N] [-- --only p2p|scaling] [-- --out FILE] [-- --keep-bed]
//
// Benchmarks sideload against the limits of this machine and the tools people use today, all
// measured in the same run on test beds this script starts itself (issues 9, 13 and 17). Every push
// row is measured twice: on three containerd 2.x nodes and on three containerd 1.6 nodes (one
// block of rows each, rounds interleaved). The manual baseline is the seed's workflow: `nerdctl
// save` on a containerd 2.x build machine, scp, `nerdctl load` on the node. Every ratio is
// measured ÷ a baseline from the same run; absolute times are for context only. Medians over
// --runs (default 3; 1 with --quick); the 1.6 block gets --runs-1.6 (default 2; 1 with --quick).
// Client CPU (user + sys) is read with GNU time around the sideload process and around the
// OpenSSH client of the raw copy. Then the scaling block (scaling.ts): the image to 1, 3 and 6
// nodes at once, each node's link shaped, against kind-style, on the same 2.x bed (it has six
// nodes; the blocks use three). Prints markdown tables, writes JSON and an SVG of (a) time against
// node count and (b) re-push time against changed bytes (bench-results/).
// Last, the p2p block (p2p.ts): `push --p2p spegel` against a direct fan-out and kind-style on six
// 2.x nodes with Spegel, from a client behind a 1 Gbit/s link; it gets --runs-p2p (default 1 in
// the full run, six nodes only; `--only p2p` runs that block alone, with --runs rounds and the
// same on three nodes too, to say from how many nodes the hand-off pays). This file measures;
// block.ts says what a block is, rows.ts turns its samples into rows and the picture.
//
// Time (issue 17: the full run under 10 minutes, --quick under 2), what was cut to make room for
// the new rows, and why — no baseline was made cheaper than what it stands for:
// - 3 nodes at 1 Gbit/s (sideload and kind-style, both blocks) and the raw copy to 3 nodes: gone;
//   the scaling block measures the fan-out on shaped links (1, 3, 6 nodes), and the raw 3-node
//   copy had no row.
// - `--no-unpack` at 1 Gbit/s against `cat > /dev/null`: gone; issue 17 replaced that baseline
//   (no node-side work) with the copy to the node's disk, measured unshaped.
// - the 1 GB image (peak RSS, ~30 s a block) on the 2.x block only: it measures the client's
//   memory, which the 170 MB row shows to be the same on both lines.
// - `fix` in the first round of each block only (~10 s a round): its row is about transfers
//   (one per pair, exact) and a time ratio with a wide goal (1.2×).
// - --quick: the scaling block's --workers rows (3 and 6 nodes, ~30 s).
// - the scaling block: one round (each push is wire-bound, ~7 s at 200 Mbit/s, so its spread is
//   small); the re-push sizes of the plot (1 and 25 MB) on the 2.x block only.
// - --quick: no p2p block (`--only p2p`), no `fix`, no manual workflow (issue 13's rows, ~8 s);
//   the 1.6 block only its 1-node rows; the scaling block at 1 and 6 nodes.
import {execFile} from 'node:child_process'
import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import * as os from 'node:os'
import * as path from 'node:path'
import {promisify} from 'node:util'
import {startBed, type Bed, type BedNode} from '../bed/bed.js'
import {changeLastLayer, type MakeImageOptions} from '../bed/images.js'
import {startBuildMachine, type BuildMachine} from '../build/buildkitd.js'
import {daemonBinary, daemonVersion} from '../daemons/daemons.js'
import {startFixCluster} from './fix-cluster.js'
import {FIX_PODS, GOAL_REPUSH_MB, REPUSH_MB, repushSizes, SHAPED_MBIT, type Block, type Images} from './block.js'
import {cachedImage, type CachedImage} from './images.js'
import {run, runParallel, timed} from './measure.js'
import {P2P_BLOCK, p2pReportBlock, p2pRows, paysFrom, runP2pBlock, type P2pOutcome} from './p2p.js'
import {renderSvg} from './plot.js'
import {renderMarkdown, type BenchReport, type ReportBlock} from './report.js'
import {benchCharts, blockNote, blockRows, COMMON_BLOCK, commonRows} from './rows.js'
import {runScaling, SCALE_BLOCK, SCALE_COUNTS, SCALE_MBIT, scalingReportBlock, scalingRows} from './scaling.js'
import {CIPHER, CLI, MB, NODE_ARCHIVE, Nodes, REPO, Samples, sideloadPush} from './steps.js'

const SSH2_CAT = path.join(REPO, 'test/bench/ssh2-cat.ts')
/** Nodes of the containerd 2.x bed: the blocks use three, the scaling block six. */
const C2_NODES = Math.max(...SCALE_COUNTS)
/** --quick: the scaling block at 1 and 6 nodes only (the 3-node figures come from the blocks' unshaped rows). */
const QUICK_SCALE_COUNTS = [1, 6] as const

interface Args {
  quick: boolean
  runs: number
  /** Rounds on the containerd 1.6 nodes. */
  runs16: number
  out: string
  keepBed: boolean
  /** Only the limits and today's tools (no sideload): for checking the bed and the baselines. */
  baselinesOnly: boolean
  /** Run one block alone (`p2p`, or `scaling` on a bed of its own). */
  only?: 'p2p' | 'scaling'
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
    } else if (a === '--only' && (argv[i + 1] === 'p2p' || argv[i + 1] === 'scaling')) {
      args.only = argv[++i] as 'p2p' | 'scaling'
    } else {
      process.stderr.write(`unknown argument ${a}\nusage: npm run bench [-- --quick] [-- --runs N] [-- --runs-1.6 N] [-- --runs-p2p N] [-- --only p2p|scaling] [-- --out FILE] [-- --keep-bed] [-- --baselines-only]\n`)
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
  if (args.only && args.baselinesOnly) throw new Error(`--only ${args.only} has no baselines-only form`)
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

/** `sideload fix` for 20 stuck pods on the block's nodes (its own API server and kubelet stand-in, up only for this step). */
async function sideloadFix(block: Block, ns: string, image: string, archive: string): Promise<{ms: number; transfers: number; repeated: number}> {
  const {bed} = block
  const cluster = await startFixCluster(bed, block.nodes)
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

async function prepareImages(withBig: boolean): Promise<Images> {
  const cacheDir = path.join(REPO, '.cache/bench')
  // ~170 MB: busybox + 4 × 41 MB + a last 5 MB layer (the one a re-push changes)
  const baseOpts: MakeImageOptions = {
    name: 'slbench/app:dev', format: 'oci', out: '',
    layers: [{busybox: true}, ...[1, 2, 3, 4].map((i) => ({sizeBytes: 41 * MB, seed: `bench-${i}`})), {sizeBytes: 5 * MB, seed: 'bench-last-a'}],
  }
  const base = await cachedImage(cacheDir, baseOpts, log)
  const repush = new Map<number, CachedImage>()
  for (const mb of REPUSH_MB) {
    const opts = mb === GOAL_REPUSH_MB
      ? changeLastLayer(baseOpts, 'bench-last-b', '')
      : {...baseOpts, layers: [...baseOpts.layers.slice(0, -1), {sizeBytes: mb * MB, seed: `bench-last-${mb}mb`}]}
    repush.set(mb, await cachedImage(cacheDir, opts, log))
  }
  let big: Images['big']
  if (withBig) {
    const bigOpts: MakeImageOptions = {
      name: 'slbench/big:dev', format: 'oci', out: '',
      layers: [{busybox: true}, ...[1, 2, 3, 4].map((i) => ({sizeBytes: 255 * MB, seed: `bench-big-${i}`})), {sizeBytes: 5 * MB, seed: 'bench-big-last'}],
    }
    big = await cachedImage(cacheDir, bigOpts, log)
  }
  return {base, repush, big}
}

/** The seed's build machine: containerd 2.x with the bench image in k8s.io, where nerdctl save reads it. */
interface Source {
  bm: BuildMachine
  /** Where `nerdctl save` writes (the host's disk; the build machine sees the host's files). */
  savePath: string
}

/** What does not depend on the nodes' containerd: start-up, SSH round trips, raw copies (on the first block's nodes). */
async function commonRound(round: number, block: Block, img: Images, s: Samples, quick: boolean): Promise<void> {
  const {bed, n} = block
  const [n1] = block.nodes
  const base = img.base.path
  log(`run ${round}: start-up and round trips`)
  for (let i = 0; i < (quick ? 3 : 5); i++) {
    s.add('node-e', (await run([process.execPath, '-e', ''])).ms)
    s.add('help', (await run([process.execPath, CLI, '--help'])).ms)
    s.add('ssh-true', (await run(n.ssh(n1, 'true'))).ms)
  }
  s.add('rss-help', (await run([process.execPath, CLI, '--help'], {usage: true})).maxRssBytes ?? Number.NaN)

  log(`run ${round}: limits (raw copy: to /dev/null, to the node's disk)`)
  const raw = await run(n.ssh(n1, 'cat > /dev/null'), {stdinFile: base, usage: true})
  s.add('raw-1', raw.ms)
  s.add('raw-1-cpu', raw.cpuMs ?? Number.NaN)
  // what --no-unpack must do at the least: the bytes onto the node's disk (the filesystem containerd's content store is on)
  s.add('raw-1-disk', (await run(n.ssh(n1, n.catToDisk()), {stdinFile: base})).ms)
  await bed.exec(n1, ['rm', '-f', NODE_ARCHIVE])
  const viaSsh2 = await run([process.execPath, '--import', 'tsx', SSH2_CAT, n1.ip, bed.keyPath, base])
  const ssh2 = JSON.parse(viaSsh2.stdout.trim()) as {connectMs: number; transferMs: number}
  s.add('raw-1-ssh2', ssh2.connectMs + ssh2.transferMs)
  s.add('raw-1-ssh2-transfer', ssh2.transferMs)
  await bed.shape(n1, {rateMbit: SHAPED_MBIT})
  try {
    s.add('raw-1-shaped', (await run(n.ssh(n1, 'cat > /dev/null'), {stdinFile: base})).ms)
  } finally {
    await bed.unshape(n1)
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

async function blockRound(round: number, block: Block, img: Images, src: Source, opts: {baselinesOnly: boolean; withFix: boolean}): Promise<void> {
  const {baselinesOnly} = opts
  const {bed, n, s} = block
  const [n1] = block.nodes
  const all = block.nodes
  const base = img.base.path
  const name = img.base.name
  const tag = `run ${round}, containerd ${block.version}`

  log(`${tag}: node-side import,${block.skip.manual ? '' : ` manual (nerdctl save, scp, ${n.nerdctl ? 'nerdctl load' : 'ctr import'}),`} kind-style, kind's re-push`)
  await n.reset(n1)
  await bed.exec(n1, ['cp', base, NODE_ARCHIVE])
  s.add('import-disk', await timed(async () => {
    const r = await bed.exec(n1, n.ctrImport(n1, NODE_ARCHIVE).split(' '), {timeoutMs: 300_000})
    if (r.code !== 0) throw new Error(`node-side ctr import failed on ${n1.name}: ${r.stderr}`)
  }))
  if (!block.skip.manual) {
    await n.reset(n1)
    await manualWorkflow(block, n1, src, name)
  }
  await n.reset(n1)
  s.add('kind-1', (await run(n.ssh(n1, n.ctrImport(n1, '-')), {stdinFile: base})).ms)
  // kind's own re-push: the old image is on the node (just imported), the whole new archive is
  // streamed into the same import; containerd skips the blobs it has and unpacks the new layer.
  // Each size replaces the last layer of the image the node has now (every other layer the same).
  for (const mb of repushSizes(block)) s.add(`kind-repush-${mb}mb`, (await run(n.ssh(n1, n.ctrImport(n1, '-')), {stdinFile: img.repush.get(mb)!.path})).ms)
  if (!block.skip.three) {
    await n.resetAll(all)
    s.add('kind-3', (await runParallel(all.map((node) => ({argv: n.ssh(node, n.ctrImport(node, '-')), opts: {stdinFile: base}})))).ms)
  }

  if (!baselinesOnly) {
    log(`${tag}: sideload, one node`)
    await n.reset(n1)
    const first = await sideloadPush(bed, {image: name, archive: base, nodes: [n1]}, true)
    s.add('push-1', first.ms)
    s.add('push-1-cpu', first.cpuMs ?? Number.NaN)
    s.add('push-1-bytes', first.sentBytes)
    s.add('rss-170-1', first.maxRssBytes ?? Number.NaN)
    for (const [phase, ms] of Object.entries(first.phases ?? {})) s.add(`push-1-phase-${phase}`, ms)
    // the re-pushes, in the order kind's were measured: each replaces the last layer the node has
    for (const mb of repushSizes(block)) {
      const delta = await sideloadPush(bed, {image: name, archive: img.repush.get(mb)!.path, nodes: [n1]})
      s.add(`repush-${mb}mb`, delta.ms)
      s.add(`repush-${mb}mb-bytes`, delta.sentBytes)
    }
    if (!block.skip.manual) {
      await n.reset(n1)
      s.add('push-1-local', (await sideloadPush(bed, {image: name, containerdAddress: src.bm.containerdAddress, nodes: [n1]})).ms)
    }
    if (!block.skip.noUnpack) {
      await n.reset(n1)
      s.add('push-1-nounpack', (await sideloadPush(bed, {image: name, archive: base, nodes: [n1], extra: ['--no-unpack']})).ms)
    }

    if (!block.skip.three) {
      log(`${tag}: sideload, three nodes`)
      await n.resetAll(all)
      const three = await sideloadPush(bed, {image: name, archive: base, nodes: all}, true)
      s.add('push-3', three.ms)
      s.add('rss-170', three.maxRssBytes ?? Number.NaN)
      const again = await sideloadPush(bed, {image: name, archive: base, nodes: all})
      s.add('identical-3', again.ms)
      s.add('identical-3-bytes', again.sentBytes)
    }

    if (opts.withFix && !block.skip.fix && round === 1) {
      log(`${tag}: sideload fix, ${FIX_PODS} stuck pods on ${all.length} nodes`)
      await n.resetAll(all)
      const outcome = await sideloadFix(block, `bench-${round}`, name, base)
      s.add('fix-20', outcome.ms)
      s.add('fix-transfers', outcome.transfers)
      s.add('fix-repeated-transfers', outcome.repeated)
    }
  }

  if (block.skip.shaped) return
  log(`${tag}: on a link shaped to ${SHAPED_MBIT} Mbit/s`)
  await bed.shape(n1, {rateMbit: SHAPED_MBIT})
  try {
    await n.reset(n1)
    s.add('kind-1-shaped', (await run(n.ssh(n1, n.ctrImport(n1, '-')), {stdinFile: base})).ms)
    if (baselinesOnly) return
    await n.reset(n1)
    s.add('push-1-shaped', (await sideloadPush(bed, {image: name, archive: base, nodes: [n1]})).ms)
    const d = await sideloadPush(bed, {image: name, archive: img.repush.get(GOAL_REPUSH_MB)!.path, nodes: [n1]})
    s.add('repush-shaped', d.ms)
  } finally {
    await bed.unshape(n1)
  }
}

/** Peak memory with the 1 GB image to three nodes: on the first block only (the client's memory; the 170 MB figure is measured on both lines). */
async function bigRun(block: Block, img: Images): Promise<void> {
  if (!img.big) return
  const {bed, n, s} = block
  log(`containerd ${block.version}: peak memory, ${(img.big.archiveBytes / MB).toFixed(0)} MB image to ${block.nodes.length} nodes`)
  await n.resetAll(block.nodes)
  const r = await sideloadPush(bed, {image: img.big.name, archive: img.big.path, nodes: block.nodes}, true)
  s.add('rss-1g', r.maxRssBytes ?? Number.NaN)
  s.add('push-3-big', r.ms)
  await n.resetAll(block.nodes)
}

async function fixLanded(): Promise<boolean> {
  return fs.existsSync(path.join(REPO, 'dist/bundle/commands/fix.js'))
}

/** The beds of the two containerd blocks and the build machine, and what every round needs. */
interface BlocksRun {
  bed2: Bed
  bed16: Bed
  bm: BuildMachine
  img: Images
  args: Args
  workDir: string
  common: Samples
  withFix: boolean
  nerdctl16: {path?: string; error?: string}
}

/** Every round of the common rows and of both containerd blocks, then the 1 GB image; returns the blocks measured. */
async function runBlocks({bed2, bed16, bm, img, args, workDir, common, withFix, nerdctl16}: BlocksRun): Promise<Block[]> {
  const blocks: Block[] = []
  const lines = [
    [bed2, '2', daemonBinary('nerdctl', 'nerdctl'), daemonVersion('nerdctl'), args.runs],
    [bed16, '1.6', nerdctl16.path, NERDCTL_16_VERSION, args.runs16],
  ] as const
  for (const [bed, line, nerdctl, nerdctlVersion, runs] of lines) {
    const version = await containerdVersionOf(bed, bed.nodes[0])
    // --quick: the 2.x block without `fix` and the manual workflow; the 1.6 block only its 1-node rows
    const quick16 = args.quick && line === '1.6'
    blocks.push({
      id: `containerd-${version}`, line, version, bed, nodes: bed.nodes.slice(0, 3), n: new Nodes(bed, nerdctl, nerdctlVersion), runs, s: new Samples(),
      skip: {shaped: quick16, fix: args.quick, noUnpack: quick16, manual: args.quick, three: quick16},
      plot: line === '2',
      big: line === '2',
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
      if (round <= block.runs) await blockRound(round, block, img, src, {baselinesOnly: args.baselinesOnly, withFix})
    }
  }
  if (!args.baselinesOnly) for (const block of blocks.filter((b) => b.big)) await bigRun(block, img)
  return blocks
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  if (process.getuid?.() !== 0) throw new Error('the bench starts a test bed (network namespaces, containerd, sshd): run it as root')
  const started = Date.now()
  if (!args.baselinesOnly && !fs.existsSync(path.join(REPO, 'dist/bundle/commands/push.js'))) {
    throw new Error('dist/bundle/commands/push.js is missing: run `npm run build` first (the bench runs the built CLI, start-up included)')
  }
  const onlyP2p = args.only === 'p2p'
  const onlyScaling = args.only === 'scaling'
  const withBlocks = !args.only
  const withScaling = !args.baselinesOnly && !onlyP2p
  // --quick leaves the p2p block out (`--only p2p` runs it): its bed, Spegel and three 6-node pushes take 1–2 minutes alone
  const withP2p = !args.baselinesOnly && !onlyScaling && !args.quick
  const img = await prepareImages(!args.quick && withBlocks)
  const workDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'slbench-'))
  const bedName = (suffix: string) => `slbench-${process.pid}-${suffix}`
  const suffixes = [...(onlyP2p ? [] : ['c2']), ...(withBlocks ? ['c16', 'bm'] : []), ...(withP2p ? ['p2p'] : [])]
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

  const withFix = withBlocks && !args.baselinesOnly && (await fixLanded())
  const common = new Samples()
  const blocks: Block[] = []
  let scaling: {s: Samples; version: string; runs: number; counts: number[]} | undefined
  let snapshotter = ''
  let nerdctl16: {path?: string; error?: string} = {}
  if (!onlyP2p) {
    if (withBlocks) {
      nerdctl16 = await nerdctlFor16()
      if (nerdctl16.error) log(`nerdctl ${NERDCTL_16_VERSION} could not be built (${nerdctl16.error}); the 1.6 nodes' manual baseline loads with ctr import instead`)
    }
    // the 2.x bed has six nodes: the blocks use the first three, the scaling block all six (one bed, not two)
    log(`starting beds ${bedName('c2')} (${C2_NODES} nodes, containerd 2.x)${withBlocks ? `, ${bedName('c16')} (3 nodes, containerd 1.6) and build machine ${bedName('bm')}` : ''}`)
    const starting = await Promise.allSettled([
      startBed({name: bedName('c2'), nodes: withScaling ? C2_NODES : 3, containerd: '2'}),
      ...(withBlocks ? [startBed({name: bedName('c16'), nodes: 3, containerd: '1.6'}), startBuildMachine(bedName('bm'), workDir)] : []),
    ])
    for (const r of starting) if (r.status === 'fulfilled') beds.push(r.value)
    const failed = starting.find((r) => r.status === 'rejected')
    if (failed) {
      await downAll()
      throw (failed as PromiseRejectedResult).reason
    }
    const [bed2, bed16, bm] = starting.map((r) => (r as PromiseFulfilledResult<unknown>).value) as [Bed, Bed | undefined, BuildMachine | undefined]
    snapshotter = bed2.nodes[0].snapshotter
    try {
      if (withBlocks && bed16 && bm) blocks.push(...(await runBlocks({bed2, bed16, bm, img, args, workDir, common, withFix, nerdctl16})))
      if (withScaling) {
        const counts = args.quick ? [...QUICK_SCALE_COUNTS] : [...SCALE_COUNTS]
        const runs = onlyScaling ? args.runs : 1
        log(`scaling: the ${(img.base.archiveBytes / MB).toFixed(0)} MB image to ${counts.join(', ')} nodes, each link ${SCALE_MBIT} Mbit/s (${runs} round${runs > 1 ? 's' : ''})`)
        // --workers rows at 3 and 6 nodes: not with --quick (~30 s)
        const workersAt = args.quick ? [] : counts.filter((k) => k > 1)
        const s = await runScaling({bed: bed2, nodes: bed2.nodes, image: img.base, runs, counts, workersAt, log})
        scaling = {s, version: await containerdVersionOf(bed2, bed2.nodes[0]), runs, counts}
      }
    } finally {
      if (!args.keepBed && !interrupted) await downAll()
      else if (args.keepBed) log(`beds kept (npm run bed -- down --name NAME for ${suffixes.filter((x) => x !== 'p2p').map(bedName).join(', ')})`)
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
    ...(withBlocks ? commonRows(common) : []),
    ...(scaling ? scalingRows(scaling.s, img.base, {quick: args.quick}) : []),
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
    ...(withBlocks ? [{id: COMMON_BLOCK, title: 'the client alone (no node containerd involved)', runs: args.runs}] : []),
    ...(scaling ? [scalingReportBlock(scaling.version, scaling.runs, scaling.counts)] : []),
    ...(p2p ? [p2pReportBlock(p2p, args.runsP2p, p2pNotes || undefined)] : []),
  ]
  const samples: Record<string, number[]> = Object.fromEntries(common.values)
  for (const b of blocks) for (const [k, v] of b.s.values) samples[`${b.id}/${k}`] = v
  if (scaling) for (const [k, v] of scaling.s.values) samples[`${SCALE_BLOCK}/${k}`] = v
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
  const charts = benchCharts(blocks[0], scaling?.s, img.base.archiveBytes)
  const svgOut = args.out.replace(/\.json$/, '') + '.svg'
  if (charts.length > 0) await fsp.writeFile(svgOut, renderSvg(charts, `sideload bench ${report.date.slice(0, 10)}${args.quick ? ' (--quick, one round)' : ''}: medians; ${report.machine.cpus} CPUs shared by the client and every node`))
  process.stdout.write(renderMarkdown(report))
  if (withBlocks) log(`manual baseline: nerdctl ${daemonVersion('nerdctl')} save on the build machine (containerd 2.x); scp -c ${CIPHER}; load with nerdctl ${daemonVersion('nerdctl')} on 2.x nodes, ${nerdctl16.path ? `nerdctl ${NERDCTL_16_VERSION}` : 'ctr import'} on 1.6 nodes`)
  if (p2p) log(`p2p: ${paysFrom(p2p.s)}`)
  log(`wrote ${args.out}${charts.length > 0 ? ` and ${svgOut}` : ''} (${report.durationS.toFixed(0)} s)`)
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
})
