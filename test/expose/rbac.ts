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

export function clusterRoleRules(): Rule[] {
  const docs = YAML.parseAllDocuments(fs.readFileSync(RBAC_PATH, 'utf8')).map(d => d.toJSON() as {kind?: string; rules?: Rule[]})
  const role = docs.find(d => d.kind === 'ClusterRole')
  if (!role?.rules) throw new Error(`${RBAC_PATH} has no ClusterRole with rules`)
  return role.rules
}
