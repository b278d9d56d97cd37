// `sideload doctor --p2p spegel` on containerd 2.x bed nodes: node 1 has everything (config_path,
// its own hosts.toml mirror, Spegel answering) → ok naming the mirror; node 2 has no registry
// config_path → fail with the config_path hint; node 3 is set up like node 1 but its Spegel is
// stopped → fail saying the mirror at its address does not answer. The built CLI, over --host.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startBed, type Bed, type BedNode} from '../bed/bed.js'
import {makeImage} from '../bed/images.js'
import {type CliRun, runCli} from '../push/cli.js'
import type {DoctorCheck} from '../../src/ops/doctor/index.js'
import {mirrorsOf} from '../../src/ops/doctor/p2p.js'
import {readToml} from '../../src/util/toml.js'
import {mirrorToOwnSpegel, REGISTRY_PORT, startSpegel} from './spegel.js'

const cli = (args: string[]): Promise<CliRun> => runCli(args, {env: {HOME: os.tmpdir(), DOCKER_HOST: '', BUILDKIT_HOST: '', KUBECONFIG: '/nonexistent'}, timeoutMs: 90_000})

function p2pRow(checks: DoctorCheck[], node: BedNode): DoctorCheck {
  const r = checks.filter((c) => c.check === 'p2p' && c.target.includes(node.ip))
  expect(r, `one p2p row for ${node.ip} in ${JSON.stringify(checks, null, 1)}`).toHaveLength(1)
  return r[0]
}

