// Tearing beds down from any state: processes, mounts, namespaces, links, claims and files.
import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import * as path from 'node:path'
import type {Bed} from './bed.js'
import {BED_ROOT, BEDS_DIR, INDEX_DIR, NETNS_PREFIX, bedDirOf, bridgeName, ownerAlive, readIndex, readOwner} from './layout.js'
import {kill, pidsInNetns, pidsMentioning, runCommand, waitGone} from './processes.js'

// ---------------------------------------------------------------------------------------------
// teardown

export async function umountUnder(dir: string): Promise<void> {
  const mounts = fs
    .readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1])
    .filter((m): m is string => m !== undefined && (m === dir || m.startsWith(`${dir}/`)))
    .map((m) => m.replace(/\\040/g, ' '))
    .sort((a, b) => b.length - a.length)
  for (const m of mounts) await runCommand('umount', ['-l', m])
}

export async function listNetns(): Promise<string[]> {
  try {
    return (await fsp.readdir('/run/netns')).filter((n) => n.startsWith(NETNS_PREFIX))
  } catch {
    return []
  }
}

export async function listLinks(): Promise<string[]> {
  const r = await runCommand('ip', ['-o', 'link', 'show'])
  return r.stdout
    .split('\n')
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1])
    .filter((n): n is string => n !== undefined)
}

export async function killAll(pids: number[]): Promise<void> {
  for (const pid of pids) kill(pid, 'SIGKILL')
  const left = await waitGone(pids, 5000)
  if (left.length > 0) throw new Error(`test bed teardown: processes ${left.join(', ')} did not die after SIGKILL`)
}

/** Removes every trace of bed `name` (processes, mounts, netns, links, dirs, index claim); no-op if absent. */
export async function destroyBed(name: string): Promise<void> {
  const dir = bedDirOf(name)
  // the bed's index: from its dir, and from any claim naming it (a run killed between claim and dir write)
  const indexes = new Set<number>(await claimsOf(name))
  const recorded = readIndex(name)
  if (recorded !== undefined) indexes.add(recorded)
  const nsRe = new RegExp(`^${NETNS_PREFIX}${name.replace(/-/g, '\\-')}-(\\d+)$`)
  const namespaces = (await listNetns()).filter((n) => nsRe.test(n))
  // 1. processes: everything in the node network namespaces, and any daemon started from the bed dir
  const pids = new Set<number>(pidsMentioning(dir))
  for (const ns of namespaces) for (const pid of pidsInNetns(`/run/netns/${ns}`)) pids.add(pid)
  await killAll([...pids])
  // 2. links: the host veth ends (their peers die with them) and the bridge
  const links = indexes.size > 0 ? await listLinks() : []
  for (const k of indexes) {
    const vethRe = new RegExp(`^slb${k}n\\d+$`)
    for (const l of links.filter((l) => vethRe.test(l))) await runCommand('ip', ['link', 'del', l])
    if (links.includes(bridgeName(k))) await runCommand('ip', ['link', 'del', bridgeName(k)])
  }
  // 3. namespaces and mounts
  for (const ns of namespaces) {
    const r = await runCommand('ip', ['netns', 'del', ns])
    if (r.code !== 0 && fs.existsSync(`/run/netns/${ns}`)) {
      await runCommand('umount', ['-l', `/run/netns/${ns}`])
      await fsp.rm(`/run/netns/${ns}`, {force: true})
    }
  }
  await umountUnder(dir)
  // 4. dirs and the index claim
  await fsp.rm(dir, {recursive: true, force: true})
  for (const k of await claimsOf(name)) await fsp.rm(path.join(INDEX_DIR, String(k)), {recursive: true, force: true})
}

/**
 * The bed folders (`beds/`, `index/`) once nothing is left in them, then their root unless a
 * sandbox's folder is still there: `down` leaves nothing behind. A bed starting meanwhile makes
 * them again (its folders with mkdir -p, its index claim on ENOENT).
 */
export async function removeEmptyBedDirs(root = BED_ROOT): Promise<void> {
  const [beds, index] = root === BED_ROOT ? [BEDS_DIR, INDEX_DIR] : [path.join(root, 'beds'), path.join(root, 'index')]
  for (const dir of [beds, index, root]) await fsp.rmdir(dir).catch(() => undefined) // only when empty
}

/** Index claims whose name file names this bed. */
export async function claimsOf(name: string): Promise<number[]> {
  const out: number[] = []
  let entries: string[] = []
  try {
    entries = await fsp.readdir(INDEX_DIR)
  } catch {
    return out
  }
  for (const k of entries) {
    try {
      if ((await fsp.readFile(path.join(INDEX_DIR, k, 'name'), 'utf8')).trim() === name) out.push(Number(k))
    } catch {
      // a claim without a name (being written)
    }
  }
  return out
}

/** Names of every bed that has any trace on this machine (dir, netns, index claim). */
export async function knownBedNames(): Promise<string[]> {
  const names = new Set<string>()
  try {
    for (const n of await fsp.readdir(BEDS_DIR)) names.add(n)
  } catch {
    // none
  }
  for (const ns of await listNetns()) {
    const m = /^slbed-(.+)-\d+$/.exec(ns)
    if (m) names.add(m[1])
  }
  try {
    for (const k of await fsp.readdir(INDEX_DIR)) {
      try {
        names.add((await fsp.readFile(path.join(INDEX_DIR, k, 'name'), 'utf8')).trim())
      } catch {
        // claim without a name yet
      }
    }
  } catch {
    // none
  }
  return [...names].filter((n) => n !== '')
}

export interface CleanOptions {
  /** Bed names to leave alone (e.g. 'sandbox'). */
  keep?: string[]
  /** Only remove beds whose owning process is dead and that are not persistent (CLI) beds:
   *  safe while other test runs are going on. */
  onlyDead?: boolean
}

/** Removes beds (all of them by default) and stray bed links / index claims. Returns the names removed. */
export async function cleanAll(opts: CleanOptions = {}): Promise<string[]> {
  const keep = new Set(opts.keep ?? [])
  const removed: string[] = []
  for (const name of await knownBedNames()) {
    if (keep.has(name)) continue
    const owner = readOwner(name)
    if (opts.onlyDead && (ownerAlive(owner) || owner?.persistent)) continue
    await destroyBed(name)
    removed.push(name)
  }
  // stray index claims and links whose bed is gone
  const liveIndexes = new Set<number>()
  try {
    for (const k of await fsp.readdir(INDEX_DIR)) {
      const claim = path.join(INDEX_DIR, k)
      let owner = ''
      try {
        owner = (await fsp.readFile(path.join(claim, 'name'), 'utf8')).trim()
      } catch {
        // a claim being written right now, or a crash between mkdir and write
      }
      const young = Date.now() - (await fsp.stat(claim)).mtimeMs < 30_000
      if ((owner && fs.existsSync(bedDirOf(owner))) || (!owner && young)) liveIndexes.add(Number(k))
      else await fsp.rm(claim, {recursive: true, force: true})
    }
  } catch {
    // none
  }
  for (const l of await listLinks()) {
    const m = /^slbr(\d+)$/.exec(l) ?? /^slb(\d+)n\d+$/.exec(l)
    if (m && !liveIndexes.has(Number(m[1]))) await runCommand('ip', ['link', 'del', l])
  }
  return removed
}
