// The archive a daemon streams back when no output was asked for: one file that only this user
// may read (0600), in a directory of its own (mkdtemp: 0700) under the work dir, so that other
// users of a shared tmpdir can neither read the image nor put a file or link in its place.
import * as fs from 'node:fs'
import * as path from 'node:path'
import type {Writable} from 'node:stream'

const DIR_PREFIX = 'sideload-build-'

/** A new private directory under `workDir`, and the archive's path in it (the file is not created yet). */
export async function temporaryArchivePath(workDir: string): Promise<string> {
  const dir = await fs.promises.mkdtemp(path.join(workDir, DIR_PREFIX))
  return path.join(dir, 'image.tar')
}

/** The temporary archive opened for writing: created now (never a file that was there), 0600. */
export function createTemporaryArchive(file: string): Writable {
  return fs.createWriteStream(file, {flags: 'wx', mode: 0o600})
}

/** Removes a temporary archive and its directory. */
export async function removeTemporaryArchive(file: string): Promise<void> {
  await fs.promises.rm(file, {force: true})
  const dir = path.dirname(file)
  if (path.basename(dir).startsWith(DIR_PREFIX)) await fs.promises.rmdir(dir).catch(() => undefined)
}
