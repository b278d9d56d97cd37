// RBAC evaluation like the apiserver's RBAC authorizer: ClusterRoleBindings grant their ClusterRole
// everywhere, RoleBindings grant their Role or ClusterRole in their namespace.
import type {Json, JsonObject} from './patch.js'
import type {Store} from './store.js'

export interface Subject {
  user: string
  groups: string[]
}

export interface AccessRequest {
  verb: string
  group: string
  resource: string
  subresource?: string
  name?: string
  namespace?: string
}

function obj(v: Json | undefined): JsonObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? v : {}
}
function strs(v: Json | undefined): string[] {
  return Array.isArray(v) ? v.map(String) : []
}

function subjectMatches(s: JsonObject, who: Subject, bindingNamespace: string): boolean {
  const name = String(s.name ?? '')
  switch (s.kind) {
    case 'User': return name === who.user
    case 'Group': return who.groups.includes(name)
    case 'ServiceAccount': return who.user === `system:serviceaccount:${String(s.namespace ?? bindingNamespace)}:${name}`
    default: return false
  }
}

function ruleAllows(rule: JsonObject, req: AccessRequest): boolean {
  const has = (list: string[], v: string): boolean => list.includes('*') || list.includes(v)
  const resource = req.subresource ? `${req.resource}/${req.subresource}` : req.resource
  const names = strs(rule.resourceNames)
  return has(strs(rule.verbs), req.verb) && has(strs(rule.apiGroups), req.group) &&
    (strs(rule.resources).includes('*') || strs(rule.resources).includes(resource) ||
      (req.subresource !== undefined && strs(rule.resources).includes(`*/${req.subresource}`))) &&
    (names.length === 0 || (req.name !== undefined && names.includes(req.name)))
}

function rulesOf(store: Store, ref: JsonObject, namespace: string): JsonObject[] {
  const role = ref.kind === 'ClusterRole'
    ? store.tryGet('clusterroles', undefined, String(ref.name ?? ''))
    : store.tryGet('roles', namespace, String(ref.name ?? ''))
  return Array.isArray(role?.rules) ? role.rules.map(obj) : []
}

export function rbacAllows(store: Store, who: Subject, req: AccessRequest): boolean {
  const all = {labels: [], fields: []}
  for (const b of store.list('clusterrolebindings', all).items) {
    if (!(Array.isArray(b.subjects) ? b.subjects : []).map(obj).some(s => subjectMatches(s, who, ''))) continue
    if (rulesOf(store, obj(b.roleRef), '').some(r => ruleAllows(r, req))) return true
  }
  if (req.namespace) {
    for (const b of store.list('rolebindings', {...all, namespace: req.namespace}).items) {
      if (!(Array.isArray(b.subjects) ? b.subjects : []).map(obj).some(s => subjectMatches(s, who, req.namespace ?? ''))) continue
      if (rulesOf(store, obj(b.roleRef), req.namespace).some(r => ruleAllows(r, req))) return true
    }
  }
  return false
}
