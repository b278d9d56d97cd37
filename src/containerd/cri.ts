import * as grpc from '@grpc/grpc-js'
import {loadProtos, lookup} from '../grpc/load.js'
import {CONTAINERD_CHANNEL_OPTIONS, type ContainerdClient, normalizeAddress} from './client.js'
import {ContainerdError, describeError} from './errors.js'
import type {ImageServiceClient} from '../grpc/generated/runtime/v1/ImageService.js'
import type {RuntimeServiceClient} from '../grpc/generated/runtime/v1/RuntimeService.js'

/** An image as the kubelet's runtime (containerd's CRI plugin) reports it. */
export interface CriImage {
  /** The config digest (what `crictl images` shows as IMAGE ID). */
  id: string
  repoTags: string[]
  repoDigests: string[]
  size: number
  pinned: boolean
}

type ServiceCtor<C> = new (address: string, creds: grpc.ChannelCredentials, options: grpc.ClientOptions) => C

/**
 * The CRI services on a containerd socket: what the kubelet would see. The CRI plugin
 * normalises names itself (`app:1` → docker.io/library/app:1).
 */
export class CriClient {
  private readonly client: ImageServiceClient
  private readonly runtime: RuntimeServiceClient
  private readonly sharedChannel: boolean
  /** `channel`: share a ContainerdClient's channel (the CRI plugin serves on containerd's socket). */
  constructor(
    address: string,
    readonly displayName = address,
    channel?: grpc.Channel,
  ) {
    this.sharedChannel = channel !== undefined
    const pkg = loadProtos(['containerd/cri/runtime/v1/api.proto'])
    const options = channel ? {...CONTAINERD_CHANNEL_OPTIONS, channelOverride: channel} : CONTAINERD_CHANNEL_OPTIONS
    this.client = new (lookup<ServiceCtor<ImageServiceClient>>(pkg, 'runtime.v1.ImageService'))(normalizeAddress(address), grpc.credentials.createInsecure(), options)
    this.runtime = new (lookup<ServiceCtor<RuntimeServiceClient>>(pkg, 'runtime.v1.RuntimeService'))(normalizeAddress(address), grpc.credentials.createInsecure(), {
      ...CONTAINERD_CHANNEL_OPTIONS,
      channelOverride: this.client.getChannel(),
    })
  }

  close(): void {
    if (this.sharedChannel) return // the channel's owner closes it
    this.client.close()
    this.runtime.close()
  }

  /**
   * The snapshotter named in the CRI plugin's verbose status config: `containerd.snapshotter`
   * on containerd 1.6/1.7; undefined on 2.x, whose status no longer shows the image settings.
   */
  async configuredSnapshotter(): Promise<string | undefined> {
    return snapshotterFromConfig(await this.statusConfig())
  }

  /** The sandbox (pause) image named in the verbose status config: `sandboxImage` on 1.6/1.7; undefined on 2.x (its images plugin keeps it). */
  async configuredSandboxImage(): Promise<string | undefined> {
    let config: unknown
    try {
      config = JSON.parse((await this.statusConfig()) ?? '')
    } catch {
      return undefined
    }
    const image = (config as {sandboxImage?: unknown} | null)?.sandboxImage
    return typeof image === 'string' && image ? image : undefined
  }

  /** The CRI plugin's configuration as its verbose status shows it (JSON). */
  private statusConfig(): Promise<string | undefined> {
    return new Promise((resolve, reject) => {
      this.runtime.Status({verbose: true}, (err, res) => {
        if (err || !res) return reject(describeError(err ?? new Error('no reply'), 'cri.Status', this.displayName))
        resolve(res.info.config)
      })
    })
  }

  /** Mount points of the CRI's image filesystems (ImageFsInfo): the root of the snapshotter images are unpacked into. */
  imageFilesystems(): Promise<string[]> {
    return new Promise((resolve, reject) => {
      this.client.ImageFsInfo({}, (err, res) => {
        if (err || !res) return reject(describeError(err ?? new Error('no reply'), 'cri.ImageFsInfo', this.displayName))
        resolve(res.image_filesystems.map((f) => f.fs_id?.mountpoint ?? '').filter(Boolean))
      })
    })
  }

