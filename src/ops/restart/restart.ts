import type {NodeAccess, SideloadConfig} from '../../config/config.js'
import type {KubeClient} from '../../kube/client.js'
import {errorInfo} from '../../ui/errors.js'
import {type PushOptions, push} from '../push.js'
import {targetsFor} from '../targets.js'
import {recreateBarePod} from './bare-pod.js'
import {evictForOwner} from './evict.js'
import {leftAlone, leftAloneRow} from './left-alone.js'
import type {RestartOptions} from './options.js'
import {rollOut} from './owner.js'
import type {RestartReport, RestartRow, StalePod} from './result.js'
import {restartTarget, ROLLOUT_KINDS, stalePods} from './stale.js'

/**
 * Restarts the stale pods of the pushed nodes in opts.namespace (undefined: every namespace): each
 * owner rolled out once (after the image went to every node its pods run on), each bare pod
 * re-created on its node, each pod of another owner evicted for it to re-create; a Job's or static
 * pod left alone, said so. Waits until the new pods of owners rolled out and of bare pods run the
 * pushed digest (timeoutMs).
 */
export async function restartStalePods(opts: RestartOptions): Promise<RestartReport> {
  const {client} = opts
  const stale = await stalePods(client, opts.pushed, opts.namespace)
  const rows: RestartRow[] = []
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000)
  const holds = new Map<string, string>(opts.pushed.map((p) => [`${p.node}\u0000${p.image}`, p.digest]))

  for (const group of byRestartTarget(stale)) {
    if (opts.signal?.aborted) break
    const first = group[0]
    const base = {namespace: first.namespace, target: restartTarget(first), pods: group.map((s) => s.pod), image: first.image}
    const alone = leftAlone(first)
    try {
      if (alone) rows.push(leftAloneRow(group, alone))
      else if (!first.owner) rows.push(await recreateBarePod(opts, first, deadline))
      else if (ROLLOUT_KINDS.has(first.owner.kind)) rows.push(await rollOut(opts, group, holds, deadline))
      else for (const s of group) rows.push(await evictForOwner(opts, s))
    } catch (err) {
      rows.push({...base, action: 'failed', result: 'still running the old image', ok: false, error: errorInfo(err, `${first.namespace}/${base.target}`)})
    }
  }
  return {stale, rows, ok: rows.every((r) => r.ok)}
}

/** The stale pods by what restarts them (one owner, or one bare pod) and image, in the order found. */
function byRestartTarget(stale: StalePod[]): StalePod[][] {
  const groups = new Map<string, StalePod[]>()
  for (const s of stale) {
    const key = `${s.namespace}\u0000${restartTarget(s)}\u0000${s.image}`
    groups.set(key, [...(groups.get(key) ?? []), s])
  }
  return [...groups.values()]
}

/**
 * pushMore for push(): the same image from the same source to more cluster nodes (their targets from
 * the API and the config). An archive read from stdin cannot be read twice: those nodes fail.
 */
export function pushMoreWith(client: KubeClient, base: Omit<PushOptions, 'images' | 'nodes'>, config: SideloadConfig, access?: NodeAccess): NonNullable<RestartOptions['pushMore']> {
  return async (image, nodeNames) => {
    if (base.source.kind === 'archive' && base.source.path === '-') {
      return {pushed: [], failed: nodeNames.map((node) => ({node, error: {message: 'the archive came from stdin and cannot be read again'}}))}
    }
    const nodes = await Promise.all(nodeNames.map((n) => client.getNode(n)))
    const r = await push({...base, images: [image], nodes: targetsFor(nodes, config, access).targets})
    return {
      pushed: r.results.filter((x) => x.status !== 'failed' && x.digest).map((x) => ({node: x.node, image: x.image, digest: x.digest!})),
      failed: r.results.filter((x) => x.status === 'failed').map((x) => ({node: x.node, error: {message: x.error ?? 'failed', hint: x.hint}})),
    }
  }
}
