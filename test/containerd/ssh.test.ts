// The native import the way `sideload push` runs it: the node's containerd socket forwarded
// over SSH (src/ssh), on a shaped link; the SSH session is cut mid-blob and the re-run resumes.
import * as fsp from 'node:fs/promises'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {ContainerdClient, importImage, ingestRef, type ImportEvent} from '../../src/containerd/index.js'
import {readArchive} from '../../src/image/index.js'
import {connectNode, SshPool, type SshConnection} from '../../src/ssh/index.js'
import {openNode} from '../../src/nodes/open.js'
import {architectureFromUname} from '../../src/nodes/detect.js'
import {startBed, type Bed, type BedNode} from '../bed/bed.js'
import {makeImage} from '../bed/images.js'

const MIB = 1024 * 1024
let bed: Bed
let node: BedNode
let work: string

beforeAll(async () => {
  work = await fsp.mkdtemp(path.join(os.tmpdir(), 'sl-ctdssh-test-'))
  bed = await startBed({name: 'slb-ctdssh', nodes: 1})
  node = bed.nodes[0]
}, 180_000)

afterAll(async () => {
  await bed?.down()
  await fsp.rm(work, {recursive: true, force: true})
})

async function overSsh(): Promise<{conn: SshConnection; client: ContainerdClient}> {
  const conn = await connectNode({target: `root@${node.ip}`, identityFiles: [bed.keyPath], agent: false, knownHostsPath: bed.knownHostsPath, resolve: {configPath: null}, readyTimeoutMs: 10_000})
  const local = await conn.forwardUnixSocket(node.containerdSocket)
  return {conn, client: new ContainerdClient(`unix://${local}`, {displayName: node.name})}
}

describe('opening a node as root', () => {
  it('takes the socket sshd opens and the platform containerd reports, without running a shell there', async () => {
    const pool = new SshPool({identityFiles: [bed.keyPath], agent: false, knownHostsPath: bed.knownHostsPath, resolve: {configPath: null}})
    try {
      const conn = await pool.get(pool.resolve(`root@${node.ip}`))
      const execs: string[] = []
      const exec = conn.exec.bind(conn)
      conn.exec = (argv, opts) => (execs.push(argv.join(' ')), exec(argv, opts))
      const opened = await openNode({name: node.name, sshTarget: `root@${node.ip}`}, pool)
      const uname = (await bed.exec(node, ['uname', '-m'])).stdout
      expect(opened.facts).toMatchObject({mode: 'native', socket: node.containerdSocket, platform: architectureFromUname(uname), snapshotter: node.snapshotter})
      // only `true`, the session that makes sshd set TCP_NODELAY (SshConnection.startSession)
      expect(execs, 'no probe shell ran').toEqual(['true'])
      await opened.close()
    } finally {
      await pool.closeAll()
    }
  })
})

describe('native import over an SSH-forwarded containerd socket', () => {
  it('survives a cut SSH session mid-blob: the re-run sends only the rest', async () => {
    const out = path.join(work, 'ssh.tar')
    const info = await makeImage({name: 'sl-ssh/app:1', format: 'oci', compress: 'none', out, layers: [{sizeBytes: 2 * MIB, seed: 's1'}, {sizeBytes: 24 * MIB, seed: 's2'}]})
    const big = info.layerDigests[1]
    const bigSize = info.platforms[0].layerSizes[1]
    const source = await readArchive(out)
    await bed.shape(node, {rateMbit: 100})
    try {
      const first = await overSsh()
      let cut = false
      const err = await importImage(first.client, {
        source,
        name: 'sl-ssh/app:1',
        unpack: true,
        pin: true,
        snapshotter: node.snapshotter,
        onProgress: (e) => {
          if (!cut && e.type === 'blob-bytes' && e.digest === big && e.sent >= 8 * MIB) {
            cut = true
            void bed.killSshSessions(node)
          }
        },
      }).then(
        () => undefined,
        (e: unknown) => e as Error,
      )
      expect(cut).toBe(true)
      expect(err?.message).toMatch(new RegExp(`on ${node.name} failed: the connection was lost \\(.+\\)\\. Run the import again to resume: ${node.name} keeps what arrived for 60 min\\.$`))
      first.client.close()
      await first.conn.close()
      expect(await bed.ctr(node, ['images', 'ls', '-q'])).not.toContain('sl-ssh/app')

      const second = await overSsh()
      try {
        const kept = await second.client.contentStatus(ingestRef(big))
        expect(kept?.offset).toBeGreaterThanOrEqual(4 * MIB)
        const events: ImportEvent[] = []
        const t0 = Date.now()
        const res = await importImage(second.client, {source, name: 'sl-ssh/app:1', unpack: true, pin: true, snapshotter: node.snapshotter, onProgress: (e) => events.push(e)})
        const seconds = (Date.now() - t0) / 1000
        const done = events.find((e) => e.type === 'blob-done' && e.digest === big) as Extract<ImportEvent, {type: 'blob-done'}>
        expect(done.sentBytes).toBe(bigSize - kept!.offset)
        expect(res.blobsSkipped).toBeGreaterThanOrEqual(1) // the small layer arrived before the cut
        expect(res.sentBytes).toBeLessThan(bigSize - kept!.offset + 8192)
        process.stderr.write(`resumed ${(done.sentBytes / MIB).toFixed(1)} MiB over SSH at ${(res.sentBytes / MIB / seconds).toFixed(1)} MiB/s (100 Mbit link)\n`)
      } finally {
        second.client.close()
        await second.conn.close()
      }
      expect(await bed.ctr(node, ['images', 'check'])).toMatch(/docker\.io\/sl-ssh\/app:1 .*complete \(3\/3\).*true/)
    } finally {
      await bed.unshape(node)
      await source.close()
    }
  })
})