  /**
   * Ask the CRI to pull `reference` (`repo@sha256:…`) the way the kubelet would: through the
   * registry host config of the node's containerd (hosts.toml: its mirrors, e.g. Spegel, first),
   * unpacked for the CRI's snapshotter. Resolves with the image ID (config digest) it reports.
   */
  pullImage(reference: string, options: CriPullOptions): Promise<string> {
    return new Promise((resolve, reject) => {
      if (options.signal?.aborted) return reject(options.signal.reason)
      const onAbort = (): void => call.cancel()
      const call = this.client.PullImage({image: {image: reference}}, {deadline: Date.now() + options.timeoutMs}, (err, res) => {
        options.signal?.removeEventListener('abort', onAbort)
        if (err?.code === grpc.status.DEADLINE_EXCEEDED) {
          return reject(new ContainerdError(`containerd cri.PullImage on ${this.displayName} did not finish within ${Math.round(options.timeoutMs / 1000)} s`, err.code, 'cri.PullImage', err.details))
        }
        if (err || !res) return reject(describeError(err ?? new Error('no reply'), 'cri.PullImage', this.displayName))
        resolve(res.image_ref)
      })
      options.signal?.addEventListener('abort', onAbort, {once: true})
    })
  }

  /** The image as CRI resolves `name`, or undefined when CRI does not know it. */
  imageStatus(name: string): Promise<CriImage | undefined> {
    return new Promise((resolve, reject) => {
      this.client.ImageStatus({image: {image: name}, verbose: false}, (err, res) => {
        if (err || !res) return reject(describeError(err ?? new Error('no reply'), 'cri.ImageStatus', this.displayName))
        const image = res.image
        resolve(image && image.id ? {id: image.id, repoTags: image.repo_tags, repoDigests: image.repo_digests, size: Number(image.size), pinned: image.pinned} : undefined)
      })
    })
  }
}

export interface CriPullOptions {
  /** Give up after this long (the CRI keeps pulling while bytes arrive; this bounds a stalled mirror too). */
  timeoutMs: number
  signal?: AbortSignal
}

/** Why the CRI snapshotter could not be told; carries the hint (`--snapshotter`). */
export class SnapshotterUnknownError extends Error {
  readonly hint = 'pass --snapshotter NAME (or set snapshotter for this node in the config file) to say which snapshotter the kubelet\'s containerd uses'
}

/**
 * The snapshotter the node's CRI plugin unpacks images into, found the way the kubelet sees it:
 * the CRI's image filesystem (ImageFsInfo) is that snapshotter's root directory, which the
 * snapshotter plugin exports (Introspection.Plugins) — the same on containerd 1.6, 1.7 and 2.x.
 * Where that does not match, containerd 1.6/1.7 still name it in the CRI config. Never a guess.
 */
export async function criSnapshotter(client: ContainerdClient, cri: CriClient): Promise<string> {
  const [mounts, roots] = await Promise.all([cri.imageFilesystems(), client.snapshotterRoots()])
  for (const m of mounts) {
    const id = roots.get(m)
    if (id) return id
  }
  const configured = await cri.configuredSnapshotter()
  if (configured) return configured
  throw new SnapshotterUnknownError(
    `the CRI plugin on ${cri.displayName} did not tell its snapshotter (image filesystem ${mounts.join(', ') || 'not reported'} is no snapshotter's root, and its status config names none)`,
  )
}

/**
 * The snapshotter named in the CRI plugin's config JSON (containerd 1.6/1.7:
 * `containerd.snapshotter`); undefined when it names none (2.x).
 */
export function snapshotterFromConfig(json: string | undefined): string | undefined {
  let config: unknown
  try {
    config = JSON.parse(json ?? '')
  } catch {
    return undefined
  }
  const direct = (config as {containerd?: {snapshotter?: unknown}} | null)?.containerd?.snapshotter
  return typeof direct === 'string' && direct ? direct : undefined
}
