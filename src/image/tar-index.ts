import * as fs from 'node:fs'
import * as path from 'node:path'
import {Readable} from 'node:stream'
import {corruptSource} from './digest.js'

/** One entry of a tar file: where its data lies, for random access later. */
export interface TarEntry {
  name: string
  type: 'file' | 'directory' | 'symlink' | 'link' | 'other'
  /** byte offset of the entry's data inside the tar */
  offset: number
  size: number
  linkname: string
}

/** The entries of a tar file on disk, by normalised path, read from the headers only. */
export class TarIndex {
  readonly entries = new Map<string, TarEntry>()

  constructor(
    readonly fd: number,
    readonly file: string,
    readonly fileSize: number,
  ) {}

  /** Resolve symlinks and hard links to the regular file that holds the data. */
  resolve(name: string): TarEntry | undefined {
    let current = normalizeTarPath(name)
    for (let hops = 0; hops < 16; hops++) {
      const entry = this.entries.get(current)
      if (!entry) return undefined
      if (entry.type === 'file') return entry
      if (entry.type === 'symlink') current = normalizeTarPath(path.posix.join(path.posix.dirname(current), entry.linkname))
      else if (entry.type === 'link') current = normalizeTarPath(entry.linkname)
      else return undefined
    }
    return undefined
  }

  async read(entry: TarEntry): Promise<Buffer> {
    const buf = Buffer.alloc(entry.size)
    let done = 0
    while (done < entry.size) {
      const {bytesRead} = await readAt(this.fd, buf, done, entry.size - done, entry.offset + done)
      if (bytesRead === 0) throw new Error(`${this.file} is truncated: "${entry.name}" ends early`)
      done += bytesRead
    }
    return buf
  }

  stream(entry: TarEntry, start = 0): FileRange {
    return readRange(this.fd, entry.offset + start, entry.offset + entry.size, `${this.file}: "${entry.name}"`)
  }
}

/**
 * Bytes [start, end) of an open file as a stream, by positional reads. The descriptor is
 * shared and stays open (fs.ReadStream would close it on destroy()).
 */
export function readRange(fd: number, start: number, end: number, what: string, chunkSize = 1024 * 1024): FileRange {
  return new FileRange(fd, start, end, what, chunkSize)
}

/**
 * A byte range of an open file: a stream, and also `readAt` for a reader that has a buffer of
 * its own (the blob writer reads straight into its WRITE messages: no buffer per chunk, one copy
 * less of every byte).
 */
export class FileRange extends Readable {
  private pos: number

  constructor(
    private readonly fd: number,
    private readonly start: number,
    private readonly end: number,
    private readonly what: string,
    private readonly chunkSize: number,
  ) {
    super({highWaterMark: chunkSize})
    this.pos = start
  }

  override _read(): void {
    const n = Math.min(this.chunkSize, this.end - this.pos)
    if (n <= 0) {
      this.push(null)
      return
    }
    const buf = Buffer.allocUnsafe(n)
    fs.read(this.fd, buf, 0, n, this.pos, (err, bytesRead) => {
      if (err) return this.destroy(err)
      if (bytesRead === 0) return this.destroy(new Error(`${this.what} is truncated`))
      this.pos += bytesRead
      this.push(buf.subarray(0, bytesRead))
    })
  }

  /** Up to `length` bytes from `position` of the range (0 = its first byte) into `buf` at `offset`; 0 at its end. */
  readAt(buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    const n = Math.min(length, this.end - this.start - position)
    if (n <= 0) return Promise.resolve(0)
    return new Promise((resolve, reject) =>
      fs.read(this.fd, buf, offset, n, this.start + position, (err, bytesRead) => {
        if (err) reject(err)
        else if (bytesRead === 0) reject(new Error(`${this.what} is truncated`))
        else resolve(bytesRead)
      }),
    )
  }
}

export function normalizeTarPath(name: string): string {
  const n = path.posix.normalize(name.replace(/^\/+/, ''))
  return n.replace(/^(\.\/)+/, '').replace(/\/+$/, '')
}

