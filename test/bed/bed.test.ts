import {execFile} from 'node:child_process'
import * as fs from 'node:fs'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startBed, type Bed, type BedNode} from './bed.js'

interface Run {
  code: number
  stdout: string
  stderr: string
}

function run(cmd: string, args: string[], timeoutMs = 30_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, {timeout: timeoutMs, maxBuffer: 64 << 20}, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0
      resolve({code, stdout: String(stdout), stderr: String(stderr)})
    })
  })
}

function ssh(bed: Bed, node: BedNode, command: string, user = 'root', timeoutMs?: number): Promise<Run> {
  return run('ssh', [...bed.sshArgs(node, user), command], timeoutMs)
}

/** Every trace a bed leaves on the host, as text, for "nothing left behind" checks. */
async function traces(bed: {name: string; index: number; dir: string}): Promise<string[]> {
  const found: string[] = []
  const netns = (await run('ip', ['netns', 'list'])).stdout
  for (const l of netns.split('\n')) if (l.startsWith(`slbed-${bed.name}-`)) found.push(`netns ${l}`)
  const links = (await run('ip', ['-o', 'link', 'show'])).stdout
  for (const l of links.split('\n')) {
    const m = /^\d+:\s+([^:@\s]+)/.exec(l)
    if (m && (m[1] === `slbr${bed.index}` || m[1].startsWith(`slb${bed.index}n`))) found.push(`link ${m[1]}`)
  }
  for (const l of fs.readFileSync('/proc/mounts', 'utf8').split('\n')) {
    if (l.includes(bed.dir) || l.includes(`slbed-${bed.name}-`)) found.push(`mount ${l}`)
  }
  const procs = await run('pgrep', ['-a', '-f', `${bed.dir}/`])
  for (const l of procs.stdout.split('\n')) if (l.trim() && !l.includes('pgrep')) found.push(`process ${l}`)
  if (fs.existsSync(bed.dir)) found.push(`dir ${bed.dir}`)
  return found
}

describe('test bed', () => {
  let bed: Bed
  beforeAll(async () => {
    bed = await startBed({name: 'slbt-bed', nodes: 2})
  })
  afterAll(async () => {
    await bed?.down()
  })

  it('gives every node its own sshd and containerd, reachable with the bed key', async () => {
    expect(bed.nodes.map((n) => n.name)).toEqual(['slbt-bed-1', 'slbt-bed-2'])
    const uuids: string[] = []
    for (const node of bed.nodes) {
      const r = await ssh(bed, node, 'ctr -n k8s.io version')
      expect(r.stderr).not.toMatch(/error/i)
      expect(r.code).toBe(0)
      const uuid = /UUID:\s+(\S+)/.exec(r.stdout)?.[1]
      expect(uuid).toBeDefined()
      uuids.push(uuid ?? '')
      // the same daemon answers on the host-side socket path
      const direct = await run('ctr', ['-a', node.hostSocketPath, 'version'])
      expect(direct.stdout).toContain(`UUID: ${uuid}`)
      expect(fs.readFileSync(bed.knownHostsPath, 'utf8')).toContain(`${node.ip},${node.name} ${node.hostKeyPub}`)
    }
    expect(new Set(uuids).size).toBe(2)
  })

  it('rejects a key that is not the bed key', async () => {
    const other = `${bed.dir}/other_key`
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other])
    const args = bed.sshArgs(bed.nodes[0]).map((a) => (a === bed.keyPath ? other : a))
    const r = await run('ssh', [...args, 'true'])
    expect(r.code).toBe(255)
    expect(r.stderr).toMatch(/Permission denied/)
  })

  it('leaves nothing behind after down', async () => {
    const probe = {name: bed.name, index: bed.index, dir: bed.dir}
    expect(await traces(probe)).not.toEqual([])
    await bed.down()
    expect(await traces(probe)).toEqual([])
  })
})
