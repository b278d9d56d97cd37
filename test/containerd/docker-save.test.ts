// Real `docker save` output (dockerd 20.10 from Debian) read from a pipe, as
// `docker save app | sideload push -` would, and imported natively.
import {spawn} from 'node:child_process'
import * as fsp from 'node:fs/promises'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {ContainerdClient, importImage} from '../../src/containerd/index.js'
import {readArchive, resolveImage} from '../../src/image/index.js'
import {startDockerd, type TestDockerd} from '../build/dockerd.js'
import {makeImage} from '../bed/images.js'
import {startContainerd, type TestContainerd} from './fixture.js'

let dockerd: TestDockerd
let ctd: TestContainerd
let work: string

beforeAll(async () => {
  work = await fsp.mkdtemp(path.join(os.tmpdir(), 'sl-dsave-test-'))
  ;[dockerd, ctd] = await Promise.all([startDockerd('ctd-dsave'), startContainerd('dsave')])
}, 120_000)

afterAll(async () => {
  await Promise.all([dockerd?.stop(), ctd?.stop()])
  await fsp.rm(work, {recursive: true, force: true})
})

describe('docker save from a real dockerd', () => {
  it('streams through stdin into a native import: same image id, complete and unpacked', async () => {
    const archive = path.join(work, 'in.tar')
    await makeImage({name: 'sl-dsave/app:7', format: 'docker', out: archive, layers: [{busybox: true}, {sizeBytes: 256 * 1024, seed: 'ds'}]})
    await dockerd.docker(['load', '-i', archive])
    const id = (await dockerd.docker(['image', 'inspect', '--format', '{{.Id}}', 'sl-dsave/app:7'])).stdout.trim()
    const save = spawn('docker', ['-H', dockerd.host, 'save', 'sl-dsave/app:7'], {stdio: ['ignore', 'pipe', 'pipe']})
    const source = await readArchive(save.stdout!, {name: 'sl-dsave/app:7'})
    const client = new ContainerdClient(ctd.address)
    try {
      expect(source.format).toBe('docker')
      expect(source.file).not.toBe(archive)
      const image = await resolveImage(source)
      expect(image.config.digest).toBe(id)
      const res = await importImage(client, {source, resolved: image, name: 'sl-dsave/app:7', pin: true, unpack: true})
      expect(res.blobsSent).toBe(4)
    } finally {
      client.close()
      await source.close()
    }
    expect(await ctd.ctr(['images', 'check'])).toMatch(/docker\.io\/sl-dsave\/app:7 .*complete \(3\/3\).*true/)
  })
})
