import * as fs from 'node:fs'
import {type Readable} from 'node:stream'
import {LayoutDirectory, tarFiles} from './archive-files.js'
import {openInput} from './archive-input.js'
import {type ArchiveEntry, type ArchiveImage, type Listing} from './archive-listing.js'
import {listDocker} from './archive-docker.js'
import {listOci} from './archive-oci.js'
import {imageRecordName} from './reference.js'
import {indexTar} from './tar-index.js'

// The archive's readers, one file each: the input (archive-input.ts), its files (archive-files.ts),
// the OCI layout (archive-oci.ts) and the docker-archive (archive-docker.ts) listings.
export {type ArchiveEntry, type ArchiveImage, printable, quoted} from './archive-listing.js'

/** An archive's table of contents: every image it holds, opened one by one on demand. */
export interface ArchiveContents {
  readonly format: 'oci' | 'docker'
  /** The archive file being read (a temporary spool when the input was a stream). */
  readonly file: string
  /** How messages name the archive: its path, or `stdin`. */
  readonly label: string
  readonly entries: ArchiveEntry[]
  /** Every valid image name in the archive (fully qualified). */
  readonly names: string[]
  /** The entry with this name (any form: `app:1`, `docker.io/library/app:1`); throws for an invalid reference. */
  find(name: string): ArchiveEntry | undefined
  /** Entries that are different images (the same image listed twice counts once). */
  distinct(): ArchiveEntry[]
  /**
   * One entry as an image source, under `name` (default: its first name). It reads the archive
   * this listing holds open: closing it does nothing, close the listing.
   */
  open(entry: ArchiveEntry, name?: string): Promise<ArchiveImage>
  /**
   * What the entry is, read from the archive, for messages: `config sha256:… (the image ID; linux/amd64, 2 layers)`,
   * `manifest sha256:…, config sha256:…, linux/amd64, 2 layers`, or `index sha256:…, 2 platforms:` and
   * a line per platform `linux/amd64 (manifest sha256:…, config sha256:…, 2 layers)`. Never throws.
   */
  describe(entry: ArchiveEntry): Promise<string>
  close(): Promise<void>
}

export interface ReadArchiveOptions {
  /** Which image to take when the archive holds several (any form: `app:1`, `docker.io/library/app:1`). */
  name?: string
  /**
   * When `name` is not in the archive but the archive holds exactly one image and that image has
   * no valid name (`docker save <id>`, an OCI layout without name annotations), take it under
   * `name`. Off by default: only an explicit request names an image (`sideload push --archive A NAME`).
   */
  nameUnnamed?: boolean
  /** Where to spool a non-seekable input (default: os.tmpdir()). */
  tmpDir?: string
}

/**
 * Open an image archive (OCI layout tar or docker-archive tar, `docker save`/`nerdctl save`;
 * docker ≥25 writes both and the OCI layout wins; or an OCI layout directory) without
 * reading it into memory, and take one image from it (`options.name`, or its only image).
 */
export async function readArchive(input: string | Readable, options: ReadArchiveOptions = {}): Promise<ArchiveImage> {
  const contents = await listArchive(input, options)
  try {
    const {entry, name} = selectImage(contents, options.name, options.nameUnnamed ?? false)
    const image = await contents.open(entry, name)
    return {...image, close: () => contents.close()}
  } catch (err) {
    await contents.close()
    throw err
  }
}

/**
 * Open an image archive and list the images it holds, without reading it into memory.
 *
 * Access plan: two passes over a *file*. Pass 1 reads only tar headers (seeking over data)
 * to index entries; blobs are then read by offset, as often as needed (small documents
 * whole, layers as streams). A real file path is used in place, never copied. A stream
 * input (stdin, a pipe) can be read only once, so it is spooled to a temporary file first
 * (deleted by close()); a stdin redirected from a regular file is read in place. A gzip-
 * compressed tar is decompressed into a temporary file.
 */
