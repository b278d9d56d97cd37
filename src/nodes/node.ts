import type {ImportEvent, ImportResult, LeftoverIngest, LeftoverLease, Provenance} from '../containerd/index.js'
import type {Descriptor, ImageSource, Platform, ResolvedImage} from '../image/index.js'
import type {NodeImage} from './inventory.js'

/** How the image gets into the node's containerd. */
export type ImportMode = 'native' | 'ctr'

/** A node to push to: its name for humans, how to reach it over SSH, and what we know of it. */
export interface NodeTarget {
  /** Kubernetes node name, or the --host value as given. */
  name: string
  /** `[user@]host[:port]` or an ssh_config alias. */
  sshTarget: string
  /** A private key to try first for this node (config file `sshKey`). */
  sshKey?: string
  /** From the Kubernetes node (status.nodeInfo), when known; otherwise detected over SSH. */
  platform?: Platform
  /** containerd socket on the node; detected among the usual paths when absent. */
  containerdSocket?: string
  snapshotter?: string
  importMode?: 'auto' | ImportMode
  /** Why this node cannot be pushed to at all (e.g. a --node the cluster does not have): its result is this failure. */
  unavailable?: Error
}

/** What a node told us about itself when we connected. */
export interface NodeFacts {
  platform: Platform
  /** The socket used (native), or the one ctr talks to (fallback). */
  socket: string
  mode: ImportMode
  /** The CRI snapshotter (what kubelet's runtime unpacks into). */
  snapshotter?: string
  containerdVersion?: string
  /** The node's ctr as an argv prefix (fallback only; default `ctr` on the PATH): `/var/lib/rancher/rke2/bin/ctr`, `/usr/local/bin/k0s ctr`… */
  ctr?: string[]
  /** The node's ctr version (fallback only): 2.x imports through the transfer service unless told `--local`. */
  ctrVersion?: string
  /** The CRI's registry host config directory (fallback only: `ctr images pull --hosts-dir`), from `containerd config dump`. */
  registryConfigPath?: string
  /** The CRI's sandbox (pause) image (fallback only), from `containerd config dump`. */
  sandboxImage?: string
}

/** What the node's CRI itself uses: images that must stay whoever pushed them (rm, prune). */
export interface ImagesInUse {
  /** the pause image every new pod sandbox needs, as the CRI is configured; undefined when it could not be read */
  sandboxImage?: string
  /** every container (running, stopped, and pod sandboxes where listed) with its image: a name, `repo@digest` or the image ID */
  containers: {id: string; image: string}[]
}

export interface NodeImportOptions {
  source: ImageSource
  /** The image resolved for this node's platform. */
  resolved: ResolvedImage
  /** Fully-qualified name to record on the node. */
  name: string
  pin: boolean
  /** When and from where: labels that mark the record as sideload's. */
  provenance?: Provenance
  /** Overwrite (or adopt) a record of this name that is not sideload's (import.ts, record-owner.ts). */
  replace?: boolean
  unpack: boolean
  onProgress?: (event: ImportEvent) => void
  /** Stop cleanly: no image record is written, the transfer can resume later. */
  signal?: AbortSignal
}

export interface NodePullOptions {
  /** `repo@sha256:…`: the image's digest, under a name whose registry the node's mirrors serve */
  reference: string
  /** The image's blobs for the node's platform: nothing is pulled when the node has them all. */
  blobs: Descriptor[]
  timeoutMs: number
  signal?: AbortSignal
  /** called when the node lacks a blob and the pull is asked for */
  onPulling?: () => void
  /** when the node lacks a blob, awaited before the pull is asked (the node's mirror finds the image); a throw is the pull's error */
  ready?: () => Promise<void>
  /**
   * The image's own bytes: where the node can take them, its index and manifest (a few KB) are
   * written from here before the pull, so its mirror is asked for them once (see writeResolveChain).
   */
  writeFirst?: {source: ImageSource; image: ResolvedImage}
  /** told the bytes sideload itself sent the node (writeFirst), failed pulls included */
  onSent?: (bytes: number) => void
}

export interface NodePullResult {
  /** false: the node had every blob already, nothing was asked of its mirrors */
  pulled: boolean
  /** the CRI's image ID (config digest), when it pulled */
  imageId?: string
}

/**
 * The one seam the push path talks to (kind's nodes.Node): whatever reaches the node — the
 * containerd API over a forwarded socket, or `sudo ctr` over an SSH exec — looks the same.
 */
export interface ImageNode {
  readonly name: string
  readonly facts: NodeFacts
  importImage(options: NodeImportOptions): Promise<ImportResult>
  /**
   * Have the node's containerd pull the image itself, through its registry host config (its
   * mirrors: `--p2p spegel`); resolves with the image ID. Absent where the node cannot be asked.
   */
  readonly pullImage?: (options: NodePullOptions) => Promise<NodePullResult>
  /**
   * Ask the node's registry mirrors (its hosts.toml for the image's registry), from the node, whether
   * a peer serves `reference` (`repo:tag` or `repo@digest`) now; undefined when the node's registry
   * config cannot be read. Throws when no mirror is configured for the registry or it does not answer.
   */
  readonly mirrorServes?: (reference: string) => Promise<boolean | undefined>
  /** Every image in the node's k8s.io namespace (inventory.ts). */
  listImages(): Promise<NodeImage[]>
  /** The images the node's CRI uses: its sandbox image and every container's (rm and prune never remove them). */
  imagesInUse(): Promise<ImagesInUse>
  /** Delete these image records; containerd's GC then takes what nothing else references (synchronously). */
  removeImages(names: string[]): Promise<void>
  /** What interrupted pushes of sideload left: their leases. */
  leftoverLeases(): Promise<LeftoverLease[]>
  /** Partial blobs (ingests) in the node's k8s.io namespace: sideload's, and those of a `ctr images import` that ended without its lease. */
  leftoverIngests(): Promise<LeftoverIngest[]>
  /** Delete these leases; GC takes what they held (synchronously). */
  removeLeases(ids: string[]): Promise<void>
  close(): Promise<void>
}
