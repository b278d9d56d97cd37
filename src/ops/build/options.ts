import type {Readable} from 'node:stream'
import type {BuilderChoice} from '../../buildkit/client.js'
import type {FileSyncStats} from '../../buildkit/filesync.js'
import type {BuildStep} from '../../buildkit/progress.js'
import type {StatusResponse, WorkerRecord} from '../../buildkit/protos.js'
import type {SecretSource} from '../../buildkit/session.js'
import type {ArchiveImage} from '../../image/archive.js'

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
  /** Why a standalone BuildKit with a containerd worker did not store the image in this machine's containerd (streamed back instead). */
  notStored?: string
}
