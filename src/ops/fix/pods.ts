// The pods `sideload fix` looks at: listing them, waiting for them to be scheduled, nudging the
// kubelet, and reading where a container stands after its image was sent.
import type {V1Pod} from '@kubernetes/client-node'
import type {KubeClient} from '../../kube/client.js'
import {isKubeError} from '../../kube/errors.js'
import {sleep} from '../../util/async.js'
import {IMAGE_WAIT_REASONS, isUnscheduled, type StuckContainer} from './plan.js'

/** Set on a pod after its image was sent: the kubelet re-syncs a pod at once when its annotations change. */
export const PUSHED_AT_ANNOTATION = 'sideload.dev/pushed-at'

/** Which pods fix looks at: one (--pod), a namespace, or every namespace (-A). */
export interface PodScope {
  allNamespaces?: boolean
  pod?: string
  signal?: AbortSignal
}

/** Where a container stands: its state for the RESULT column, `stuck` while it still waits for its image. */
export interface ContainerState {
  state: string
  stuck: boolean
}

export function podKey(p: V1Pod): string {
  return `${p.metadata?.namespace ?? ''}/${p.metadata?.name ?? ''}`
}

/** The pods of the containers, each once. */
export function uniquePods(containers: StuckContainer[]): {namespace: string; pod: string}[] {
  const seen = new Map<string, {namespace: string; pod: string}>()
  for (const c of containers) seen.set(`${c.namespace}/${c.pod}`, {namespace: c.namespace, pod: c.pod})
  return [...seen.values()]
}

/** Whether the kubelet has reported on every container yet (a pod just bound may have no statuses). */
function hasStatuses(pod: V1Pod): boolean {
  return (pod.status?.containerStatuses?.length ?? 0) > 0 || (pod.status?.initContainerStatuses?.length ?? 0) > 0
}

/** Where a container stands now, for the RESULT column; `stuck` while it still waits for its image. */
export function containerState(pod: V1Pod | undefined, container: string): ContainerState {
  if (!pod) return {state: 'pod deleted', stuck: false}
  const all = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? []), ...(pod.status?.ephemeralContainerStatuses ?? [])]
  const s = all.find((c) => c.name === container)
  if (!s) return {state: pod.status?.phase ?? 'Pending', stuck: false}
  if (s.state?.running) return {state: 'Running', stuck: false}
  const terminated = s.state?.terminated
  if (terminated) {
    // an init container that did its job: what matters now is the pod
    const initDone = terminated.exitCode === 0 && (pod.status?.initContainerStatuses ?? []).includes(s)
    return {state: initDone ? (pod.status?.phase ?? 'Completed') : `Terminated (${terminated.reason ?? `exit ${terminated.exitCode}`})`, stuck: false}
  }
  const reason = s.state?.waiting?.reason ?? 'Waiting'
  return {state: reason, stuck: IMAGE_WAIT_REASONS.has(reason)}
}

export async function listTargetPods(client: KubeClient, scope: PodScope): Promise<V1Pod[]> {
  const namespace = scope.allNamespaces ? undefined : client.namespace
  if (scope.pod) return [await client.getPod(scope.pod, client.namespace)]
  return (await client.listPods({namespace})).items
}

/**
 * With --wait-scheduled: wait until every pod that was not scheduled is, and the kubelet has
 * reported its containers (stuck or not), or the deadline passes.
 */
export async function waitScheduled(client: KubeClient, scope: PodScope, pods: V1Pod[], deadline: number): Promise<V1Pod[]> {
  let current = pods
  const waitingFor = new Set(pods.filter(isUnscheduled).map(podKey))
  while (waitingFor.size > 0 && Date.now() < deadline && !scope.signal?.aborted) {
    await sleep(500, scope.signal)
    current = await listTargetPods(client, scope)
    for (const p of current) {
      if (waitingFor.has(podKey(p)) && !isUnscheduled(p) && hasStatuses(p)) waitingFor.delete(podKey(p))
    }
    if (!current.some((p) => waitingFor.has(podKey(p)))) break
  }
  return current
}

/** Nudge the kubelet: a changed annotation makes it re-sync the pod (and find the image) at once. */
export async function annotate(client: KubeClient, c: {namespace: string; pod: string}): Promise<NudgeRefused | undefined> {
  try {
    await client.patchPod(c.pod, c.namespace, {metadata: {annotations: {[PUSHED_AT_ANNOTATION]: new Date().toISOString()}}})
  } catch (err) {
    // the pod went away: nothing to nudge
    if (isKubeError(err, 'not-found')) return undefined
    // not allowed: the kubelet still finds the image on its next re-sync, only later (its back-off)
    if (isKubeError(err, 'forbidden')) {
      return {message: 'the nudge was refused (patch pods is not allowed)',
        hint: 'grant patch on pods to this identity (manifests/rbac.yaml) so the kubelet starts the pod at once; without it the kubelet finds the image on its next retry (back-off up to 5 min)'}
    }
    throw err
  }
  return undefined
}

/** Why the kubelet could not be nudged, and what to do. */
export interface NudgeRefused {
  message: string
  hint: string
}

/** Polls the pods until none of the containers waits for its image any more, or the deadline. */
export async function waitForContainers(client: KubeClient, containers: StuckContainer[], deadline: number, signal?: AbortSignal): Promise<Map<StuckContainer, ContainerState>> {
  const states = new Map<StuckContainer, ContainerState>()
  const pending = new Set(containers)
  for (;;) {
    const pods = new Map<string, V1Pod | undefined>()
    for (const c of pending) {
      const key = `${c.namespace}/${c.pod}`
      if (!pods.has(key)) {
        pods.set(key, await client.getPod(c.pod, c.namespace).catch((err: unknown) => {
          if (isKubeError(err, 'not-found')) return undefined
          throw err
        }))
      }
      const s = containerState(pods.get(key), c.container)
      states.set(c, s)
      // ContainerCreating/PodInitializing come before Running: wait for a final word too
      if (!s.stuck && !['ContainerCreating', 'PodInitializing', 'Pending'].includes(s.state)) pending.delete(c)
    }
    if (pending.size === 0 || Date.now() >= deadline || signal?.aborted) return states
    await sleep(250, signal)
  }
}
