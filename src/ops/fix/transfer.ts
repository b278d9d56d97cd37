// Sending the images fix planned: is each in the source, which nodes are they for, and push()
// with the failures it cannot throw turned into results.
import {ContainerdError} from '../../containerd/index.js'
import type {KubeClient} from '../../kube/client.js'
import type {NodeTarget} from '../../nodes/index.js'
import {notInSourceHint, type SourceInventory} from '../../sources/index.js'
import type {SshPool} from '../../ssh/index.js'
import type {Reporter} from '../../ui/progress.js'
import {type NodeImageResult, push} from '../push.js'
import {targetsFor} from '../targets.js'
import type {FixOptions} from './options.js'
import type {Transfer} from './plan.js'
import {FixError, type FixDiagnosis, TRANSFER_CANCELLED} from './result.js'

/** Node targets for the nodes named in the transfers, from the API (address, platform) and the config. */
export async function nodeTargets(client: KubeClient, names: string[], opts: FixOptions): Promise<Map<string, NodeTarget>> {
  const nodes = await Promise.all(names.map((n) => client.getNode(n)))
  return new Map(targetsFor(nodes, opts.config ?? {defaults: {}, nodes: {}}, opts.access).targets.map((t) => [t.name, t]))
}

/** Drops transfers whose image the source lacks, turning them into diagnoses. */
export async function checkSource(transfers: Transfer[], inventory: SourceInventory): Promise<{ready: Transfer[]; missing: FixDiagnosis[]}> {
  const images = [...new Set(transfers.map((t) => t.image))]
  const missingImages = new Set<string>()
  for (const image of images) {
    let has: boolean
    try {
      has = await inventory.has(image)
    } catch (err) {
      if (err instanceof ContainerdError) throw err // names this machine's containerd and what to do
      throw new FixError(`cannot look for ${image} in the ${inventory.description}: ${(err as Error).message}. ` +
        'Hint: take the images from elsewhere with --source containerd|docker|DIR or --archive FILE (and --containerd-address for another containerd)')
    }
    if (!has) missingImages.add(image)
  }
  const missing: FixDiagnosis[] = []
  if (missingImages.size > 0) {
    const names = await inventory.names().catch(() => undefined)
    for (const image of missingImages) {
      const pods = transfers.filter((t) => t.image === image).flatMap((t) => t.containers.map((c) => `${c.namespace}/${c.pod}`))
      missing.push({kind: 'not-in-source', image, pods: [...new Set(pods)], hint: notInSourceHint(image, inventory, names)})
    }
  }
  return {ready: transfers.filter((t) => !missingImages.has(t.image)), missing}
}

/** push() one image to some nodes; a failure to open the source becomes a failed result per node. */
export async function pushOnce(opts: FixOptions, pool: SshPool, image: string, nodes: NodeTarget[]): Promise<NodeImageResult[]> {
  try {
    const r = await push({
      images: [image], source: opts.source, nodes, pool, platform: opts.platform, jobs: opts.jobs, pin: opts.pin, replace: opts.replace,
      unpack: opts.unpack, retries: opts.retries, p2p: opts.p2p, reporter: opts.reporter && keepOpen(opts.reporter), signal: opts.signal,
    })
    return r.results
  } catch (err) {
    const failed = opts.signal?.aborted ? {error: 'cancelled', reason: TRANSFER_CANCELLED} : {error: (err as Error).message}
    return nodes.map((n) => ({node: n.name, image, status: 'failed', sentBytes: 0, skippedBytes: 0, durationMs: 0, attempts: 0, ...failed}))
  }
}

/** push() closes its reporter when done; the caller's one lives on. */
function keepOpen(reporter: Reporter): Reporter {
  return {event: (e) => reporter.event(e), close: () => undefined}
}
