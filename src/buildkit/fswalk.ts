import * as fs from 'node:fs'
import * as path from 'node:path'
import dockerignore from '@balena/dockerignore'
import type {FsStat} from './protos.js'

// The package is CommonJS with a `default` property; under NodeNext the default import is the
// module object itself (callable too), so take the typed function explicitly.
const ignore = (dockerignore as unknown as {default: typeof dockerignore.default}).default

/**
 * Walking a local directory the way fsutil (BuildKit's file sync library) does, so the daemon's
 * receiver and its Validator accept the listing and its cache recognises unchanged files.
 *
 * Semantics follow fsutil's `Walk` as vendored by dockerd 20.10 (BuildKit v0.8):
 * - depth-first, a directory before its children, siblings sorted byte-wise (Go `filepath.Walk`);
 * - `includePatterns` are `filepath.Match` globs matched against path prefixes, so the parents
 *   of an included path are emitted too; `followPaths` are resolved through symlinks and added;
 * - `excludePatterns` are .dockerignore patterns (moby's pattern matcher, here
 *   @balena/dockerignore): `*`, `?`, `**`, character classes, `!` exceptions. An excluded
 *   directory is skipped unless an exception pattern lies below it;
 * - stats carry Go `os.FileMode` bits, Unix-nanosecond mtimes, and hard links after the first
 *   as `linkname` = first path with size 0.
 */

export interface WalkFilter {
  includePatterns?: string[]
  excludePatterns?: string[]
  followPaths?: string[]
}

/** One entry of the listing: fsutil's `Stat` (int64s as decimal strings; no xattrs sent) plus where it is. */
export interface WalkEntry extends Omit<FsStat, 'xattrs'> {
  /** Absolute path on disk (for reading regular files). */
  absPath: string
  /** Whether the daemon may request this entry's data (regular files only). */
  isRegular: boolean
}

// Go os.FileMode bits.
export const GO_MODE = {
  dir: 2 ** 31,
  symlink: 2 ** 27,
  device: 2 ** 26,
  namedPipe: 2 ** 25,
  socket: 2 ** 24,
  setuid: 2 ** 23,
  setgid: 2 ** 22,
  charDevice: 2 ** 21,
  sticky: 2 ** 20,
} as const

/** Convert a POSIX st_mode into Go's os.FileMode bits (what fsutil puts on the wire). */
export function goFileMode(stMode: number): number {
  let mode = stMode & 0o777
  const type = stMode & fs.constants.S_IFMT
  if (type === fs.constants.S_IFDIR) mode += GO_MODE.dir
  else if (type === fs.constants.S_IFLNK) mode += GO_MODE.symlink
  else if (type === fs.constants.S_IFBLK) mode += GO_MODE.device
  else if (type === fs.constants.S_IFCHR) mode += GO_MODE.device + GO_MODE.charDevice
  else if (type === fs.constants.S_IFIFO) mode += GO_MODE.namedPipe
  else if (type === fs.constants.S_IFSOCK) mode += GO_MODE.socket
  if (stMode & 0o4000) mode += GO_MODE.setuid
  if (stMode & 0o2000) mode += GO_MODE.setgid
  if (stMode & 0o1000) mode += GO_MODE.sticky
  return mode
}

/** Go's filepath.Clean for relative, slash-separated paths. */
export function cleanPath(p: string): string {
  const out: string[] = []
  const rooted = p.startsWith('/')
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop()
      else if (!rooted) out.push('..')
      continue
    }
    out.push(part)
  }
  const joined = out.join('/')
  return rooted ? `/${joined}` : joined || '.'
}

/** Go's filepath.Match as a RegExp (`*`, `?`, `[...]` classes, `\` escapes; never crosses `/`). */
export function globToRegExp(pattern: string): RegExp {
  let re = '^'
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i]
    if (ch === '*') re += '[^/]*'
    else if (ch === '?') re += '[^/]'
    else if (ch === '\\' && i + 1 < pattern.length) re += escapeRe(pattern[++i])
    else if (ch === '[') {
      const end = pattern.indexOf(']', i + 2)
      if (end === -1) {
        re += '\\['
        continue
      }
      let body = pattern.slice(i + 1, end)
      const negate = body.startsWith('^')
      if (negate) body = body.slice(1)
      re += `[${negate ? '^' : ''}${body.replace(/\\(.)/g, '\\$1').replace(/[\]]/g, '\\]')}]`
      i = end
    } else re += escapeRe(ch)
  }
  return new RegExp(`${re}$`)
}