function readAt(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<{bytesRead: number}> {
  return new Promise((resolve, reject) => fs.read(fd, buf, off, len, pos, (err, bytesRead) => (err ? reject(err) : resolve({bytesRead}))))
}

function cString(buf: Buffer, start: number, len: number): string {
  const slice = buf.subarray(start, start + len)
  const nul = slice.indexOf(0)
  return slice.subarray(0, nul === -1 ? slice.length : nul).toString('utf8')
}

function parseNumber(buf: Buffer, start: number, len: number): number {
  const field = buf.subarray(start, start + len)
  if (field[0] & 0x80) {
    // GNU base-256: big-endian, high bit of the first byte is the marker
    let value = field[0] & 0x7f
    for (let i = 1; i < field.length; i++) value = value * 256 + field[i]
    return value
  }
  const text = cString(buf, start, len).trim()
  return text ? parseInt(text, 8) : 0
}

function checksumOk(header: Buffer): boolean {
  const stored = parseNumber(header, 148, 8)
  let sum = 0
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : header[i]
  return sum === stored
}

function parsePax(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {}
  let pos = 0
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos)
    if (space < 0) break
    const len = parseInt(data.subarray(pos, space).toString('ascii'), 10)
    if (!len || len <= 0) break
    const record = data.subarray(space + 1, pos + len - 1).toString('utf8')
    const eq = record.indexOf('=')
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1)
    pos += len
  }
  return out
}

/**
 * Read the headers of a tar file (seeking over the data) and index its entries. Detects
 * "not a tar" (bad first header) and truncation (an entry's data runs past the end of the file).
 */
export async function indexTar(fd: number, file: string): Promise<TarIndex> {
  const {size: fileSize} = fs.fstatSync(fd)
  const index = new TarIndex(fd, file, fileSize)
  const header = Buffer.alloc(512)
  let pos = 0
  let pax: Record<string, string> = {}
  let longName: string | undefined
  let longLink: string | undefined
  let first = true
  for (;;) {
    if (pos >= fileSize) {
      if (first) throw new Error(`${file} is not a tar archive (it is empty)`)
      return index // EOF at a header boundary without end blocks: accepted like Go's archive/tar
    }
    const {bytesRead} = await readAt(fd, header, 0, 512, pos)
    if (bytesRead < 512) {
      if (first) throw new Error(`${file} is not a tar archive (shorter than one tar header)`)
      throw new Error(`${file} is truncated: it ends inside a tar header at byte ${pos}`)
    }
    if (header.every((b) => b === 0)) return index
    if (!checksumOk(header)) {
      if (first) throw new Error(`${file} is not a tar archive (no valid tar header at the start)`)
      throw corruptSource(`${file} is corrupt: bad tar header checksum at byte ${pos}`)
    }
    first = false
    const typeflag = String.fromCharCode(header[156] || 0x30)
    let size = parseNumber(header, 124, 12)
    if (pax.size) size = Number(pax.size)
    const dataStart = pos + 512
    if (dataStart + size > fileSize) {
      const name = longName ?? pax.path ?? cString(header, 0, 100)
      throw new Error(`${file} is truncated: entry "${name}" needs ${dataStart + size - fileSize} more bytes than the file has`)
    }
    const next = dataStart + Math.ceil(size / 512) * 512
    if (typeflag === 'x' || typeflag === 'g' || typeflag === 'L' || typeflag === 'K') {
      const data = Buffer.alloc(size)
      await readAt(fd, data, 0, size, dataStart)
      if (typeflag === 'x') pax = {...pax, ...parsePax(data)}
      else if (typeflag === 'L') longName = cString(data, 0, data.length)
      else if (typeflag === 'K') longLink = cString(data, 0, data.length)
      pos = next
      continue
    }
    const ustar = header.subarray(257, 262).toString('latin1') === 'ustar'
    const prefix = ustar ? cString(header, 345, 155) : ''
    const rawName = longName ?? pax.path ?? (prefix ? `${prefix}/${cString(header, 0, 100)}` : cString(header, 0, 100))
    const linkname = longLink ?? pax.linkpath ?? cString(header, 157, 100)
    const type: TarEntry['type'] =
      typeflag === '0' || typeflag === '7' ? 'file' : typeflag === '5' ? 'directory' : typeflag === '2' ? 'symlink' : typeflag === '1' ? 'link' : 'other'
    const name = normalizeTarPath(rawName)
    index.entries.set(name, {name, type, offset: dataStart, size: type === 'file' ? size : 0, linkname})
    pax = {}
    longName = undefined
    longLink = undefined
    pos = next
  }
}
