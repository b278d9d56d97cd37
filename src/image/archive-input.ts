import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {type Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {createGunzip} from 'node:zlib'
import {detectCompression} from './media.js'
import {readRange} from './tar-index.js'

/** An archive opened for reading by offset: a file descriptor, the file it reads, and how messages name it. */
export type Opened = {fd: number; file: string; label: string}

/** Where to spool a non-seekable input (default: os.tmpdir()). */
export type SpoolOptions = {tmpDir?: string}

/**
 * Open the input as a seekable tar: a regular file in place, a stdin redirected from a regular
 * file in place, anything else (a pipe, a gzip file) through a temporary spool. What must be
 * undone (closing, deleting the spool) is pushed onto `cleanups`.
 */
export async function openInput(input: string | Readable, options: SpoolOptions, cleanups: (() => Promise<void>)[]): Promise<Opened> {
  if (typeof input === 'string') {
    const fh = await fs.promises.open(input, 'r').catch((err: NodeJS.ErrnoException) => {
      throw new Error(`cannot open image archive ${input}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`)
    })
    cleanups.push(() => fh.close())
    const st = await fh.stat()
    if (!st.isFile()) throw new Error(`${input} is not a regular file (pass "-" to read an archive from stdin)`)
    if (await isGzip(fh.fd, input)) return decompressToSpool(readRange(fh.fd, 0, st.size, input), input, options, cleanups)
    return {fd: fh.fd, file: input, label: input}
  }
  const inputFd = (input as {fd?: unknown}).fd
  if (typeof inputFd === 'number') {
    try {
      if (fs.fstatSync(inputFd).isFile() && !(await isGzip(inputFd, 'stdin'))) return {fd: inputFd, file: `/proc/self/fd/${inputFd}`, label: 'stdin'}
    } catch {
      // not a file descriptor we can seek: spool it
    }
  }
  const dir = await fs.promises.mkdtemp(path.join(options.tmpDir ?? os.tmpdir(), 'sideload-archive-'))
  cleanups.push(() => fs.promises.rm(dir, {recursive: true, force: true}))
  const spool = path.join(dir, 'input.tar')
  await pipeline(input, fs.createWriteStream(spool)).catch((err: Error) => {
    throw new Error(`reading the image archive from stdin failed: ${err.message}`)
  })
  const fh = await fs.promises.open(spool, 'r')
  cleanups.push(() => fh.close())
  if (await isGzip(fh.fd, 'stdin')) return decompressToSpool(readRange(fh.fd, 0, (await fh.stat()).size, 'stdin'), 'stdin', options, cleanups)
  return {fd: fh.fd, file: spool, label: 'stdin'}
}

/** True for gzip input (decompressed to a spool); zstd input is refused with a way out. */
async function isGzip(fd: number, label = 'the archive'): Promise<boolean> {
  const head = Buffer.alloc(4)
  const {bytesRead} = await new Promise<{bytesRead: number}>((resolve, reject) =>
    fs.read(fd, head, 0, 4, 0, (err, n) => (err ? reject(err) : resolve({bytesRead: n}))),
  )
  const compression = detectCompression(head.subarray(0, bytesRead))
  if (compression === 'zstd') throw new Error(`${label} is zstd-compressed; decompress it first (zstd -d) or pipe it: zstd -dc FILE | sideload … -`)
  return compression === 'gzip'
}

async function decompressToSpool(source: Readable, label: string, options: SpoolOptions, cleanups: (() => Promise<void>)[]): Promise<Opened> {
  const dir = await fs.promises.mkdtemp(path.join(options.tmpDir ?? os.tmpdir(), 'sideload-archive-'))
  cleanups.push(() => fs.promises.rm(dir, {recursive: true, force: true}))
  const spool = path.join(dir, 'input.tar')
  await pipeline(source, createGunzip(), fs.createWriteStream(spool)).catch((err: Error) => {
    throw new Error(`${label} is a gzip file that cannot be decompressed (${err.message})`)
  })
  const fh = await fs.promises.open(spool, 'r')
  cleanups.push(() => fh.close())
  return {fd: fh.fd, file: spool, label}
}
