/**
 * Every Kubernetes API call sideload makes, as resource → verbs. This is the one source of truth:
 * KubeClient can only call what is listed here (the types enforce it), and manifests/rbac.yaml
 * must grant exactly this (a test keeps them in step).
 */
export const API_ACCESS = {
  pods: ['get', 'list', 'watch', 'patch'],
  nodes: ['get', 'list'],
  events: ['list'],
  services: ['get', 'list', 'create', 'patch', 'delete'],
} as const

export type ApiResource = keyof typeof API_ACCESS
export type ApiVerb<R extends ApiResource> = (typeof API_ACCESS)[R][number]

/** The manifest users apply to grant sideload what it needs (path inside the package). */
export const RBAC_MANIFEST = 'manifests/rbac.yaml'
