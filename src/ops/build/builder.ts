import * as fs from 'node:fs'
import {type BuilderChoice, type BuilderEndpoint, DEFAULT_BUILDKIT_HOST} from '../../buildkit/client.js'
import type {ExporterSpec, WorkerRecord} from '../../buildkit/protos.js'
import {ContainerdClient, CriClient, criSnapshotter} from '../../containerd/index.js'
import {DEFAULT_DOCKER_HOST, dockerHost, parseDockerHost} from '../../docker/endpoint.js'
import {normalizeImageName} from '../../image/reference.js'
import type {BuildOptions, BuildOutput} from './options.js'

export const WORKER_EXECUTOR = 'org.mobyproject.buildkit.worker.executor'
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
  return worker?.Labels[WORKER_EXECUTOR] === 'containerd' && workerMismatch(worker, namespace, local, '') === undefined
}

/**
 * Why a containerd worker does not write into namespace `namespace` of the containerd at `address`
 * (this machine's), in words; undefined when it does, or when the worker is no containerd worker.
 */
export function workerMismatch(worker: WorkerRecord | undefined, namespace: string, local: LocalContainerd | undefined, address: string): string | undefined {
  if (worker?.Labels[WORKER_EXECUTOR] !== 'containerd') return undefined
  const labels = worker.Labels
  if (!local) return `no containerd answers at ${address} on this machine`
  if (labels[WORKER_UUID] !== local.uuid) return `its containerd is another daemon than the one at ${address} (UUID ${labels[WORKER_UUID] ?? 'not given'}, here ${local.uuid})`
  if (labels[WORKER_NAMESPACE] !== namespace) return `it writes into containerd namespace ${labels[WORKER_NAMESPACE] ?? '(none)'}, not ${namespace}`
  if (local.snapshotter && labels[WORKER_SNAPSHOTTER] !== local.snapshotter) return `it unpacks for snapshotter ${labels[WORKER_SNAPSHOTTER] ?? '(none)'}, the kubelet here uses ${local.snapshotter}`
  return undefined
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
