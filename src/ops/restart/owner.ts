import type {V1Pod} from '@kubernetes/client-node'
import {type KubeClient, type RolloutKind} from '../../kube/client.js'
import type {ErrorInfo} from '../../ui/errors.js'
import {sleep} from '../../util/async.js'
import type {RestartOptions} from './options.js'
import {controllerOf, describePods, runsDigest, short, waitingForImage} from './pod-state.js'
import type {RestartRow, RestartRowBase, StalePod} from './result.js'
import {restartTarget} from './stale.js'

/**
 * Rolls an owner out (`kubectl rollout restart`), after the image went to every node its pods run on,
 * and waits until every pod of it runs the pushed digest. `holds`: which digest each node holds
 * of each image (`node\0image`), updated with what `pushMore` sends.
 */
export async function rollOut(opts: RestartOptions, group: StalePod[], holds: Map<string, string>, deadline: number): Promise<RestartRow> {
  const {client} = opts
  const first = group[0]
  const owner = first.owner!
  const base: RestartRowBase = {namespace: first.namespace, target: restartTarget(first), pods: group.map((s) => s.pod), image: first.image}
  const subject = `${first.namespace}/${base.target}`

  // the image first goes to every node the owner's pods run on, so no new pod waits for it there
  const before = await ownerPods(client, first.namespace, owner)
  const missing = await sendToOwnerNodes(opts, first, before, holds, subject)
  if (missing) return {...base, action: 'not restarted', result: 'still running the old image', ok: false, error: missing}
  await client.restartRollout(owner.kind as RolloutKind, owner.name, first.namespace, new Date().toISOString())
  return waitForRollout(opts, first, before, base, subject, deadline)
}

/** Every pod (not being deleted) of an owner: a Deployment's through its ReplicaSets. */
async function ownerPods(client: KubeClient, namespace: string, owner: {kind: string; name: string}): Promise<V1Pod[]> {
  const {items} = await client.listPods({namespace})
  const rsOwner = new Map<string, string | undefined>()
  const out: V1Pod[] = []
  for (const pod of items) {
    if (pod.metadata?.deletionTimestamp) continue
    const ref = controllerOf(pod)
    if (!ref) continue
    if (owner.kind === 'Deployment' && ref.kind === 'ReplicaSet') {
      if (!rsOwner.has(ref.name)) {
        const rs = await client.getReplicaSet(ref.name, namespace).catch(() => undefined)
        const dep = rs?.metadata?.ownerReferences?.find((o) => o.controller && o.kind === 'Deployment')
        rsOwner.set(ref.name, dep?.name)
      }
      if (rsOwner.get(ref.name) === owner.name) out.push(pod)
    } else if (ref.kind === owner.kind && ref.name === owner.name) out.push(pod)
  }
  return out
}

/**
 * Sends the image to the nodes the owner's pods run on that lack the pushed digest (`pushMore`);
 * the error that keeps the owner from being rolled out when some still lack it.
 */
async function sendToOwnerNodes(opts: RestartOptions, first: StalePod, before: V1Pod[], holds: Map<string, string>, subject: string): Promise<ErrorInfo | undefined> {
  const nodes = [...new Set(before.map((p) => p.spec?.nodeName).filter((n): n is string => Boolean(n)))]
  const lacking = nodes.filter((n) => holds.get(`${n}\u0000${first.image}`) !== first.pushed)
  if (lacking.length === 0) return undefined
  const more = opts.pushMore ? await opts.pushMore(first.image, lacking) : {pushed: [], failed: lacking.map((node) => ({node, error: {message: 'not pushed there'}}))}
  for (const p of more.pushed) holds.set(`${p.node}\u0000${p.image}`, p.digest)
  const still = lacking.filter((n) => holds.get(`${n}\u0000${first.image}`) !== first.pushed)
  if (still.length === 0) return undefined
  const why = more.failed.filter((f) => still.includes(f.node)).map((f) => `${f.node}: ${f.error.message}`).join('; ')
  return {subject,
    message: `not rolled out: its pods also run on ${still.join(', ')}, which ${still.length === 1 ? 'does' : 'do'} not hold ${first.pushed} of ${first.image}${why ? ` (${why})` : ''}`,
    hint: `send the image there too, then restart: sideload push ${first.image} ${still.map((n) => `--node ${n}`).join(' ')} --restart`,
    reason: 'image-not-on-owner-nodes'}
}

/** The rollout: done when every pod of the owner runs the pushed digest, and none of the old ones is left. */
async function waitForRollout(opts: RestartOptions, first: StalePod, before: V1Pod[], base: RestartRowBase, subject: string, deadline: number): Promise<RestartRow> {
  const old = new Set(before.map((p) => p.metadata?.uid))
  for (;;) {
    const pods = await ownerPods(opts.client, first.namespace, first.owner!)
    const fresh = pods.filter((p) => !old.has(p.metadata?.uid))
    const done = pods.length > 0 && pods.every((p) => !old.has(p.metadata?.uid) && runsDigest(p, first.image, first.pushed))
    if (done || Date.now() >= deadline || opts.signal?.aborted) {
      const where = fresh.map((p) => `${p.metadata?.name ?? ''} on ${p.spec?.nodeName ?? '<none>'}`)
      if (done) return {...base, action: 'rolled out', result: `${where.join(', ')}: running ${short(first.pushed)}`, ok: true}
      // a new pod the scheduler put on a node without the image waits for it there
      const elsewhere = fresh.filter((p) => waitingForImage(p) && p.spec?.nodeName)
      const hint = elsewhere.length > 0
        ? `new pods landed on ${[...new Set(elsewhere.map((p) => p.spec!.nodeName!))].join(', ')}, which ${elsewhere.length === 1 ? 'does' : 'do'} not have the image: sideload push ${first.image} ${[...new Set(elsewhere.map((p) => `--node ${p.spec!.nodeName!}`))].join(' ')} (or sideload fix -n ${first.namespace})`
        : `kubectl rollout status ${base.target} -n ${first.namespace}`
      return {...base, action: 'rolled out', result: where.join(', ') || 'no new pod yet', ok: false,
        error: {subject, message: `the rollout did not finish in time: ${describePods(pods, first.image)}`, hint, reason: elsewhere.length > 0 ? 'landed-without-image' : 'rollout-timeout'}}
    }
    await sleep(500, opts.signal)
  }
}
