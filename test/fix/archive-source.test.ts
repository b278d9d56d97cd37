// fix takes images from an archive that holds several (as `docker save a b` writes): the source
// lists every name in it (it used to refuse the archive: "say which one to take").
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {sourceInventory} from '../../src/sources/index.js'
import {mergeDocker} from '../bed/archive-edit.js'
import {makeImage} from '../bed/images.js'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sl-fix-archive-'))
afterAll(() => fs.rmSync(dir, {recursive: true, force: true}))

describe('fix --archive with several images', () => {
  it('knows every image of the archive by each of its names', async () => {
    const a = path.join(dir, 'a.tar')
    const b = path.join(dir, 'b.tar')
    await makeImage({name: 'docker.io/sl-fixarc/a:1', format: 'docker', out: a, layers: [{sizeBytes: 4096, seed: 'a'}]})
    await makeImage({name: 'docker.io/sl-fixarc/b:2', format: 'docker', out: b, layers: [{sizeBytes: 4096, seed: 'b'}]})
    const both = path.join(dir, 'both.tar')
    await mergeDocker(both, [{file: a, repoTags: ['sl-fixarc/a:1']}, {file: b, repoTags: ['sl-fixarc/b:2', 'sl-fixarc/b:latest']}])
    const inventory = sourceInventory({kind: 'archive', path: both})
    expect((await inventory.names()).sort()).toEqual(['docker.io/sl-fixarc/a:1', 'docker.io/sl-fixarc/b:2', 'docker.io/sl-fixarc/b:latest'])
    expect(await inventory.has('sl-fixarc/b:2')).toBe(true)
    expect(await inventory.has('sl-fixarc/c:3')).toBe(false)
  })
})
