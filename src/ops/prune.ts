// `sideload prune`: per node, remove the images sideload pushed that no pod on the node uses,
// oldest first, keeping the newest N of each repository; and drop the leases interrupted pushes left.
import {type LeftoverLease} from '../containerd/index.js'
import {freedBytes, recordsToRemove, repositoryOf, type NodeImage} from '../nodes/index.js'
import {errorInfo, type ErrorInfo} from '../ui/errors.js'
import {forEachNode, type NodeImagesOptions} from './node-images.js'

/** How many images of each repository prune keeps on a node when not told (the newest). */
export const DEFAULT_KEEP = 2

export interface PruneOptions extends NodeImagesOptions {
  /** keep the newest N images sideload pushed, per repository (default DEFAULT_KEEP) */
  keep?: number
  /** only images pushed longer ago than this */
  olderThanMs?: number
  dryRun?: boolean
  /** prune nodes named by --host too, whose pods cannot be checked */
  force?: boolean
  now?: Date
}

export interface PrunedImage {
  name: string
  digest: string
  pushedAt: Date
  sizeBytes: number
}

export interface NodePrune {
  node: string
  /** removed (or, with dryRun, to be removed), oldest first */
  removed: PrunedImage[]
  /** images sideload pushed that stay, and why (`kept: newest 2 of its repository`, `in use by pod …`, `pushed 2h ago`) */
  kept: {name: string; why: string}[]
  /** content freed: blobs no image left on the node references */
  freedBytes: number
  /** leases of interrupted pushes dropped */
  leases: LeftoverLease[]
  error?: ErrorInfo
}

export interface PruneResult {
  nodes: NodePrune[]
  ok: boolean
}

export async function prune(options: PruneOptions): Promise<PruneResult> {
  const keep = options.keep ?? DEFAULT_KEEP
  const now = (options.now ?? new Date()).getTime()
  const outcomes = await forEachNode(options, async (view): Promise<NodePrune> => {
    const result: NodePrune = {node: view.target.name, removed: [], kept: [], freedBytes: 0, leases: []}
    const ours = view.images.filter((i): i is NodeImage & {pushedAt: Date} => i.ours && i.pushedAt !== undefined)
    if (!options.force && ours.length > 0 && view.usedBy(ours[0]) === undefined) {
      return {...result, error: {subject: view.target.name, reason: 'pods-unknown',
        message: 'cannot tell which pods use its images: the node was named by --host, not through the Kubernetes API',
        hint: 'name it with --node (or --all-nodes, --pod) so its pods are checked, or pass --force to prune it unchecked'}}
    }
    const byRepo = new Map<string, (NodeImage & {pushedAt: Date})[]>()
    for (const image of ours) byRepo.set(repositoryOf(image.name), [...(byRepo.get(repositoryOf(image.name)) ?? []), image])
    const remove: (NodeImage & {pushedAt: Date})[] = []
    for (const images of byRepo.values()) {
      images.sort((a, b) => b.pushedAt.getTime() - a.pushedAt.getTime())
      for (const [i, image] of images.entries()) {
        // what the node or a pod bound to it needs stays, --force or not
        const pods = view.usedBy(image) ?? []
        const needed = i < keep ? undefined : await view.neededByNode(image)
        if (i < keep) result.kept.push({name: image.name, why: `newest ${keep} of its repository`})
        else if (needed) result.kept.push({name: image.name, why: `the node needs it: ${needed}`})
        else if (pods.length > 0) result.kept.push({name: image.name, why: `in use by pod ${pods.join(', pod ')}`})
        else if (options.olderThanMs !== undefined && now - image.pushedAt.getTime() < options.olderThanMs) result.kept.push({name: image.name, why: 'pushed more recently than --older-than'})
        else remove.push(image)
      }
    }
    remove.sort((a, b) => a.pushedAt.getTime() - b.pushedAt.getTime())
    result.removed = remove.map((i) => ({name: i.name, digest: i.digest, pushedAt: i.pushedAt, sizeBytes: i.sizeBytes}))
    result.freedBytes = freedBytes(remove, view.images)
    result.leases = await view.node.leftoverLeases()
    if (options.dryRun) return result
    try {
      if (result.leases.length) await view.node.removeLeases(result.leases.map((l) => l.id))
      if (remove.length) await view.node.removeImages(recordsToRemove(remove, view.images))
    } catch (err) {
      return {...result, error: errorInfo(err, view.target.name)}
    }
    return result
  })
  const nodes = outcomes.map((o): NodePrune => ('error' in o ? {node: o.node, removed: [], kept: [], freedBytes: 0, leases: [], error: o.error} : o.result))
  return {nodes, ok: nodes.every((n) => !n.error)}
}
