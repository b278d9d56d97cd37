import {ContainerdClient, CriClient, importImage, type ImportResult} from '../containerd/index.js'
import type {SshConnection} from '../ssh/index.js'
import type {ImageNode, NodeFacts, NodeImportOptions} from './node.js'

/**
 * A node reached through its containerd API: the node's socket is forwarded over SSH to a
 * private local socket and our gRPC client talks to it (protocols.md §B option 1).
 */
export class NativeNode implements ImageNode {
  private constructor(
    readonly name: string,
    readonly facts: NodeFacts,
    private readonly client: ContainerdClient,
  ) {}

  static async open(name: string, conn: SshConnection, socket: string, facts: Omit<NodeFacts, 'mode' | 'socket'>): Promise<NativeNode> {
    const local = await conn.forwardUnixSocket(socket)
    const client = new ContainerdClient(`unix://${local}`, {namespace: 'k8s.io', displayName: `node ${name}`})
    let containerdVersion: string | undefined
    try {
      containerdVersion = (await client.version()).version
    } catch (err) {
      client.close()
      throw err
    }
    let snapshotter = facts.snapshotter
    if (!snapshotter) {
      const cri = new CriClient(`unix://${local}`, `node ${name}`)
      // The CRI plugin knows the snapshotter the kubelet's containers use; without CRI
      // (a plain containerd) overlayfs is containerd's default.
      snapshotter = await cri.snapshotter().catch(() => 'overlayfs')
      cri.close()
    }
    return new NativeNode(name, {...facts, snapshotter, containerdVersion, socket, mode: 'native'}, client)
  }

  importImage(options: NodeImportOptions): Promise<ImportResult> {
    return importImage(this.client, {
      source: options.source,
      resolved: options.resolved,
      platform: options.resolved.platform,
      name: options.name,
      snapshotter: this.facts.snapshotter,
      pin: options.pin,
      unpack: options.unpack,
      onProgress: options.onProgress,
      signal: options.signal,
    })
  }

  async close(): Promise<void> {
    this.client.close()
  }
}
