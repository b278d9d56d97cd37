// What `images`, `rm` and `prune` share: every node (in parallel) opened once, its images listed,
// and, for a node named through the cluster, which pods on it use each image. A node that cannot
// be reached is a result of its own; the others still answer.
import type {V1Pod} from '@kubernetes/client-node'
import {rfc3339} from '../containerd/index.js'
import {imageRecordName, parseReference} from '../image/index.js'
import type {KubeClient} from '../kube/client.js'
import {openNode, type ImageNode, type ImagesInUse, type NodeImage, type NodeTarget, repositoryOf, usesImage} from '../nodes/index.js'
import {SshPool, type PoolOptions} from '../ssh/index.js'
import {type ErrorInfo, errorInfo} from '../ui/errors.js'
import {mapLimit} from '../util/async.js'

export interface NodeImagesOptions {
  nodes: NodeTarget[]
  /** The cluster the named nodes came from: the pods on those nodes are read from it. */
  kube?: {client: KubeClient; nodes: Set<string>}
  /** Nodes in parallel (default 4). */
  jobs?: number
  ssh?: PoolOptions
  pool?: SshPool
}

/** A node opened, with its images and (when known) the pods that use each. */
export interface NodeView {
  target: NodeTarget
  node: ImageNode
  images: NodeImage[]
  /**
   * `namespace/name` of the pods bound to this node (not finished) that use the image: by the image
   * ID their containers run, or by the name their spec gives (a pending pod's too); undefined when
   * the node was not named through the cluster.
   */
  usedBy(image: NodeImage): string[] | undefined
  /** Why the node itself needs the image (its CRI's sandbox image, a container's image), asked of the node; undefined: it does not. */
  neededByNode(image: NodeImage): Promise<string | undefined>
}

/** One node's answer: the work's result, or why the node could not be asked. */
export type NodeOutcome<R> = {node: string; result: R} | {node: string; error: ErrorInfo}

/** What each pod bound to the node (not finished) uses: the image IDs its containers report and the images its spec names, init and ephemeral containers too. */
async function podImages(client: KubeClient, node: string): Promise<{pod: string; imageIds: string[]; names: string[]}[]> {
  const {items} = await client.listPods({fieldSelector: `spec.nodeName=${node}`})
  return items.filter((p: V1Pod) => p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed').map((p) => ({
    pod: `${p.metadata?.namespace ?? ''}/${p.metadata?.name ?? ''}`,
    imageIds: [...(p.status?.containerStatuses ?? []), ...(p.status?.initContainerStatuses ?? []), ...(p.status?.ephemeralContainerStatuses ?? [])]
      .map((s) => s.imageID).filter((id): id is string => Boolean(id)),
    names: [...(p.spec?.containers ?? []), ...(p.spec?.initContainers ?? []), ...(p.spec?.ephemeralContainers ?? [])]
      .map((c) => c.image).filter((name): name is string => Boolean(name)),
  }))
}

/** Whether a reference a pod spec, a container or the CRI config gives (a name, `repo@digest`, an image ID) is this image. */
export function refersTo(reference: string, image: NodeImage): boolean {
  return imagesNamed(reference, [image]).length > 0 || (/@sha256:[a-f0-9]{64}$/.test(reference) && usesImage(reference, image))
}

/** Why the node needs `image` whoever pushed it: the CRI's sandbox image, or the image of containers on it. */
export function whyNodeNeeds(inUse: ImagesInUse, image: NodeImage): string | undefined {
  if (inUse.sandboxImage && refersTo(inUse.sandboxImage, image)) return 'it is the sandbox image the node\'s containerd starts every pod with'
  const containers = inUse.containers.filter((c) => refersTo(c.image, image)).map((c) => c.id.slice(0, 12))
  if (containers.length === 0) return undefined
  return `container${containers.length > 1 ? 's' : ''} ${containers.slice(0, 3).join(', ')}${containers.length > 3 ? ` and ${containers.length - 3} more` : ''} on the node use${containers.length > 1 ? '' : 's'} it (running or stopped)`
}

/** Run `work` on every node; a node that fails (unreachable, refused, an API error) is its own outcome. */
export async function forEachNode<R>(options: NodeImagesOptions, work: (view: NodeView) => Promise<R>): Promise<NodeOutcome<R>[]> {
  const pool = options.pool ?? new SshPool(options.ssh)
  try {
    return await mapLimit(options.nodes, options.jobs ?? 4, async (target): Promise<NodeOutcome<R>> => {
      let node: ImageNode | undefined
      try {
        if (target.unavailable) throw target.unavailable
        const kube = options.kube?.nodes.has(target.name) ? options.kube.client : undefined
        const [opened, pods] = await Promise.all([openNode(target, pool), kube ? podImages(kube, target.name) : undefined])
        node = opened
        const images = await node.listImages()
        const usedBy = (image: NodeImage): string[] | undefined =>
          pods?.filter((p) => p.imageIds.some((id) => usesImage(id, image)) || p.names.some((name) => refersTo(name, image))).map((p) => p.pod)
        let inUse: Promise<ImagesInUse> | undefined
        const neededByNode = async (image: NodeImage): Promise<string | undefined> => whyNodeNeeds(await (inUse ??= opened.imagesInUse()), image)
        return {node: target.name, result: await work({target, node, images, usedBy, neededByNode})}
      } catch (err) {
        return {node: target.name, error: errorInfo(err, target.name)}
      } finally {
        await node?.close().catch(() => undefined)
      }
    })
  } finally {
    if (!options.pool) await pool.closeAll()
  }
}

/**
 * The images an argument names: `app:1`, `docker.io/x/app@sha256:…` by name (or one of its
 * records); `sha256:<hex>` by digest or ID; with `repository`, a name without tag or digest names
 * every image of that repository (`images app`), else it means `app:latest` (as docker rmi has it).
 */
export function imagesNamed(arg: string, images: NodeImage[], repository = false): NodeImage[] {
  if (/^sha256:[a-f0-9]{64}$/.test(arg)) return images.filter((i) => i.digest === arg || i.ids.includes(arg as NodeImage['digest']) || i.aliases.includes(arg))
  const last = arg.slice(arg.lastIndexOf('/') + 1)
  if (repository && !/[:@]/.test(last)) {
    let repo: string
    try {
      repo = parseReference(arg).repository
    } catch {
      return []
    }
    return images.filter((i) => repositoryOf(i.name) === repo)
  }
  let name: string
  try {
    name = imageRecordName(arg)
  } catch {
    return []
  }
  return images.filter((i) => i.name === name || i.aliases.includes(name))
}

/** The image as a --json line shows it. */
export function imageJson(image: NodeImage, pods: string[] | undefined): object {
  return {
    name: image.name, aliases: image.aliases, digest: image.digest, sizeBytes: image.sizeBytes, pinned: image.pinned,
    sideload: image.ours, ...(image.origin ? {origin: image.origin} : {}), ...(image.pushedAt ? {pushedAt: rfc3339(image.pushedAt)} : {}),
    ...(image.source ? {source: image.source} : {}), ...(pods ? {pods} : {}),
  }
}
