// `build()` and `sideload build` against a real dockerd 20.10 with its embedded BuildKit v0.8,
// started by this file (see dockerd.ts).
import {execFile} from 'node:child_process'
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {pipeline} from 'node:stream/promises'
import {promisify} from 'node:util'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {BuildkitClient} from '../../src/buildkit/client.js'
import {parseDockerHost} from '../../src/docker/endpoint.js'
import {resolveImage} from '../../src/image/model.js'
import {BuildFailedError, build} from '../../src/ops/build/index.js'
import {type TestDockerd, startDockerd, writeBusyboxArchive} from './dockerd.js'
import {writeContext} from './context.js'

const run = promisify(execFile)
const BIN = path.resolve(__dirname, '..', '..', 'bin', 'run.js')

let dockerd: TestDockerd
let work: string

beforeAll(async () => {
  dockerd = await startDockerd('bkbuild')
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'sl-bkwork-'))
  const base = path.join(work, 'busybox.tar')
  await writeBusyboxArchive(base, 'sltest/busybox:1')
  await dockerd.docker(['load', '-i', base])
}, 120_000)

afterAll(async () => {
  await dockerd?.stop()
  if (work) fs.rmSync(work, {recursive: true, force: true})
})

const makeContext = (name: string, files: Record<string, string>): string => writeContext(work, name, files)

/** Unpack a docker-archive into a directory; returns the layer tar paths, bottom first. */
async function unpackArchive(archive: string, into: string): Promise<{layers: string[]; repoTags: string[]}> {
  fs.mkdirSync(into, {recursive: true})
  await run('tar', ['-xf', archive, '-C', into])
  const manifest = JSON.parse(fs.readFileSync(path.join(into, 'manifest.json'), 'utf8')) as {Layers: string[]; RepoTags: string[] | null}[]
  return {layers: manifest[0].Layers.map((l) => path.join(into, l)), repoTags: manifest[0].RepoTags ?? []}
}

