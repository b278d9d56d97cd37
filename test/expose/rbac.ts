// Reads the ClusterRole of manifests/rbac.yaml (what the tests compare with src/kube/access.ts).
import * as fs from 'node:fs'
import * as path from 'node:path'
import YAML from 'yaml'

export const RBAC_PATH = path.resolve(import.meta.dirname, '..', '..', 'manifests', 'rbac.yaml')

interface Rule {
  apiGroups?: string[]
  resources?: string[]
  verbs?: string[]
}

export function clusterRoleRules(name = 'sideload'): Rule[] {
  const docs = YAML.parseAllDocuments(fs.readFileSync(RBAC_PATH, 'utf8')).map(d => d.toJSON() as {kind?: string; metadata?: {name?: string}; rules?: Rule[]})
  const role = docs.find(d => d.kind === 'ClusterRole' && d.metadata?.name === name)
  if (!role?.rules) throw new Error(`${RBAC_PATH} has no ClusterRole ${name} with rules`)
  return role.rules
}

/** A role's rules as `group/resource verb` lines. */
export function grantsOf(name: string): string[] {
  const granted = new Set<string>()
  for (const rule of clusterRoleRules(name)) {
    for (const g of rule.apiGroups ?? []) for (const r of rule.resources ?? []) for (const v of rule.verbs ?? []) granted.add(`${g}/${r} ${v}`)
  }
  return [...granted].sort()
}
