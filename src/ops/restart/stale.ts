import {normalizeImageName} from '../../image/index.js'
import {type KubeClient, nodeAddress} from '../../kube/client.js'
import type {NodeTarget} from '../../nodes/index.js'
import {parseTarget} from '../../ssh/index.js'
import type {NodeImageResult} from '../push.js'
import type {PushedDigest} from './options.js'
import {controllerOf, imageIdDigest} from './pod-state.js'
import type {StalePod} from './result.js'

/** The owners `kubectl rollout restart` rolls out; any other owner's pods are deleted for it to re-create. */
export const ROLLOUT_KINDS = new Set<string>(['Deployment', 'StatefulSet', 'DaemonSet'])

/**
 * The Kubernetes node names of push targets: a cluster node's target is its name; a --host target is
 * the node whose address (InternalIP, ExternalIP, Hostname) is the host it was reached at.
 */
export async function nodeNamesOf(client: KubeClient, targets: NodeTarget[]): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  const nodes = await client.listNodes()
  const byName = new Set(nodes.map((n) => n.metadata?.name ?? ''))
  for (const t of targets) {
    if (byName.has(t.name)) {
      out.set(t.name, t.name)
      continue
    }
    const host = parseTarget(t.sshTarget).host
    const node = nodes.find((n) => (n.status?.addresses ?? []).some((a) => a.address === host) || nodeAddress(n) === host)
    if (node?.metadata?.name) out.set(t.name, node.metadata.name)
  }
  return out
}

/** What push() reported as on the nodes, by Kubernetes node name (targets of --host matched by address). */
export function pushedDigests(results: NodeImageResult[], nodeNames: Map<string, string>): PushedDigest[] {
  return results.filter((r) => r.status !== 'failed' && r.digest && nodeNames.has(r.node))
    .map((r) => ({node: nodeNames.get(r.node)!, image: r.image, digest: r.digest!}))
}

/** The running pods on the pushed nodes (every namespace) whose containers run an older digest of a pushed image. */
export async function findStalePods(client: KubeClient, pushed: PushedDigest[]): Promise<StalePod[]> {
  const stale: StalePod[] = []
  for (const node of [...new Set(pushed.map((p) => p.node))]) {
    const onNode = pushed.filter((p) => p.node === node)
    const {items} = await client.listPods({fieldSelector: `spec.nodeName=${node}`})
    for (const pod of items) {
      if (pod.metadata?.deletionTimestamp) continue
      for (const p of onNode) {
        const containers: string[] = []
        let running = ''
        for (const c of pod.spec?.containers ?? []) {
          if (!c.image || normalizeImageName(c.image) !== p.image) continue
          const s = pod.status?.containerStatuses?.find((x) => x.name === c.name)
          if (!s?.state?.running || !s.imageID) continue
          const digest = imageIdDigest(s.imageID)
          if (digest === p.digest) continue
          containers.push(c.name)
          running = digest
        }
        if (containers.length === 0) continue
        stale.push({namespace: pod.metadata?.namespace ?? '', pod: pod.metadata?.name ?? '', uid: pod.metadata?.uid ?? '', node, image: p.image,
          containers, running, pushed: p.digest, owner: controllerOf(pod)})
      }
    }
  }
  return stale
}

/** A ReplicaSet owned by a Deployment stands for that Deployment (`kubectl rollout restart` acts on it). */
async function resolveOwners(client: KubeClient, stale: StalePod[]): Promise<void> {
  const cache = new Map<string, {kind: string; name: string}>()
  for (const s of stale) {
    if (s.owner?.kind !== 'ReplicaSet') continue
    const key = `${s.namespace}/${s.owner.name}`
    let owner = cache.get(key)
    if (!owner) {
      const rs = await client.getReplicaSet(s.owner.name, s.namespace)
      const ref = rs.metadata?.ownerReferences?.find((o) => o.controller)
      owner = ref?.kind === 'Deployment' ? {kind: 'Deployment', name: ref.name} : s.owner
      cache.set(key, owner)
    }
    s.owner = owner
  }
}

/** Finds the stale pods of every pushed node, with their owners resolved (a Deployment for its ReplicaSet). */
export async function stalePods(client: KubeClient, pushed: PushedDigest[]): Promise<StalePod[]> {
  const stale = await findStalePods(client, pushed)
  await resolveOwners(client, stale)
  return stale
}

/** `deployment/web`; a bare pod: `pod/NAME`. */
export function restartTarget(s: Pick<StalePod, 'owner' | 'pod'>): string {
  return s.owner ? `${s.owner.kind.toLowerCase()}/${s.owner.name}` : `pod/${s.pod}`
}
