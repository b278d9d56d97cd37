import {type Digest} from './digest.js'
import {type ImageSource} from './model.js'
import {formatPlatform, normalizePlatform} from './platform.js'
import {imageRecordName} from './reference.js'

/** An image found inside an OCI-layout or docker-archive tar. */
export interface ArchiveImage extends ImageSource {
  readonly format: 'oci' | 'docker'
  /** The archive file being read (a temporary spool when the input was a stream). */
  readonly file: string
  /** Every image name found in the archive (fully qualified). */
  readonly names: string[]
}

/**
 * One image an archive lists: index.json's `manifests[i]` (OCI layout) or manifest.json's `[i]`
 * (docker-archive), before it is opened.
 */
export interface ArchiveEntry {
  /** 1-based position in index.json / manifest.json, as people count. */
  readonly number: number
  /** Its valid names, fully qualified (what the kubelet looks up); empty for an unnamed image. */
  readonly names: string[]
  /** Names the archive gives it that are not valid image references (never used), each with why. */
  readonly invalidNames: {name: string; why: string}[]
  /** What the archive names it with, for messages: `RepoTags null`, `no io.containerd.image.name … annotation`. */
  readonly naming: string
  /** OCI: the index or manifest index.json points at; docker-archive: its config (the image ID). Undefined when unreadable. */
  readonly digest: Digest | undefined
}

/** What a format reader lists: entries, and how to open and describe one. */
export interface Listing {
  format: 'oci' | 'docker'
  entries: ArchiveEntry[]
  open(entry: ArchiveEntry, name: string | undefined): Promise<Opening>
  describe(entry: ArchiveEntry): Promise<string>
}

export type Opening = Omit<ArchiveImage, 'file' | 'close'>

/** Text from an archive (names, platforms) as it may be shown: control and bidi characters escaped, long text cut. */
export function printable(text: string, max = 200): string {
  const cut = text.length > max ? `${text.slice(0, max)}…` : text
  return cut.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/** A name from an archive, quoted for messages: `"docker.io/x/y:1$(touch /tmp/p)"`. */
export function quoted(text: string): string {
  return JSON.stringify(printable(text)).replace(/\\\\u/g, '\\u')
}

/** Sort names found in an archive into valid (fully qualified) and invalid ones (with why). */
export function nameCollector(): {names: string[]; invalidNames: {name: string; why: string}[]; add(name: string): void} {
  const names: string[] = []
  const invalidNames: {name: string; why: string}[] = []
  return {
    names,
    invalidNames,
    add(name) {
      try {
        const q = imageRecordName(name)
        if (!names.includes(q)) names.push(q)
      } catch (err) {
        const why = (err as Error).message.replace(/^invalid image (?:reference|name) "(?:[^"\\]|\\.)*": /, '')
        invalidNames.push({name, why: printable(why)})
      }
    },
  }
}

export function platformOf(p: {os?: string; architecture?: string; variant?: string} | undefined): string {
  if (!p?.architecture) return 'platform unknown'
  return printable(formatPlatform(normalizePlatform({os: p.os || 'linux', architecture: p.architecture, variant: p.variant})), 60)
}
