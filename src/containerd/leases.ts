// The leases sideload's native push holds on a node. One is kept on purpose when a connection drops
// (a re-run resumes what arrived) and expires by itself; `doctor` shows such leftovers and `prune`
// clears them.

/** Label of a push's lease: the image record it is for. */
import type {ContainerdClient} from './client.js'
export const LEASE_IMAGE_LABEL = 'sideload/image'
/** containerd's own expiry label of a lease (RFC 3339). */
export const LEASE_EXPIRE_LABEL = 'containerd.io/gc.expire'

export interface LeaseInfo {
  id: string
  labels: Record<string, string>
}

/** A lease an interrupted push left: its image was never recorded. */
export interface LeftoverLease {
  id: string
  image: string
  expiresAt?: Date
}

/**
 * sideload's leases whose image is not recorded: what interrupted pushes left. A lease whose image
 * has been pushed since holds nothing the image does not, so it is no leftover.
 */
export function leftoverLeases(leases: LeaseInfo[], recorded: (image: string) => boolean): LeftoverLease[] {
  const out: LeftoverLease[] = []
  for (const l of leases) {
    const image = l.labels[LEASE_IMAGE_LABEL]
    if (!image || recorded(image)) continue
    const expires = Date.parse(l.labels[LEASE_EXPIRE_LABEL] ?? '')
    out.push({id: l.id, image, ...(Number.isNaN(expires) ? {} : {expiresAt: new Date(expires)})})
  }
  return out
}

/** `IMAGE (lease ID, kept N min more)` */
export function describeLeftover(l: LeftoverLease, now = Date.now()): string {
  const left = l.expiresAt ? `, kept ${Math.max(0, Math.round((l.expiresAt.getTime() - now) / 60_000))} min more` : ''
  return `${l.image} (lease ${l.id}${left})`
}

/** leftoverLeases of a node reached through its containerd API. */
export async function nativeLeftovers(client: ContainerdClient): Promise<LeftoverLease[]> {
  const ours = (await client.leaseList()).filter((l) => l.labels[LEASE_IMAGE_LABEL])
  const images = [...new Set(ours.map((l) => l.labels[LEASE_IMAGE_LABEL]))]
  const recorded = await Promise.all(images.map(async (name) => (await client.imageGet(name)) !== undefined))
  return leftoverLeases(ours, (image) => recorded[images.indexOf(image)])
}
