// A block of the bench: three nodes on one containerd line and every push row measured on them,
// the images those rows push, and the constants the rows and their measurement share (bench.ts
// measures, rows.ts turns the samples into rows and the picture).
import type {Bed, BedNode, ContainerdLine} from '../bed/bed.js'
import type {CachedImage} from './images.js'
import type {Nodes, Samples} from './steps.js'

/** The "@1G" rows: the node's link shaped to this rate. */
export const SHAPED_MBIT = 1000
export const FIX_PODS = 20

/** Sizes (MB) of the new last layer in the re-push rows: 5 is the goal row's, 1 and 25 are for the plot. */
export const REPUSH_MB = [5, 1, 25] as const
export const GOAL_REPUSH_MB = 5

export interface Images {
  base: CachedImage
  /** The base with its last layer replaced by a new one of this many MB (every other layer the same). */
  repush: Map<number, CachedImage>
  big?: CachedImage
}

/** One kind of node: three nodes on one containerd line, and every push row measured on them. */
export interface Block {
  id: string
  line: ContainerdLine
  /** `2.3.7`, `1.6.20` */
  version: string
  bed: Bed
  /** The block's three nodes (the 2.x bed has six: the scaling block uses them all). */
  nodes: BedNode[]
  n: Nodes
  runs: number
  /** Rows left out of this block (--quick: the run stays under 2 minutes). */
  skip: {shaped: boolean; fix: boolean; noUnpack: boolean; manual: boolean; three: boolean}
  /** Also the re-pushes of a 1 and a 25 MB last layer (the plot's points; on one line only, to keep time). */
  plot: boolean
  /** Also the 1 GB image's peak RSS (the client's memory: on one line only, to keep time). */
  big: boolean
  s: Samples
  /** Why the manual baseline differs from the seed's commands here (no nerdctl works on these nodes). */
  manualNote?: string
}

/** The re-push sizes measured in this block: the goal row's, and the plot's on the plot's line. */
export function repushSizes(block: Block): number[] {
  return block.plot ? [...REPUSH_MB] : [GOAL_REPUSH_MB]
}
