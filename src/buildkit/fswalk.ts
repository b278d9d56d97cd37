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
  let includes: string[] | undefined = filter.includePatterns?.map(cleanPath)
  if (filter.followPaths && filter.followPaths.length > 0) {
    includes = [...new Set([...(includes ?? []), ...(await followLinks(root, filter.followPaths))])]
  }
  const excludes = (filter.excludePatterns ?? []).filter((p) => p.trim() !== '')
  const matcher = excludes.length > 0 ? ignore().add(excludes) : undefined
  const exceptions = excludes
    .filter((p) => p.trim().startsWith('!'))
    .map((p) => cleanPath(p.trim().slice(1).trim()).replace(/^\//, ''))

  const entries: WalkEntry[] = []
  const seenInodes = new Map<string, string>()
  let lastIncludedDir: string | undefined

  const visit = async (rel: string, st: WalkStats): Promise<'skip' | 'descend' | 'none'> => {
    const isDir = st.type === fs.constants.S_IFDIR
    if (includes) {
      const inside = lastIncludedDir !== undefined && rel.startsWith(`${lastIncludedDir}/`)
      if (!inside) {
        let matched = false
        let partial = true
        for (const pattern of includes) {
          const m = matchPrefix(pattern, rel)
          if (m.matched) {
            matched = true
            if (!m.partial) {
              partial = false
              break
            }
          }
        }
        if (!matched) return isDir ? 'skip' : 'none'
        if (!partial && isDir) lastIncludedDir = rel
      }
    }
    if (matcher?.ignores(rel)) {
      if (!isDir) return 'none'
      if (!exceptions.some((e) => `${e}/`.startsWith(`${rel}/`))) return 'skip'
    }
    if (st.type === fs.constants.S_IFSOCK) return 'none'
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
      absPath: path.join(root, rel),
      isRegular: st.type === fs.constants.S_IFREG,
    }
    if (st.type === fs.constants.S_IFBLK || st.type === fs.constants.S_IFCHR) {
      const rdev = st.rdev
      entry.devmajor = String(Math.floor(rdev / 256) & 0xfff)
      entry.devminor = String((rdev & 0xff) | (Math.floor(rdev / 2 ** 12) & 0xfff00))
    }
    if (!isDir) {
      if (st.type === fs.constants.S_IFLNK) entry.linkname = await fs.promises.readlink(entry.absPath)
      else if (entry.isRegular) entry.size = String(st.size)
      const inode = st.inode
      const first = st.nlink > 1 ? seenInodes.get(inode) : undefined
      if (first !== undefined) {
        entry.linkname = first
        entry.size = '0'
      } else seenInodes.set(inode, rel)
    }
    entries.push(entry)
    return isDir ? 'descend' : 'none'
  }

  const walk = async (relDir: string): Promise<void> => {
    const names = (await fs.promises.readdir(relDir === '' ? root : path.join(root, relDir))).sort(byteCompare)
    for (const name of names) {
      const rel = relDir === '' ? name : `${relDir}/${name}`
      const st = await fs.promises.lstat(path.join(root, rel), {bigint: true})
      const result = await visit(rel, toStats(st))
      if (result === 'descend') await walk(rel)
    }
  }
  await walk('')
  return entries
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
