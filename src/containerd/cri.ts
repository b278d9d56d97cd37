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
 * The CRI ImageService on a containerd socket: asks what the kubelet would see. The CRI
 * plugin normalises names itself (`app:1` → docker.io/library/app:1).
 */
export class CriImageClient {
  private readonly client: grpc.Client
  constructor(
    address: string,
    private readonly displayName = address,
  ) {
    const pkg = loadProtos(['containerd/cri/runtime/v1/images.proto'])
    this.client = new (lookup<ServiceCtor>(pkg, 'runtime.v1.ImageService'))(normalizeAddress(address), grpc.credentials.createInsecure(), CONTAINERD_CHANNEL_OPTIONS)
  }

  close(): void {
    this.client.close()
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
