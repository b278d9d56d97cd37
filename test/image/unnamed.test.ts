// Archives whose images have no valid name (issue 14): listed, described, selectable only by an
// explicit name; image IDs are never names. No nodes here (test/push/unnamed.test.ts has them).
import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import * as os from 'node:os'
import * as path from 'node:path'
import {pipeline} from 'node:stream/promises'
import * as tar from 'tar-stream'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {imageRecordName, listArchive, normalizeImageName, readArchive, resolveImage, selectImage} from '../../src/image/index.js'
import {makeImage, type ImageInfo} from '../bed/images.js'

const KIB = 1024
let work: string
let docker: ImageInfo
let oci: ImageInfo
let dockerPath: string
let ociPath: string

/** A copy of a tar with one JSON document rewritten. */
async function rewriteJson(from: string, to: string, doc: string, edit: (json: any) => unknown): Promise<void> {
  const extract = tar.extract()
  const pack = tar.pack()
  const done = pipeline(pack, fs.createWriteStream(to))
  extract.on('entry', (header, stream, next) => {
    const chunks: Buffer[] = []
    stream.on('data', (c: Buffer) => chunks.push(c))
    stream.on('end', () => {
      let data = Buffer.concat(chunks)
      if (header.name === doc) data = Buffer.from(JSON.stringify(edit(JSON.parse(data.toString('utf8')))))
      pack.entry({...header, size: data.length}, data, next)
    })
  })
  await pipeline(fs.createReadStream(from), extract)
  pack.finalize()
  await done
}

beforeAll(async () => {
  work = await fsp.mkdtemp(path.join(os.tmpdir(), 'sl-unnamed-test-'))
  dockerPath = path.join(work, 'docker.tar')
  docker = await makeImage({name: 'sl-un/dock:1', format: 'docker', out: dockerPath, layers: [{sizeBytes: 8 * KIB, seed: 'd'}]})
  ociPath = path.join(work, 'oci.tar')
  oci = await makeImage({name: 'sl-un/oci:1', format: 'oci', out: ociPath, layers: [{sizeBytes: 8 * KIB, seed: 'o'}], platforms: ['linux/amd64', 'linux/arm64']})
})

afterAll(async () => {
  await fsp.rm(work, {recursive: true, force: true})
})

describe('image names', () => {
  it.each([
    [`sha256:${'ab'.repeat(32)}`],
    ['ab'.repeat(32)],
    [`docker.io/library/sha256:${'ab'.repeat(32)}`],
    [`registry.example.com/team/sha512:${'c'.repeat(128)}`],
  ])('an image ID is never a record name: %s', (id) => {
    expect(() => imageRecordName(id)).toThrow(/is an image ID, not a name/)
  })

  it('names stay names; normalizeImageName still reads what pods may say', () => {
    expect(imageRecordName('sha256/app:1')).toBe('docker.io/sha256/app:1')
    expect(imageRecordName('app:sha256')).toBe('docker.io/library/app:sha256')
    expect(imageRecordName(`app@sha256:${'a'.repeat(64)}`)).toBe(`docker.io/library/app@sha256:${'a'.repeat(64)}`)
    expect(normalizeImageName(`sha256:${'ab'.repeat(32)}`)).toBe(`docker.io/library/sha256:${'ab'.repeat(32)}`)
  })

  it('quotes what it refuses as JSON (an archive can hold control characters)', () => {
    expect(() => imageRecordName('x:1\u001b[2J')).toThrow('invalid image reference "x:1\\u001b[2J": "1\\u001b[2J" is not a valid tag')
  })
})

