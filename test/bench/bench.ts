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
// same on three nodes too, to say from how many nodes the hand-off pays).
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
import {startBed, type Bed, type BedNode, type ContainerdLine} from '../bed/bed.js'
import {changeLastLayer, type MakeImageOptions} from '../bed/images.js'
import {startBuildMachine, type BuildMachine} from '../build/buildkitd.js'
import {daemonBinary, daemonVersion} from '../daemons/daemons.js'
import {startFixCluster} from './fix-cluster.js'
import {cachedImage, type CachedImage} from './images.js'
import {run, runParallel, timed} from './measure.js'
import {renderMarkdown, type BenchReport, type ReportBlock, type Row} from './report.js'
import {P2P_BLOCK, p2pReportBlock, p2pRows, paysFrom, runP2pBlock, type P2pOutcome} from './p2p.js'
import {renderSvg, type Chart} from './plot.js'
import {cpuMsPerMb, runScaling, SCALE_BLOCK, SCALE_COUNTS, SCALE_MBIT, scalingReportBlock, scalingRows} from './scaling.js'
import {CIPHER, CLI, MB, NODE_ARCHIVE, Nodes, REPO, Samples, sideloadPush} from './steps.js'

const SSH2_CAT = path.join(REPO, 'test/bench/ssh2-cat.ts')
const SHAPED_MBIT = 1000
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

const FIX_PODS = 20

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

/** Sizes (MB) of the new last layer in the re-push rows: 5 is the goal row's, 1 and 25 are for the plot. */
const REPUSH_MB = [5, 1, 25] as const
const GOAL_REPUSH_MB = 5

interface Images {
  base: CachedImage
  /** The base with its last layer replaced by a new one of this many MB (every other layer the same). */
  repush: Map<number, CachedImage>
  big?: CachedImage
}

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

