import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {BuildkitClient, type BuilderEndpoint, describeBuilder} from '../../buildkit/client.js'
import {BuildFailedError, locateStep} from '../../buildkit/errors.js'
import {BuildProgressModel} from '../../buildkit/progress.js'
import type {ExporterSpec, SolveResponse, WorkerRecord} from '../../buildkit/protos.js'
import {BuildSession, sharedKeyFor} from '../../buildkit/session.js'
import {DEFAULT_CONTAINERD_ADDRESS} from '../../containerd/index.js'
import {dialUpgrade} from '../../grpc/hijack.js'
import {chooseExporter, inspectLocalContainerd, resolveBuilder, WORKER_EXECUTOR, workerMismatch} from './builder.js'
import {locateImage, openImageSource, openImageStream} from './image.js'
import type {BuildOptions, BuildOutput, BuildResult} from './options.js'
import {frontendAttrs, solveRequest} from './request.js'
import {createTemporaryArchive, removeTemporaryArchive, temporaryArchivePath} from './temp-archive.js'

/** Build an image from a Dockerfile with BuildKit and say where it is. */
export async function build(opts: BuildOptions): Promise<BuildResult> {
  const started = Date.now()
  const context = path.resolve(opts.context)
  const dockerfile = path.resolve(opts.dockerfile ?? path.join(context, 'Dockerfile'))
  await checkInputs(context, dockerfile)
  const endpoint = resolveBuilder(opts.builder, process.env, opts.namespace ?? 'k8s.io')
  const client = await BuildkitClient.connect(endpoint)
  let session: BuildSession | undefined
  let tempArchive: string | undefined
  const model = new BuildProgressModel()
  try {
    const {worker, exporter, streamed, notStored} = await planExport(client, endpoint, opts)
    const archivePath = streamed ? await archivePathFor(opts) : undefined
    if (archivePath && !opts.output?.path) tempArchive = archivePath
    const temporary = tempArchive
    session = new BuildSession({
      dirs: {context, dockerfile: path.dirname(dockerfile)},
      sharedKey: sharedKeyFor(context),
      name: path.basename(context),
      secrets: opts.secrets,
      exportSink: archivePath ? {open: () => (temporary ? createTemporaryArchive(archivePath) : fs.createWriteStream(archivePath))} : undefined,
    })
    await attachSession(session, client, endpoint, opts)

    const {response, status} = await solve(client, session, model, opts, dockerfile, exporter)
    await session.exportsDone()
    if (archivePath && !fs.existsSync(archivePath)) {
      throw new Error(`the ${describeBuilder(endpoint)} finished without sending the ${streamed} archive back over the session (FileSend); is it older than BuildKit v0.8?`)
    }
    await Promise.race([status.done, delay(5000)])
    status.cancel()

    const exporterResponse = response.ExporterResponse
    const location = await locateImage(endpoint, opts, exporterResponse, streamed, archivePath)
    const dockerEndpoint = endpoint.kind === 'docker' ? endpoint.docker : undefined
    return {
      location,
      digest: exporterResponse['containerimage.digest'],
      exporterResponse,
      builder: describeBuilder(endpoint),
      worker,
      fileSync: session.fileSync,
      healthChecks: session.healthChecks,
      steps: [...model.steps.values()],
      durationMs: Date.now() - started,
      openImageStream: () => openImageStream(location, dockerEndpoint),
      openImageSource: () => openImageSource(location, dockerEndpoint, opts.workDir),
      ...(notStored ? {notStored} : {}),
    }
  } catch (err) {
    // A half-written archive in our temp dir is useless; one the user named is left to them.
    if (tempArchive) await removeTemporaryArchive(tempArchive)
    throw err
  } finally {
    session?.close()
    await client.close()
  }
}