async function layerEntries(layerTar: string): Promise<string[]> {
  const {stdout} = await run('tar', ['-tf', layerTar], {maxBuffer: 16 << 20})
  return stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.replace(/^\.\//, '').replace(/\/$/, ''))
    .sort()
}

async function fileInLayer(layerTar: string, file: string): Promise<string> {
  const {stdout} = await run('tar', ['-xOf', layerTar, file])
  return stdout
}

async function saveImage(name: string, into: string): Promise<{layers: string[]; repoTags: string[]}> {
  const archive = `${into}.tar`
  await dockerd.docker(['save', '-o', archive, name])
  return unpackArchive(archive, into)
}

describe('build with dockerd\'s embedded BuildKit', () => {
  it('reaches the Control API through POST /grpc: ListWorkers works, Info is UNIMPLEMENTED on v0.8', async () => {
    const client = await BuildkitClient.connect({kind: 'docker', docker: parseDockerHost(dockerd.host)})
    try {
      const workers = await client.listWorkers()
      expect(workers.map((w) => w.ID)).toEqual(['moby'])
      expect(workers[0].platforms.map((p) => `${p.OS}/${p.Architecture}`)).toContain('linux/amd64')
      expect(await client.info()).toBeUndefined()
    } finally {
      await client.close()
    }
  }, 180_000)

  it('builds FROM scratch, honours .dockerignore like docker build, and streams the image as a docker-archive', async () => {
    const ctx = makeContext('ignore-ctx', {
      Dockerfile: 'FROM scratch\nCOPY . /ctx/\n',
      '.dockerignore': [
        '# comment line',
        '*.log',
        '!keep.log',
        'build/',
        '**/node_modules',
        'docs/**/*.md',
        '!docs/important/*.md',
        'secret?.txt',
        '/rootonly',
        'tmp*',
        '!tmp/wanted',
      ].join('\n'),
      'a.log': 'a',
      'keep.log': 'k',
      'x/y.log': 'nested log is not matched by *.log',
      'build/out.bin': 'o',
      'src/node_modules/m.js': 'm',
      'node_modules/top.js': 't',
      'src/index.js': 'i',
      'docs/a.md': 'a',
      'docs/sub/b.md': 'b',
      'docs/important/c.md': 'c',
      'docs/readme.txt': 'r',
      'secret1.txt': 's',
      'secret10.txt': 's',
      rootonly: 'r',
      'sub/rootonly': 'r',
      'tmp/unwanted': 'u',
      'tmp/wanted': 'w',
      tmpfile: 't',
    })
    fs.symlinkSync('src/index.js', path.join(ctx, 'link-to-index'))
    fs.linkSync(path.join(ctx, 'src/index.js'), path.join(ctx, 'hardlink.js'))
    fs.chmodSync(path.join(ctx, 'src/index.js'), 0o751)
    fs.utimesSync(path.join(ctx, 'keep.log'), new Date('2020-01-02T03:04:05Z'), new Date('2020-01-02T03:04:05Z'))

    const result = await build({context: ctx, tags: ['sltest/scratch:1', 'sltest/scratch:latest'], builder: {kind: 'docker', dockerHost: dockerd.host}})
    expect(result.location).toMatchObject({kind: 'dockerd', names: ['sltest/scratch:1', 'sltest/scratch:latest']})
    expect(result.digest).toMatch(/^sha256:[0-9a-f]{64}$/)

    // The image streamed back through the Engine API, as the push path will read it.
    const archive = path.join(work, 'scratch-stream.tar')
    await pipeline(await result.openImageStream(), fs.createWriteStream(archive))
    const ours = await unpackArchive(archive, path.join(work, 'scratch-stream'))
    expect(ours.repoTags.sort()).toEqual(['sltest/scratch:1', 'sltest/scratch:latest'])
    expect(ours.layers).toHaveLength(1)
    const ourEntries = await layerEntries(ours.layers[0])

    // What docker build itself sends for the same context (the docker CLI applies .dockerignore).
    await dockerd.docker(['build', '-q', '-t', 'sltest/scratch-docker:1', ctx], {env: {DOCKER_BUILDKIT: '0'}})
    const theirs = await saveImage('sltest/scratch-docker:1', path.join(work, 'scratch-docker'))
    const theirEntries = await layerEntries(theirs.layers[theirs.layers.length - 1])
    expect(ourEntries).toEqual(theirEntries)
    expect(ourEntries).toContain('ctx/keep.log')
    expect(ourEntries).toContain('ctx/tmp/wanted')
    expect(ourEntries).not.toContain('ctx/a.log')
    expect(ourEntries).not.toContain('ctx/src/node_modules/m.js')

    // File kinds survived the trip: mode bits, mtime, symlink, hard link.
    const {stdout: listing} = await run('tar', ['--utc', '-tvf', ours.layers[0]])
    expect(listing).toMatch(/-rwxr-x--x .* ctx\/hardlink\.js/)
    expect(listing).toMatch(/2020-01-02 03:04 ctx\/keep\.log/)
    expect(listing).toMatch(/ctx\/link-to-index -> src\/index\.js/)
    expect(listing).toMatch(/ctx\/(hardlink\.js link to ctx\/src\/index\.js|src\/index\.js link to ctx\/hardlink\.js)/)
  }, 180_000)

  it('matches docker build on tricky .dockerignore patterns', async () => {
    const ctx = makeContext('ignore-tricky', {
      Dockerfile: 'FROM scratch\nCOPY . /ctx/\n',
      '.dockerignore': [
        '**/*.tmp',
        '!**/important.tmp',
        'dir/**',
        '!dir/sub/ok.txt',
        '[a-c].txt',
        '*/nested',
        './dotslash',
        'deep/**/x?.bin',
        'spaced name.txt',
        '',
        '   ',
      ].join('\n'),
      'a.tmp': '1',
      'q/b.tmp': '1',
      'q/r/important.tmp': '1',
      'dir/one': '1',
      'dir/sub/ok.txt': '1',
      'dir/sub/no.txt': '1',
      'a.txt': '1',
      'd.txt': '1',
      'p/nested/f': '1',
      'p/q/nested': '1',
      nested: '1',
      dotslash: '1',
      'deep/x1.bin': '1',
      'deep/m/n/x2.bin': '1',
      'deep/m/n/xx2.bin': '1',
      'spaced name.txt': '1',
      'ünïcode.txt': '1',
    })
    const ours = await build({context: ctx, tags: ['sltest/tricky:1'], builder: {kind: 'docker', dockerHost: dockerd.host}})
    const archive = path.join(work, 'tricky.tar')
    await pipeline(await ours.openImageStream(), fs.createWriteStream(archive))
    const ourLayers = await unpackArchive(archive, path.join(work, 'tricky'))
    await dockerd.docker(['build', '-q', '-t', 'sltest/tricky-docker:1', ctx], {env: {DOCKER_BUILDKIT: '0'}})
    const theirs = await saveImage('sltest/tricky-docker:1', path.join(work, 'tricky-docker'))
    const ourEntries = await layerEntries(ourLayers.layers[0])
    expect(ourEntries).toEqual(await layerEntries(theirs.layers[0]))
    expect(ourEntries).toContain('ctx/q/r/important.tmp')
    expect(ourEntries).toContain('ctx/ünïcode.txt')
    for (const gone of ['a.tmp', 'q/b.tmp', 'dir/one', 'dir/sub/no.txt', 'a.txt', 'p/nested', 'dotslash', 'deep/x1.bin', 'deep/m/n/x2.bin', 'spaced name.txt']) {
      expect(ourEntries).not.toContain(`ctx/${gone}`)
    }
    for (const kept of ['d.txt', 'dir/sub/ok.txt', 'p/q/nested', 'nested', 'deep/m/n/xx2.bin']) expect(ourEntries).toContain(`ctx/${kept}`)
  }, 180_000)

  it('matches docker build on a whitelist-style .dockerignore (* then ! exceptions)', async () => {
    const ctx = makeContext('ignore-whitelist', {
      Dockerfile: 'FROM scratch\nCOPY . /ctx/\n',
      '.dockerignore': '*\n!src\n!package.json\nsrc/**/*.test.js\n!Dockerfile\n',
      'package.json': '{}',
      'package-lock.json': '{}',
      'README.md': 'r',
      'src/a.js': 'a',
      'src/a.test.js': 't',
      'src/lib/b.js': 'b',
      'src/lib/b.test.js': 't',
      'test/x.js': 'x',
    })
    const ours = await build({context: ctx, tags: ['sltest/whitelist:1'], builder: {kind: 'docker', dockerHost: dockerd.host}})
    const archive = path.join(work, 'whitelist.tar')
    await pipeline(await ours.openImageStream(), fs.createWriteStream(archive))
    const ourEntries = await layerEntries((await unpackArchive(archive, path.join(work, 'whitelist'))).layers[0])
    await dockerd.docker(['build', '-q', '-t', 'sltest/whitelist-docker:1', ctx], {env: {DOCKER_BUILDKIT: '0'}})
    const theirs = await saveImage('sltest/whitelist-docker:1', path.join(work, 'whitelist-docker'))
    expect(ourEntries).toEqual(await layerEntries(theirs.layers[0]))
    expect(ourEntries).toEqual(['ctx', 'ctx/Dockerfile', 'ctx/package.json', 'ctx/src', 'ctx/src/a.js', 'ctx/src/lib', 'ctx/src/lib/b.js'])
  }, 180_000)

  it('passes --platform and --label to the frontend', async () => {
    const ctx = makeContext('platform-ctx', {Dockerfile: 'FROM scratch\nCOPY Dockerfile /\n'})
    await build({
      context: ctx,
      tags: ['sltest/platform:1'],
      platforms: ['linux/386'],
      labels: {'org.example.team': 'builders'},
      builder: {kind: 'docker', dockerHost: dockerd.host},
    })
    const {stdout} = await dockerd.docker(['image', 'inspect', '-f', '{{.Os}}/{{.Architecture}} {{index .Config.Labels "org.example.team"}}', 'sltest/platform:1'])
    expect(stdout.trim()).toBe('linux/386 builders')
  }, 180_000)

  it('uploads a large context intact (backpressure, parallel file reads)', async () => {
    const ctx = makeContext('big-ctx', {Dockerfile: 'FROM scratch\nCOPY . /ctx/\n'})
    const big = crypto.randomBytes(24 * 1024 * 1024)
    fs.writeFileSync(path.join(ctx, 'big.bin'), big)
    for (let i = 0; i < 1500; i++) fs.writeFileSync(path.join(ctx, `f${String(i).padStart(4, '0')}.txt`), `file ${i}\n`)
    const result = await build({context: ctx, tags: ['sltest/big:1'], builder: {kind: 'docker', dockerHost: dockerd.host}})
    expect(result.fileSync.context.bytes).toBeGreaterThanOrEqual(big.length)
    const archive = path.join(work, 'big.tar')
    await pipeline(await result.openImageStream(), fs.createWriteStream(archive))
    const img = await unpackArchive(archive, path.join(work, 'big'))
    const {stdout} = await run('sh', ['-c', `tar -xOf '${img.layers[0]}' ctx/big.bin | sha256sum`])
    expect(stdout.split(' ')[0]).toBe(crypto.createHash('sha256').update(big).digest('hex'))
    expect(await fileInLayer(img.layers[0], 'ctx/f1499.txt')).toBe('file 1499\n')
    fs.rmSync(path.join(work, 'big'), {recursive: true, force: true})
    fs.rmSync(archive, {force: true})
  }, 180_000)

  it('builds FROM a local busybox with RUN steps, build args and a target stage; an unchanged rebuild uploads no file', async () => {
    const ctx = makeContext('run-ctx', {
      Dockerfile: [
        'FROM sltest/busybox:1 AS base',
        'ARG MSG=default',
        'COPY input.txt /input.txt',
        'RUN echo "msg=$MSG" > /msg && cat /input.txt >> /msg',
        'FROM base AS final',
        'RUN cp /msg /result',
        'FROM base AS other',
        'RUN echo other > /result',
        '',
      ].join('\n'),
      'input.txt': 'from the context\n',
    })
    const steps: string[] = []
    const opts = {
      context: ctx,
      tags: ['sltest/run:1'],
      buildArgs: {MSG: 'hello'},
      target: 'final',
      builder: {kind: 'docker' as const, dockerHost: dockerd.host},
    }
    const first = await build({...opts, onStatus: (u) => steps.push(...u.vertexes.map((v) => v.name))})
    expect(first.location.kind).toBe('dockerd')
    expect(steps.some((s) => s.includes('RUN cp /msg /result'))).toBe(true)
    expect(steps.some((s) => s.includes('echo other'))).toBe(false)
    expect(first.fileSync.context.requests).toBeGreaterThan(0)

    const img = await saveImage('sltest/run:1', path.join(work, 'run-img'))
    expect(await fileInLayer(img.layers[img.layers.length - 1], 'result')).toBe('msg=hello\nfrom the context\n')

    // What the push path reads: the image as a source of blobs, config digest = dockerd's image ID.
    const source = await first.openImageSource()
    try {
      const resolved = await resolveImage(source)
      expect(resolved.config.digest).toBe(first.digest)
      expect(resolved.layers).toHaveLength(img.layers.length)
      expect(source.names).toContain('docker.io/sltest/run:1')
    } finally {
      await source.close()
    }

    const again = await build(opts)
    expect(again.fileSync.context).toMatchObject({requests: 0, dataPackets: 0})
    expect(again.fileSync.dockerfile).toMatchObject({requests: 0, dataPackets: 0})
    expect(again.steps.filter((s) => s.name.includes('RUN')).every((s) => s.cached)).toBe(true)

    // Changing one file uploads just that file.
    fs.writeFileSync(path.join(ctx, 'input.txt'), 'changed\n')
    const changed = await build(opts)
    expect(changed.fileSync.context.requests).toBe(1)
    const img2 = await saveImage('sltest/run:1', path.join(work, 'run-img2'))
    expect(await fileInLayer(img2.layers[img2.layers.length - 1], 'result')).toBe('msg=hello\nchanged\n')
  }, 180_000)

  it('runs RUN steps on the bridge by default and without network with --network none', async () => {
    const ctx = makeContext('network-ctx', {Dockerfile: 'FROM sltest/busybox:1\nRUN cat /proc/net/dev > /netdev\n'})
    const interfaces = async (network: 'default' | 'none'): Promise<string[]> => {
      await build({context: ctx, tags: [`sltest/net-${network}:1`], network, builder: {kind: 'docker', dockerHost: dockerd.host}})
      const img = await saveImage(`sltest/net-${network}:1`, path.join(work, `net-${network}`))
      const netdev = await fileInLayer(img.layers[img.layers.length - 1], 'netdev')
      return netdev
        .split('\n')
        .slice(2)
        .map((l) => l.split(':')[0].trim())
        .filter((l) => l !== '')
        .sort()
    }
    expect(await interfaces('none')).toEqual(['lo'])
    expect(await interfaces('default')).toEqual(['eth0', 'lo'])
  }, 180_000)

  it('--output oci:FILE from dockerd: an OCI layout that containerd imports', async () => {
    const ctx = makeContext('oci-ctx', {Dockerfile: 'FROM sltest/busybox:1\nRUN echo oci > /oci.txt\n'})
    const out = path.join(work, 'image-oci.tar')
    const result = await build({context: ctx, tags: ['sltest/oci:1'], output: {type: 'oci', path: out}, builder: {kind: 'docker', dockerHost: dockerd.host}})
    expect(result.location).toEqual({kind: 'archive', format: 'oci', path: out, names: ['sltest/oci:1']})
    const dir = path.join(work, 'image-oci')
    fs.mkdirSync(dir)
    await run('tar', ['-xf', out, '-C', dir])
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'oci-layout'), 'utf8'))).toEqual({imageLayoutVersion: '1.0.0'})
    const index = JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8')) as {manifests: {annotations?: Record<string, string>}[]}
    expect(index.manifests[0].annotations?.['io.containerd.image.name']).toBe('docker.io/sltest/oci:1')
    await expect(result.openImageStream()).rejects.toThrow(/not a docker-archive/)
    const source = await result.openImageSource()
    try {
      expect(source.format).toBe('oci')
      expect((await resolveImage(source)).layers.length).toBe(2)
    } finally {
      await source.close()
    }

    // dockerd's own containerd (a real containerd 1.6) takes it with ctr.
    const ctr = ['--address', path.join(dockerd.dir, 'exec', 'containerd', 'containerd.sock'), '-n', 'sl-oci-check']
    await run('ctr', [...ctr, 'images', 'import', out])
    const {stdout} = await run('ctr', [...ctr, 'images', 'check'])
    expect(stdout).toMatch(/docker\.io\/sltest\/oci:1 .*complete/)
  }, 180_000)

  it('cancels the build in the daemon on abort (and on Ctrl-C in the CLI)', async () => {
    const sleeping = async (seconds: number): Promise<boolean> => {
      const {stdout} = await run('ps', ['-eo', 'args'])
      return stdout.split('\n').some((l) => l.trim() === `sleep ${seconds}`)
    }
    const waitFor = async (cond: () => Promise<boolean>, ms: number): Promise<boolean> => {
      const until = Date.now() + ms
      while (Date.now() < until) {
        if (await cond()) return true
        await new Promise((r) => setTimeout(r, 200))
      }
      return false
    }
    const ctx = makeContext('cancel-ctx', {Dockerfile: 'FROM sltest/busybox:1\nRUN sleep 171\n'})
    const abort = new AbortController()
    const building = build({context: ctx, tags: ['sltest/cancel:1'], signal: abort.signal, builder: {kind: 'docker', dockerHost: dockerd.host}})
    const outcome = building.then(
      () => 'finished',
      (e: Error) => e.name,
    )
    expect(await waitFor(() => sleeping(171), 30_000)).toBe(true)
    const abortedAt = Date.now()
    abort.abort()
    expect(await outcome).toBe('BuildCancelledError')
    expect(Date.now() - abortedAt).toBeLessThan(10_000)
    expect(await waitFor(async () => !(await sleeping(171)), 15_000)).toBe(true)

    const cliCtx = makeContext('cancel-cli-ctx', {Dockerfile: 'FROM sltest/busybox:1\nRUN sleep 172\n'})
    const child = execFile(process.execPath, [BIN, 'build', cliCtx, '-t', 'sltest/cancel:2', '--builder', 'docker', '--progress', 'plain'], {
      env: {...process.env, DOCKER_HOST: dockerd.host},
    })
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
    expect(await waitFor(() => sleeping(172), 30_000)).toBe(true)
    child.kill('SIGINT')
    expect(await exited).toBe(130)
    expect(await waitFor(async () => !(await sleeping(172)), 15_000)).toBe(true)
  }, 180_000)

  it('reports a failing RUN with its log and Dockerfile line', async () => {
    const ctx = makeContext('fail-ctx', {
      Dockerfile: 'FROM sltest/busybox:1\nRUN echo preparing\nRUN echo boom-output-123 && exit 3\n',
    })
    const err = await build({context: ctx, tags: ['sltest/fail:1'], builder: {kind: 'docker', dockerHost: dockerd.host}}).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(BuildFailedError)
    const failure = err as BuildFailedError
    expect(failure.message).toMatch(/exit code: 3|exit status 3/)
    expect(failure.step?.name).toContain('boom-output-123')
    expect(failure.step?.logs.join('\n')).toContain('boom-output-123')
    expect(failure.source?.lines).toEqual([3])
    expect(failure.source?.text[0]).toContain('RUN echo boom-output-123')
  }, 180_000)

  it('sideload build: plain progress, non-zero exit with the step log on failure', async () => {
    const ok = makeContext('cli-ok', {Dockerfile: 'FROM sltest/busybox:1\nRUN echo cli-step-log\n'})
    const env = {...process.env, DOCKER_HOST: dockerd.host}
    const {stdout, stderr} = await run(process.execPath, [BIN, 'build', ok, '-t', 'sltest/cli:1', '--builder', 'docker', '--progress', 'plain'], {env})
    expect(stderr).toMatch(/#\d+ .*RUN echo cli-step-log/)
    expect(stderr).toMatch(/#\d+ [\d.]* ?cli-step-log/)
    expect(stderr).toMatch(/#\d+ DONE/)
    expect(stdout).toContain('Built sltest/cli:1')

    const again = await run(process.execPath, [BIN, 'build', ok, '-t', 'sltest/cli:1', '--builder', 'docker', '--progress', 'plain'], {env})
    expect(again.stderr).toMatch(/#\d+ CACHED/)

    const tty = await run(process.execPath, [BIN, 'build', ok, '-t', 'sltest/cli:1', '--builder', 'docker', '--progress', 'tty'], {env})
    expect(tty.stderr).toMatch(/\[\+\] Building [\d.]+s \(\d+\/\d+\) FINISHED/)
    expect(tty.stderr).toMatch(/ => CACHED \[2\/2\] RUN echo cli-step-log/)

    const json = await run(process.execPath, [BIN, 'build', ok, '-t', 'sltest/cli:1', '--builder', 'docker', '--progress', 'json'], {env})
    const events = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as {event: string; name?: string; cached?: boolean; location?: {kind: string}})
    expect(events.some((e) => e.event === 'build.step' && e.name === '[2/2] RUN echo cli-step-log' && e.cached)).toBe(true)
    expect(events[events.length - 1]).toMatchObject({event: 'build.done', location: {kind: 'dockerd'}})

    // No --builder: DOCKER_HOST picks dockerd; a Dockerfile outside the context; a build arg from the environment.
    const elsewhere = makeContext('cli-dockerfile-elsewhere', {'Custom.dockerfile': 'FROM sltest/busybox:1\nARG FROM_ENV\nCOPY data.txt /data.txt\nRUN echo "$FROM_ENV" >> /data.txt\n'})
    const dataCtx = makeContext('cli-data-ctx', {'data.txt': 'data\n'})
    const autoEnv: NodeJS.ProcessEnv = {...env, FROM_ENV: 'env-value'}
    delete autoEnv.BUILDKIT_HOST
    const auto = await run(
      process.execPath,
      [BIN, 'build', dataCtx, '-f', path.join(elsewhere, 'Custom.dockerfile'), '-t', 'sltest/cli-auto:1', '--build-arg', 'FROM_ENV', '--progress', 'plain'],
      {env: autoEnv},
    )
    expect(auto.stdout).toContain(`in dockerd at ${dockerd.host}`)
    const autoImg = await saveImage('sltest/cli-auto:1', path.join(work, 'cli-auto'))
    expect(await fileInLayer(autoImg.layers[autoImg.layers.length - 1], 'data.txt')).toBe('data\nenv-value\n')

    const help = await run(process.execPath, [BIN, 'build', '--help'])
    expect(help.stdout).toContain('--build-arg')
    expect(help.stdout).toContain('EXAMPLES')

    const bad = makeContext('cli-bad', {Dockerfile: 'FROM sltest/busybox:1\nRUN echo cli-fail-log && false\n'})
    const failed = await run(process.execPath, [BIN, 'build', bad, '-t', 'sltest/cli:2', '--builder', 'docker', '--progress', 'plain'], {env}).then(
      () => undefined,
      (e: {code: number; stderr: string}) => e,
    )
    expect(failed?.code).toBe(1)
    expect(failed?.stderr).toContain('cli-fail-log')
    expect(failed?.stderr).toMatch(/Dockerfile:2/)
    expect(failed?.stderr).toContain('>>> RUN echo cli-fail-log && false')
  }, 180_000)

  it('serves health checks, secrets, and the session over Control.Session too; tar and docker archives as outputs', async () => {
    const ctx = makeContext('session-ctx', {
      Dockerfile: [
        'FROM sltest/busybox:1',
        'RUN --mount=type=secret,id=token cat /run/secrets/token > /token-copy',
        'RUN sleep 3',
        '',
      ].join('\n'),
    })
    const secretFile = path.join(work, 'token.txt')
    fs.writeFileSync(secretFile, 'sekrit-value')
    const archive = path.join(work, 'session-docker.tar')
    const result = await build({
      context: ctx,
      tags: ['sltest/session:1'],
      secrets: {token: {file: secretFile}},
      builder: {kind: 'docker', dockerHost: dockerd.host},
      dockerSessionTransport: 'control',
      output: {type: 'docker', path: archive},
    })
    expect(result.location).toEqual({kind: 'archive', format: 'docker', path: archive, names: ['sltest/session:1']})
    // BuildKit v0.8 checks the session's health every second while the build runs.
    expect(result.healthChecks).toBeGreaterThanOrEqual(2)
    const img = await unpackArchive(archive, path.join(work, 'session-docker'))
    expect(img.repoTags).toEqual(['sltest/session:1'])
    const withToken = img.layers[img.layers.length - 2]
    expect(await fileInLayer(withToken, 'token-copy')).toBe('sekrit-value')

    // The `tar` exporter sends the root filesystem back over FileSend.
    const fsTar = path.join(work, 'rootfs.tar')
    const tarResult = await build({
      context: ctx,
      tags: [],
      secrets: {token: {file: secretFile}},
      builder: {kind: 'docker', dockerHost: dockerd.host},
      output: {type: 'tar', path: fsTar},
    })
    expect(tarResult.location).toMatchObject({kind: 'archive', format: 'tar', path: fsTar})
    const entries = await layerEntries(fsTar)
    expect(entries).toContain('bin/busybox')
    expect(await fileInLayer(fsTar, 'token-copy')).toBe('sekrit-value')
  }, 180_000)

  it('fails with a hint when a secret is missing or the daemon is unreachable', async () => {
    const ctx = makeContext('nosecret-ctx', {Dockerfile: 'FROM sltest/busybox:1\nRUN --mount=type=secret,id=absent,required cat /run/secrets/absent\n'})
    await expect(build({context: ctx, tags: ['sltest/nosecret:1'], builder: {kind: 'docker', dockerHost: dockerd.host}})).rejects.toThrow(/absent/)
    await expect(
      build({context: ctx, tags: ['x:1'], builder: {kind: 'docker', dockerHost: `unix://${path.join(work, 'no-such.sock')}`}}),
    ).rejects.toThrow(/Is dockerd running/)
    await expect(build({context: ctx, tags: ['x:1'], builder: {kind: 'buildkitd', address: `unix://${path.join(work, 'no-such.sock')}`}})).rejects.toThrow(
      /BuildKit daemon at unix:.*Is buildkitd running/,
    )
  }, 180_000)
})
