// One voice for errors (issue 14): for real failures, the built CLI in plain and --json modes prints
// each hint exactly once (progress lines, summary and result line together), names the node or file
// once per message (never `node X: node X`), and --json ends with a result line. The failures: a
// node's unknown host key, a node whose containerd is stopped, a missing archive, no local containerd
// (push and fix), a fix against an API server that is not there.
import {execFile, spawn} from 'node:child_process'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {type Bed, startBed} from '../bed/bed.js'
import {makeImage} from '../bed/images.js'
import {type Cluster, startCluster} from '../kube-real/cluster.js'

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'run.js')

interface Run {code: number; stdout: string; stderr: string}

function sideload(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], {
      env: {...process.env, OCLIF_COLUMNS: '1000', BUILDKIT_HOST: '', DOCKER_HOST: ''},
      timeout: 60_000,
    }, (err, stdout, stderr) => resolve({code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr}))
  })
}

/** Starts the CLI and sends `signal` once `ready(stdout)` holds (checked as output comes and every 100 ms). */
function interrupted(args: string[], signal: NodeJS.Signals, ready: (stdout: string) => boolean | Promise<boolean>): Promise<Run & {signalled: boolean}> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {stdio: ['ignore', 'pipe', 'pipe']})
    let stdout = ''
    let stderr = ''
    let signalled = false
    const check = async (): Promise<void> => {
      if (!signalled && child.exitCode === null && (await ready(stdout))) {
        signalled = true
        child.kill(signal)
      }
    }
    const timer = setInterval(() => void check(), 100)
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString()
      void check()
    })
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
    child.on('close', (code) => {
      clearInterval(timer)
      resolve({code: code ?? -1, stdout, stderr, signalled})
    })
  })
}

function count(text: string, part: string): number {
  return text.split(part).length - 1
}

/** A hint is printed once: as written on stderr, or JSON-escaped in --json output. */
function expectOnce(run: Run, hint: string, what: string): void {
  const all = run.stdout + run.stderr
  const n = count(all, hint) + (hint.includes('"') || hint.includes('\\') ? count(all, JSON.stringify(hint).slice(1, -1)) : 0)
  expect(n, `${what}: "${hint}" in\n${all}`).toBe(1)
}

/** No error (an `error:` or `FAILED:` line, a JSON `error`) says its subject twice. */
function expectNamedOnce(run: Run, subject: string, what: string): void {
  for (const line of (run.stdout + run.stderr).split('\n')) {
    const texts = line.startsWith('{') ? jsonErrors(JSON.parse(line)) : /\b(error|FAILED): /.test(line) ? [line] : []
    for (const t of texts) expect(count(t, subject), `${what}: ${t}`).toBeLessThanOrEqual(1)
  }
  expect(run.stdout + run.stderr).not.toMatch(/node (\S+): node \1/)
}

function jsonErrors(value: unknown): string[] {
  if (Array.isArray(value)) return value.flatMap(jsonErrors)
  if (value === null || typeof value !== 'object') return []
  return Object.entries(value).flatMap(([k, v]) => (k === 'error' && typeof v === 'string' ? [v] : jsonErrors(v)))
}

/** --json: every stdout line is JSON, the last one the result (ok: false), nothing on stderr. */
function resultLine(run: Run): {ok: boolean; type?: string; error?: string; hint?: string; reason?: string; results?: {error?: string; hint?: string; reason?: string}[]} {
  const lines = run.stdout.trim().split('\n')
  for (const l of lines) JSON.parse(l)
  expect(run.stderr).toBe('')
  const last = JSON.parse(lines.at(-1) ?? '{}')
  expect(last).toMatchObject({type: 'result', ok: false})
  return last
}

let bed: Bed
let cluster: Cluster
let tmp: string
let archive: string
let bigArchive: string
let emptyKnownHosts: string
let kubeconfig: string
let deadKubeconfig: string
const missingSocket = () => path.join(tmp, 'no-containerd.sock')

