import {normalizeImageName} from '../../image/index.js'
import {type KubeClient, nodeAddress} from '../../kube/client.js'
import type {NodeTarget} from '../../nodes/index.js'
import {parseTarget} from '../../ssh/index.js'
import type {NodeImageResult} from '../push.js'
import type {PushedDigest} from './options.js'
import {controllerOf, imageIdDigest} from './pod-state.js'
import type {PodOwner, StalePod} from './result.js'

/**
 * The owners `kubectl rollout restart` rolls out; any other owner's pods are evicted for it to
 * create again (left-alone.ts: but for a Job's and a static pod's).
 */
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

/**
 * The running pods on the pushed nodes whose containers run an older digest of a pushed image, in
 * `namespace` (-n, else the context's), or in every namespace when it is undefined (-A).
 */
export async function findStalePods(client: KubeClient, pushed: PushedDigest[], namespace: string | undefined): Promise<StalePod[]> {
  const stale: StalePod[] = []
  for (const node of [...new Set(pushed.map((p) => p.node))]) {
    const onNode = pushed.filter((p) => p.node === node)
    const {items} = await client.listPods({namespace, fieldSelector: `spec.nodeName=${node}`})
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

/**
 * A ReplicaSet owned by a Deployment stands for that Deployment (`kubectl rollout restart` acts on
 * it); a Job run by a CronJob names that CronJob (the way to run it again).
 */
async function resolveOwners(client: KubeClient, stale: StalePod[]): Promise<void> {
  const cache = new Map<string, PodOwner>()
  for (const s of stale) {
    if (s.owner?.kind !== 'ReplicaSet' && s.owner?.kind !== 'Job') continue
    const key = `${s.namespace}/${s.owner.kind}/${s.owner.name}`
    let owner = cache.get(key)
    if (!owner) {
      owner = s.owner.kind === 'ReplicaSet' ? await deploymentOf(client, s.namespace, s.owner) : await withCronJob(client, s.namespace, s.owner)
      cache.set(key, owner)
    }
    s.owner = owner
  }
}

/** The Deployment that owns a ReplicaSet; a ReplicaSet of its own stays itself. */
async function deploymentOf(client: KubeClient, namespace: string, replicaSet: PodOwner): Promise<PodOwner> {
  const ref = (await client.getReplicaSet(replicaSet.name, namespace)).metadata?.ownerReferences?.find((o) => o.controller)
  return ref?.kind === 'Deployment' ? {kind: 'Deployment', name: ref.name} : replicaSet
}

/** The Job with the CronJob that created it; only a message needs it, so a Job that cannot be read is named alone. */
async function withCronJob(client: KubeClient, namespace: string, job: PodOwner): Promise<PodOwner> {
  const read = await client.getJob(job.name, namespace).catch(() => undefined)
  const ref = read?.metadata?.ownerReferences?.find((o) => o.controller && o.kind === 'CronJob')
  return ref ? {...job, cronJob: ref.name} : job
}

/**
 * Finds the stale pods of every pushed node in `namespace` (undefined: every namespace), with their
 * owners resolved (a Deployment for its ReplicaSet, the CronJob of a Job).
 */
export async function stalePods(client: KubeClient, pushed: PushedDigest[], namespace: string | undefined): Promise<StalePod[]> {
  const stale = await findStalePods(client, pushed, namespace)
  await resolveOwners(client, stale)
  return stale
}

/** `deployment/web`; a bare pod: `pod/NAME`. */
export function restartTarget(s: Pick<StalePod, 'owner' | 'pod'>): string {
  return s.owner ? `${s.owner.kind.toLowerCase()}/${s.owner.name}` : `pod/${s.pod}`
}
