// The p2p block of the bench: `sideload push --p2p spegel --seeds 2` against a direct fan-out and
// kind-style streaming, from a client behind one link shaped to 1 Gbit/s (its own network
// namespace on the bed bridge: test/bed/client-ns.ts; the nodes' own links are not shaped, as in
// a cluster whose nodes sit on a faster network than the developer's uplink). Six containerd 2.x
// nodes, each with Spegel (test/spegel/spegel.ts) and no registry behind it, so a peer gets the
// image from the seeds or, when its pull fails, by a direct push (counted as a fallback). Every
// scenario starts from empty nodes; time is the command's wall clock, bytes are what left the
// client through its link (the veth's tx_bytes: payload, SSH and TCP/IP overhead). The same is
// measured on the first three nodes, to say from how many nodes the hand-off pays.
import * as fsp from 'node:fs/promises'
import * as os from 'node:os'
import * as path from 'node:path'
import {startBed, type Bed, type BedNode} from '../bed/bed.js'
import {startClientNs, type ClientNs} from '../bed/client-ns.js'
import {makeImage} from '../bed/images.js'
import {waitGone} from '../bed/processes.js'
import {mirrorToOwnSpegel, startSpegel, waitFindable} from '../spegel/spegel.js'
import type {CachedImage} from './images.js'
import {runParallel} from './measure.js'
import type {ReportBlock, Row} from './report.js'
import {MB, Nodes, Samples, sideloadPush} from './steps.js'

export const P2P_BLOCK = 'p2p'
export const P2P_NODES = 6
export const P2P_SEEDS = 2
export const CLIENT_MBIT = 1000
/** Node counts measured: all six, and three (where the hand-off may not pay yet). */
const COUNTS = [P2P_NODES, 3] as const

export interface P2pRunOptions {
  bedName: string
  image: CachedImage
  runs: number
  /** Also measure on 3 nodes (direct against p2p, and kind-style). */
  withThree: boolean
  keepBed: boolean
  log: (msg: string) => void
  /** Called with the bed as soon as it is up (the caller removes it on a signal). */
  started: (bed: Bed) => void
}

export interface P2pOutcome {
  bed: Bed
  version: string
  s: Samples
}

/** Starts the bed (six 2.x nodes, Spegel on each, peers finding each other), the client namespace, and measures. */
export async function runP2pBlock(opts: P2pRunOptions): Promise<P2pOutcome> {
  const {log} = opts
  log(`p2p: starting bed ${opts.bedName} (${P2P_NODES} nodes, containerd 2.x, Spegel on each) and a client behind a ${CLIENT_MBIT} Mbit/s link`)
  const bed = await startBed({
    name: opts.bedName, nodes: P2P_NODES, containerd: '2',
    nodeOptions: Object.fromEntries(Array.from({length: P2P_NODES}, (_, i) => [i + 1, {registryConfigPath: true}])),
  })
  opts.started(bed)
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'slbench-p2p-'))
  const s = new Samples()
  try {
    // no registry behind the mirror (nothing listens on port 9): a node gets the image from its peers or not at all
    for (const node of bed.nodes) await mirrorToOwnSpegel(bed, node, 'docker.io', `http://${bed.hostIp}:9`)
    const n = new Nodes(bed)
    const client = await startClientNs(bed, {rateMbit: CLIENT_MBIT})
    const r = await bed.exec(bed.nodes[0], ['ctr', 'version'], {timeoutMs: 30_000})
    const version = /Server:\s*\n\s*Version:\s*v?(\d+\.\d+\.\d+)/.exec(r.stdout)?.[1] ?? '2.x'
    for (let round = 1; round <= opts.runs; round++) {
      for (const count of COUNTS) {
        if (count !== P2P_NODES && !opts.withThree) continue
        await p2pRound(`p2p run ${round}, ${count} nodes`, bed, n, client, bed.nodes.slice(0, count), opts.image, s, log, () => freshSpegel(bed, n, dir, log))
      }
    }
    return {bed, version, s}
  } finally {
    await fsp.rm(dir, {recursive: true, force: true})
    if (opts.keepBed) log(`p2p bed kept (npm run bed -- down --name ${opts.bedName})`)
  }
}

/**
 * Spegel as on nodes that never held the image: stopped and started again (new identities, so no
 * peer's routing table or provider records remember an earlier run: a node emptied by the bench
 * would otherwise still be advertised for the image's layers, and a pull sent there fails), then
 * the peers found each other again.
 */
