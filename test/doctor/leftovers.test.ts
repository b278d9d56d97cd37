// doctor and prune on what interrupted transfers leave on a node (issue 19), on a containerd 2.x
// and a 1.6 node, natively (root) and through `sudo ctr` (the non-root user): sideload's lease
// and a partial blob under it, planted as a native push that lost its connection leaves them,
// are shown (each its own row, with how to clear it); `sideload prune` clears them and doctor
// then shows none. A `ctr images import` running on the node is listed with its PID.
import {spawn} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startBed, type Bed, type BedNode} from '../bed/bed.js'
import {runCli} from '../push/cli.js'
import {ContainerdClient, LEASE_IMAGE_LABEL, SIDELOAD_INGEST_PREFIX} from '../../src/containerd/index.js'

type Row = {check: string; target: string; status: string; detail: string; hint?: string}
let bed: Bed

beforeAll(async () => {
  bed = await startBed({name: 'slbt-doctor-left', nodes: 2, nodeOptions: {1: {containerd: '2'}, 2: {containerd: '1.6'}}})
}, 120_000)
afterAll(async () => {
  await bed?.down()
})

const sshFlags = () => ['--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath]

async function doctorRows(host: string): Promise<Row[]> {
  const run = await runCli(['doctor', '--host', host, ...sshFlags(), '--json'], {timeoutMs: 120_000})
  const checks = (JSON.parse(run.stdout) as {checks: Row[]}).checks
  return checks.filter((c) => ['leftovers', 'ingests', 'imports'].includes(c.check))
}
const rowOf = (rows: Row[], check: string): Row | undefined => rows.find((r) => r.check === check)

/** What a native push cut mid-blob leaves: its lease (sideload/image, 1 h) holding a partial ingest `sideload-sha256:…`. */
async function plant(node: BedNode, image: string): Promise<{lease: string; ref: string}> {
  const client = new ContainerdClient(`unix://${node.hostSocketPath}`, {namespace: 'k8s.io'})
  try {
    const lease = await client.leaseCreate({expiresInMs: 60 * 60_000, labels: {[LEASE_IMAGE_LABEL]: image}})
    const blob = randomBytes(1024 * 1024)
    const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`
    const ref = `${SIDELOAD_INGEST_PREFIX}${digest}`
    const svc = client.contentService() as unknown as Record<string, (md: unknown) => NodeJS.ReadWriteStream & {write(o: object): boolean; end(): void; cancel(): void}>
    const call = svc.Write.call(svc, client.metadata({lease}))
    await new Promise<void>((resolve, reject) => {
      call.on('error', reject)
      call.once('data', () => resolve())
      call.write({action: 'WRITE', ref, total: blob.length, expected: digest, offset: 0, data: blob.subarray(0, 300 * 1024)})
    })
    call.end()
    await new Promise((r) => call.on('end', r).on('error', r))
    return {lease, ref}
  } finally {
    client.close()
  }
}

describe.each([
  ['2.x', 0],
  ['1.6', 1],
])('on a containerd %s node', (_line, index) => {
  it.each([
    ['natively (root)', 'root'],
    ['through sudo ctr (non-root)', 'sluser'],
  ])('%s: doctor shows a planted lease and partial blob, prune clears them, then doctor shows none', async (_how, user) => {
    const node = bed.nodes[index]
    const host = `${user}@${node.ip}`
    const image = `docker.io/sl-plant/app-${user}:1`
    const {lease, ref} = await plant(node, image)

    const before = await doctorRows(host)
    expect(rowOf(before, 'leftovers'), JSON.stringify(before)).toMatchObject({status: 'warn'})
    expect(rowOf(before, 'leftovers')?.detail).toContain(`${image} (lease ${lease}, kept `)
    expect(rowOf(before, 'leftovers')?.hint).toContain('sideload prune')
    expect(rowOf(before, 'ingests'), JSON.stringify(before)).toMatchObject({status: 'warn'})
    expect(rowOf(before, 'ingests')?.detail).toContain(`sideload's: ${ref}`)
    expect(rowOf(before, 'ingests')?.hint).toMatch(/sideload prune/)
    expect(rowOf(before, 'imports')).toBeDefined()

    const pruned = await runCli(['prune', '--host', host, ...sshFlags(), '--force', '--json'], {timeoutMs: 120_000})
    expect(pruned.code, pruned.stderr).toBe(0)
    expect(pruned.stdout).toContain(lease)

    // the lease went with --sync; containerd's GC takes the partial blob it held (poll, generous under load)
    let after = await doctorRows(host)
    for (const deadline = Date.now() + 30_000; rowOf(after, 'ingests')?.status !== 'ok' && Date.now() < deadline; ) {
      await new Promise((r) => setTimeout(r, 500))
      after = await doctorRows(host)
    }
    expect(rowOf(after, 'leftovers')).toMatchObject({status: 'ok', detail: 'no interrupted transfer of sideload'})
    expect(rowOf(after, 'ingests')).toMatchObject({status: 'ok', detail: 'no partial blob of sideload or of ctr import'})
  })

  it('a `ctr images import` running on the node is listed with its PID and how to stop it', async () => {
    const node = bed.nodes[index]
    // an import whose input never ends (as ours while a push runs), through sudo as the non-root user
    const ssh = spawn('ssh', [...bed.sshArgs(node, bed.nonRootUser), 'sudo -n ctr --namespace k8s.io images import -'], {stdio: ['pipe', 'ignore', 'ignore']})
    try {
      let rows = await doctorRows(`${bed.nonRootUser}@${node.ip}`)
      for (const deadline = Date.now() + 30_000; !/sudo -n ctr --namespace k8s.io images import -/.test(rowOf(rows, 'imports')?.detail ?? '') && Date.now() < deadline; ) {
        await new Promise((r) => setTimeout(r, 500))
        rows = await doctorRows(`${bed.nonRootUser}@${node.ip}`)
      }
      const imports = rowOf(rows, 'imports')
      expect(imports, JSON.stringify(rows)).toMatchObject({status: 'warn'})
      const pid = new RegExp(`PID (\\d+) \\(${bed.nonRootUser}, for [\\d:-]+\\): sudo -n ctr --namespace k8s.io images import -`).exec(imports?.detail ?? '')?.[1]
      expect(pid, imports?.detail).toBeDefined()
      expect(imports?.hint).toContain(`kill -TERM`)
      expect(imports?.hint).toContain(pid)
    } finally {
      ssh.stdin?.end()
      await new Promise((r) => ssh.once('close', r))
    }
  })
})
