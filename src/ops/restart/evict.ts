import {isKubeError} from '../../kube/errors.js'
import {type ErrorInfo, errorInfo} from '../../ui/errors.js'
import type {RestartOptions} from './options.js'
import type {RestartRow, RestartRowBase, StalePod} from './result.js'

/**
 * A pod of an owner that is not rolled out (a ReplicaSet of its own, a ReplicationController, another
 * controller) is evicted, as `kubectl drain` does, for its owner to create it again: a
 * PodDisruptionBudget that does not allow it keeps the pod, and its row says which budget.
 */
export async function evictForOwner(opts: RestartOptions, s: StalePod): Promise<RestartRow> {
  const subject = `${s.namespace}/${s.pod}`
  const base: RestartRowBase = {namespace: s.namespace, target: `pod/${s.pod}`, pods: [s.pod], image: s.image}
  const owner = s.owner!
  try {
    await opts.client.evictPod(s.pod, s.namespace, s.uid)
  } catch (err) {
    const refused = disruptionBudgetRefusal(err, s, subject)
    return {...base, action: 'not restarted', result: refused ? 'kept by a PodDisruptionBudget, still running the old image' : 'still running the old image', ok: false,
      error: refused ?? errorInfo(err, subject)}
  }
  return {...base, action: 'evicted for its owner to re-create', ok: true, result: `${owner.kind} ${owner.name} creates it again (not waited for)`}
}

/**
 * The API server's 429 to an eviction when a PodDisruptionBudget allows no disruption now (not the
 * 429 of its rate limits): its DisruptionBudget causes name the budget and how many healthy pods it
 * needs ("The disruption budget web needs 2 healthy pods and has 2 currently").
 */
function disruptionBudgetRefusal(err: unknown, s: StalePod, subject: string): ErrorInfo | undefined {
  if (!isKubeError(err) || err.status !== 429) return undefined
  const causes = err.causes.filter((c) => c.reason === 'DisruptionBudget' && c.message).map((c) => c.message!.replace(/\.$/, ''))
  if (causes.length === 0) return undefined
  return {subject,
    message: `not restarted: evicting it would violate its PodDisruptionBudget (${causes.join('; ')})`,
    hint: `restart it once the budget allows one more pod down (kubectl get pdb -n ${s.namespace}; more replicas of ${s.owner!.kind} ${s.owner!.name} make room), ` +
      `or override the budget by deleting it yourself: kubectl delete pod ${s.pod} -n ${s.namespace}`,
    reason: 'disruption-budget'}
}
