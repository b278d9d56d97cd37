import type {Duplex} from 'node:stream'
import {duplexChannel} from '../grpc/duplex-credentials.js'
import {BlobTransfer} from '../containerd/blob-transfer.js'
import {ContainerdClient, CriClient, criSnapshotter, DIGEST_LABEL, distributionSource, importImage, ImportCancelledError, ingestRef, LEASE_IMAGE_LABEL, type ImportResult, type LeftoverIngest, type LeftoverLease, nativeIngests, nativeLeftovers, SnapshotterUnknownError} from '../containerd/index.js'
import {parseReference, type Descriptor, type Digest, type ImageSource, type ResolvedImage} from '../image/index.js'
import type {CriConfig} from '../containerd/index.js'
import {SshError, type SshConnection} from '../ssh/index.js'
import {nodeCriConfig, noMirrorConfigured} from './detect.js'
import {mirrorsServe, registryMirrors, type Mirror} from './mirror.js'
import {inventory, type NodeImage} from './inventory.js'
import type {ImageNode, ImagesInUse, NodeFacts, NodeImportOptions, NodePullOptions, NodePullResult} from './node.js'
import {mapLimit} from '../util/async.js'

/**
 * A node reached through its containerd API: our gRPC client runs over SSH channels to the
 * node's socket (direct-streamlocal, or socat where sshd forbids it), one per HTTP/2 connection.
 */
export class NativeNode implements ImageNode {
  private config?: Promise<CriConfig | undefined>
  private mirrors?: Promise<Mirror[]>

  private constructor(
    readonly name: string,
    readonly facts: NodeFacts,
    private readonly client: ContainerdClient,
    private readonly address: string,
    private readonly conn: SshConnection,
  ) {}

  /**
   * `facts.platform` undefined: ask containerd (its plugins report the platform they run for).
   * `firstStream`: an already open stream to the socket (the caller's probe), used first.
   */
  static async open(name: string, conn: SshConnection, socket: string, facts: Omit<NodeFacts, 'mode' | 'socket' | 'platform'> & {platform?: NodeFacts['platform']}, firstStream?: Duplex): Promise<NativeNode> {
    // The first stream doubles as the probe: a missing socket or a permission problem is
    // reported here, clearly, instead of as an anonymous UNAVAILABLE from the gRPC client.
    let first: Duplex | undefined = firstStream ?? (await conn.openUnixSocket(socket))
    const {target, credentials} = await duplexChannel(async () => {
      const stream = first && !first.destroyed ? first : await conn.openUnixSocket(socket)
      first = undefined
      return stream
    }, () => conn.transportSocket())
    const client = new ContainerdClient(target, {namespace: 'k8s.io', displayName: `node ${name}`, credentials})
    const cri = facts.snapshotter ? undefined : new CriClient(target, `node ${name}`, client.channel())
    try {
      const [version, snapshotter, platform] = await Promise.all([
        client.version(),
        // The snapshotter the kubelet's containers use, as the CRI plugin shows it; never a guess.
        facts.snapshotter ?? nodeSnapshotter(name, client, cri!),
        facts.platform ?? client.platform(),
      ])
      if (!platform) {
        throw new SshError('command', `containerd did not report its platform`, {hint: 'pass --platform (e.g. linux/amd64)'})
      }
      return new NativeNode(name, {...facts, platform, snapshotter, containerdVersion: version.version, socket, mode: 'native'}, client, target, conn)
    } catch (err) {
      client.close()
      throw err
    } finally {
      first?.destroy()
      cri?.close()
    }
  }

  importImage(options: NodeImportOptions): Promise<ImportResult> {
    return importImage(this.client, {
      source: options.source,
      resolved: options.resolved,
      platform: options.resolved.platform,
      name: options.name,
      snapshotter: this.facts.snapshotter,
      pin: options.pin,
      provenance: options.provenance,
      replace: options.replace,
      unpack: options.unpack,
      onProgress: options.onProgress,
      signal: options.signal,
    })
  }

  /** Through the CRI on the same channel: the kubelet's own way to pull, with the node's mirrors. */
  readonly pullImage = async (options: NodePullOptions): Promise<NodePullResult> => {
    const have = await mapLimit(options.blobs, 8, (b) => this.client.contentInfo(b.digest))
    if (have.every((info) => info !== undefined)) return {pulled: false}
    // a containerd with no registry host config would go to the registry itself (or hang offline)
    const config = await this.criConfig()
    if (config && !config.registryConfigPath) throw noMirrorConfigured()
    const present = new Set(options.blobs.filter((_, i) => have[i]).map((b) => b.digest))
    const recordBefore = await this.client.imageGet(options.reference)
    const lease = options.writeFirst && (await this.writeResolveChain(options.reference, options.writeFirst, present, options))
    let pulled = false
    try {
      await options.ready?.()
      options.onPulling?.()
      const cri = new CriClient(this.address, `node ${this.name}`, this.client.channel())
      try {
        const imageId = await cri.pullImage(options.reference, {timeoutMs: options.timeoutMs, signal: options.signal})
        pulled = true
        // the record the pull wrote is sideload's (the import that follows labels it whole); one that was there before is not
        if (!recordBefore) await this.markPulledRecord(options.reference)
        return {pulled, imageId}
      } finally {
        cri.close()
      }
    } finally {
      // Pulled: the pull's record holds them now. Not: GC takes them before this returns, so the
      // direct push that follows finds them missing and sends them, rather than finding them
      // present and losing them to a GC that ran after it looked (an image record without its manifest).
      if (lease) await this.client.leaseDelete(lease, !pulled).catch(() => undefined)
    }
  }