describe('one voice for errors', () => {
  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'slbt-voice-'))
    bed = await startBed({name: 'slbt-voice', nodes: 2, nodeOptions: {2: {noContainerd: true}}})
    archive = path.join(tmp, 'app.tar')
    await makeImage({name: 'voice/app:1', layers: [{sizeBytes: 64 << 10, seed: 'v'}], format: 'oci', out: archive})
    bigArchive = path.join(tmp, 'big.tar')
    await makeImage({name: 'voice/big:1', layers: [{sizeBytes: 24 << 20, seed: 'b'}], format: 'oci', compress: 'none', out: bigArchive})
    emptyKnownHosts = path.join(tmp, 'empty_known_hosts')
    fs.writeFileSync(emptyKnownHosts, '')
    // the real API server; the kubelet stand-in puts both pods in ErrImageNeverPull on node 1
    cluster = await startCluster(bed)
    kubeconfig = cluster.kubeconfig
    await cluster.createPod('default', 'web', bed.nodes[0].name, 'voice/app:1')
    await cluster.createPod('default', 'big', bed.nodes[0].name, 'voice/big:1')
    await cluster.kubelet.syncNow()
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port
        s.close(() => resolve(p))
      })
    })
    deadKubeconfig = path.join(tmp, 'dead-kubeconfig')
    fs.writeFileSync(deadKubeconfig, fs.readFileSync(kubeconfig, 'utf8').replace(/server: https:\/\/[^\s]+/, `server: https://127.0.0.1:${port}`))
  })
  afterAll(async () => {
    await cluster?.stop()
    await bed?.down()
    if (tmp) fs.rmSync(tmp, {recursive: true, force: true})
  })

  it('push to a node whose host key is unknown: the fingerprint hint once, the node once per line', async () => {
    const node = bed.nodes[0]
    const args = ['push', '--archive', archive, '--host', `root@${node.ip}`, '--known-hosts', emptyKnownHosts, '--ssh-key', bed.keyPath]
    const json = await sideload([...args, '--json'])
    expect(json.code).toBe(1)
    const result = resultLine(json).results?.[0]
    expect(result).toMatchObject({reason: 'host-key-unknown'})
    expect(result?.hint).toContain('--trust-new-host-keys')
    expectOnce(json, result?.hint ?? '', 'push --json')
    expectNamedOnce(json, node.ip, 'push --json')
    const plain = await sideload([...args, '--progress', 'plain'])
    expect(plain.code).toBe(1)
    expectOnce(plain, result?.hint ?? '', 'push')
    expectNamedOnce(plain, node.ip, 'push')
    expect(plain.stderr).toContain(`error: host key of root@${node.ip} is not known`)
  })

  it('push to a node whose containerd is stopped: says so once, with one hint', async () => {
    const node = bed.nodes[1]
    const args = ['push', '--archive', archive, '--host', `${bed.nonRootUser}@${node.ip}`, '--known-hosts', bed.knownHostsPath, '--ssh-key', bed.keyPath]
    const json = await sideload([...args, '--json'])
    expect(json.code).toBe(1)
    const result = resultLine(json).results?.[0]
    expect(result?.error).toMatch(/^no containerd socket found/)
    expect(result?.hint).toContain('is containerd running on the node')
    expectOnce(json, result?.hint ?? '', 'push --json')
    expectNamedOnce(json, node.ip, 'push --json')
    const plain = await sideload([...args, '--progress', 'plain'])
    expect(plain.code).toBe(1)
    expectOnce(plain, result?.hint ?? '', 'push')
    expectNamedOnce(plain, node.ip, 'push')
    expect(plain.stderr).toContain(`${bed.nonRootUser}@${node.ip}: error: no containerd socket found`)
  })

  it('push from an archive that is not there: one line naming the file once; --json a result line', async () => {
    const missing = path.join(tmp, 'nope.tar')
    const args = ['push', '--archive', missing, '--host', `root@${bed.nodes[0].ip}`]
    const plain = await sideload(args)
    expect(plain.code).toBe(1)
    expect(plain.stderr).toBe(`error: cannot open image archive ${missing}: no such file\n`)
    const json = await sideload([...args, '--json'])
    expect(json.code).toBe(1)
    expect(resultLine(json).error).toBe(`cannot open image archive ${missing}: no such file`)
    expectNamedOnce(json, missing, 'push --json')
  })

  it('push and fix without a local containerd: name this machine\'s socket, not "the node", no gRPC internals', async () => {
    const push = ['push', 'voice/app:1', '--containerd-address', missingSocket(), '--host', `root@${bed.nodes[0].ip}`]
    const fix = ['fix', '--kubeconfig', kubeconfig, '--containerd-address', missingSocket(), '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath]
    for (const args of [push, fix]) {
      const json = await sideload([...args, '--json'])
      expect(json.code).toBe(1)
      const result = resultLine(json)
      expect(result.error).toContain(`from the local containerd at ${missingSocket()}: nothing answers there`)
      expect(result.reason).toBe('unavailable')
      expect(result.hint).toContain('--containerd-address')
      const plain = await sideload(args)
      expect(plain.code).toBe(1)
      expect(plain.stderr.trim().split('\n')).toHaveLength(1)
      expect(plain.stderr).toMatch(/^error: cannot (read voice\/app:1|list the images) from the local containerd at /)
      for (const run of [json, plain]) {
        expectOnce(run, result.hint ?? '', args[0])
        expectNamedOnce(run, missingSocket(), args[0])
        expect(run.stdout + run.stderr).not.toMatch(/on the node|Resolution note|UNAVAILABLE/)
      }
    }
  })

  it('fix against an API server that is not there: the hint once, one line; --json a result line', async () => {
    const args = ['fix', '--kubeconfig', deadKubeconfig]
    const json = await sideload([...args, '--json'])
    expect(json.code).toBe(1)
    const result = resultLine(json)
    expect(result).toMatchObject({reason: 'unreachable'})
    expect(result.error).toMatch(/^cannot reach the Kubernetes API server https:\/\/127\.0\.0\.1:\d+ \(connection refused\) to list pods$/)
    expect(result.hint).toContain('kubectl cluster-info')
    expectOnce(json, result.hint ?? '', 'fix --json')
    const plain = await sideload(args)
    expect(plain.code).toBe(1)
    expect(plain.stderr).toBe(`error: ${result.error}; hint: ${result.hint}\n`)
    expectOnce(plain, result.hint ?? '', 'fix')
  })

  it('Ctrl-C / SIGTERM during push and fix --json: exit 130 / 143, the last line a result line saying so', async () => {
    const node = bed.nodes[0]
    await bed.shape(node, {rateMbit: 40}) // 24 MB: several seconds on this link
    try {
      const ssh = ['--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath]
      const sending = (stdout: string): boolean => stdout.includes('"type":"bytes"')
      const push = await interrupted(['push', '--archive', bigArchive, '--host', `root@${node.ip}`, ...ssh, '--json'], 'SIGINT', sending)
      const ingesting = async (): Promise<boolean> => (await bed.ctr(node, ['content', 'active'])).split('\n').slice(1).some(Boolean)
      const fix = await interrupted(['fix', '--kubeconfig', kubeconfig, '--pod', 'big', '--archive', bigArchive, ...ssh, '--json'], 'SIGTERM', ingesting)
      for (const [run, signal] of [[push, 'SIGINT'], [fix, 'SIGTERM']] as const) {
        expect(run.signalled, run.stdout + run.stderr).toBe(true)
        expect(run.code, run.stdout + run.stderr).toBe(signal === 'SIGINT' ? 130 : 143)
        expect(run.stderr).toBe('')
        const last = JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}')
        expect(last).toMatchObject({ok: false, signal})
      }
      expect(JSON.parse(push.stdout.trim().split('\n').at(-1) ?? '{}')).toMatchObject({type: 'result', reason: 'cancelled'})
    } finally {
      await bed.unshape(node)
    }
  })
})
