import * as grpc from '@grpc/grpc-js'
import {loadProtos, lookup} from '../grpc/load.js'
import {CONTAINERD_CHANNEL_OPTIONS, normalizeAddress} from './client.js'
import {describeError} from './errors.js'

/** An image as the kubelet's runtime (containerd's CRI plugin) reports it. */
export interface CriImage {
  /** The config digest (what `crictl images` shows as IMAGE ID). */
  id: string
  repoTags: string[]
  repoDigests: string[]
  size: number
  pinned: boolean
}

type ProtoCriImage = {id: string; repo_tags: string[]; repo_digests: string[]; size: number; pinned: boolean}
type ServiceCtor = new (address: string, creds: grpc.ChannelCredentials, options: grpc.ClientOptions) => grpc.Client
type UnaryFn = (req: object, cb: (err: grpc.ServiceError | null, res: unknown) => void) => grpc.ClientUnaryCall

/**
 * The CRI services on a containerd socket: what the kubelet would see. The CRI plugin
 * normalises names itself (`app:1` → docker.io/library/app:1).
 */
export class CriClient {
  private readonly client: grpc.Client
  private readonly runtime: grpc.Client
  private readonly sharedChannel: boolean
  /** `channel`: share a ContainerdClient's channel (the CRI plugin serves on containerd's socket). */
  constructor(
    address: string,
    private readonly displayName = address,
    channel?: grpc.Channel,
  ) {
    this.sharedChannel = channel !== undefined
    const pkg = loadProtos(['containerd/cri/runtime/v1/api.proto'])
    const options = channel ? {...CONTAINERD_CHANNEL_OPTIONS, channelOverride: channel} : CONTAINERD_CHANNEL_OPTIONS
    this.client = new (lookup<ServiceCtor>(pkg, 'runtime.v1.ImageService'))(normalizeAddress(address), grpc.credentials.createInsecure(), options)
    this.runtime = new (lookup<ServiceCtor>(pkg, 'runtime.v1.RuntimeService'))(normalizeAddress(address), grpc.credentials.createInsecure(), {
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
   * The snapshotter the CRI plugin unpacks container images into (its `containerd.snapshotter`
   * setting, from the verbose runtime status), e.g. overlayfs; what importImage should unpack into.
   */
  snapshotter(): Promise<string> {
    const svc = this.runtime as unknown as Record<string, UnaryFn>
    return new Promise((resolve, reject) => {
      svc.Status.call(svc, {verbose: true}, (err, res) => {
        if (err) return reject(describeError(err, 'cri.Status', this.displayName))
        const info = (res as {info: Record<string, string>}).info
        const name = snapshotterFromConfig(info.config)
        if (name) return resolve(name)
        reject(new Error(`the CRI plugin on ${this.displayName} did not report its snapshotter (no containerd.snapshotter in its verbose status)`))
      })
    })
  }

  /** The image as CRI resolves `name`, or undefined when CRI does not know it. */
  imageStatus(name: string): Promise<CriImage | undefined> {
    const svc = this.client as unknown as Record<string, UnaryFn>
    return new Promise((resolve, reject) => {
      svc.ImageStatus.call(svc, {image: {image: name}, verbose: false}, (err, res) => {
        if (err) return reject(describeError(err, 'cri.ImageStatus', this.displayName))
        const image = (res as {image: ProtoCriImage | null}).image
        resolve(image && image.id ? {id: image.id, repoTags: image.repo_tags, repoDigests: image.repo_digests, size: Number(image.size), pinned: image.pinned} : undefined)
      })
    })
  }
}

/**
 * The snapshotter named in the CRI plugin's config JSON: `containerd.snapshotter` (1.6/1.7);
 * failing that (2.x moved image settings around), the first string field called `snapshotter`.
 */
export function snapshotterFromConfig(json: string | undefined): string | undefined {
  let config: unknown
  try {
    config = JSON.parse(json ?? '')
  } catch {
    return undefined
  }
  const direct = (config as {containerd?: {snapshotter?: unknown}} | null)?.containerd?.snapshotter
  if (typeof direct === 'string' && direct) return direct
  const queue: unknown[] = [config]
  while (queue.length) {
    const node = queue.shift()
    if (!node || typeof node !== 'object') continue
    for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
      if (key.toLowerCase() === 'snapshotter' && typeof value === 'string' && value) return value
      if (value && typeof value === 'object') queue.push(value)
    }
  }
  return undefined
}
