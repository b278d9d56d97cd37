// The archive a daemon streams back when no output was asked for (src/ops/build/temp-archive.ts):
// private to this user whatever the umask, never written through a file or link already there,
// and removed with its directory. The bed test (buildkitd-build.test.ts) checks the same modes on
// an archive a real buildkitd sent.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {pipeline} from 'node:stream/promises'
import {Readable} from 'node:stream'
import {afterAll, describe, expect, it} from 'vitest'
import {createTemporaryArchive, removeTemporaryArchive, temporaryArchivePath} from '../../src/ops/build/temp-archive.js'

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'sl-temp-archive-'))
afterAll(() => fs.rmSync(work, {recursive: true, force: true}))

const modeOf = (p: string): string => (fs.statSync(p).mode & 0o777).toString(8)

describe('the temporary build archive', () => {
  it('is 0600 in a 0700 directory of its own, even under umask 0', async () => {
    const before = process.umask(0)
    try {
      const file = await temporaryArchivePath(work)
      expect(path.dirname(path.dirname(file))).toBe(work)
      await pipeline(Readable.from([Buffer.from('image')]), createTemporaryArchive(file))
      expect(modeOf(file)).toBe('600')
      expect(modeOf(path.dirname(file))).toBe('700')
    } finally {
      process.umask(before)
    }
  })

  it('is never written through a file or link already at its path', async () => {
    const file = await temporaryArchivePath(work)
    const elsewhere = path.join(work, 'elsewhere')
    fs.writeFileSync(elsewhere, 'keep')
    fs.symlinkSync(elsewhere, file)
    await expect(pipeline(Readable.from([Buffer.from('image')]), createTemporaryArchive(file))).rejects.toMatchObject({code: 'EEXIST'})
    expect(fs.readFileSync(elsewhere, 'utf8')).toBe('keep')
  })

  it('goes with its directory; a directory not of ours is left', async () => {
    const file = await temporaryArchivePath(work)
    fs.writeFileSync(file, 'image')
    await removeTemporaryArchive(file)
    expect(fs.existsSync(path.dirname(file))).toBe(false)
    const named = path.join(work, 'mine', 'image.tar')
    fs.mkdirSync(path.dirname(named))
    fs.writeFileSync(named, 'image')
    await removeTemporaryArchive(named)
    expect(fs.existsSync(named)).toBe(false)
    expect(fs.existsSync(path.dirname(named))).toBe(true)
  })
})