function escapeRe(ch: string): string {
  return /[.*+?^${}()|[\]\\/]/.test(ch) ? `\\${ch}` : ch
}

/** fsutil's matchPrefix: does `pattern` match `name`, or (partial) a parent directory of what it names? */
function matchPrefix(pattern: string, name: string): {matched: boolean; partial: boolean} {
  const depth = name.split('/').length - 1
  const parts = pattern.split('/')
  let partial = false
  if (parts.length - 1 > depth) {
    pattern = parts.slice(0, depth + 1).join('/')
    partial = true
  }
  return {matched: globToRegExp(pattern).test(name), partial}
}

/** Resolve followpaths through symlinks inside root (fsutil FollowLinks): every hop is included. */
async function followLinks(root: string, paths: string[]): Promise<string[]> {
  const out = new Set<string>()
  for (const p of paths) {
    let rel = cleanPath(p)
    for (let hops = 0; hops < 255; hops++) {
      if (rel === '.' || rel.startsWith('..')) break
      out.add(rel)
      let st: fs.Stats
      try {
        st = await fs.promises.lstat(path.join(root, rel))
      } catch {
        break
      }
      if (!st.isSymbolicLink()) break
      const link = await fs.promises.readlink(path.join(root, rel))
      rel = link.startsWith('/') ? cleanPath(link.slice(1)) : cleanPath(path.posix.join(path.posix.dirname(rel), link))
    }
  }
  return [...out]
}

function byteCompare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b))
}

/** List `dir` as fsutil would send it, applying the daemon's filters. */
export async function walkDir(dir: string, filter: WalkFilter = {}): Promise<WalkEntry[]> {
  const root = await fs.promises.realpath(dir)
  const walk: Walk = {
    root,
    includes: await includePaths(root, filter),
    excludes: excludeRules(filter.excludePatterns),
    lastIncludedDir: undefined,
    entries: [],
    seenInodes: new Map(),
  }
  await walkInto(walk, '')
  return walk.entries
}

/** What one walk carries from entry to entry: its filters, what it listed, the hard links it met. */
interface Walk {
  root: string
  includes: string[] | undefined
  excludes: ExcludeRules
  /** The last directory an include pattern named whole: everything below it is included. */
  lastIncludedDir: string | undefined
  entries: WalkEntry[]
  /** Inodes with several links, and the path each was first listed at. */
  seenInodes: Map<string, string>
}

/** What becomes of a visited path: skipped with what lies below it, descended into, or neither. */
type Visit = 'skip' | 'descend' | 'none'

interface ExcludeRules {
  matcher: ReturnType<typeof ignore> | undefined
  /** The `!` exceptions, cleaned: an excluded directory with one of these below it is still walked. */
  exceptions: string[]
}

/** The include patterns, plus every hop of the follow paths (fsutil includes those too). */
async function includePaths(root: string, filter: WalkFilter): Promise<string[] | undefined> {
  let includes: string[] | undefined = filter.includePatterns?.map(cleanPath)
  if (filter.followPaths && filter.followPaths.length > 0) {
    includes = [...new Set([...(includes ?? []), ...(await followLinks(root, filter.followPaths))])]
  }
  return includes
}

