import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import type {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {BuildkitClient, type BuilderChoice, type BuilderEndpoint, DEFAULT_BUILDKIT_HOST, describeBuilder} from '../buildkit/client.js'
import {BuildFailedError, locateStep} from '../buildkit/errors.js'
import type {FileSyncStats} from '../buildkit/filesync.js'
import type {BuildStep} from '../buildkit/progress.js'
import {BuildProgressModel} from '../buildkit/progress.js'
import type {ExporterSpec, SolveRequest, StatusResponse, WorkerRecord} from '../buildkit/protos.js'
import {BuildSession, type SecretSource, sharedKeyFor} from '../buildkit/session.js'
import {type ArchiveImage, readArchive} from '../image/archive.js'
import {resolveImage} from '../image/model.js'
import {writeOciArchive} from '../image/oci-writer.js'
import {normalizeImageName} from '../image/reference.js'
import {ContainerdClient, CriClient, criSnapshotter, DEFAULT_CONTAINERD_ADDRESS} from '../containerd/index.js'
import {DEFAULT_DOCKER_HOST, type DockerEndpoint, describeDockerEndpoint, dockerHost, parseDockerHost} from '../docker/endpoint.js'
import {saveDockerImages} from '../docker/images.js'
import {dialUpgrade} from '../grpc/hijack.js'

export type {SecretSource} from '../buildkit/session.js'
export type {BuilderChoice} from '../buildkit/client.js'
export {BuildCancelledError, BuildFailedError} from '../buildkit/errors.js'

/** Write the image as an archive file instead of leaving it in a daemon. */
export interface BuildOutput {
  /** `oci`: OCI layout tar; `docker`: docker-archive (`docker load` format); `tar`: the root filesystem. */
  type: 'oci' | 'docker' | 'tar'
  path: string
}

export interface BuildOptions {
  /** The build context directory. */
  context: string
  /** Path of the Dockerfile (default: <context>/Dockerfile). */
  dockerfile?: string
  /** Image names (`-t`); the first one is the main name. */
  tags: string[]
  buildArgs?: Record<string, string>
  labels?: Record<string, string>
  target?: string
  /** `linux/amd64`…; several make a multi-platform build (BuildKit daemon only). */
  platforms?: string[]
  noCache?: boolean
  /** Network for RUN steps: the builder's default, `none`, or `host` (needs the daemon to allow network.host). */
  network?: 'default' | 'none' | 'host'
  secrets?: Record<string, SecretSource>
  builder?: BuilderChoice
  output?: BuildOutput
  /** containerd namespace a shared-containerd BuildKit worker must use for a direct import. */
  namespace?: string
  /**
   * This machine's containerd (default unix:///run/containerd/containerd.sock): a BuildKit
   * containerd worker builds straight into it only when it is this very daemon (same UUID).
   */
  containerdAddress?: string
  /**
   * Base images: `always` pulls them from the registry every time, `missing` takes the builder's
   * local copy when it has one (BuildKit's prefer-local resolve mode). Default: the builder's own.
   */
  pull?: 'always' | 'missing'
  /** How the session reaches dockerd: its `/session` endpoint (default, like buildx) or Control.Session. */
  dockerSessionTransport?: 'session-endpoint' | 'control'
  /** Every progress update from the daemon (feed a ProgressRenderer). */
  onStatus?: (update: StatusResponse) => void
  /** Where archives go when the daemon streams the image back and no output was asked for. */
  workDir?: string
  /** Stops the build (the daemon cancels it); build() then rejects with BuildCancelledError. */
  signal?: AbortSignal
}

/** Where the built image ended up. */
export type ImageLocation =
  | {kind: 'dockerd'; dockerHost: string; names: string[]; imageId: string}
  | {kind: 'containerd'; buildkitAddress: string; containerdAddress: string; namespace: string; names: string[]}
  | {kind: 'archive'; format: BuildOutput['type']; path: string; names: string[]}

export interface BuildResult {
  location: ImageLocation
  /** `containerimage.digest` from the exporter (image ID / config digest for dockerd, manifest digest otherwise). */
  digest?: string
  exporterResponse: Record<string, string>
  builder: string
  worker?: WorkerRecord
  /** What the daemon pulled from the context, per local name. */
  fileSync: Record<string, FileSyncStats>
  /** Health checks the daemon made on the session. */
  healthChecks: number
  steps: BuildStep[]
  durationMs: number
  /**
   * The image as a docker-archive stream (what `docker load` and `ctr images import` read):
   * from dockerd (`docker save`) or from the archive written. Not available for images
   * BuildKit put straight into containerd, nor for `oci`/`tar` outputs.
   */
  openImageStream(): Promise<Readable>
  /**
   * The image as an image/ source (blobs readable by digest) for the push path: read from the
   * archive written, or from dockerd's `docker save` stream (spooled to a temp file). close() it.
   */
  openImageSource(): Promise<ArchiveImage>
}

const WORKER_EXECUTOR = 'org.mobyproject.buildkit.worker.executor'
const WORKER_NAMESPACE = 'org.mobyproject.buildkit.worker.containerd.namespace'
const WORKER_UUID = 'org.mobyproject.buildkit.worker.containerd.uuid'
const WORKER_SNAPSHOTTER = 'org.mobyproject.buildkit.worker.snapshotter'


/**
 * Where a BuildKit daemon for containerd namespace `namespace` listens, in nerdctl's order:
 * `/run/buildkit-<namespace>/`, `/run/buildkit-default/`, then `/run/buildkit/`.
 */
export function buildkitSocketCandidates(namespace: string): string[] {
  return [...new Set([`/run/buildkit-${namespace}/buildkitd.sock`, '/run/buildkit-default/buildkitd.sock', '/run/buildkit/buildkitd.sock'])]
}

/**
 * Which daemon a builder choice means here: $BUILDKIT_HOST, else the first BuildKit socket
 * present (nerdctl's places for `namespace`); `auto` then falls back to dockerd.
 */
export function resolveBuilder(choice: BuilderChoice | undefined, env = process.env, namespace = 'k8s.io', exists: (file: string) => boolean = fs.existsSync): BuilderEndpoint {
  const candidates = buildkitSocketCandidates(namespace)
  const found = candidates.find((p) => exists(p))
  if (choice?.kind === 'auto') {
    if (env.BUILDKIT_HOST || found) return resolveBuilder({kind: 'buildkitd'}, env, namespace, exists)
    if (env.DOCKER_HOST || exists(DEFAULT_DOCKER_HOST.slice('unix://'.length))) return resolveBuilder({kind: 'docker'}, env, namespace, exists)
    throw Object.assign(new Error(`no builder found: no BuildKit daemon at ${candidates.join(', ')} and no Docker daemon at ${DEFAULT_DOCKER_HOST}`),
      {hint: 'start buildkitd or dockerd, or set BUILDKIT_HOST / DOCKER_HOST'})
  }
  if (choice?.kind === 'docker') {
    return {kind: 'docker', docker: parseDockerHost(dockerHost(choice.dockerHost, env))}
  }
  return {kind: 'buildkitd', address: choice?.address || env.BUILDKIT_HOST || (found ? `unix://${found}` : DEFAULT_BUILDKIT_HOST)}
}

/** What sideload knows of the containerd it will read a built image from. */
export interface LocalContainerd {
  /** Introspection.Server UUID. */
  uuid: string
  /** The CRI snapshotter, when this containerd runs the CRI plugin (a node's). */
  snapshotter?: string
}

/**
 * Whether a worker writes images into *this* containerd's namespace `namespace`, as nerdctl
 * checks it: containerd executor, same namespace, same daemon (UUID), and — where the kubelet
 * runs here — the CRI's snapshotter. Without `local` (no containerd answers here) it never does.
 */
export function workerSharesContainerd(worker: WorkerRecord | undefined, namespace: string, local: LocalContainerd | undefined): boolean {
  if (worker?.Labels[WORKER_EXECUTOR] !== 'containerd' || worker.Labels[WORKER_NAMESPACE] !== namespace) return false
  if (!local || worker.Labels[WORKER_UUID] !== local.uuid) return false
  return !local.snapshotter || worker.Labels[WORKER_SNAPSHOTTER] === local.snapshotter
}

/** This machine's containerd UUID and CRI snapshotter; undefined when no containerd answers there. */
export async function inspectLocalContainerd(address: string): Promise<LocalContainerd | undefined> {
  const client = new ContainerdClient(address, {displayName: `the local containerd (${address})`})
  const cri = new CriClient(address, `the local containerd (${address})`, client.channel())
  try {
    const uuid = await client.serverUuid()
    const snapshotter = await criSnapshotter(client, cri).catch(() => undefined)
    return {uuid, snapshotter}
  } catch {
    return undefined
  } finally {
    client.close()
  }
}

/** The frontend attributes for the Dockerfile frontend (`dockerfile.v0`). */
export function frontendAttrs(opts: BuildOptions, dockerfileName: string): Record<string, string> {
  const attrs: Record<string, string> = {filename: dockerfileName}
  if (opts.pull) attrs['image-resolve-mode'] = opts.pull === 'always' ? 'pull' : 'local'
  if (opts.target) attrs.target = opts.target
  if (opts.platforms && opts.platforms.length > 0) attrs.platform = opts.platforms.join(',')
  if (opts.noCache) attrs['no-cache'] = ''
  if (opts.network && opts.network !== 'default') attrs['force-network-mode'] = opts.network
  for (const [k, v] of Object.entries(opts.buildArgs ?? {})) attrs[`build-arg:${k}`] = v
  for (const [k, v] of Object.entries(opts.labels ?? {})) attrs[`label:${k}`] = v
  return attrs
}

/**
 * The SolveRequest: the exporter goes both into `Exporters` (BuildKit ≥ v0.13) and into the
 * deprecated single-exporter fields (older daemons, dockerd 20.10), like buildctl does.
 */
export function solveRequest(
  ref: string,
  sessionId: string,
  attrs: Record<string, string>,
  exporter: ExporterSpec,
  entitlements: string[] = [],
): SolveRequest {
  return {
    Ref: ref,
    Session: sessionId,
    Frontend: 'dockerfile.v0',
    FrontendAttrs: attrs,
    ExporterDeprecated: exporter.Type,
    ExporterAttrsDeprecated: {...exporter.Attrs},
    Exporters: [exporter],
    Entitlements: entitlements,
  }
}

/**
 * Choose the exporter. dockerd 20.10's BuildKit only has `moby` (its own image store), `local`
 * and `tar`, so docker/oci archives from dockerd are made afterwards from `docker save`; a
 * standalone daemon writes `image` into a containerd it shares, else streams an archive back
 * over the session (FileSend).
 */
export function chooseExporter(
  builder: BuilderEndpoint,
  opts: Pick<BuildOptions, 'tags' | 'output' | 'platforms' | 'namespace'>,
  worker: WorkerRecord | undefined,
  local?: LocalContainerd,
): {exporter: ExporterSpec; streamed?: BuildOutput['type']} {
  const name = opts.tags.join(',')
  const named: Record<string, string> = name ? {name} : {}
  const multi = (opts.platforms?.length ?? 0) > 1
  if (builder.kind === 'docker') {
    if (opts.output?.type === 'tar') return {exporter: {Type: 'tar', Attrs: {}}, streamed: 'tar'}
    if (multi) throw new Error('a multi-platform build needs a BuildKit daemon (--builder buildkit); dockerd builds one platform.')
    return {exporter: {Type: 'moby', Attrs: named}}
  }
  if (opts.output) {
    return {exporter: {Type: opts.output.type, Attrs: opts.output.type === 'tar' ? {} : named}, streamed: opts.output.type}
  }
  if (workerSharesContainerd(worker, opts.namespace ?? 'k8s.io', local)) {
    if (!name) throw new Error('building into containerd needs an image name: pass -t NAME')
    // the names the kubelet looks up (app:1 → docker.io/library/app:1), as nerdctl writes them
    return {exporter: {Type: 'image', Attrs: {name: opts.tags.map(normalizeImageName).join(','), unpack: 'true'}}}
  }
  const type = multi ? 'oci' : 'docker'
  return {exporter: {Type: type, Attrs: named}, streamed: type}
}

/** Build an image from a Dockerfile with BuildKit and say where it is. */
export async function build(opts: BuildOptions): Promise<BuildResult> {
  const started = Date.now()
  const context = path.resolve(opts.context)
  const dockerfile = path.resolve(opts.dockerfile ?? path.join(context, 'Dockerfile'))
  for (const [what, p, dir] of [
    ['build context', context, true],
    ['Dockerfile', dockerfile, false],
  ] as const) {
    const st = await fs.promises.stat(p).catch(() => undefined)
    if (!st || st.isDirectory() !== dir) throw new Error(`${what} ${p} not found${dir ? ' (or not a directory)' : ''}`)
  }
  const endpoint = resolveBuilder(opts.builder, process.env, opts.namespace ?? 'k8s.io')
  const client = await BuildkitClient.connect(endpoint)
  let session: BuildSession | undefined
  let tempArchive: string | undefined
  const model = new BuildProgressModel()
  try {
    const workers = await client.listWorkers()
    const worker = workers[0]
    const local = endpoint.kind === 'buildkitd' && !opts.output && worker?.Labels[WORKER_EXECUTOR] === 'containerd'
      ? await inspectLocalContainerd(opts.containerdAddress ?? DEFAULT_CONTAINERD_ADDRESS)
      : undefined
    const {exporter, streamed} = chooseExporter(endpoint, opts, worker, local)

    let archivePath: string | undefined
    if (streamed) {
      archivePath = opts.output?.path
        ? path.resolve(opts.output.path)
        : path.join(opts.workDir ?? os.tmpdir(), `sideload-build-${crypto.randomBytes(6).toString('hex')}.tar`)
      if (!opts.output?.path) tempArchive = archivePath
    }
    const target = archivePath
    session = new BuildSession({
      dirs: {context, dockerfile: path.dirname(dockerfile)},
      sharedKey: sharedKeyFor(context),
      name: path.basename(context),
      secrets: opts.secrets,
      exportSink: target ? {open: () => fs.createWriteStream(target)} : undefined,
    })
    if (endpoint.kind === 'docker' && opts.dockerSessionTransport !== 'control') {
      session.attach(await dialUpgrade(endpoint.docker, '/session', session.headers()))
    } else {
      session.attach(client.openSession(session.headers()))
    }

    const ref = crypto.randomBytes(12).toString('hex')
    const status = client.status(ref, (update) => {
      model.apply(update)
      opts.onStatus?.(update)
    })
    const entitlements = opts.network === 'host' ? ['network.host'] : []
    const request = solveRequest(ref, session.id, frontendAttrs(opts, path.basename(dockerfile)), exporter, entitlements)
    let response
    try {
      response = await client.solve(request, opts.signal)
    } catch (err) {
      await Promise.race([status.done, delay(2000)])
      status.cancel()
      if (err instanceof BuildFailedError) {
        err.step = model.failedStep()
        if (!err.source && err.step) {
          const text = await fs.promises.readFile(dockerfile, 'utf8').catch(() => '')
          err.source = locateStep(text, path.relative(process.cwd(), dockerfile) || path.basename(dockerfile), err.step.name)
        }
        throw err
      }
      throw err
    }
    await session.exportsDone()
    if (archivePath && !fs.existsSync(archivePath)) {
      throw new Error(`the ${describeBuilder(endpoint)} finished without sending the ${streamed} archive back over the session (FileSend); is it older than BuildKit v0.8?`)
    }
    await Promise.race([status.done, delay(5000)])
    status.cancel()

    const exporterResponse = response.ExporterResponse
    const digest = exporterResponse['containerimage.digest']
    let location: ImageLocation
    if (endpoint.kind === 'docker' && !streamed) {
      const imageId = exporterResponse['containerimage.config.digest'] ?? digest ?? ''
      location = {kind: 'dockerd', dockerHost: describeDockerEndpoint(endpoint.docker), names: opts.tags, imageId}
      if (opts.output?.type === 'docker' || opts.output?.type === 'oci') {
        const archive = path.resolve(opts.output.path)
        const saved = await saveDockerImages(endpoint.docker, opts.tags.length > 0 ? opts.tags : [imageId])
        if (opts.output.type === 'docker') await pipeline(saved, fs.createWriteStream(archive))
        else await writeOciFromDockerArchive(saved, archive, opts.tags[0], opts.workDir)
        location = {kind: 'archive', format: opts.output.type, path: archive, names: opts.tags}
      }
    } else if (archivePath && streamed) {
      location = {kind: 'archive', format: streamed, path: archivePath, names: opts.tags}
    } else {
      location = {
        kind: 'containerd',
        buildkitAddress: endpoint.kind === 'buildkitd' ? endpoint.address : '',
        containerdAddress: opts.containerdAddress ?? DEFAULT_CONTAINERD_ADDRESS,
        namespace: opts.namespace ?? 'k8s.io',
        names: opts.tags.map(normalizeImageName),
      }
    }
    const dockerEndpoint = endpoint.kind === 'docker' ? endpoint.docker : undefined
    return {
      location,
      digest,
      exporterResponse,
      builder: describeBuilder(endpoint),
      worker,
      fileSync: session.fileSync,
      healthChecks: session.healthChecks,
      steps: [...model.steps.values()],
      durationMs: Date.now() - started,
      openImageStream: () => openImageStream(location, dockerEndpoint),
      openImageSource: () => openImageSource(location, dockerEndpoint, opts.workDir),
    }
  } catch (err) {
    // A half-written archive in our temp dir is useless; one the user named is left to them.
    if (tempArchive) await fs.promises.rm(tempArchive, {force: true})
    throw err
  } finally {
    session?.close()
    await client.close()
  }
}

async function openImageStream(location: ImageLocation, docker: DockerEndpoint | undefined): Promise<Readable> {
  if (location.kind === 'dockerd' && docker) {
    return saveDockerImages(docker, location.names.length > 0 ? location.names : [location.imageId])
  }
  if (location.kind === 'archive' && location.format === 'docker') return fs.createReadStream(location.path)
  if (location.kind === 'containerd') {
    throw new Error(`the image is in containerd namespace ${location.namespace} of the BuildKit host, not in an archive; read it from that containerd instead`)
  }
  throw new Error(`a ${location.kind === 'archive' ? location.format : location.kind} output is not a docker-archive; build with --output docker:FILE or without --output`)
}

async function openImageSource(location: ImageLocation, docker: DockerEndpoint | undefined, workDir: string | undefined): Promise<ArchiveImage> {
  const name = location.names[0]
  if (location.kind === 'archive' && (location.format === 'docker' || location.format === 'oci')) return readArchive(location.path, {name})
  if (location.kind === 'dockerd' && docker) {
    return readArchive(await saveDockerImages(docker, location.names.length > 0 ? location.names : [location.imageId]), {name, tmpDir: workDir})
  }
  return Promise.reject(
    new Error(
      location.kind === 'containerd'
        ? `the image is in containerd namespace ${location.namespace} of the BuildKit host; read it from that containerd instead`
        : 'a tar output is a root filesystem, not an image',
    ),
  )
}

/** Convert a docker-archive stream into an OCI layout tar at `out` (dockerd 20.10 cannot export OCI itself). */
async function writeOciFromDockerArchive(dockerArchive: Readable, out: string, name: string | undefined, workDir: string | undefined): Promise<void> {
  const source = await readArchive(dockerArchive, {name, tmpDir: workDir})
  try {
    const image = await resolveImage(source)
    const file = fs.createWriteStream(out)
    await writeOciArchive(file, source, image, {name})
  } finally {
    await source.close()
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref())
}
