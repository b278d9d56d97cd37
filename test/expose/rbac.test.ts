// manifests/rbac.yaml grants exactly what src/kube/access.ts says sideload calls.
import {describe, expect, it} from 'vitest'
import {API_ACCESS} from '../../src/kube/access.js'
import {clusterRoleRules} from './rbac.js'

describe('manifests/rbac.yaml', () => {
  it('grants exactly API_ACCESS, core group only, no wildcards', () => {
    const granted = new Set<string>()
    for (const rule of clusterRoleRules()) {
      expect(rule.apiGroups).toEqual([''])
      for (const r of rule.resources ?? []) for (const v of rule.verbs ?? []) granted.add(`${v} ${r}`)
    }
    const needed = new Set(Object.entries(API_ACCESS).flatMap(([r, verbs]) => verbs.map(v => `${v} ${r}`)))
    expect([...granted].sort()).toEqual([...needed].sort())
    expect([...granted].some(g => g.includes('*'))).toBe(false)
  })
})
