import * as fs from 'node:fs'
import * as path from 'node:path'
import {type Readable} from 'node:stream'
import {MAX_DOCUMENT_SIZE} from './model.js'
import {normalizeTarPath, type TarEntry, type TarIndex} from './tar-index.js'

/** The files of an archive: a tar read by offset, or an unpacked OCI layout directory. */
export interface ArchiveFiles {
  has(name: string): boolean
  /** Follow symlinks/hard links to a regular file; undefined when absent. */
  resolve(name: string): TarEntry | undefined
  read(entry: TarEntry): Promise<Buffer>
  stream(entry: TarEntry): Readable
}

/** The files of an indexed tar. */
export function tarFiles(tar: TarIndex): ArchiveFiles {
  return {has: (n) => tar.entries.has(n), resolve: (n) => tar.resolve(n), read: (e) => tar.read(e), stream: (e) => tar.stream(e)}
}

/** An OCI image layout directory (`buildctl --output type=oci,tar=false`, `skopeo copy … oci:dir`). */
export class LayoutDirectory implements ArchiveFiles {
  constructor(private readonly root: string) {}
  private full(name: string): string | undefined {
    const rel = normalizeTarPath(name)
    if (rel.startsWith('..')) return undefined
    return path.join(this.root, rel)
  }
  has(name: string): boolean {
    const p = this.full(name)
    return !!p && fs.existsSync(p)
  }
  resolve(name: string): TarEntry | undefined {
    const p = this.full(name)
    if (!p) return undefined
    try {
      const real = fs.realpathSync(p)
      if (real !== this.root && !real.startsWith(this.root + path.sep)) return undefined
      const st = fs.statSync(real)
      return st.isFile() ? {name: path.relative(this.root, real), type: 'file', offset: 0, size: st.size, linkname: real} : undefined
    } catch {
      return undefined
    }
  }
  read(entry: TarEntry): Promise<Buffer> {
    return fs.promises.readFile(entry.linkname)
  }
  stream(entry: TarEntry): Readable {
    return fs.createReadStream(entry.linkname, {highWaterMark: 1024 * 1024})
  }
}

/** A small JSON document of the archive (index.json, manifest.json), read whole. */
export function readDocument(tar: ArchiveFiles, name: string, label: string): Promise<Buffer> {
  const entry = tar.resolve(name)
  if (!entry) throw new Error(`${label} is not a valid image archive: "${name}" is missing`)
  if (entry.size > MAX_DOCUMENT_SIZE) throw new Error(`${label}: "${name}" is too large (${entry.size} bytes) to be an image document`)
  return tar.read(entry)
}