/** The build context must be a directory and the Dockerfile a file; each error says what to pass instead. */
async function checkInputs(context: string, dockerfile: string): Promise<void> {
  const stat = (p: string): Promise<fs.Stats | undefined> => fs.promises.stat(p).catch(() => undefined)
  const ctx = await stat(context)
  if (!ctx || !ctx.isDirectory()) {
    throw Object.assign(new Error(`build context ${context} ${ctx ? 'is not a directory' : 'not found'}`), {
      hint: 'give the directory to build from as the argument (e.g. `sideload build . -t app:1`); the Dockerfile is found in it unless -f FILE says otherwise'})
  }
  const file = await stat(dockerfile)
  if (!file || file.isDirectory()) {
    throw Object.assign(new Error(`Dockerfile ${dockerfile} ${file ? 'is a directory' : 'not found'}`), {
      hint: `name the Dockerfile with -f FILE (a path from the current directory), or add one to ${context}`})
  }
}

/** The daemon's worker and the exporter for it (into the containerd it shares with this machine, or streamed back). */
async function planExport(client: BuildkitClient, endpoint: BuilderEndpoint, opts: BuildOptions): Promise<{worker: WorkerRecord | undefined; exporter: ExporterSpec; streamed?: BuildOutput['type']; notStored?: string}> {
  const workers = await client.listWorkers()
  const worker = workers[0]
  const asked = endpoint.kind === 'buildkitd' && !opts.output && worker?.Labels[WORKER_EXECUTOR] === 'containerd'
  const address = opts.containerdAddress ?? DEFAULT_CONTAINERD_ADDRESS
  const local = asked ? await inspectLocalContainerd(address) : undefined
  const chosen = chooseExporter(endpoint, opts, worker, local)
  const namespace = opts.namespace ?? 'k8s.io'
  const mismatch = asked && chosen.streamed ? workerMismatch(worker, namespace, local, address) : undefined
  return {worker, ...chosen, ...(mismatch ? {notStored: `BuildKit's containerd worker is not this machine's containerd in namespace ${namespace}: ${mismatch}; the image came back as an archive instead`} : {})}
}

/** Where a streamed archive goes: the output asked for, else a temporary file in a private directory under workDir. */
async function archivePathFor(opts: BuildOptions): Promise<string> {
  return opts.output?.path ? path.resolve(opts.output.path) : temporaryArchivePath(opts.workDir ?? os.tmpdir())
}

/** The session reaches dockerd through its `/session` endpoint (like buildx) unless Control.Session is asked for. */
async function attachSession(session: BuildSession, client: BuildkitClient, endpoint: BuilderEndpoint, opts: BuildOptions): Promise<void> {
  if (endpoint.kind === 'docker' && opts.dockerSessionTransport !== 'control') {
    session.attach(await dialUpgrade(endpoint.docker, '/session', session.headers()))
  } else {
    session.attach(client.openSession(session.headers()))
  }
}

/**
 * Runs the solve with its progress followed; a failed build says which step failed and where it
 * is in the Dockerfile. The status stream is left open for the caller to drain.
 */
async function solve(client: BuildkitClient, session: BuildSession, model: BuildProgressModel, opts: BuildOptions, dockerfile: string, exporter: ExporterSpec): Promise<{response: SolveResponse; status: ReturnType<BuildkitClient['status']>}> {
  const ref = crypto.randomBytes(12).toString('hex')
  const status = client.status(ref, (update) => {
    model.apply(update)
    opts.onStatus?.(update)
  })
  const entitlements = opts.network === 'host' ? ['network.host'] : []
  const request = solveRequest(ref, session.id, frontendAttrs(opts, path.basename(dockerfile)), exporter, entitlements)
  try {
    return {response: await client.solve(request, opts.signal), status}
  } catch (err) {
    await Promise.race([status.done, delay(2000)])
    status.cancel()
    if (err instanceof BuildFailedError) {
      err.step = model.failedStep()
      if (!err.source && err.step) {
        const text = await fs.promises.readFile(dockerfile, 'utf8').catch(() => '')
        err.source = locateStep(text, path.relative(process.cwd(), dockerfile) || path.basename(dockerfile), err.step.name)
      }
    }
    throw err
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref())
}
