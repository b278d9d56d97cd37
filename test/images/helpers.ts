// What the test/images suites share: the CLI's --json result line of images/rm/prune, and a node's
// records as `ctr -n k8s.io images ls` shows them.
import type {Bed, BedNode} from '../bed/bed.js'

export interface ImageJson {
  name: string
  aliases: string[]
  digest: string
  sizeBytes: number
  pinned: boolean
  sideload: boolean
  pushedAt?: string
  source?: string
  pods?: string[]
}

export interface ResultLine {
  ok: boolean
  nodes?: Array<{node: string; images?: ImageJson[]; error?: string; hint?: string; reason?: string; removed?: Array<{name: string}>; kept?: Array<{name: string; why: string}>; freedBytes?: number; leases?: Array<{id: string}>}>
  rows?: Array<{node: string; image: string; status: string; error?: string; hint?: string; reason?: string}>
  freed?: Array<{node: string; bytes: number}>
}

export function resultLine(stdout: string): ResultLine {
  const line = stdout.trim().split('\n').reverse().find((l) => l.includes('"type":"result"'))
  if (!line) throw new Error(`no result line in:\n${stdout}`)
  return JSON.parse(line)
}

/** name → labels of every record on the node (ctr's LABELS column, read where its header puts it). */
export async function ctrRecords(bed: Bed, node: BedNode): Promise<Map<string, Record<string, string>>> {
  const [header, ...rows] = (await bed.ctr(node, ['images', 'ls'])).split('\n')
  const at = header.indexOf('LABELS')
  const out = new Map<string, Record<string, string>>()
  for (const row of rows.filter((r) => r.trim())) {
    const labels: Record<string, string> = {}
    for (const kv of row.slice(at).trim().split(',')) {
      const eq = kv.indexOf('=')
      if (eq > 0) labels[kv.slice(0, eq)] = kv.slice(eq + 1)
    }
    out.set(row.trim().split(/\s+/)[0], labels)
  }
  return out
}

export async function contentDigests(bed: Bed, node: BedNode): Promise<string[]> {
  return (await bed.ctr(node, ['content', 'ls', '-q'])).split('\n').map((l) => l.trim()).filter(Boolean)
}