describe('doctor --p2p spegel (containerd 2.x)', () => {
  let bed: Bed
  let ok: BedNode
  let noConfigPath: BedNode
  let stopped: BedNode
  let flags: string[]
  beforeAll(async () => {
    bed = await startBed({name: 'slbt-doctor-p2p', nodes: 3, containerd: '2', nodeOptions: {1: {registryConfigPath: true}, 3: {registryConfigPath: true}}})
    ;[ok, noConfigPath, stopped] = bed.nodes
    for (const node of [ok, stopped]) await mirrorToOwnSpegel(bed, node, 'docker.io', `http://${bed.hostIp}:9`)
    await startSpegel(bed, [ok, stopped])
    flags = ['doctor', '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath, '--builder', 'docker', '--p2p', 'spegel']
  }, 180_000)
  afterAll(async () => {
    await bed?.down()
  })

  it('ok where the mirror is set up and Spegel answers; the config_path hint where containerd asks no mirror', async () => {
    const run = await cli([...flags, '--host', `root@${ok.ip}`, '--host', `root@${noConfigPath.ip}`, '--json'])
    const result = JSON.parse(run.stdout) as {ok: boolean; checks: DoctorCheck[]}
    expect(p2pRow(result.checks, ok)).toMatchObject({status: 'ok', detail: `Spegel at http://${ok.ip}:${REGISTRY_PORT} ready; mirrors docker.io`})
    const missing = p2pRow(result.checks, noConfigPath)
    expect(missing).toMatchObject({status: 'fail', detail: 'containerd has no registry config_path: pulls never ask a mirror'})
    expect(missing.hint).toContain('set config_path = "/etc/containerd/certs.d" under the CRI registry section')
    expect(missing.hint).toContain('restart containerd')
    expect(result.ok).toBe(false)
    expect(run.code).toBe(1)
  })

  it('push --p2p: a node whose containerd asks no mirror is not asked to pull; it is pushed directly at once, saying why', async () => {
    const out = path.join(os.tmpdir(), `sl-doctor-p2p-${process.pid}.tar`)
    await makeImage({name: 'docker.io/sl-p2p/nomirror:1', layers: [{sizeBytes: 64 * 1024, seed: 'nomirror'}], format: 'oci', out})
    try {
      const run = await cli(['push', '--archive', out, '--host', `root@${ok.ip}`, '--host', `root@${noConfigPath.ip}`, '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath,
        '--p2p', 'spegel', '--seeds', '1', '--json'])
      expect(run.code, run.stderr).toBe(0)
      const line = run.stdout.trim().split('\n').reverse().find((l) => l.includes('"type":"result"'))!
      const results = (JSON.parse(line) as {results: {node: string; status: string; via?: string; p2pError?: string; p2pHint?: string}[]}).results
      const peer = results.find((r) => r.node === `root@${noConfigPath.ip}`)
      expect(peer).toMatchObject({status: 'pushed', via: 'direct', p2pError: 'containerd has no registry config_path (containerd config dump): its pulls ask no mirror'})
      // the failure's own hint, not a general one
      expect(peer!.p2pHint).toMatch(/^set config_path = "\/etc\/containerd\/certs.d"/)
      // never asked to pull (that pull would go to the registry itself, or wait out its timeout offline)
      expect(run.stdout).not.toContain('pulling from peers')
    } finally {
      fs.rmSync(out, {force: true})
    }
  })

  it('push --p2p: a node whose hosts.toml names no mirror for the image\'s registry is pushed directly at once, saying so', async () => {
    const out = path.join(os.tmpdir(), `sl-doctor-p2p-reg-${process.pid}.tar`)
    // node 1 mirrors docker.io only: registry.lab:5000 has no hosts.toml there, and no _default
    await makeImage({name: 'registry.lab:5000/sl-p2p/other:1', layers: [{sizeBytes: 64 * 1024, seed: 'otherreg'}], format: 'oci', out})
    try {
      const run = await cli(['push', '--archive', out, '--host', `root@${stopped.ip}`, '--host', `root@${ok.ip}`, '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath,
        '--p2p', 'spegel', '--seeds', '1', '--json'])
      expect(run.code, run.stderr).toBe(0)
      const line = run.stdout.trim().split('\n').reverse().find((l) => l.includes('"type":"result"'))!
      const results = (JSON.parse(line) as {results: {node: string; status: string; via?: string; p2pError?: string; durationMs: number}[]}).results
      expect(results.find((r) => r.node === `root@${ok.ip}`)).toMatchObject({status: 'pushed', via: 'direct',
        p2pError: 'no hosts.toml in /etc/containerd/certs.d names a mirror for registry.lab:5000 that may pull and resolve: its pulls go to the registry itself'})
      expect(run.stdout).not.toContain('pulling from peers')
      // in a terminal (another image: the nodes have this one now): the warning carries that failure's own hint
      await makeImage({name: 'registry.lab:5000/sl-p2p/other:2', layers: [{sizeBytes: 64 * 1024, seed: 'otherreg2'}], format: 'oci', out})
      const plain = await cli(['push', '--archive', out, '--host', `root@${stopped.ip}`, '--host', `root@${ok.ip}`, '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath,
        '--p2p', 'spegel', '--seeds', '1', '--progress', 'plain'])
      expect(plain.stderr).toMatch(/warning: pushed directly, the pull from peers failed: no hosts\.toml .*; hint: run `spegel configuration` on the node, or write \/etc\/containerd\/certs\.d\/registry\.lab:5000\/hosts\.toml/)
    } finally {
      fs.rmSync(out, {force: true})
    }
  })

  it('without --p2p there is no p2p row', async () => {
    const run = await cli([...flags.slice(0, -2), '--host', `root@${noConfigPath.ip}`, '--json'])
    const result = JSON.parse(run.stdout) as {checks: DoctorCheck[]}
    expect(result.checks.filter((c) => c.check === 'p2p')).toEqual([])
  })

  it('fails, naming the address, where Spegel is stopped; the table shows it with its hint', async () => {
    const pid = Number(fs.readFileSync(path.join(bed.nodeDir(stopped), 'spegel.pid'), 'utf8'))
    process.kill(pid, 'SIGKILL')
    const url = `http://${stopped.ip}:${REGISTRY_PORT}`
    const run = await cli([...flags, '--host', `root@${stopped.ip}`, '--json'])
    const down = p2pRow((JSON.parse(run.stdout) as {checks: DoctorCheck[]}).checks, stopped)
    expect(down.status).toBe('fail')
    expect(down.detail).toMatch(new RegExp(`^the mirror at ${url.replace(/\./g, '\\.')} \\(docker\\.io\\) does not answer \\(Connection refused\\)`))
    expect(down.hint).toContain(`start Spegel on the node (it must listen on ${url}`)
    const table = await cli([...flags, '--host', `root@${stopped.ip}`])
    expect(table.code).toBe(1)
    expect(table.stdout).toMatch(/p2p\s+\S+\s+FAIL\s+the mirror at/)
  })
})

describe('the TOML doctor reads', () => {
  it('finds config_path and discard_unpacked_layers in containerd 2.x and 1.6 layouts, dotted keys and comments included', () => {
    const v2 = readToml(`version = 3
[plugins]
  [plugins.'io.containerd.cri.v1.images']
    discard_unpacked_layers = false # kept for peers
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = "/etc/containerd/certs.d:/etc/docker/certs.d"
`)
    expect(v2.get(['plugins', 'io.containerd.cri.v1.images', 'registry', 'config_path'])).toBe('/etc/containerd/certs.d:/etc/docker/certs.d')
    expect(v2.get(['plugins', 'io.containerd.cri.v1.images', 'discard_unpacked_layers'])).toBe(false)
    const v1 = readToml('[plugins."io.containerd.grpc.v1.cri"]\n  registry.config_path = \'/etc/containerd/certs.d\'\n')
    expect(v1.get(['plugins', 'io.containerd.grpc.v1.cri', 'registry', 'config_path'])).toBe('/etc/containerd/certs.d')
  })

  it('a mirror is a host that may pull and resolve (or says nothing), across registries', () => {
    const mirrors = mirrorsOf(new Map([
      ['docker.io', 'server = "https://registry-1.docker.io"\n[host."http://10.0.0.5:5000"]\n  capabilities = [\n    "pull",\n    "resolve",\n  ]\n[host."https://push.example"]\n  capabilities = ["push"]\n'],
      ['_default', '[host."http://10.0.0.5:5000/"]\n'],
    ]))
    expect(mirrors).toEqual([{url: 'http://10.0.0.5:5000', registries: ['docker.io', '_default']}])
  })
})
