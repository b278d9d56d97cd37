// `sideload fix`'s plan: which containers wait for an image, and one transfer per (image, node) that repairs them.
import type {V1Container, V1ContainerStatus, V1Pod} from '@kubernetes/client-node'

/** Why the kubelet cannot start a container for lack of an image. */
export const IMAGE_WAIT_REASONS = new Set(['ErrImageNeverPull', 'ErrImagePull', 'ImagePullBackOff'])

export type PullPolicy = 'Always' | 'IfNotPresent' | 'Never'

export interface StuckContainer {
  namespace: string
  pod: string
  container: string
  kind: 'init' | 'app' | 'ephemeral'
  /** The image as written in the pod spec. */
  image: string
  node?: string
  pullPolicy: PullPolicy
  /** True when the policy is what the API server defaults for this tag (:latest or none → Always). */
  policyDefaulted: boolean
  reason: string
  message?: string
  owner?: {kind: string; name: string}
}

/** One image to one node, and every stuck container it repairs. */
export interface Transfer {
  image: string
  node: string
  containers: StuckContainer[]
}

export type Diagnosis =
  | {kind: 'pull-policy-always'; container: StuckContainer; hint: string}
  | {kind: 'unscheduled'; namespace: string; pod: string; images: string[]; hint: string}

export interface FixPlan {
  transfers: Transfer[]
  diagnoses: Diagnosis[]
}

/** What the API server defaults imagePullPolicy to (kubernetes pkg/apis/core/v1/defaults.go). */
export function defaultPullPolicy(image: string): PullPolicy {
  const withoutDigest = image.split('@')[0]
  if (image.includes('@')) return 'IfNotPresent'
  const lastSlash = withoutDigest.lastIndexOf('/')
  const colon = withoutDigest.indexOf(':', lastSlash + 1)
  const tag = colon === -1 ? '' : withoutDigest.slice(colon + 1)
  return tag === '' || tag === 'latest' ? 'Always' : 'IfNotPresent'
}

function ownerOf(pod: V1Pod): {kind: string; name: string} | undefined {
  const ref = pod.metadata?.ownerReferences?.find((o) => o.controller) ?? pod.metadata?.ownerReferences?.[0]
  return ref ? {kind: ref.kind, name: ref.name} : undefined
}

/** Containers of a scheduled pod that wait for an image, init and ephemeral containers included. */
export function findStuckContainers(pod: V1Pod): StuckContainer[] {
  const namespace = pod.metadata?.namespace ?? 'default'
  const name = pod.metadata?.name ?? '?'
  const groups: Array<{kind: StuckContainer['kind']; specs: Array<Pick<V1Container, 'name' | 'image' | 'imagePullPolicy'>>; statuses?: V1ContainerStatus[]}> = [
    {kind: 'init', specs: pod.spec?.initContainers ?? [], statuses: pod.status?.initContainerStatuses},
    {kind: 'app', specs: pod.spec?.containers ?? [], statuses: pod.status?.containerStatuses},
    {kind: 'ephemeral', specs: pod.spec?.ephemeralContainers ?? [], statuses: pod.status?.ephemeralContainerStatuses},
  ]
  const stuck: StuckContainer[] = []
  for (const group of groups) {
    for (const status of group.statuses ?? []) {
      const waiting = status.state?.waiting
      if (!waiting?.reason || !IMAGE_WAIT_REASONS.has(waiting.reason)) continue
      const spec = group.specs.find((c) => c.name === status.name)
      const image = spec?.image ?? status.image
      const defaulted = defaultPullPolicy(image)
      const policy = (spec?.imagePullPolicy as PullPolicy | undefined) ?? defaulted
      stuck.push({
        namespace,
        pod: name,
        container: status.name,
        kind: group.kind,
        image,
        node: pod.spec?.nodeName,
        pullPolicy: policy,
        policyDefaulted: policy === defaulted && defaulted === 'Always',
        reason: waiting.reason,
        message: waiting.message,
        owner: ownerOf(pod),
      })
    }
  }
  return stuck
}

/** A pod the scheduler has not placed yet (and that is not going away): no node to send its image to. */
export function isUnscheduled(pod: V1Pod): boolean {
  return !pod.spec?.nodeName && (pod.status?.phase ?? 'Pending') === 'Pending' && !pod.metadata?.deletionTimestamp
}

function policyHint(c: StuckContainer): string {
  const where = c.owner ? `the ${c.owner.kind} "${c.owner.name}" template` : `the manifest of pod "${c.pod}"`
  const why = c.policyDefaulted
    ? `its image "${c.image}" has the :latest tag (or none), so imagePullPolicy defaults to Always`
    : `it has imagePullPolicy: Always`
  return (
    `pod ${c.namespace}/${c.pod} container "${c.container}": ${why}; the kubelet then pulls from a registry every time ` +
    `and ignores images already on the node, so sideloading cannot help. Set imagePullPolicy: IfNotPresent (or Never) ` +
    `${c.policyDefaulted ? 'or use a tag other than :latest ' : ''}in ${where} and recreate the pod ` +
    `(the policy of an existing pod cannot be changed).`
  )
}

/**
 * Turns pods into the transfers that repair them, one per (image, node) however many pods
 * share it, plus what pushing cannot fix. `normalize` makes two spellings of one image the
 * same key (the CRI normalises short names, so `nginx` and `docker.io/library/nginx:latest`
 * are one).
 */
export function planFix(pods: V1Pod[], normalize: (image: string) => string): FixPlan {
  const transfers = new Map<string, Transfer>()
  const diagnoses: Diagnosis[] = []
  for (const pod of pods) {
    if (isUnscheduled(pod)) {
      const images = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].map((c) => c.image ?? '').filter(Boolean)
      diagnoses.push({
        kind: 'unscheduled',
        namespace: pod.metadata?.namespace ?? 'default',
        pod: pod.metadata?.name ?? '?',
        images,
        hint: 'the pod is not scheduled to a node yet, so there is no node to send its image to; re-run with --wait-scheduled to wait for it, or see `kubectl describe pod` for why it is pending',
      })
      continue
    }
    for (const c of findStuckContainers(pod)) {
      if (c.pullPolicy === 'Always') {
        diagnoses.push({kind: 'pull-policy-always', container: c, hint: policyHint(c)})
        continue
      }
      if (!c.node) continue
      const image = normalize(c.image)
      const key = `${image}\u0000${c.node}`
      let transfer = transfers.get(key)
      if (!transfer) {
        transfer = {image, node: c.node, containers: []}
        transfers.set(key, transfer)
      }
      transfer.containers.push(c)
    }
  }
  return {transfers: [...transfers.values()], diagnoses}
}
