// The scaling block of the bench: the ~170 MB image pushed to 1, 3 and 6 nodes at once, each
// node's link shaped, sideload against kind-style (`ssh node ctr import -`, one OpenSSH client per
// node, all at once); time, and the client's CPU (user + sys: the one sideload process; the sum of
// the OpenSSH clients) per node count. On a real cluster every node has its own CPUs and links, and
// what grows with the node count is the client's work: that is what these rows show.
//
// The rate: each node's link is shaped to SCALE_MBIT. Here the nodes share the client's 2 cores,
// and a node's side of an import (sshd decrypting, containerd writing, hashing, unpacking) costs
// ~20 CPU-ms per MB (kind-style to 3 unshaped nodes: ~510 MB in ~5.6 s on the 2 cores, OpenSSH's
// ~2 CPU-ms/MB aside). So six links leave the nodes' CPU out of it only below ~100 Mbit/s each
// (6 × 12.5 MB/s × 20 ms/MB = 1.5 cores), where one push takes ~15 s and the block ~1.5 minutes,
// past the bench's budget; 1 Gbit/s links would measure only this machine. At 200 Mbit/s one node
// is wire-bound (~7 s) and three nearly so; at six the 2 cores decide in part, for kind-style as
// for sideload. kind-style's own time growth says how much: a row whose kind-style time grew by
// more than a third from 1 node says so in its note. What carries over to a real cluster (each
// node with its own CPUs) is the client's CPU per byte, measured here at every node count.
import type {Bed, BedNode} from '../bed/bed.js'
import type {CachedImage} from './images.js'
import {runParallel} from './measure.js'
import type {ReportBlock, Row} from './report.js'
import {MB, Nodes, Samples, sideloadPush} from './steps.js'

export const SCALE_BLOCK = 'scaling'
export const SCALE_MBIT = 200
export const SCALE_COUNTS = [1, 3, 6] as const
/** Node counts whose time has a goal against kind-style (issue 17), and the goal. */
const GOAL_COUNTS: readonly number[] = [3, 6]
const GOAL_RATIO = 0.9

/** `--workers` for the rows that spread the nodes over threads (push-workers.ts): one per core here. */
export const SCALE_WORKERS = 2

export interface ScalingOptions {
  bed: Bed
  /** At least the largest node count. */
  nodes: BedNode[]
  image: CachedImage
  runs: number
  /** Node counts to measure (SCALE_COUNTS or fewer). */
  counts: number[]
  /** Node counts at which the push is measured again with --workers SCALE_WORKERS. */
  workersAt: number[]
  log: (msg: string) => void
}

/** Shapes every node's link, then per round and node count: sideload, then kind-style, each from empty nodes. */
export async function runScaling(opts: ScalingOptions): Promise<Samples> {
  const {bed, image, log} = opts
  const max = Math.max(...opts.counts)
  if (opts.nodes.length < max) throw new Error(`the scaling block needs ${max} nodes, the bed has ${opts.nodes.length}`)
  const n = new Nodes(bed)
  const s = new Samples()
  const shaped = opts.nodes.slice(0, max)
  await n.shapeAll(shaped, SCALE_MBIT)
  try {
    for (let round = 1; round <= opts.runs; round++) {
      for (const k of opts.counts) {
        const nodes = shaped.slice(0, k)
        await n.resetAll(nodes)
        const push = await sideloadPush(bed, {image: image.name, archive: image.path, nodes}, true, true)
        s.add(`push-${k}`, push.ms)
        s.add(`push-${k}-cpu`, push.cpuMs ?? Number.NaN)
        s.add(`push-${k}-busiest`, push.busiestThreadCpuMs ?? Number.NaN)
        s.add(`push-${k}-bytes`, push.sentBytes)
        if (opts.workersAt.includes(k)) {
          await n.resetAll(nodes)
          const w = await sideloadPush(bed, {image: image.name, archive: image.path, nodes, extra: ['--workers', String(SCALE_WORKERS)]}, true, true)
          s.add(`workers-${k}`, w.ms)
          s.add(`workers-${k}-cpu`, w.cpuMs ?? Number.NaN)
          s.add(`workers-${k}-busiest`, w.busiestThreadCpuMs ?? Number.NaN)
          log(`scaling run ${round}, ${k} node(s), --workers ${SCALE_WORKERS}: ${(w.ms / 1000).toFixed(2)} s, ${((w.cpuMs ?? Number.NaN) / 1000).toFixed(2)} CPU-s, busiest thread ${((w.busiestThreadCpuMs ?? Number.NaN) / 1000).toFixed(2)} (one thread: ${((push.busiestThreadCpuMs ?? Number.NaN) / 1000).toFixed(2)})`)
        }
        await n.resetAll(nodes)
        const kind = await runParallel(nodes.map((node) => ({argv: n.ssh(node, n.ctrImport(node, '-')), opts: {stdinFile: image.path, usage: true, timeoutMs: 300_000}})))
        s.add(`kind-${k}`, kind.ms)
        s.add(`kind-${k}-cpu`, kind.results.reduce((sum, r) => sum + (r.cpuMs ?? Number.NaN), 0))
        log(`scaling run ${round}, ${k} node(s) at ${SCALE_MBIT} Mbit/s: sideload ${(push.ms / 1000).toFixed(2)} s (${((push.cpuMs ?? Number.NaN) / 1000).toFixed(2)} CPU-s), kind-style ${(kind.ms / 1000).toFixed(2)} s`)
      }
    }
  } finally {
    await n.unshapeAll(shaped)
    await n.resetAll(shaped)
  }
  return s
}