describe('listArchive and selectImage', () => {
  it('a docker save <id> archive (RepoTags null): one unnamed entry, its config, platform and layers', async () => {
    const file = path.join(work, 'unnamed-docker.tar')
    await rewriteJson(dockerPath, file, 'manifest.json', (m: object[]) => m.map((e) => ({...e, RepoTags: null})))
    const contents = await listArchive(file)
    try {
      expect(contents.names).toEqual([])
      expect(contents.entries).toMatchObject([{number: 1, names: [], invalidNames: [], naming: 'manifest.json [0]: RepoTags null', digest: docker.configDigest}])
      expect(await contents.describe(contents.entries[0])).toBe(`config ${docker.configDigest} (the image ID; linux/amd64, 1 layer)`)
      // no name asked: the only image, with no name (build output, docker save of an ID)
      expect(selectImage(contents, undefined, false)).toMatchObject({name: undefined})
      // a name is never guessed unless asked for
      expect(() => selectImage(contents, 'sl-un/given:1', false)).toThrow(`image "sl-un/given:1" is not in ${file}; it contains: (unnamed images only). Hint: its only image has no name; pass exactly one NAME`)
      const {entry, name} = selectImage(contents, 'sl-un/given:1', true)
      expect(name).toBe('docker.io/sl-un/given:1')
      const image = await contents.open(entry, name)
      expect(image.name).toBe('docker.io/sl-un/given:1')
      expect((await resolveImage(image)).config.digest).toBe(docker.configDigest)
      expect(() => selectImage(contents, `sha256:${docker.configDigest.slice(7)}`, true)).toThrow(/is an image ID, not a name/)
    } finally {
      await contents.close()
    }
    const named = await readArchive(file, {name: 'sl-un/given:2', nameUnnamed: true})
    try {
      expect(named.name).toBe('docker.io/sl-un/given:2')
    } finally {
      await named.close()
    }
  })

  it('an OCI layout without name annotations: the index with each platform\'s manifest and config', async () => {
    const file = path.join(work, 'unnamed-oci.tar')
    await rewriteJson(ociPath, file, 'index.json', (idx: {manifests: object[]}) => ({...idx, manifests: idx.manifests.map((m) => ({...m, annotations: {'org.opencontainers.image.ref.name': '1'}}))}))
    const contents = await listArchive(file)
    try {
      expect(contents.entries).toMatchObject([{names: [], digest: oci.indexDigest, naming: 'index.json manifests[0]: no io.containerd.image.name annotation, org.opencontainers.image.ref.name "1" (a tag, not a name)'}])
      const text = await contents.describe(contents.entries[0])
      expect(text.split('\n')).toEqual([
        `index ${oci.indexDigest}, 2 platforms:`,
        ...oci.platforms.map((p) => `${p.platform} (manifest ${p.manifestDigest}, config ${p.configDigest}, 1 layer)`),
      ])
    } finally {
      await contents.close()
    }
  })

  it('invalid names are kept aside with why, never used', async () => {
    const file = path.join(work, 'evil.tar')
    await rewriteJson(dockerPath, file, 'manifest.json', (m: object[]) => m.map((e) => ({...e, RepoTags: ['ok/x:1', 'x:1;reboot', `sha256:${'f'.repeat(64)}`]})))
    const contents = await listArchive(file)
    try {
      expect(contents.names).toEqual(['docker.io/ok/x:1'])
      expect(contents.entries[0].invalidNames).toEqual([
        {name: 'x:1;reboot', why: '"1;reboot" is not a valid tag'},
        {name: `sha256:${'f'.repeat(64)}`, why: expect.stringMatching(/^it is an image ID, not a name/)},
      ])
    } finally {
      await contents.close()
    }
  })

  it('a multi-image archive lists every image; the same image listed twice is one', async () => {
    const file = path.join(work, 'twice.tar')
    await rewriteJson(ociPath, file, 'index.json', (idx: {manifests: {annotations?: object}[]}) => ({
      ...idx,
      manifests: [{...idx.manifests[0], annotations: undefined}, idx.manifests[0], {...idx.manifests[0], annotations: {'io.containerd.image.name': 'docker.io/sl-un/oci:2'}}],
    }))
    const contents = await listArchive(file)
    try {
      expect(contents.entries.map((e) => e.names)).toEqual([[], ['docker.io/sl-un/oci:1'], ['docker.io/sl-un/oci:2']])
      expect(contents.distinct().map((e) => e.number)).toEqual([2])
      expect(selectImage(contents, undefined, false).name).toBe('docker.io/sl-un/oci:1')
      expect(selectImage(contents, 'sl-un/oci:2', false).entry.number).toBe(3)
    } finally {
      await contents.close()
    }
  })
})
