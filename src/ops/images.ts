// `sideload images`: what each node holds, what of it sideload pushed and when, which pods use it.
import type {NodeImage} from '../nodes/index.js'
import type {ErrorInfo} from '../ui/errors.js'
import {forEachNode, imagesNamed, type NodeImagesOptions} from './node-images.js'

export interface ImagesOptions extends NodeImagesOptions {
  /** Only these images (a name without tag: every tag of that repository); default every image. */
  images?: string[]
}

export interface NodeImageRow {
  image: NodeImage
  /** `namespace/name` of the pods on the node that use it; undefined when the node was not named through the cluster */
  pods?: string[]
}

export interface NodeImages {
  node: string
  images?: NodeImageRow[]
  error?: ErrorInfo
}

export interface ImagesResult {
  nodes: NodeImages[]
  ok: boolean
}

export async function listNodeImages(options: ImagesOptions): Promise<ImagesResult> {
  const outcomes = await forEachNode(options, async ({images, usedBy}) => {
    const wanted = options.images?.length ? images.filter((i) => options.images!.some((arg) => imagesNamed(arg, [i], true).length > 0)) : images
    return wanted.sort((a, b) => a.name.localeCompare(b.name)).map((image) => ({image, pods: usedBy(image)}))
  })
  const nodes = outcomes.map((o): NodeImages => ('error' in o ? {node: o.node, error: o.error} : {node: o.node, images: o.result}))
  return {nodes, ok: nodes.every((n) => !n.error)}
}
