// Issue 14, "no Node.js warnings reach users": the built CLI's `fix` with many pods (one-shot and
// --watch) and `push` to many nodes print no `(node:…) …Warning` (MaxListenersExceededWarning:
// an abort listener left behind per poll, per request or per blob) on stderr.
import {execFileSync, spawn} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {makeImage} from '../bed/images.js'
import {BIN, createNamespace, createPod, type FixBed, podStatus, startFixBed, waitFor} from './fixture.js'

let fb: FixBed
/** How long the kubelet stand-in takes to start a container whose image is there (a real one: seconds). */
const START_MS = 4000

async function archive(name: string, layers = 3): Promise<string> {
  const file = path.join(fb.tmp, `${name.replace(/[^a-z0-9]/g, '_')}.tar`)
  await makeImage({name, layers: [{busybox: true}, ...Array.from({length: layers}, (_, i) => ({sizeBytes: 64 << 10, seed: `${name}-${i}`}))], format: 'oci', out: file})
  return file
}

interface Running {
  output(): string
  stderr(): string
  done: Promise<{code: number | null; stdout: string; stderr: string}>
  kill(signal: NodeJS.Signals): void
}

/** The CLI as users run it (warnings on, as node prints them by default), with stack traces for whatever warns. */
function start(args: string[], timeoutMs = 120_000): Running {
  const env = {...process.env}
  delete env.NODE_OPTIONS // vitest's own, and nothing that silences warnings
  delete env.NODE_NO_WARNINGS
  const child = spawn(process.execPath, ['--trace-warnings', BIN, ...args], {env, stdio: ['ignore', 'pipe', 'pipe']})
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  const done = new Promise<{code: number | null; stdout: string; stderr: string}>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({code, stdout, stderr})
    })
  })
  return {output: () => stdout + stderr, stderr: () => stderr, done, kill: (signal) => child.kill(signal)}
}

const run = (args: string[]) => start(args).done

/** One OCI archive holding every image of `files` (as `nerdctl save a b c` writes). */
function mergeOci(files: string[], out: string): void {
  const dir = fs.mkdtempSync(path.join(fb.tmp, 'merge-'))
  const manifests: unknown[] = []
  for (const f of files) {
    execFileSync('tar', ['-xf', f, '-C', dir])
    manifests.push(...(JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8')) as {manifests: unknown[]}).manifests)
  }
  fs.writeFileSync(path.join(dir, 'index.json'), JSON.stringify({schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests}))
  execFileSync('tar', ['-cf', out, '-C', dir, '.'])
  fs.rmSync(dir, {recursive: true, force: true})
}

const noWarnings = (stderr: string): void => {
  expect(stderr).not.toMatch(/Warning|MaxListenersExceeded|memory leak/)
}

describe('no Node.js warnings reach users', () => {
  beforeAll(async () => {
    // a kubelet as slow as a real one to start containers: fix polls the pods meanwhile
    fb = await startFixBed('slbt-fixwarn', 3, {containerStartMs: START_MS})
  }, 120_000)
  afterAll(async () => {
    await fb?.down()
  })

  it('fix with 24 pods stuck on 2 images across 3 nodes: all run, stderr has no warning', async () => {
    const {bed, kubelet} = fb
    const a = await archive('docker.io/local/warn-a:1')
    const b = await archive('docker.io/local/warn-b:1')
    await createNamespace(fb, 'many')
    for (let i = 0; i < 24; i++) await createPod(fb, 'many', `p${i}`, bed.nodes[i % 3].name, i % 2 ? 'local/warn-a:1' : 'local/warn-b:1')
    await kubelet.syncNow()
    const common = ['--kubeconfig', fb.kubeconfig, '-n', 'many', '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath]
    // two runs: one image from each archive (fix takes one source)
    for (const file of [a, b]) {
      const r = await run(['fix', ...common, '--archive', file, '--timeout', '60s'])
      noWarnings(r.stderr)
      expect(r.stdout).toMatch(/pushed/)
    }
    for (let i = 0; i < 24; i++) expect((await podStatus(fb, 'many', `p${i}`)).phase).toBe('Running')
  })

  it('fix --watch with 15 pods arriving: repaired, stopped by SIGTERM, stderr has no warning', async () => {
    const {bed, kubelet} = fb
    const file = await archive('docker.io/local/warn-w:1')
    await createNamespace(fb, 'watchw')
    const child = start(['fix', '--watch', '--kubeconfig', fb.kubeconfig, '-n', 'watchw', '--archive', file, '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath])
    try {
      await waitFor('watching', () => child.output().includes('watching pods'), 20_000)
      const pods = Array.from({length: 15}, (_, i) => `w${i}`)
      for (const [i, p] of pods.entries()) await createPod(fb, 'watchw', p, bed.nodes[i % 3].name, 'local/warn-w:1')
      await kubelet.syncNow()
      for (const p of pods) await waitFor(`pod ${p} running`, async () => (await podStatus(fb, 'watchw', p)).phase === 'Running', 60_000 + START_MS, 100)
      // a while longer: the watch, its polls and timers keep going
      await new Promise((resolve) => setTimeout(resolve, 3000))
    } finally {
      child.kill('SIGTERM')
    }
    const r = await child.done
    expect(r.code, r.stdout + r.stderr).toBe(0)
    noWarnings(r.stderr)
  })

  it('push of several images to 3 nodes with --jobs 3 (native and through sudo ctr): no warning', async () => {
    const {bed} = fb
    const files = await Promise.all([0, 1, 2].map((i) => archive(`docker.io/local/warn-push${i}:1`, 6)))
    for (const user of ['root', bed.nonRootUser]) {
      for (const file of files) {
        const r = await run(['push', '--archive', file, ...bed.nodes.flatMap((n) => ['--host', `${user}@${n.ip}`]), '--jobs', '3', '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath, '--progress', 'plain'])
        expect(r.code, r.stderr).toBe(0)
        noWarnings(r.stderr)
      }
    }
  })

  it('push of every image of a 12-image archive to 3 nodes (native and through sudo ctr): no warning', async () => {
    const {bed} = fb
    const files = await Promise.all(Array.from({length: 12}, (_, i) => archive(`docker.io/local/warn-many${i}:1`, 1)))
    const all = path.join(fb.tmp, 'all.tar')
    mergeOci(files, all)
    for (const user of ['root', bed.nonRootUser]) {
      const r = await run(['push', '--archive', all, ...bed.nodes.flatMap((n) => ['--host', `${user}@${n.ip}`]), '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath, '--progress', 'plain', '--json'])
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout.split('\n').filter((l) => l.includes('"type":"result"'))).toHaveLength(1)
      noWarnings(r.stderr)
    }
  })
})
