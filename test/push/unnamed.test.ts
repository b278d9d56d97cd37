// Issue 14, "bad input that still slips through": an archive whose image has no valid name
// (`docker save <id>`: RepoTags null; an OCI layout whose index.json entries carry no name; a
// name built for shell injection) must never become `docker.io/library/sha256:<hex>` junk on a
// node. Pushed as "every image in the archive" it is refused before any node is touched; named
// on the command line (`sideload push --archive A NAME`, the archive's only image) it goes in
// under that name. Native (root) and through `sudo ctr` (a non-root user) alike.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startBed, type Bed, type BedNode} from '../bed/bed.js'
import {makeImage, type ImageInfo} from '../bed/images.js'
import {mergeDocker, rewriteJson} from '../bed/archive-edit.js'
import {jsonResult, runCli} from './cli.js'

let bed: Bed
let dir: string

const sshArgs = () => ['--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath, '--progress', 'quiet']
const imagesLs = async (node: BedNode): Promise<string[]> => (await bed.ctr(node, ['images', 'ls', '-q'])).split('\n').filter(Boolean).sort()
/** stderr with its line breaks and indentation as single spaces (the error renderer may wrap lines). */
const oneLine = (s: string) => s.replace(/\s+/g, ' ')

let dockerImage: ImageInfo
let ociImage: ImageInfo
let unnamedDocker: string
let unnamedOci: string
const archives: Record<string, string> = {}

describe('sideload push refuses an archive image with no valid name', () => {
  beforeAll(async () => {
    bed = await startBed({name: 'push-unnamed', nodes: 2})
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sideload-unnamed-'))
    const small = (seed: string) => [{sizeBytes: 96 << 10, seed}, {sizeBytes: 32 << 10, seed: `${seed}-2`}]
    const named = path.join(dir, 'named-docker.tar')
    dockerImage = await makeImage({name: 'docker.io/sl-unnamed/dock:1', format: 'docker', out: named, layers: small('dock')})
    unnamedDocker = path.join(dir, 'unnamed-docker.tar')
    await rewriteJson(named, unnamedDocker, 'manifest.json', (m: {RepoTags: unknown}[]) => m.map((e) => ({...e, RepoTags: null})))

    const namedOci = path.join(dir, 'named-oci.tar')
    ociImage = await makeImage({name: 'docker.io/sl-unnamed/oci:1', format: 'oci', out: namedOci, layers: small('oci'), platforms: ['linux/amd64', 'linux/arm64']})
    unnamedOci = path.join(dir, 'unnamed-oci.tar')
    await rewriteJson(namedOci, unnamedOci, 'index.json', (idx: {manifests: {annotations?: unknown}[]}) => ({...idx, manifests: idx.manifests.map(({annotations: _, ...m}) => m)}))

    const other = path.join(dir, 'other-docker.tar')
    await makeImage({name: 'docker.io/sl-unnamed/other:2', format: 'docker', out: other, layers: small('other')})
    archives.mixed = path.join(dir, 'mixed.tar')
    await mergeDocker(archives.mixed, [{file: other, repoTags: ['sl-unnamed/other:2']}, {file: named, repoTags: null}])
    archives.twoNamed = path.join(dir, 'two-named.tar')
    await mergeDocker(archives.twoNamed, [{file: other, repoTags: ['sl-unnamed/other:2', 'sl-unnamed/other:latest']}, {file: named, repoTags: ['sl-unnamed/dock:1']}])
  }, 120_000)
  afterAll(async () => {
    await bed?.down()
    if (dir) fs.rmSync(dir, {recursive: true, force: true})
  })

  describe.each([
    ['native', 'root', 0],
    ['ctr', 'sluser', 1],
  ] as const)('%s import (%s)', (mode, user, nodeIndex) => {
    const node = () => bed.nodes[nodeIndex]
    const host = () => ['--host', `${user === 'root' ? 'root' : bed.nonRootUser}@${node().ip}`]

    /** Runs push, expects a refusal, and that the node's image list did not change. */
    async function refused(args: string[], input?: Buffer): Promise<string> {
      const before = await imagesLs(node())
      const run = await runCli(['push', ...args, ...host(), ...sshArgs()], {input})
      expect(run.code, run.stdout + run.stderr).toBe(1)
      expect(await imagesLs(node())).toEqual(before)
      expect(before.join('\n')).not.toMatch(/library\/sha256[:@]/)
      return oneLine(run.stderr)
    }

    it('docker save <id> (RepoTags null), as every image in the archive: refused, with the config digest, platform and how to name it', async () => {
      const stderr = await refused(['--archive', unnamedDocker])
      expect(stderr).toContain(`${unnamedDocker} holds an image with no name`)
      expect(stderr).toContain(`config ${dockerImage.configDigest}`)
      expect(stderr).toContain('linux/amd64')
      expect(stderr).toContain('RepoTags null')
      expect(stderr).toContain(`sideload push --archive ${unnamedDocker} NAME`)
      // the same through stdin
      const viaStdin = await refused(['--archive', '-'], fs.readFileSync(unnamedDocker))
      expect(viaStdin).toContain('stdin holds an image with no name')
      expect(viaStdin).toContain(`config ${dockerImage.configDigest}`)
      expect(viaStdin).toContain('sideload push --archive - NAME')
    })

    it('an OCI layout whose index.json entries carry no name: refused, with the index, manifests, configs and platforms', async () => {
      const stderr = await refused(['--archive', unnamedOci])
      expect(stderr).toContain(`${unnamedOci} holds an image with no name`)
      expect(stderr).toContain(`index ${ociImage.indexDigest}`)
      for (const p of ociImage.platforms) {
        expect(stderr).toContain(`${p.platform} (manifest ${p.manifestDigest}, config ${p.configDigest}`)
      }
      expect(stderr).toContain('no io.containerd.image.name or org.opencontainers.image.ref.name annotation')
      expect(stderr).toContain(`sideload push --archive ${unnamedOci} NAME`)
    })

    it('names crafted for shell injection (docker RepoTags, OCI annotations): refused, never run, shown quoted', async () => {
      const marker = `/tmp/sideload-pwned-${process.pid}-${mode}`
      const evilDocker = path.join(dir, `evil-docker-${mode}.tar`)
      const evilTag = `sl-unnamed/evil:1$(touch ${marker})`
      await rewriteJson(unnamedDocker, evilDocker, 'manifest.json', (m: object[]) => m.map((e) => ({...e, RepoTags: [evilTag]})))
      let stderr = await refused(['--archive', evilDocker])
      expect(stderr).toContain(`${evilDocker} holds an image with no valid name`)
      expect(stderr).toContain(JSON.stringify(evilTag))
      expect(stderr).toContain('is not a valid image reference')

      const evilOci = path.join(dir, `evil-oci-${mode}.tar`)
      const evilName = `docker.io/sl-unnamed/evil:1;touch ${marker}`
      await rewriteJson(unnamedOci, evilOci, 'index.json', (idx: {manifests: object[]}) => ({
        ...idx,
        manifests: idx.manifests.map((m) => ({...m, annotations: {'io.containerd.image.name': evilName, 'org.opencontainers.image.ref.name': `x:1\`touch ${marker}\``}})),
      }))
      stderr = await refused(['--archive', evilOci])
      expect(stderr).toContain(`${evilOci} holds an image with no valid name`)
      expect(stderr).toContain(JSON.stringify(evilName))
      expect(stderr).toContain(`index ${ociImage.indexDigest}`)
      expect(fs.existsSync(marker)).toBe(false)
      expect((await bed.exec(node(), ['test', '-e', marker])).code).not.toBe(0)
    })

    it('an image ID is not a name: push --archive A sha256:<id> is refused', async () => {
      const stderr = await refused(['--archive', unnamedDocker, dockerImage.configDigest])
      expect(stderr).toMatch(/is an image ID, not a name/)
    })

    it('a mixed archive (a named and an unnamed image): nothing pushed, the named ones listed with the command that pushes them', async () => {
      const stderr = await refused(['--archive', archives.mixed])
      expect(stderr).toContain(`${archives.mixed} holds 2 images and 1 has no name`)
      expect(stderr).toContain(`config ${dockerImage.configDigest}`)
      expect(stderr).toContain(`sideload push --archive ${archives.mixed} docker.io/sl-unnamed/other:2`)
      // naming one image of several is not guessed
      const guessed = await refused(['--archive', archives.mixed, 'sl-unnamed/guess:1'])
      expect(guessed).toContain('image "sl-unnamed/guess:1" is not in')
      expect(guessed).toContain('docker.io/sl-unnamed/other:2')
      // the named one, by name
      const run = await runCli(['push', '--archive', archives.mixed, 'sl-unnamed/other:2', ...host(), ...sshArgs(), '--json'])
      expect(run.code, run.stderr).toBe(0)
      expect(jsonResult(run.stdout).results).toMatchObject([{image: 'docker.io/sl-unnamed/other:2', status: 'pushed', mode}])
      const ls = await imagesLs(node())
      expect(ls).toContain('docker.io/sl-unnamed/other:2')
      expect(ls.join('\n')).not.toMatch(/library\/sha256[:@]/)
    })

    it('every image of a multi-image archive, each under each of its names', async () => {
      const run = await runCli(['push', '--archive', archives.twoNamed, ...host(), ...sshArgs(), '--json'])
      expect(run.code, run.stderr).toBe(0)
      expect(jsonResult(run.stdout).results.map((r) => [r.image, r.status === 'failed' ? r.error : 'ok']).sort()).toEqual([
        ['docker.io/sl-unnamed/dock:1', 'ok'],
        ['docker.io/sl-unnamed/other:2', 'ok'],
        ['docker.io/sl-unnamed/other:latest', 'ok'],
      ])
      const ls = (await bed.ctr(node(), ['images', 'ls'])).split('\n')
      expect(ls.find((l) => l.startsWith('docker.io/sl-unnamed/other:latest '))).toContain('io.cri-containerd.pinned=pinned')
      expect(ls.find((l) => l.startsWith('docker.io/sl-unnamed/dock:1 '))).toContain('io.cri-containerd.pinned=pinned')
    })

    it('the archive\'s single unnamed image, named on the command line: pushed under that name, pinned and unpacked', async () => {
      const name = `docker.io/sl-unnamed/given-${mode}:3`
      for (const archive of [unnamedDocker, unnamedOci]) {
        const given = archive === unnamedDocker ? `sl-unnamed/given-${mode}:3` : name
        const run = await runCli(['push', '--archive', archive, given, ...host(), ...sshArgs(), '--json'])
        expect(run.code, run.stderr).toBe(0)
        expect(jsonResult(run.stdout).results).toMatchObject([{image: name, status: 'pushed', mode}])
        const line = (await bed.ctr(node(), ['images', 'ls'])).split('\n').find((l) => l.startsWith(`${name} `))
        expect(line).toContain(archive === unnamedDocker ? '' : ociImage.indexDigest!)
        expect(line).toContain('io.cri-containerd.pinned=pinned')
        expect((await bed.ctr(node(), ['images', 'check'])).split('\n').find((l) => l.startsWith(`${name} `))).toMatch(/complete.*true/)
      }
      const ls = await imagesLs(node())
      expect(ls.join('\n')).not.toMatch(/library\/sha256[:@]|sideload\.invalid/)
      // with two names for one unnamed image, which is which is not guessed
      const stderr = await refused(['--archive', unnamedDocker, 'sl-unnamed/a:1', 'sl-unnamed/b:1'])
      expect(stderr).toContain('image "sl-unnamed/a:1" is not in')
      expect(stderr).toContain('one NAME')
    })
  })

})
