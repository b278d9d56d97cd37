import type {RestartRow, StalePod} from './result.js'
import {restartTarget} from './stale.js'

/** Why --restart does not restart a stale pod, and what does instead. */
export interface LeftAlone {
  why: string
  instead: string
}

/**
 * Why --restart leaves this pod alone; undefined when it restarts it. A Job's pods run to
 * completion: restarting one would start its work over. A static pod (owned by its Node) runs from
 * a file on the node: deleting its mirror pod in the API does not restart it.
 */
export function leftAlone(s: StalePod): LeftAlone | undefined {
  const owner = s.owner
  if (owner?.kind === 'Job') {
    if (owner.cronJob) {
      return {why: `pod of Job ${owner.name} (CronJob ${owner.cronJob}): not restarted; jobs run to completion`,
        instead: `the CronJob's next run starts new pods; to run it now: kubectl create job --from=cronjob/${owner.cronJob} ${owner.cronJob}-rerun -n ${s.namespace}`}
    }
    return {why: `pod of Job ${owner.name}: not restarted; jobs run to completion`,
      instead: `re-run the job: delete it and create it again from its manifest (kubectl get job ${owner.name} -n ${s.namespace} -o yaml)`}
  }
  if (owner?.kind === 'Node') {
    return {why: `static pod of node ${owner.name}: not restarted; the kubelet runs it from a manifest file on the node, and deleting its mirror pod in the API does not restart it`,
      instead: `restart it on ${owner.name}: move its manifest out of the kubelet's staticPodPath (e.g. /etc/kubernetes/manifests) and back`}
  }
  return undefined
}

/** The row of a Job's or static pods --restart left alone: not a failure, said with what restarts them. */
export function leftAloneRow(group: StalePod[], reason: LeftAlone): RestartRow {
  const first = group[0]
  return {namespace: first.namespace, target: restartTarget(first), pods: group.map((s) => s.pod), image: first.image,
    action: 'left alone', result: `${reason.why} — ${reason.instead}`, ok: true}
}
