/**
 * Every Kubernetes API call sideload makes, as resource → verbs (core group), with RESTART_ACCESS
 * below. This is the one source of truth: KubeClient can only call what is listed here (the types
 * enforce it), and manifests/rbac.yaml must grant exactly this (a test keeps them in step).
 */
export const API_ACCESS = {
  pods: ['get', 'list', 'watch', 'patch'],
  nodes: ['get', 'list'],
  events: ['list'],
  services: ['get', 'list', 'create', 'patch', 'delete'],
} as const

/**
 * What only `--restart` (push, fix, build-and-push) calls, by API group ('' is core): a bare pod is
 * deleted and created again from its own spec; an owner is rolled out as `kubectl rollout restart`
 * does it (its pod template patched), a Deployment found through its pods' ReplicaSet; a pod of
 * another owner is evicted (`pods/eviction`, so PodDisruptionBudgets hold) for its owner to create
 * again; a Job's pod is left alone, its Job read only to name the CronJob that runs it.
 */
export const RESTART_ACCESS = {
  '': {pods: ['create', 'delete'], 'pods/eviction': ['create']},
  apps: {deployments: ['patch'], statefulsets: ['patch'], daemonsets: ['patch'], replicasets: ['get']},
  batch: {jobs: ['get']},
} as const

export type RestartGroup = keyof typeof RESTART_ACCESS
export type RestartResource<G extends RestartGroup> = keyof (typeof RESTART_ACCESS)[G]

/** Every right sideload needs, as `group/resource verb` ('' group: `/pods get`), for checks and tests. */
export function allGrants(): string[] {
  const out = Object.entries(API_ACCESS).flatMap(([r, verbs]) => verbs.map((v) => `/${r} ${v}`))
  for (const [group, resources] of Object.entries(RESTART_ACCESS)) {
    for (const [r, verbs] of Object.entries(resources as Record<string, readonly string[]>)) out.push(...verbs.map((v) => `${group}/${r} ${v}`))
  }
  return out.sort()
}

/**
 * What `fix --watch` calls, and nothing more: the in-cluster watcher's own role (manifests/rbac.yaml,
 * ClusterRole sideload-fix-watch). It follows pods (list, watch; get when it tries a failed transfer
 * again), reads the node it sends to, and nudges the kubelet (patch: an annotation). No create,
 * delete, services or owners: what `--restart` and `expose` need is the CLI user's role.
 */
export const WATCH_ACCESS = {
  pods: ['get', 'list', 'watch', 'patch'],
  nodes: ['get'],
} as const

/** The watcher's rights as `group/resource verb`, as allGrants() says them. */
export function watchGrants(): string[] {
  return Object.entries(WATCH_ACCESS).flatMap(([r, verbs]) => verbs.map((v) => `/${r} ${v}`)).sort()
}

export type ApiResource = keyof typeof API_ACCESS
export type ApiVerb<R extends ApiResource> = (typeof API_ACCESS)[R][number]

/** The manifest users apply to grant sideload what it needs (path inside the package). */
export const RBAC_MANIFEST = 'manifests/rbac.yaml'