export async function listArchive(input: string | Readable, options: Pick<ReadArchiveOptions, 'tmpDir'> = {}): Promise<ArchiveContents> {
  const cleanups: (() => Promise<void>)[] = []
  const cleanup = async (): Promise<void> => {
    for (const fn of cleanups.reverse()) await fn().catch(() => undefined)
    cleanups.length = 0
  }
  try {
    if (typeof input === 'string' && fs.statSync(input, {throwIfNoEntry: false})?.isDirectory()) {
      const dir = new LayoutDirectory(fs.realpathSync(input))
      if (!dir.has('index.json')) throw new Error(`${input} is a directory but not an OCI image layout (no index.json)`)
      return contents(await listOci(dir, input), input, input, cleanup)
    }
    const {fd, file, label} = await openInput(input, options, cleanups)
    const tar = await indexTar(fd, label)
    const files = tarFiles(tar)
    const listing = files.has('oci-layout') || files.has('index.json') ? await listOci(files, label) : await listDocker(files, label)
    return contents(listing, file, label, cleanup)
  } catch (err) {
    await cleanup()
    throw err
  }
}

function contents(listing: Listing, file: string, label: string, close: () => Promise<void>): ArchiveContents {
  const names = [...new Set(listing.entries.flatMap((e) => e.names))]
  return {
    format: listing.format,
    file,
    label,
    entries: listing.entries,
    names,
    find(name) {
      const wanted = imageRecordName(name)
      return listing.entries.find((e) => e.names.includes(wanted))
    },
    distinct() {
      // the same image listed twice (nerdctl save a:1 a:2) is one image; a named entry stands for it
      const byImage = new Map<string, ArchiveEntry>()
      for (const e of listing.entries) {
        const key = e.digest ?? `#${e.number}`
        const kept = byImage.get(key)
        if (!kept || (kept.names.length === 0 && e.names.length > 0)) byImage.set(key, e)
      }
      return [...byImage.values()].sort((a, b) => a.number - b.number)
    },
    async open(entry, name) {
      const image = await listing.open(entry, name === undefined ? entry.names[0] : imageRecordName(name))
      return {...image, names, file, close: async () => undefined}
    },
    async describe(entry) {
      try {
        return await listing.describe(entry)
      } catch (err) {
        return `${entry.digest ?? 'digest unknown'} (cannot be read: ${(err as Error).message})`
      }
    },
    close,
  }
}

/**
 * The entry to take for `wanted` (or, with none, the archive's only image) and the name it
 * goes under. With `nameUnnamed`, a name the archive does not have names its single unnamed image.
 */
export function selectImage(contents: ArchiveContents, wanted: string | undefined, nameUnnamed: boolean): {entry: ArchiveEntry; name: string | undefined} {
  const {label, entries} = contents
  if (entries.length === 0) throw new Error(`${label} contains no image`)
  const distinct = contents.distinct()
  const listed = contents.names.length ? contents.names.join(', ') : '(unnamed images only)'
  if (wanted !== undefined) {
    const normalized = imageRecordName(wanted) // an invalid reference throws, with why
    const hit = contents.find(normalized)
    if (hit) return {entry: hit, name: normalized}
    const unnamed = distinct.filter((e) => e.names.length === 0)
    if (nameUnnamed && distinct.length === 1 && unnamed.length === 1) return {entry: unnamed[0], name: normalized}
    const more = unnamed.length === 0 ? '' : distinct.length === 1
      ? '. Hint: its only image has no name; pass exactly one NAME to give it that name'
      : `. Hint: ${unnamed.length} of its ${distinct.length} images have no name, and which one "${wanted}" should name is not guessed; save that image alone (docker save -o ONE.tar IMAGE-ID) or under a name (docker tag IMAGE-ID NAME && docker save NAME)`
    throw new Error(`image "${wanted}" is not in ${label}; it contains: ${listed}${more}`)
  }
  if (distinct.length > 1) throw new Error(`${label} contains ${distinct.length} images (${listed}); say which one to take`)
  const entry = distinct[0]
  return {entry, name: entry.names[0] ?? contents.names[0]}
}
