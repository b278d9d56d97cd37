// The release a user installs (issue 27): what `npm pack` makes, installed with `npm install -g` into an
// empty prefix with install scripts off (sideload needs none: ssh2 falls back to its JavaScript crypto,
// cpu-features is optional), then run from outside the checkout: --version, `kubectl sideload --help`
// through Debian's kubectl (a kubectl plugin: kubectl finds kubectl-sideload on the PATH), and a real
// push to a bed node. Under the node-lts pass the same runs on that Node (engines must take it).
import {execFile} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startBed, type Bed} from '../bed/bed.js'
import {makeImage} from '../bed/images.js'
import {readmeBlock} from '../readme/blocks.js'

const ROOT = path.resolve(import.meta.dirname, '..', '..')
const KUBECTL = path.join(ROOT, '.cache', 'kubectl', 'usr', 'bin', 'kubectl')
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {version: string; dependencies: Record<string, string>}

interface Run {code: number; stdout: string; stderr: string}

function run(cmd: string, args: string[], opts: {cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, {cwd: opts.cwd, env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 180_000, maxBuffer: 64 << 20}, (err, stdout, stderr) => {
      resolve({code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr})
    })
  })
}

describe('the package a user installs', () => {
  let tmp: string
  let prefix: string
  let env: NodeJS.ProcessEnv
  let bed: Bed
  let install: Run
  let tarball: string

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sideload-package-'))
    prefix = path.join(tmp, 'prefix')
    const packed = await run('npm', ['pack', '--json', '--pack-destination', tmp], {cwd: ROOT})
    expect(packed.code, packed.stderr).toBe(0)
    tarball = path.join(tmp, (JSON.parse(packed.stdout) as Array<{filename: string}>)[0].filename)
    // the node running the tests is the node the user has (the node-lts pass puts another first on the PATH)
    env = {...process.env, PATH: `${path.join(prefix, 'bin')}:${path.dirname(process.execPath)}:/usr/bin:/bin`, HOME: tmp}
    // the README's install line, as written, next to the tarball; the prefix and scripts off through npm's environment
    const [line] = readmeBlock(fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8'), '## Install')
    expect(line).toBe(`npm install -g ./${path.basename(tarball)}`)
    install = await run('bash', ['-c', line], {cwd: tmp, env: {...env, npm_config_prefix: prefix, npm_config_ignore_scripts: 'true', npm_config_audit: 'false', npm_config_fund: 'false'}})
    bed = await startBed({name: 'slbt-package', nodes: 1})
  }, 300_000)
  afterAll(async () => {
    await bed?.down()
    if (tmp) fs.rmSync(tmp, {recursive: true, force: true})
  })

  it('holds what runs and nothing else: the bundle, the protos, the manifests; runtime dependencies only', async () => {
    const listed = await run('tar', ['-tzf', tarball], {cwd: tmp})
    const files = listed.stdout.trim().split('\n').map((f) => f.replace(/^package\//, ''))
    expect(files).toEqual(expect.arrayContaining(['bin/run.js', 'oclif.manifest.json', 'dist/proto/containerd.json', 'manifests/rbac.yaml', 'manifests/fix-watch.yaml']))
    expect(files.some((f) => f.startsWith('dist/bundle/commands/'))).toBe(true)
    expect(files.filter((f) => /^(src|test|scripts|docs)\//.test(f) || (f.startsWith('dist/') && !/^dist\/(bundle|proto)\//.test(f)) || f.endsWith('.map'))).toEqual([])
    // bundled: only what the bundle leaves outside (ssh2, the Kubernetes client) and oclif's plugin are installed
    expect(Object.keys(pkg.dependencies).sort()).toEqual(['@kubernetes/client-node', '@oclif/plugin-autocomplete', 'ssh2'])
  })

  it('installs with the README\'s line (npm install -g), scripts off, with no engine warning on this Node', () => {
    expect(install.code, install.stderr).toBe(0)
    expect(install.stderr).not.toContain('EBADENGINE')
    for (const bin of ['sideload', 'kubectl-sideload']) expect(fs.existsSync(path.join(prefix, 'bin', bin)), bin).toBe(true)
  })

  it('runs from outside the checkout: --version, and as a kubectl plugin (kubectl sideload --help)', async () => {
    const version = await run('sideload', ['--version'], {cwd: '/', env})
    expect(version.code, version.stderr).toBe(0)
    expect(version.stdout).toContain(`sideload/${pkg.version} linux-x64 node-${process.version}`)
    const plugin = await run(KUBECTL, ['sideload', '--help'], {cwd: '/', env})
    expect(plugin.code, plugin.stderr).toBe(0)
    expect(plugin.stdout).toMatch(/COMMANDS[\s\S]*push[\s\S]*fix/)
    const fix = await run(KUBECTL, ['sideload', 'fix', '--help'], {cwd: '/', env})
    expect(fix.code, fix.stderr).toBe(0)
    expect(fix.stdout).toContain('--watch')
  })

  it('pushes to a real node', async () => {
    const out = path.join(tmp, 'app.tar')
    await makeImage({name: 'docker.io/sl-package/app:1', layers: [{sizeBytes: 256 << 10, seed: 'package'}], format: 'oci', out})
    const node = bed.nodes[0]
    const push = await run('sideload', ['push', '--archive', out, '--host', `root@${node.ip}`, '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath, '--progress', 'plain'], {cwd: '/', env})
    expect(push.code, push.stderr).toBe(0)
    expect(await bed.ctr(node, ['images', 'ls', '-q'])).toContain('docker.io/sl-package/app:1')
  })
})
