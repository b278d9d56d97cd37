// The seed's build path, for real: a standalone buildkitd (built from its Go module) whose
// containerd worker writes into namespace k8s.io of a containerd 2.x build machine, nerdctl
// beside it, and a node to push to. Nothing here reaches a registry: base images come from the
// build machine's own store (`--pull missing`), and the machine has no route out.
import {execFile} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {promisify} from 'node:util'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {BuildCancelledError, BuildFailedError, build, type BuildOptions} from '../../src/ops/build/index.js'
import {startBed, type Bed} from '../bed/bed.js'
import {daemonBinary} from '../daemons/daemons.js'
import {jsonResult, runCli} from '../push/cli.js'
import {type BuildMachine, startBuildMachine} from './buildkitd.js'
import {writeContext} from './context.js'

const run = promisify(execFile)
let bm: BuildMachine
let target: Bed
let work: string

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'sl-bkd-'))
  ;[bm, target] = await Promise.all([startBuildMachine('slb-bkd', work), startBed({name: 'slb-bkdt', nodes: 1, containerd: '2'})])
}, 180_000)

afterAll(async () => {
  await Promise.all([bm?.down(), target?.down()])
  if (work) fs.rmSync(work, {recursive: true, force: true})
})

const makeContext = (name: string, files: Record<string, string>): string => writeContext(work, name, files)

const base = (): Partial<BuildOptions> => ({
  builder: {kind: 'buildkitd', address: bm.buildkitAddress},
  containerdAddress: bm.containerdAddress,
  pull: 'missing',
})

/** The layers (digests) of an image in the build machine's k8s.io store. */
async function layersOf(name: string): Promise<string[]> {
  const line = (await bm.ctr(['images', 'ls'])).split('\n').find((l) => l.startsWith(`${name} `))
  if (!line) throw new Error(`${name} is not in the build machine's containerd`)
  const digest = line.trim().split(/\s+/)[2]
  const manifest = JSON.parse(await bm.ctr(['content', 'get', digest])) as {layers: {digest: string}[]}
  return manifest.layers.map((l) => l.digest)
}