async function freshSpegel(bed: Bed, n: Nodes, dir: string, log: (msg: string) => void): Promise<void> {
  const pids: number[] = []
  for (const node of bed.nodes) {
    const pid = Number((await fsp.readFile(path.join(bed.nodeDir(node), 'spegel.pid'), 'utf8').catch(() => '')).trim())
    if (pid > 0) {
      try {
        process.kill(pid, 'SIGKILL')
        pids.push(pid)
      } catch {
        // already gone
      }
    }
  }
  await waitGone(pids, 5000)
  await startSpegel(bed, bed.nodes)
  await waitPeers(bed, n, dir, log)
}

/**
 * A cluster's Spegel has long found its peers; these just started. A small canary pushed to each
 * seed, and every other node's Spegel asked until it finds it (as test/spegel/p2p-push.test.ts);
 * then every node is emptied again.
 */
async function waitPeers(bed: Bed, n: Nodes, dir: string, log: (msg: string) => void): Promise<void> {
  for (const [i, seed] of bed.nodes.slice(0, P2P_SEEDS).entries()) {
    const name = `docker.io/slbench/canary:${i}`
    const out = path.join(dir, `canary-${i}.tar`)
    const info = await makeImage({name, layers: [{sizeBytes: 4096, seed: `slbench-canary-${i}`}], format: 'oci', out})
    await sideloadPush(bed, {image: name, archive: out, nodes: [seed]})
    const waited = await Promise.all(bed.nodes.filter((x) => x !== seed).map((x) => waitFindable(x, 'slbench/canary', info.targetDigest!)))
    log(`p2p: the others find seed ${seed.name}'s canary after ≤ ${Math.max(...waited)} ms`)
  }
  await n.resetAll(bed.nodes)
}

async function p2pRound(
  tag: string, bed: Bed, n: Nodes, client: ClientNs, nodes: BedNode[], img: CachedImage, s: Samples, log: (msg: string) => void, freshSpegel: () => Promise<void>,
): Promise<void> {
  const k = nodes.length
  const through = async (key: string, fn: () => Promise<number>, prepare?: () => Promise<void>): Promise<void> => {
    await n.resetAll(bed.nodes)
    if (prepare) await prepare()
    const before = await client.txBytes()
    const ms = await fn()
    const bytes = (await client.txBytes()) - before
    s.add(key, ms)
    s.add(`${key}-bytes`, bytes)
    log(`${tag}: ${key} ${(ms / 1000).toFixed(2)} s, ${(bytes / MB).toFixed(1)} MB through the client's link`)
  }
  log(`${tag}: direct fan-out`)
  await through(`direct-${k}`, async () => (await sideloadPush(bed, {image: img.name, archive: img.path, nodes, prefix: client.prefix()})).ms)
  log(`${tag}: --p2p spegel --seeds ${P2P_SEEDS}`)
  await through(`p2p-${k}`, async () => {
    const r = await sideloadPush(bed, {image: img.name, archive: img.path, nodes, prefix: client.prefix(), extra: ['--p2p', 'spegel', '--seeds', String(P2P_SEEDS)]})
    s.add(`p2p-${k}-fallbacks`, r.results.filter((x) => x.via === 'direct').length)
    // a peer that waited: the mirror found no peer with the image's tag yet, or its pull met "not found" (asked again once Spegel's lookup of it expired)
    const retries = r.stdout.split('\n').filter((l) => l.includes('no peer has the image yet')).length
    s.add(`p2p-${k}-pull-retries`, retries)
    const said = r.results.map((x) => `${x.node.replace(/^root@/, '')} ${x.via ?? '?'} ${((x.durationMs ?? 0) / 1000).toFixed(1)} s${x.p2pError ? ` (…${x.p2pError.slice(-240)})` : ''}`)
    log(`${tag}: ${(r.ms / 1000).toFixed(1)} s, ${retries} peer(s) asked again after "not found"; ${said.join('; ')}`)
    return r.ms
  }, freshSpegel)
  log(`${tag}: kind-style (ssh node ctr import -, all at once)`)
  await through(`kind-${k}`, async () => (await runParallel(nodes.map((node) => ({argv: [...client.prefix(), ...n.ssh(node, n.ctrImport(node, '-'))], opts: {stdinFile: img.path, timeoutMs: 300_000}})))).ms)
}

// ---------------------------------------------------------------------------------------------
// rows

/** Node counts at which the hand-off paid (p2p faster than the direct fan-out), of those measured. */
export function paysFrom(s: Samples): string {
  const measured = [...COUNTS].sort((a, b) => a - b).filter((k) => s.median(`p2p-${k}`) !== undefined && s.median(`direct-${k}`) !== undefined)
  if (measured.length === 0) return 'not measured'
  const pays = measured.filter((k) => s.median(`p2p-${k}`)! < s.median(`direct-${k}`)!)
  const say = (k: number) => `${k} nodes: p2p ${(s.median(`p2p-${k}`)! / 1000).toFixed(2)} s, direct ${(s.median(`direct-${k}`)! / 1000).toFixed(2)} s`
  const verdict = pays.length === 0 ? `the hand-off did not pay at ${measured.join(' or ')} nodes` : `the hand-off pays from ${pays[0]} nodes${pays[0] !== measured[0] ? ` (not at ${measured.filter((k) => k < pays[0]).join(', ')})` : ''}`
  return `${verdict} (${measured.map(say).join('; ')})`
}