  /**
   * The image's indexes and manifest, written before the pull under a lease of ours that lasts
   * until the pull has recorded them. containerd asks its mirror for the image's root twice (HEAD
   * to resolve, then GET) and, when it has the blob already, skips the GET (remotes.Fetch finds it
   * in the content store). Spegel v0.7.3 can answer the second request for one key within 5 s
   * "not found" while peers have it (p2p.ts says why); for the layers and config, each asked
   * once, it cannot. A few KB through the client's link instead of a 5 s wait.
   */
  private async writeResolveChain(reference: string, from: {source: ImageSource; image: ResolvedImage}, present: ReadonlySet<Digest>, options: {timeoutMs: number; signal?: AbortSignal; onSent?: (bytes: number) => void}): Promise<string | undefined> {
    const {image, source} = from
    const chain = [...image.indexes.map((step) => step.descriptor), image.manifest].filter((d) => !present.has(d.digest))
    if (chain.length === 0) return undefined
    const lease = await this.client.leaseCreate({expiresInMs: options.timeoutMs + 60_000, labels: {[LEASE_IMAGE_LABEL]: reference}})
    const transfer = new BlobTransfer(this.client, chain, {image, source, distributionSource: distributionSource(reference), lease, ingestRef, emit: () => undefined})
    const onAbort = (): void => transfer.fail(new ImportCancelledError(this.client.displayName))
    options.signal?.addEventListener('abort', onAbort, {once: true})
    try {
      if (options.signal?.aborted) onAbort()
      await transfer.run(chain.length)
      if (transfer.failure !== undefined) throw transfer.failure
      return lease
    } catch (err) {
      await mapLimit([...transfer.started], 8, (digest) => this.client.contentAbort(ingestRef(digest)).catch(() => undefined))
      await this.client.leaseDelete(lease, true).catch(() => undefined)
      throw err
    } finally {
      options.signal?.removeEventListener('abort', onAbort)
      options.onSent?.(transfer.sentBytes)
    }
  }

  /** The `repo@digest` record a pull sideload asked for wrote: marked as sideload's (labels.ts DIGEST_LABEL). */
  private async markPulledRecord(reference: string): Promise<void> {
    const record = await this.client.imageGet(reference)
    if (record) await this.client.imageUpdate({name: reference, target: record.target, labels: {[DIGEST_LABEL]: record.target.digest}}, [`labels.${DIGEST_LABEL}`])
  }

  readonly mirrorServes = async (reference: string): Promise<boolean | undefined> => {
    const configPath = (await this.criConfig())?.registryConfigPath
    if (!configPath) return undefined
    this.mirrors ??= registryMirrors(this.conn, configPath, parseReference(reference).domain)
    return mirrorsServe(this.conn, await this.mirrors, reference)
  }

  /** `containerd config dump`'s CRI part, read once. */
  private criConfig(): Promise<CriConfig | undefined> {
    this.config ??= nodeCriConfig(this.conn)
    return this.config
  }

  async listImages(): Promise<NodeImage[]> {
    const records = await this.client.imageList()
    const present = new Map<Digest, Promise<boolean>>()
    return inventory(records, {
      has: (digest) => {
        let p = present.get(digest)
        if (!p) {
          p = this.client.contentInfo(digest).then((info) => info !== undefined)
          present.set(digest, p)
        }
        return p
      },
      read: async (digest) => {
        const chunks: Buffer[] = []
        for await (const chunk of this.client.contentRead(digest)) chunks.push(chunk as Buffer)
        return Buffer.concat(chunks)
      },
    })
  }

  /**
   * Every container in k8s.io (the CRI's, its pod sandboxes, ctr's and nerdctl's) with its image,
   * and the CRI's sandbox image: 1.6/1.7 tell it in their CRI status; 2.x only in its config
   * (`containerd config dump`, as for the registry config above).
   */
  async imagesInUse(): Promise<ImagesInUse> {
    const cri = new CriClient(this.address, `node ${this.name}`, this.client.channel())
    try {
      const [containers, told] = await Promise.all([this.client.containerList(), cri.configuredSandboxImage().catch(() => undefined)])
      const sandboxImage = told ?? (await this.criConfig())?.sandboxImage
      return {sandboxImage, containers: containers.filter((c) => c.image)}
    } finally {
      cri.close()
    }
  }

  async removeImages(names: string[]): Promise<void> {
    // GC once, with the last one
    for (const [i, name] of names.entries()) await this.client.imageDelete(name, i === names.length - 1)
  }

  leftoverLeases(): Promise<LeftoverLease[]> {
    return nativeLeftovers(this.client)
  }

  leftoverIngests(): Promise<LeftoverIngest[]> {
    return nativeIngests(this.client)
  }

  async removeLeases(ids: string[]): Promise<void> {
    for (const [i, id] of ids.entries()) await this.client.leaseDelete(id, i === ids.length - 1)
  }

  async close(): Promise<void> {
    this.client.close()
  }
}

/** The node's CRI snapshotter; when the CRI cannot tell, an error that names the node and asks for --snapshotter. */
async function nodeSnapshotter(name: string, client: ContainerdClient, cri: CriClient): Promise<string> {
  try {
    return await criSnapshotter(client, cri)
  } catch (err) {
    const hint = err instanceof SnapshotterUnknownError ? err.hint : 'is the CRI plugin enabled in the node\'s containerd? Otherwise pass --snapshotter NAME'
    throw new SshError('command', `could not tell which snapshotter the kubelet uses: ${(err as Error).message}`, {hint})
  }
}