describe('sideload build against a standalone buildkitd with a containerd worker (k8s.io)', () => {
  it('builds straight into the build machine\'s containerd under the name the kubelet looks up, unpacked; nerdctl lists it; push sends it on', async () => {
    const ctx = makeContext('app', {Dockerfile: `FROM docker.io/library/busybox:sideload-test\nRUN echo built > /built\nCOPY hello.txt /hello.txt\n`, 'hello.txt': 'hello\n'})
    const res = await build({...base(), context: ctx, tags: ['app:1']} as BuildOptions)
    expect(res.location).toMatchObject({kind: 'containerd', namespace: 'k8s.io', names: ['docker.io/library/app:1']})
    expect(res.exporterResponse['image.name']).toBe('docker.io/library/app:1')
    const check = (await bm.ctr(['images', 'check', `name==docker.io/library/app:1`])).split('\n').find((l) => l.startsWith('docker.io/library/app:1 '))
    expect(check).toMatch(/complete .* true$/)
    const listed = await bm.nerdctl(['images', '--format', '{{.Repository}}:{{.Tag}}'])
    expect(listed.stdout.split('\n')).toContain('app:1')

    const node = target.nodes[0]
    const pushed = await runCli(['push', 'app:1', '--host', `root@${node.ip}`, '--ssh-key', target.keyPath, '--known-hosts', target.knownHostsPath, '--progress', 'quiet', '--json'], {
      env: {CONTAINERD_ADDRESS: bm.containerdAddress},
    })
    expect(pushed.code, pushed.stderr).toBe(0)
    expect(jsonResult(pushed.stdout).results[0]).toMatchObject({status: 'pushed', image: 'docker.io/library/app:1'})
    const onNode = (await target.ctr(node, ['images', 'check'])).split('\n').find((l) => l.startsWith('docker.io/library/app:1 '))
    expect(onNode).toMatch(/complete .* true$/)
  })

  it('a buildkitd on another containerd never claims to have built into this one: the image comes back as an archive', async () => {
    const ctx = makeContext('elsewhere', {Dockerfile: 'FROM scratch\nCOPY a.txt /a.txt\n', 'a.txt': 'a\n'})
    // "this machine's containerd" is the target node's: a different daemon (UUID) than the worker's
    const res = await build({...base(), containerdAddress: `unix://${target.nodes[0].hostSocketPath}`, context: ctx, tags: ['elsewhere:1'], workDir: work} as BuildOptions)
    expect(res.location.kind).toBe('archive')
    // and says why, naming the address asked
    expect(res.notStored).toMatch(new RegExp(`^BuildKit's containerd worker is not this machine's containerd in namespace k8s\\.io: its containerd is another daemon than the one at unix://${target.nodes[0].hostSocketPath.replace(/[.]/g, '\\.')} \\(UUID `))
    if (res.location.kind !== 'archive') return
    // only this user may read it, in a directory only this user may enter
    const dir = path.dirname(res.location.path)
    expect(path.dirname(dir)).toBe(work)
    expect(path.basename(dir)).toMatch(/^sideload-build-/)
    expect((fs.statSync(res.location.path).mode & 0o777).toString(8)).toBe('600')
    expect((fs.statSync(dir).mode & 0o777).toString(8)).toBe('700')
    const source = await res.openImageSource()
    await source.close()
    expect(await target.ctr(target.nodes[0], ['images', 'ls', '-q'])).not.toContain('elsewhere')
    fs.rmSync(dir, {recursive: true, force: true})
  })

  it('the layers equal nerdctl build\'s for the same context; an unchanged rebuild uploads no file', async () => {
    const ctx = makeContext('same', {Dockerfile: 'FROM scratch\nCOPY . /app/\n', 'a.txt': 'a\n', 'dir/b.txt': 'b\n', '.dockerignore': 'ignored.txt\n', 'ignored.txt': 'x\n'})
    const first = await build({...base(), context: ctx, tags: ['same:sideload']} as BuildOptions)
    expect(first.fileSync.context?.requests).toBeGreaterThan(0)
    const nerd = await bm.nerdctl(['build', '-t', 'same:nerdctl', ctx])
    expect(nerd.code, nerd.stderr).toBe(0)
    const ours = await layersOf('docker.io/library/same:sideload')
    expect(ours).toHaveLength(1)
    expect(await layersOf('docker.io/library/same:nerdctl')).toEqual(ours)
    const again = await build({...base(), context: ctx, tags: ['same:sideload']} as BuildOptions)
    // BuildKit ≥ 0.13 reads the control files (Dockerfile, .dockerignore) afresh every time
    // (no diffing for them); of the context itself nothing travels again
    expect(again.fileSync.context).toMatchObject({requests: 1, bytes: fs.statSync(path.join(ctx, '.dockerignore')).size})
    expect(again.fileSync.dockerfile).toMatchObject({requests: 1, bytes: fs.statSync(path.join(ctx, 'Dockerfile')).size})
    expect(await layersOf('docker.io/library/same:sideload')).toEqual(ours)
  })

  it('build args, a target stage, a secret, .dockerignore and several stages end up as asked', async () => {
    const ctx = makeContext('multi', {
      Dockerfile: [
        'FROM docker.io/library/busybox:sideload-test AS base',
        'ARG GREETING=none',
        'RUN echo "$GREETING" > /greeting',
        'RUN --mount=type=secret,id=token cat /run/secrets/token > /token-was',
        'COPY . /ctx/',
        'FROM base AS final',
        'RUN echo final > /final',
        'FROM base AS other',
        'RUN echo other > /other',
        '',
      ].join('\n'),
      '.dockerignore': 'secret.txt\nignored/\n',
      'kept.txt': 'kept\n',
      'secret.txt': 'token-from-file\n',
      'ignored/x.txt': 'x\n',
    })
    const out = path.join(work, 'multi-rootfs.tar')
    await build({
      ...base(),
      context: ctx,
      tags: [],
      target: 'final',
      buildArgs: {GREETING: 'hi'},
      secrets: {token: {file: path.join(ctx, 'secret.txt')}},
      output: {type: 'tar', path: out},
    } as BuildOptions)
    const dir = path.join(work, 'multi-rootfs')
    fs.mkdirSync(dir)
    await run('tar', ['-xf', out, '-C', dir])
    expect(fs.readFileSync(path.join(dir, 'greeting'), 'utf8')).toBe('hi\n')
    expect(fs.readFileSync(path.join(dir, 'token-was'), 'utf8')).toBe('token-from-file\n')
    expect(fs.readFileSync(path.join(dir, 'final'), 'utf8')).toBe('final\n')
    expect(fs.existsSync(path.join(dir, 'other'))).toBe(false)
    expect(fs.existsSync(path.join(dir, 'ctx', 'kept.txt'))).toBe(true)
    expect(fs.existsSync(path.join(dir, 'ctx', 'secret.txt'))).toBe(false)
    expect(fs.existsSync(path.join(dir, 'ctx', 'ignored'))).toBe(false)
  })

  it('a failing RUN: its log and Dockerfile line, exit 1, no image', async () => {
    const ctx = makeContext('fails', {Dockerfile: 'FROM docker.io/library/busybox:sideload-test\nRUN echo about to fail\nRUN echo broken-step >&2 && exit 3\n'})
    await expect(build({...base(), context: ctx, tags: ['fails:1']} as BuildOptions)).rejects.toBeInstanceOf(BuildFailedError)
    const cli = await runCli(['build', ctx, '-t', 'fails:1', '--builder', 'buildkit', '--buildkit-host', bm.buildkitAddress, '--containerd-address', bm.containerdAddress, '--pull', 'missing', '--progress', 'plain'])
    expect(cli.code).toBe(1)
    expect(cli.stderr).toContain('broken-step')
    expect(cli.stderr).toMatch(/Dockerfile:3/)
    expect(await bm.ctr(['images', 'ls', '-q'])).not.toContain('fails')
  })

  it('Ctrl-C cancels the build in the daemon: the RUN process is gone', async () => {
    const ctx = makeContext('slow', {Dockerfile: 'FROM docker.io/library/busybox:sideload-test\nRUN sleep 47\n'})
    const abort = new AbortController()
    const building = build({...base(), context: ctx, tags: ['slow:1'], signal: abort.signal} as BuildOptions)
    const sleeping = async () => (await bm.bed.exec(bm.node, ['pgrep', '-f', 'sleep 47'])).code === 0
    const deadline = Date.now() + 30_000
    while (!(await sleeping())) {
      if (Date.now() > deadline) throw new Error('the RUN step never started')
      await new Promise((r) => setTimeout(r, 100))
    }
    abort.abort()
    await expect(building).rejects.toBeInstanceOf(BuildCancelledError)
    const gone = Date.now() + 10_000
    while (await sleeping()) {
      if (Date.now() > gone) throw new Error('the RUN process still runs after the build was cancelled')
      await new Promise((r) => setTimeout(r, 100))
    }
  })

  it('finds buildkitd at /run/buildkit-k8s.io/buildkitd.sock, where nerdctl looks first', async () => {
    const dir = '/run/buildkit-k8s.io'
    if (fs.existsSync(dir)) return expect.fail(`${dir} exists on this machine (a real buildkitd?); this test needs it free`)
    fs.mkdirSync(dir)
    try {
      fs.symlinkSync(bm.buildkitAddress.slice('unix://'.length), path.join(dir, 'buildkitd.sock'))
      const ctx = makeContext('found', {Dockerfile: 'FROM scratch\nCOPY f /f\n', f: 'f\n'})
      const env = {BUILDKIT_HOST: '', CONTAINERD_ADDRESS: bm.containerdAddress} // an empty BUILDKIT_HOST counts as unset
      const cli = await runCli(['build', ctx, '-t', 'found:1', '--progress', 'plain'], {env})
      expect(cli.code, cli.stderr).toBe(0)
      expect(cli.stdout).toContain('containerd namespace k8s.io')
      expect(await bm.ctr(['images', 'ls', '-q'])).toContain('docker.io/library/found:1')
    } finally {
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })

  it('buildctl agrees on what it built (daemon answers, worker is containerd in k8s.io)', async () => {
    const r = await bm.bed.exec(bm.node, [daemonBinary('buildkit', 'buildctl'), '--addr', bm.buildkitAddress, 'debug', 'workers', '-v'])
    expect(r.stdout).toMatch(/org\.mobyproject\.buildkit\.worker\.containerd\.namespace:\s*k8s\.io/)
    expect(r.stdout).toMatch(/org\.mobyproject\.buildkit\.worker\.executor:\s*containerd/)
  })
})
