import type {V1Pod} from '@kubernetes/client-node'
import {normalizeImageName} from '../../image/index.js'

/** The digest of a status imageID: `repo@sha256:…` → `sha256:…`; an image ID (`sha256:…`) as it is. */
export function imageIdDigest(imageID: string): string {
  const at = imageID.lastIndexOf('@')
  return at >= 0 ? imageID.slice(at + 1) : imageID.replace(/^docker-pullable:\/\/|^docker:\/\//, '')
}

export function controllerOf(pod: V1Pod): {kind: string; name: string} | undefined {
  const ref = pod.metadata?.ownerReferences?.find((o) => o.controller)
  return ref ? {kind: ref.kind, name: ref.name} : undefined
}

function containerStatusesFor(pod: V1Pod, image: string) {
  const names = new Set((pod.spec?.containers ?? []).filter((c) => c.image && normalizeImageName(c.image) === image).map((c) => c.name))
  return (pod.status?.containerStatuses ?? []).filter((s) => names.has(s.name))
}

export function runsDigest(pod: V1Pod, image: string, digest: string): boolean {
  const statuses = containerStatusesFor(pod, image)
  return statuses.length > 0 && statuses.every((s) => s.state?.running && s.imageID && imageIdDigest(s.imageID) === digest)
}

export function waitingForImage(pod: V1Pod): boolean {
  return (pod.status?.containerStatuses ?? []).some((s) => ['ErrImageNeverPull', 'ErrImagePull', 'ImagePullBackOff'].includes(s.state?.waiting?.reason ?? ''))
}

export function describePods(pods: V1Pod[], image: string): string {
  return pods.map((p) => {
    const s = containerStatusesFor(p, image)[0]
    const state = s?.state?.running ? `running ${short(imageIdDigest(s.imageID ?? ''))}` : s?.state?.waiting?.reason ?? p.status?.phase ?? 'Pending'
    return `${p.metadata?.name ?? ''} on ${p.spec?.nodeName ?? '<none>'}: ${state}`
  }).join(', ') || 'no pods'
}

export const short = (digest: string): string => digest.replace(/^sha256:/, '').slice(0, 12)
