// Label and field selectors with the grammar of k8s.io/apimachinery (labels.Parse, fields.ParseSelector).

export type Labels = Record<string, string>

export interface LabelRequirement {
  key: string
  op: 'eq' | 'neq' | 'exists' | 'notexists' | 'in' | 'notin'
  values: string[]
}

export class SelectorError extends Error {}

function splitTopLevel(s: string): string[] {
  const parts: string[] = []
  let depth = 0
  let cur = ''
  for (const ch of s) {
    if (ch === '(') depth++
    if (ch === ')') depth--
    if (ch === ',' && depth === 0) {
      parts.push(cur)
      cur = ''
    } else cur += ch
  }
  if (cur.trim() !== '' || parts.length > 0) parts.push(cur)
  return parts.map(p => p.trim()).filter(p => p !== '')
}

const KEY = /^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?\/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?$/

export function parseLabelSelector(s: string | undefined): LabelRequirement[] {
  if (!s) return []
  return splitTopLevel(s).map(part => {
    let m = /^!\s*(\S+)$/.exec(part)
    if (m) return {key: check(m[1]), op: 'notexists', values: []}
    m = /^(\S+?)\s+(in|notin)\s+\(([^)]*)\)$/.exec(part)
    if (m) {
      const values = m[3].split(',').map(v => v.trim()).filter(v => v !== '')
      return {key: check(m[1]), op: m[2] as 'in' | 'notin', values}
    }
    m = /^([^=!\s]+)\s*(==|=|!=)\s*(\S*)$/.exec(part)
    if (m) return {key: check(m[1]), op: m[2] === '!=' ? 'neq' : 'eq', values: [m[3]]}
    if (KEY.test(part)) return {key: part, op: 'exists', values: []}
    throw new SelectorError(`unable to parse requirement: found '${part}', expected: key, !, in, notin, =, ==, !=`)
  })
  function check(key: string): string {
    if (!KEY.test(key)) throw new SelectorError(`unable to parse requirement: invalid label key "${key}"`)
    return key
  }
}

export function matchesLabels(reqs: LabelRequirement[], labels: Labels | undefined): boolean {
  const l = labels ?? {}
  return reqs.every(r => {
    const has = Object.prototype.hasOwnProperty.call(l, r.key)
    switch (r.op) {
      case 'exists': return has
      case 'notexists': return !has
      case 'eq': return has && l[r.key] === r.values[0]
      case 'neq': return !has || l[r.key] !== r.values[0]
      case 'in': return has && r.values.includes(l[r.key])
      case 'notin': return !has || !r.values.includes(l[r.key])
    }
  })
}

export interface FieldRequirement {
  field: string
  op: 'eq' | 'neq'
  value: string
}

export function parseFieldSelector(s: string | undefined): FieldRequirement[] {
  if (!s) return []
  return splitTopLevel(s).map(part => {
    const m = /^([^=!]+?)\s*(==|=|!=)\s*(.*)$/.exec(part)
    if (!m) throw new SelectorError(`invalid selector: '${part}'; can't understand '${part}'`)
    return {field: m[1].trim(), op: m[2] === '!=' ? 'neq' : 'eq', value: m[3].trim()}
  })
}

/** Reads a dotted field path (`spec.nodeName`) from an object, as a string ('' when absent). */
export function fieldValue(obj: unknown, field: string): string {
  let cur: unknown = obj
  for (const part of field.split('.')) {
    if (cur === null || typeof cur !== 'object') return ''
    cur = (cur as Record<string, unknown>)[part]
  }
  if (cur === undefined || cur === null) return ''
  return String(cur)
}

export function matchesFields(reqs: FieldRequirement[], obj: unknown): boolean {
  return reqs.every(r => (fieldValue(obj, r.field) === r.value) === (r.op === 'eq'))
}