function excludeRules(patterns: string[] = []): ExcludeRules {
  const excludes = patterns.filter((p) => p.trim() !== '')
  return {
    matcher: excludes.length > 0 ? ignore().add(excludes) : undefined,
    exceptions: excludes
      .filter((p) => p.trim().startsWith('!'))
      .map((p) => cleanPath(p.trim().slice(1).trim()).replace(/^\//, '')),
  }
}

/** List the entries of `relDir` (root: ''), sorted byte-wise, descending into directories as it goes. */
async function walkInto(walk: Walk, relDir: string): Promise<void> {
  const names = (await fs.promises.readdir(relDir === '' ? walk.root : path.join(walk.root, relDir))).sort(byteCompare)
  for (const name of names) {
    const rel = relDir === '' ? name : `${relDir}/${name}`
    const st = await fs.promises.lstat(path.join(walk.root, rel), {bigint: true})
    const result = await visit(walk, rel, toStats(st))
    if (result === 'descend') await walkInto(walk, rel)
  }
}

/** Filter one path, and list it unless filtered out (sockets are never listed). */
async function visit(walk: Walk, rel: string, st: WalkStats): Promise<Visit> {
  const isDir = st.type === fs.constants.S_IFDIR
  const refused = includeVerdict(walk, rel, isDir) ?? excludeVerdict(walk.excludes, rel, isDir)
  if (refused) return refused
  if (st.type === fs.constants.S_IFSOCK) return 'none'
  walk.entries.push(await entryFor(walk, rel, st))
  return isDir ? 'descend' : 'none'
}

/**
 * Undefined when the include patterns let `rel` in (or there are none); a directory a pattern
 * names whole is remembered, so what lies below it needs no matching.
 */
function includeVerdict(walk: Walk, rel: string, isDir: boolean): Visit | undefined {
  if (!walk.includes) return undefined
  if (walk.lastIncludedDir !== undefined && rel.startsWith(`${walk.lastIncludedDir}/`)) return undefined
  const {matched, partial} = matchIncludes(walk.includes, rel)
  if (!matched) return isDir ? 'skip' : 'none'
  if (!partial && isDir) walk.lastIncludedDir = rel
  return undefined
}

/** Whether any pattern matches `rel`, and whether only as a parent of what it names (partial). */
function matchIncludes(includes: string[], rel: string): {matched: boolean; partial: boolean} {
  let matched = false
  for (const pattern of includes) {
    const m = matchPrefix(pattern, rel)
    if (m.matched) {
      matched = true
      if (!m.partial) return {matched, partial: false}
    }
  }
  return {matched, partial: true}
}

/** Undefined unless the exclude patterns drop `rel` (a directory is still walked when an exception lies below it). */
function excludeVerdict(rules: ExcludeRules, rel: string, isDir: boolean): Visit | undefined {
  if (!rules.matcher?.ignores(rel)) return undefined
  if (!isDir) return 'none'
  if (!rules.exceptions.some((e) => `${e}/`.startsWith(`${rel}/`))) return 'skip'
  return undefined
}

/** fsutil's Stat of one path: Go mode bits, device numbers, a symlink's target, a hard link's first path. */
async function entryFor(walk: Walk, rel: string, st: WalkStats): Promise<WalkEntry> {
  const entry: WalkEntry = {
    path: rel,
    mode: goFileMode(st.mode),
    uid: st.uid,
    gid: st.gid,
    size: '0',
    modTime: st.mtimeNs.toString(),
    linkname: '',
    devmajor: '0',
    devminor: '0',
    absPath: path.join(walk.root, rel),
    isRegular: st.type === fs.constants.S_IFREG,
  }
  if (st.type === fs.constants.S_IFBLK || st.type === fs.constants.S_IFCHR) {
    entry.devmajor = String(Math.floor(st.rdev / 256) & 0xfff)
    entry.devminor = String((st.rdev & 0xff) | (Math.floor(st.rdev / 2 ** 12) & 0xfff00))
  }
  if (st.type !== fs.constants.S_IFDIR) await setSizeOrLink(walk, entry, st)
  return entry
}

/** A file's size, a symlink's target, or (a hard link after the first) the first path with size 0. */
async function setSizeOrLink(walk: Walk, entry: WalkEntry, st: WalkStats): Promise<void> {
  if (st.type === fs.constants.S_IFLNK) entry.linkname = await fs.promises.readlink(entry.absPath)
  else if (entry.isRegular) entry.size = String(st.size)
  const first = st.nlink > 1 ? walk.seenInodes.get(st.inode) : undefined
  if (first !== undefined) {
    entry.linkname = first
    entry.size = '0'
  } else walk.seenInodes.set(st.inode, entry.path)
}

/** The parts of an lstat the walk needs, with the exact nanosecond mtime. */
interface WalkStats {
  mode: number
  uid: number
  gid: number
  size: number
  nlink: number
  inode: string
  rdev: number
  mtimeNs: bigint
  type: number
}

function toStats(st: fs.BigIntStats): WalkStats {
  const mode = Number(st.mode)
  return {
    mode,
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: Number(st.size),
    nlink: Number(st.nlink),
    inode: `${st.dev}:${st.ino}`,
    rdev: Number(st.rdev),
    mtimeNs: st.mtimeNs,
    type: mode & fs.constants.S_IFMT,
  }
}