/** One kind of node: three nodes on one containerd line, and every push row measured on them. */
interface Block {
  id: string
  line: ContainerdLine
  /** `2.3.7`, `1.6.20` */
  version: string
  bed: Bed
  /** The block's three nodes (the 2.x bed has six: the scaling block uses them all). */
  nodes: BedNode[]
  n: Nodes
  runs: number
  /** Rows left out of this block (--quick: the run stays under 2 minutes). */
  skip: {shaped: boolean; fix: boolean; noUnpack: boolean; manual: boolean; three: boolean}
  /** Also the re-pushes of a 1 and a 25 MB last layer (the plot's points; on one line only, to keep time). */
  plot: boolean
  /** Also the 1 GB image's peak RSS (the client's memory: on one line only, to keep time). */
  big: boolean
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

/** The re-push sizes measured in this block: the goal row's, and the plot's on the plot's line. */
function repushSizes(block: Block): number[] {
  return block.plot ? [...REPUSH_MB] : [GOAL_REPUSH_MB]
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
    {block: COMMON_BLOCK, scenario: '`sideload --help` start-up', unit: 's', measured: sec('help'), baseline: sec('node-e'), baselineLabel: '`node -e ""`', maxRatio: 2, goal: '≤ 2 × `node -e ""`'},
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
    const notMeasured = row.measured === undefined && !row.notMeasured && opts.quick ? {notMeasured: 'not measured (--quick)'} : {}
    rows.push({...row, ...notMeasured, block: block.id})
  }
  const ratioRow = (scenario: string, measuredKey: string, baselineLabel: string, baseline: number | undefined, maxRatio: number, unit: Row['unit'] = 's'): void => {
    add({scenario, unit, measured: unit === 's' ? sec(measuredKey) : m(measuredKey), baseline, baselineLabel, maxRatio, goal: `≤ ${maxRatio} × ${baselineLabel}`})
  }
  const contextRow = (scenario: string, measuredKey: string, baselineLabel: string, baseline: number | undefined): void => {
    add({scenario: `${scenario} (context)`, unit: 's', measured: sec(measuredKey), baseline, baselineLabel, goal: '—', context: true})
  }
  const importDisk = sec('import-disk')
  ratioRow('first push, ~170 MB, 1 node', 'push-1', 'node-side import from disk', importDisk, 1.0)
  ratioRow('first push, ~170 MB, 1 node', 'push-1', 'kind-style, 1 node', sec('kind-1'), 0.95)
  add({
    scenario: 'client CPU per MB sent, first push, 1 node (user + sys of the sideload process ÷ bytes it sent)', unit: 'ms/MB',
    measured: cpuMsPerMb(m('push-1-cpu'), m('push-1-bytes')), baseline: cpuMsPerMb(common.median('raw-1-cpu'), img.base.archiveBytes),
    baselineLabel: 'the OpenSSH client of the raw copy (÷ the archive)', maxRatio: 1.5, goal: '≤ 1.5 × OpenSSH\'s',
  })
  const loadStep = block.n.nerdctl ? `nerdctl ${block.n.nerdctlVersion} load` : 'ctr import'
  add({
    scenario: 'first push from the build machine\'s containerd, 1 node, against the manual workflow', unit: 's', measured: sec('push-1-local'), baseline: sec('manual'),
    baselineLabel: `manual: nerdctl save, scp, ${loadStep}`, maxRatio: 1, goal: '≤ 1 × manual',
    ...(block.manualNote ? {note: block.manualNote} : {}),
  })
  contextRow('first push from the build machine\'s containerd, 1 node', 'push-1-local', 'first push from the archive', sec('push-1'))
  const rawShaped = csec('raw-1-shaped')
  const maxShaped = rawShaped !== undefined && importDisk !== undefined ? Math.max(rawShaped, importDisk) : undefined
  ratioRow(`first push, 1 node, ${SHAPED_MBIT} Mbit/s link`, 'push-1-shaped', 'max(raw copy @1G, node-side import)', maxShaped, 1.1)
  ratioRow(`first push, 1 node, ${SHAPED_MBIT} Mbit/s link`, 'push-1-shaped', 'kind-style @1G, 1 node', sec('kind-1-shaped'), 0.95)
  ratioRow('first push --no-unpack, 1 node', 'push-1-nounpack', 'copy to the node\'s disk (`ssh node \'cat > f\'`)', csec('raw-1-disk'), 1.15)
  contextRow('first push --no-unpack, 1 node', 'push-1-nounpack', 'raw copy to /dev/null (the old baseline: no node-side work)', csec('raw-1'))
  add({
    scenario: 'first push: time in the transfer phase (first to last byte event) (context)', unit: 's', measured: sec('push-1-phase-transfer'), baseline: csec('raw-1-ssh2-transfer'),
    baselineLabel: 'ssh2 raw copy, transfer only', goal: '—', context: true,
  })
  ratioRow('first push, 3 nodes (links unshaped: the 2 cores decide)', 'push-3', 'kind-style, 3 nodes in parallel', sec('kind-3'), 0.9)
  const goal = img.repush.get(GOAL_REPUSH_MB)!
  const lastLayer = goal.platforms[0].layerSizes.at(-1) ?? 0
  const otherLayers = goal.platforms[0].layerSizes.slice(0, -1).reduce((a, b) => a + b, 0)
  const deltaExpected = goal.totalBytes - otherLayers // last layer + config + manifest
  add({
    scenario: `re-push, last ${GOAL_REPUSH_MB} MB layer changed: bytes sent`, unit: 'MB', measured: toMb(m(`repush-${GOAL_REPUSH_MB}mb-bytes`)), baseline: toMb(deltaExpected),
    baselineLabel: `layer ${(lastLayer / MB).toFixed(2)} MB + manifest + config`, maxRatio: 1.05, goal: '≤ 1.05 × (layer + manifest + config)',
  })
  ratioRow(`re-push, last ${GOAL_REPUSH_MB} MB layer changed: time`, `repush-${GOAL_REPUSH_MB}mb`, 'kind\'s re-push (old image on the node, new archive streamed in)', sec(`kind-repush-${GOAL_REPUSH_MB}mb`), 0.25)
  contextRow(`re-push, last ${GOAL_REPUSH_MB} MB layer changed: time`, `repush-${GOAL_REPUSH_MB}mb`, 'kind-style first push, 1 node', sec('kind-1'))
  contextRow(`re-push, last layer changed, ${SHAPED_MBIT} Mbit/s link: time`, 'repush-shaped', 'kind-style first push @1G, 1 node', sec('kind-1-shaped'))
  if (block.plot) {
    for (const mb of REPUSH_MB.filter((x) => x !== GOAL_REPUSH_MB)) {
      contextRow(`re-push, last layer changed to a new ${mb} MB one: time`, `repush-${mb}mb`, 'kind\'s re-push of the same', sec(`kind-repush-${mb}mb`))
    }
  }
  add({scenario: 'identical re-push, 3 nodes: bytes sent', unit: 'MB', measured: toMb(m('identical-3-bytes')), baselineLabel: 'no blob sent', goal: '0 bytes', maxAbsolute: 0})
  const nodeE = csec('node-e')
  const sshTrue = csec('ssh-true')
  ratioRow('identical re-push, 3 nodes: time', 'identical-3', '(`node -e ""` + one `ssh node true`)', nodeE !== undefined && sshTrue !== undefined ? nodeE + sshTrue : undefined, 1.2)
  const rss170 = toMb(m('rss-170'))
  add({scenario: 'peak RSS, ~170 MB image to 3 nodes', unit: 'MB', measured: rss170, baselineLabel: '', goal: '≤ 100 MB', maxAbsolute: 100})
  if (block.big) {
    const rss1g = toMb(m('rss-1g'))
    add({scenario: 'peak RSS, ~1 GB image to 3 nodes', unit: 'MB', measured: rss1g, baselineLabel: '', goal: '≤ 100 MB', maxAbsolute: 100})
    add({scenario: 'peak RSS, 1 GB vs 170 MB image (context)', unit: 'MB', measured: rss1g, baseline: rss170, baselineLabel: 'peak RSS with the 170 MB image', goal: '—', context: true})
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
  if (block.runs > 1 && !block.skip.fix) notes.push('`fix` in the first round only')
  const skipped = [
    block.skip.manual ? 'manual-workflow' : '', block.skip.three ? '3-node' : '', block.skip.noUnpack ? '`--no-unpack`' : '', block.skip.shaped ? `${SHAPED_MBIT} Mbit/s` : '', block.skip.fix ? '`fix`' : '',
  ].filter(Boolean)
  if (skipped.length > 0) notes.push(`--quick: no ${skipped.join(', ')} rows here`)
  if (!block.plot) notes.push(`re-push of a ${GOAL_REPUSH_MB} MB layer only (the 1 and 25 MB ones of the plot on the first block's line)`)
  if (!block.big) notes.push('no 1 GB peak-RSS row (the client\'s memory: measured on the first block\'s line)')
  return notes.length > 0 ? notes.join('; ') : undefined
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
// the picture

/** (a) time against node count, sideload and kind-style; (b) re-push time against the changed layer's size, sideload and kind's re-push. */
function benchCharts(block: Block | undefined, scaling: Samples | undefined, archiveBytes: number): Chart[] {
  const sec = (s: Samples, key: string) => {
    const v = s.median(key)
    return v === undefined ? undefined : v / 1000
  }
  const charts: Chart[] = []
  if (scaling) {
    const counts = SCALE_COUNTS.filter((k) => scaling.median(`push-${k}`) !== undefined || scaling.median(`kind-${k}`) !== undefined)
    charts.push({
      title: `first push of ~170 MB, each node's link ${SCALE_MBIT} Mbit/s`, xLabel: 'nodes pushed to at once', yLabel: 'seconds',
      series: [
        {name: 'sideload push', points: counts.map((k) => ({x: k, y: sec(scaling, `push-${k}`)}))},
        {name: 'kind-style (ssh … ctr import -)', points: counts.map((k) => ({x: k, y: sec(scaling, `kind-${k}`)}))},
        // the least any tool can take: the archive through one node's shaped link
        {name: `the wire alone (archive ÷ ${SCALE_MBIT} Mbit/s)`, points: counts.map((k) => ({x: k, y: (archiveBytes * 8) / (SCALE_MBIT * 1e6)}))},
      ],
    })
  }
  if (block) {
    const sizes = [...REPUSH_MB].sort((a, b) => a - b).filter((mb) => block.s.median(`repush-${mb}mb`) !== undefined || block.s.median(`kind-repush-${mb}mb`) !== undefined)
    charts.push({
      title: `re-push, last layer changed (containerd ${block.version}, 1 node)`, xLabel: 'MB in the changed layer', yLabel: 'seconds',
      series: [
        {name: 'sideload re-push', points: sizes.map((mb) => ({x: mb, y: sec(block.s, `repush-${mb}mb`)}))},
        {name: 'kind\'s re-push (whole archive)', points: sizes.map((mb) => ({x: mb, y: sec(block.s, `kind-repush-${mb}mb`)}))},
      ],
    })
  }
  return charts
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
        const s = await runScaling({bed: bed2, nodes: bed2.nodes, image: img.base, runs, counts, log})
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
