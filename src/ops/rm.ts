// `sideload rm`: remove image records from nodes (the pin goes with them; containerd's GC takes the
// content nothing else references), only sideload's unless told otherwise, never one the node or a
// pod bound to it needs (its sandbox image, a container's image, a pod's image), forced or not.
import {errorInfo, type ErrorInfo} from '../ui/errors.js'
import {freedBytes, recordsToRemove, type NodeImage} from '../nodes/index.js'
import {forEachNode, imagesNamed, type NodeImagesOptions, type NodeView} from './node-images.js'

export interface RemoveOptions extends NodeImagesOptions {
  images: string[]
  /** remove an image on a node whose pods cannot be checked (named by --host): the node's own containers are still checked */
  force?: boolean
  /** remove images sideload did not push too */
  any?: boolean
}

export type RemoveStatus = 'removed' | 'refused' | 'not present' | 'failed'

export interface RemoveRow {
  node: string
  /** the argument, or the image's name on the node */
  image: string
  status: RemoveStatus
  /** the records deleted (the name, and its `repo@digest` / `sha256:<id>` records nothing else shares) */
  records?: string[]
  error?: ErrorInfo
}

export interface RemoveResult {
  rows: RemoveRow[]
  /** per node that removed something: content freed (blobs no image left on the node references) */
  freed: {node: string; bytes: number}[]
  /** arguments no node has */
  nowhere: string[]
  ok: boolean
}

/** Why an image may not be removed (sideload's rules), or undefined. What the node or its pods need is never removed, --force or not. */
export async function refusal(view: NodeView, image: NodeImage, opts: {force?: boolean; any?: boolean}): Promise<ErrorInfo | undefined> {
  const subject = `${view.target.name} (${image.name})`
  if (!opts.any && !image.ours) {
    return {subject, message: `not sideload's to remove: ${image.origin ?? 'it has no sideload.dev/digest label'}`, hint: 'pass --any to remove it anyway', reason: 'not-sideloads'}
  }
  const needed = await view.neededByNode(image)
  if (needed) return {subject, message: `the node needs it: ${needed}`, hint: 'it stays, --force or not; remove what uses it first', reason: 'needed-by-node'}
  const pods = view.usedBy(image)
  if (pods && pods.length > 0) {
    return {subject, message: `in use by pod ${pods.join(', pod ')}`, hint: 'delete the pod or move it to another node first: a pod bound to the node cannot start without the image', reason: 'in-use'}
  }
  if (pods === undefined && !opts.force) {
    return {subject, message: 'cannot tell which pods use it: the node was named by --host, not through the Kubernetes API',
      hint: 'name it with --node (or --all-nodes, --pod) so its pods are checked, or pass --force (the node\'s own containers and sandbox image are still kept)', reason: 'pods-unknown'}
  }
  return undefined
}

export async function removeImages(options: RemoveOptions): Promise<RemoveResult> {
  const outcomes = await forEachNode(options, async (view) => {
    const rows: RemoveRow[] = []
    let freed: number | undefined
    const chosen: NodeImage[] = []
    for (const arg of options.images) {
      const found = imagesNamed(arg, view.images)
      if (found.length === 0) rows.push({node: view.target.name, image: arg, status: 'not present'})
      for (const image of found) {
        if (chosen.includes(image)) continue
        const no = await refusal(view, image, options)
        if (no) rows.push({node: view.target.name, image: image.name, status: 'refused', error: no})
        else chosen.push(image)
      }
    }
    if (chosen.length === 0) return {rows, freed}
    const records = recordsToRemove(chosen, view.images)
    try {
      await view.node.removeImages(records)
      freed = freedBytes(chosen, view.images)
      for (const image of chosen) rows.push({node: view.target.name, image: image.name, status: 'removed', records: records.filter((r) => r === image.name || image.aliases.includes(r))})
    } catch (err) {
      for (const image of chosen) rows.push({node: view.target.name, image: image.name, status: 'failed', error: errorInfo(err, view.target.name)})
    }
    return {rows, freed}
  })
  const rows = outcomes.flatMap((o) => ('error' in o ? [{node: o.node, image: options.images.join(' '), status: 'failed' as const, error: o.error}] : o.result.rows))
  const freed = outcomes.flatMap((o) => ('result' in o && o.result.freed !== undefined ? [{node: o.node, bytes: o.result.freed}] : []))
  const answered = outcomes.filter((o) => 'result' in o).length
  const nowhere = answered === 0 ? [] : options.images.filter((arg) => rows.filter((r) => r.image === arg).length === answered && rows.every((r) => r.image !== arg || r.status === 'not present'))
  return {rows, freed, nowhere, ok: nowhere.length === 0 && rows.every((r) => r.status === 'removed' || r.status === 'not present')}
}
