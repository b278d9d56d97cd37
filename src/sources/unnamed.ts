import {quoted, type ArchiveContents} from '../image/index.js'

/**
 * An archive image that has no valid name, pushed as "every image in the archive": refused
 * before any node is touched. Recorded as it is, it would be `docker.io/library/sha256:<hex>`
 * (and `…/sha256@sha256:<hex>`), pinned: no pod names it and the kubelet's GC never removes it.
 */
export class UnnamedArchiveImageError extends Error {
  readonly hint: string
  /** For programs (--json): what went wrong, never the text. */
  readonly reason = 'archive-image-unnamed'
  constructor(message: string, hint: string) {
    super(`${message}\n  hint: ${hint}`)
    this.hint = hint
  }
}

/** A path or name as it can be pasted into a shell. */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`
}

/** Throws UnnamedArchiveImageError when an image of the archive has no valid name, saying how to name it. */
export async function refuseUnnamed(contents: ArchiveContents, archiveArg: string): Promise<void> {
  const images = contents.distinct()
  const unnamed = images.filter((e) => e.names.length === 0)
  if (unnamed.length === 0) return
  const lines: string[] = []
  for (const e of unnamed) {
    const [first, ...more] = (await contents.describe(e)).split('\n')
    lines.push(`  image ${e.number} of ${contents.entries.length} (${e.naming}): ${first}`, ...more.map((l) => `    ${l}`))
    for (const bad of e.invalidNames) lines.push(`    ${quoted(bad.name)} is not a valid image reference: ${bad.why}`)
  }
  const noName = unnamed.every((e) => e.invalidNames.length > 0) ? 'no valid name' : 'no name'
  const why = 'the kubelet finds an image by the name in the pod\'s image: field, and a record named after the digest ' +
    '(docker.io/library/sha256:<hex>) would be pinned junk its image GC never removes'
  const archive = shellWord(archiveArg)
  const only = unnamed[0]
  const saveNamed = contents.format === 'docker' && images.length === 1 && only.digest
    ? `or save it under a name: docker tag ${only.digest} NAME && docker save -o FILE NAME`
    : 'or save it under a name (tag it, then docker/nerdctl save -o FILE NAME)'
  if (images.length === 1) {
    throw new UnnamedArchiveImageError(
      `${contents.label} holds an image with ${noName}, so it is not pushed: ${why}:\n${lines.join('\n')}`,
      `give it the name its pods use: sideload push --archive ${archive} NAME (e.g. myapp:1.0: the archive's only image goes in as NAME), ${saveNamed}`,
    )
  }
  const named = contents.names
  throw new UnnamedArchiveImageError(
    `${contents.label} holds ${images.length} images and ${unnamed.length} ${unnamed.length === 1 ? 'has' : 'have'} ${noName}, so nothing was pushed: ${why}:\n${lines.join('\n')}`,
    (named.length ? `push the named ones by name: sideload push --archive ${archive} ${named.join(' ')}; ` : '') +
      `for an image without a name, save it alone and name it (docker save -o ONE.tar IMAGE-ID, then sideload push --archive ONE.tar NAME), ${saveNamed}`,
  )
}