export function p2pRows(s: Samples, img: CachedImage, opts: {withThree: boolean}): Row[] {
  const rows: Row[] = []
  const add = (row: Row): void => {
    rows.push({...row, block: P2P_BLOCK})
  }
  const sec = (key: string) => {
    const v = s.median(key)
    return v === undefined ? undefined : v / 1000
  }
  const mb = (key: string) => {
    const v = s.median(key)
    return v === undefined ? undefined : v / MB
  }
  const image = img.archiveBytes / MB
  const link = `client link ${CLIENT_MBIT} Mbit/s`
  const p2p = `\`--p2p spegel --seeds ${P2P_SEEDS}\``
  for (const k of COUNTS) {
    const notMeasured = k !== P2P_NODES && !opts.withThree ? {notMeasured: 'not measured'} : {}
    add({
      scenario: `${p2p}, ${k} nodes, ${link}: time${k === P2P_NODES ? '' : ' (context)'}`, unit: 's', measured: sec(`p2p-${k}`), baseline: sec(`direct-${k}`), baselineLabel: `direct fan-out, ${k} nodes`,
      ...(k === P2P_NODES ? {maxRatio: 1, goal: '≤ 1 × direct fan-out'} : {goal: '—', context: true}), ...notMeasured,
    })
    add({scenario: `${p2p}, ${k} nodes, ${link}: time (context)`, unit: 's', measured: sec(`p2p-${k}`), baseline: sec(`kind-${k}`), baselineLabel: `kind-style, ${k} nodes`, goal: '—', context: true, ...notMeasured})
    add({scenario: `direct fan-out, ${k} nodes, ${link}: time (context)`, unit: 's', measured: sec(`direct-${k}`), baseline: sec(`kind-${k}`), baselineLabel: `kind-style, ${k} nodes`, goal: '—', context: true, ...notMeasured})
    add({scenario: `${p2p}, ${k} nodes: bytes through the client's link (context)`, unit: 'MB', measured: mb(`p2p-${k}-bytes`), baseline: mb(`direct-${k}-bytes`), baselineLabel: `direct fan-out, ${k} nodes`, goal: '—', context: true, ...notMeasured})
    add({scenario: `${p2p}, ${k} nodes: bytes through the client's link (context)`, unit: 'MB', measured: mb(`p2p-${k}-bytes`), baseline: mb(`kind-${k}-bytes`), baselineLabel: `kind-style, ${k} nodes`, goal: '—', context: true, ...notMeasured})
    add({scenario: `direct fan-out, ${k} nodes: bytes through the client's link (context)`, unit: 'MB', measured: mb(`direct-${k}-bytes`), baseline: k * image, baselineLabel: `${k} × the archive`, goal: '—', context: true, ...notMeasured})
    add({scenario: `kind-style, ${k} nodes: bytes through the client's link (context)`, unit: 'MB', measured: mb(`kind-${k}-bytes`), baseline: k * image, baselineLabel: `${k} × the archive`, goal: '—', context: true, ...notMeasured})
    add({
      scenario: `${p2p}, ${k} nodes: peers that waited for their mirror, or asked a pull again after "not found" (context)`, unit: 'count', measured: s.median(`p2p-${k}-pull-retries`),
      baselineLabel: `of ${k - P2P_SEEDS} peers`, goal: '—', context: true, ...notMeasured,
    })
    const fallbacks = s.median(`p2p-${k}-fallbacks`)
    add({
      scenario: `${p2p}, ${k} nodes: peers pushed directly after their pull failed (context)`, unit: 'count', measured: fallbacks, baselineLabel: `of ${k - P2P_SEEDS} peers`, goal: '—', context: true,
      ...notMeasured,
    })
  }
  return rows
}

export function p2pReportBlock(outcome: P2pOutcome, runs: number, note: string | undefined): ReportBlock {
  const pays = paysFrom(outcome.s)
  return {
    id: P2P_BLOCK,
    title: `p2p: ${P2P_NODES} containerd ${outcome.version} nodes with Spegel, the client behind a ${CLIENT_MBIT} Mbit/s link (the nodes' links unshaped)`,
    runs,
    note: [note, pays].filter(Boolean).join('; '),
  }
}