/** CPU ms per MB sent: the client's CPU time over the bytes it sent. */
export function cpuMsPerMb(cpuMs: number | undefined, bytes: number | undefined): number | undefined {
  return cpuMs === undefined || bytes === undefined || !(bytes > 0) || Number.isNaN(cpuMs) ? undefined : cpuMs / (bytes / MB)
}

export function scalingRows(s: Samples, image: CachedImage, opts: {quick: boolean}): Row[] {
  const rows: Row[] = []
  const add = (row: Row): void => {
    const notMeasured = row.measured === undefined && opts.quick ? {notMeasured: 'not measured (--quick)'} : {}
    rows.push({...row, ...notMeasured, block: SCALE_BLOCK})
  }
  const sec = (key: string) => {
    const v = s.median(key)
    return v === undefined ? undefined : v / 1000
  }
  for (const k of SCALE_COUNTS) {
    const kind = `kind-style, ${k} node${k > 1 ? 's' : ''} in parallel`
    const kind1 = s.median('kind-1')
    const kindK = s.median(`kind-${k}`)
    // kind-style's time growing with the node count: the machine's CPU, not the links, set the pace
    const cpuBound = k > 1 && kind1 !== undefined && kindK !== undefined && kindK > kind1 * 4 / 3
    add({
      scenario: `first push, ${k} node${k > 1 ? 's' : ''}, each link ${SCALE_MBIT} Mbit/s: time${GOAL_COUNTS.includes(k) ? '' : ' (context)'}`, unit: 's', measured: sec(`push-${k}`), baseline: sec(`kind-${k}`), baselineLabel: kind,
      ...(GOAL_COUNTS.includes(k) ? {maxRatio: GOAL_RATIO, goal: `≤ ${GOAL_RATIO} × ${kind}`} : {goal: '—', context: true}),
      ...(cpuBound ? {note: `kind-style ${(kindK! / kind1!).toFixed(1)}× its 1-node time: this machine's CPU, not the links, set the pace`} : {}),
    })
    add({
      scenario: `first push, ${k} node${k > 1 ? 's' : ''}, each link ${SCALE_MBIT} Mbit/s: client CPU, user + sys (context)`, unit: 'cpu-s', measured: sec(`push-${k}-cpu`), baseline: sec(`kind-${k}-cpu`),
      baselineLabel: `kind-style's ${k} OpenSSH client${k > 1 ? 's' : ''}`, goal: '—', context: true,
    })
    const kindBytes = k * image.archiveBytes
    add({
      scenario: `first push, ${k} node${k > 1 ? 's' : ''}, each link ${SCALE_MBIT} Mbit/s: client CPU per MB sent (context)`, unit: 'ms/MB',
      measured: cpuMsPerMb(s.median(`push-${k}-cpu`), s.median(`push-${k}-bytes`)), baseline: cpuMsPerMb(s.median(`kind-${k}-cpu`), kindBytes),
      baselineLabel: `kind-style's OpenSSH clients`, goal: '—', context: true,
    })
  }
  // the fan-out over worker threads: its busiest thread is what bounds a client with a core per thread
  for (const k of GOAL_COUNTS) {
    const w = `--workers ${SCALE_WORKERS}`
    const oneThread = `one thread (no --workers)`
    add({
      scenario: `first push, ${k} nodes, each link ${SCALE_MBIT} Mbit/s, ${w}: time (context)`, unit: 's', measured: sec(`workers-${k}`), baseline: sec(`push-${k}`),
      baselineLabel: `${oneThread}; kind-style ${sec(`kind-${k}`)?.toFixed(2) ?? '?'} s`, goal: '—', context: true,
    })
    add({
      scenario: `first push, ${k} nodes, ${w}: client CPU of its busiest thread (context)`, unit: 'cpu-s', measured: sec(`workers-${k}-busiest`), baseline: sec(`push-${k}-busiest`),
      baselineLabel: `the busiest thread of ${oneThread}`, goal: '—', context: true,
    })
    add({
      scenario: `first push, ${k} nodes, ${w}: client CPU, all threads (context)`, unit: 'cpu-s', measured: sec(`workers-${k}-cpu`), baseline: sec(`push-${k}-cpu`),
      baselineLabel: oneThread, goal: '—', context: true,
    })
  }
  // what one more node costs the client, without the start-up every push pays once
  const [lo, hi] = [Math.min(...SCALE_COUNTS), Math.max(...SCALE_COUNTS)]
  const dCpu = (key: (k: number) => string) => {
    const a = s.median(key(lo))
    const b = s.median(key(hi))
    return a === undefined || b === undefined ? undefined : b - a
  }
  const pushDelta = dCpu((k) => `push-${k}-cpu`)
  const bytesDelta = dCpu((k) => `push-${k}-bytes`)
  const kindDelta = dCpu((k) => `kind-${k}-cpu`)
  add({
    scenario: `client CPU per MB sent, marginal (${hi} nodes − ${lo}: start-up left out) (context)`, unit: 'ms/MB', measured: cpuMsPerMb(pushDelta, bytesDelta),
    baseline: cpuMsPerMb(kindDelta, (hi - lo) * image.archiveBytes), baselineLabel: `kind-style's OpenSSH clients, the same`, goal: '—', context: true,
  })
  return rows
}

export function scalingReportBlock(version: string, runs: number, counts: number[]): ReportBlock {
  const left = SCALE_COUNTS.filter((k) => !counts.includes(k))
  return {
    id: SCALE_BLOCK,
    title: `scaling: the ~170 MB image to ${counts.join(', ')} containerd ${version} nodes at once, each node's link ${SCALE_MBIT} Mbit/s`,
    runs,
    ...(left.length > 0 ? {note: `--quick: not at ${left.join(', ')} nodes`} : {}),
  }
}
