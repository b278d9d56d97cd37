// The three patch formats the API server accepts: JSON patch (RFC 6902), JSON merge patch
// (RFC 7386) and strategic merge patch (merge keys of core/v1, $patch directives).

export type Json = null | boolean | number | string | Json[] | {[k: string]: Json}
export type JsonObject = {[k: string]: Json}

export class PatchError extends Error {}

function isObject(v: unknown): v is JsonObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

export function clone<T>(v: T): T {
  return structuredClone(v)
}

export function mergePatch(target: Json, patch: Json): Json {
  if (!isObject(patch)) return clone(patch)
  const out: JsonObject = isObject(target) ? {...target} : {}
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k]
    else out[k] = mergePatch(out[k] ?? null, v)
  }
  return out
}

function unescape(token: string): string {
  return token.replace(/~1/g, '/').replace(/~0/g, '~')
}

function parsePointer(p: string): string[] {
  if (p === '') return []
  if (!p.startsWith('/')) throw new PatchError(`invalid JSON pointer "${p}"`)
  return p.slice(1).split('/').map(unescape)
}

function getAt(doc: Json, tokens: string[]): Json | undefined {
  let cur: Json | undefined = doc
  for (const t of tokens) {
    if (Array.isArray(cur)) cur = cur[Number(t)]
    else if (isObject(cur)) cur = Object.prototype.hasOwnProperty.call(cur, t) ? cur[t] : undefined
    else return undefined
  }
  return cur
}

function parentOf(doc: Json, tokens: string[], path: string): {parent: Json; key: string} {
  const parent = getAt(doc, tokens.slice(0, -1))
  if (parent === undefined || parent === null || typeof parent !== 'object') {
    throw new PatchError(`doc is missing path: "${path}": missing value`)
  }
  return {parent, key: tokens[tokens.length - 1]}
}

export interface JsonPatchOp {
  op: string
  path: string
  from?: string
  value?: Json
}

export function jsonPatch(doc: Json, ops: unknown): Json {
  if (!Array.isArray(ops)) throw new PatchError('json patch must be an array of operations')
  let out = clone(doc)
  for (const raw of ops as JsonPatchOp[]) {
    const tokens = parsePointer(raw.path)
    const add = (value: Json): void => {
      if (tokens.length === 0) {
        out = value
        return
      }
      const {parent, key} = parentOf(out, tokens, raw.path)
      if (Array.isArray(parent)) {
        const i = key === '-' ? parent.length : Number(key)
        if (!Number.isInteger(i) || i < 0 || i > parent.length) throw new PatchError(`Unable to access invalid index: ${key}`)
        parent.splice(i, 0, value)
      } else (parent as JsonObject)[key] = value
    }
    const remove = (): Json => {
      const {parent, key} = parentOf(out, tokens, raw.path)
      if (Array.isArray(parent)) {
        const i = Number(key)
        if (!(i >= 0 && i < parent.length)) throw new PatchError(`Unable to remove nonexistent key: ${key}: missing value`)
        return parent.splice(i, 1)[0]
      }
      const obj = parent as JsonObject
      if (!Object.prototype.hasOwnProperty.call(obj, key)) {
        throw new PatchError(`Unable to remove nonexistent key: ${key}: missing value`)
      }
      const v = obj[key]
      delete obj[key]
      return v
    }
    switch (raw.op) {
      case 'add': add(clone(raw.value ?? null)); break
      case 'remove': remove(); break
      case 'replace': remove(); add(clone(raw.value ?? null)); break
      case 'move': {
        const from = parsePointer(raw.from ?? '')
        const v = getAt(out, from)
        if (v === undefined) throw new PatchError(`doc is missing from path: "${raw.from}"`)
        const {parent, key} = parentOf(out, from, raw.from ?? '')
        if (Array.isArray(parent)) parent.splice(Number(key), 1)
        else delete (parent as JsonObject)[key]
        add(v)
        break
      }
      case 'copy': {
        const v = getAt(out, parsePointer(raw.from ?? ''))
        if (v === undefined) throw new PatchError(`doc is missing from path: "${raw.from}"`)
        add(clone(v))
        break
      }
      case 'test': {
        const v = getAt(out, tokens)
        if (JSON.stringify(v) !== JSON.stringify(raw.value)) throw new PatchError(`testing value ${raw.path} failed: test failed`)
        break
      }
      default: throw new PatchError(`Unexpected kind: ${raw.op}`)
    }
  }
  return out
}

/** Merge keys of the core/v1 list fields sideload and kubectl touch (from the `patchMergeKey` tags). */
const MERGE_KEYS: Record<string, string> = {
  containers: 'name',
  initContainers: 'name',
  ephemeralContainers: 'name',
  env: 'name',
  volumes: 'name',
  volumeMounts: 'mountPath',
  volumeDevices: 'devicePath',
  imagePullSecrets: 'name',
  hostAliases: 'ip',
  conditions: 'type',
  ownerReferences: 'uid',
  finalizers: '',
}

function mergeKeyFor(field: string, parentPath: string[]): string | undefined {
  if (field === 'ports') {
    return parentPath.includes('containers') || parentPath.includes('initContainers') ? 'containerPort' : 'port'
  }
  return Object.prototype.hasOwnProperty.call(MERGE_KEYS, field) ? MERGE_KEYS[field] : undefined
}

export function strategicMergePatch(target: Json, patch: Json, path: string[] = []): Json {
  if (!isObject(patch)) return clone(patch)
  if (patch.$patch === 'replace') {
    const {$patch: _ignored, ...rest} = patch
    void _ignored
    return clone(rest)
  }
  if (patch.$patch === 'delete') return null
  const out: JsonObject = isObject(target) ? {...target} : {}
  const retainKeys = Array.isArray(patch.$retainKeys) ? (patch.$retainKeys as string[]) : undefined
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith('$setElementOrder/') || k === '$retainKeys' || k === '$patch') continue
    if (k.startsWith('$deleteFromPrimitiveList/')) {
      const field = k.slice('$deleteFromPrimitiveList/'.length)
      const cur = out[field]
      if (Array.isArray(cur) && Array.isArray(v)) out[field] = cur.filter(x => !v.includes(x))
      continue
    }
    if (v === null) {
      delete out[k]
      continue
    }
    if (Array.isArray(v)) {
      const key = mergeKeyFor(k, path)
      const cur = out[k]
      if (key === undefined || !Array.isArray(cur)) {
        out[k] = clone(v.filter(x => !(isObject(x) && x.$patch === 'delete')))
        continue
      }
      if (key === '') {
        // list of primitives merged as a set
        const merged = [...cur]
        for (const x of v) if (!merged.some(y => JSON.stringify(y) === JSON.stringify(x))) merged.push(clone(x))
        out[k] = merged
        continue
      }
      if (v.some(x => isObject(x) && x.$patch === 'replace')) {
        out[k] = clone(v.filter(x => !(isObject(x) && x.$patch === 'replace')))
        continue
      }
      const merged: Json[] = cur.map(x => clone(x))
      for (const item of v) {
        if (!isObject(item)) continue
        const idx = merged.findIndex(m => isObject(m) && m[key] === item[key])
        if (item.$patch === 'delete') {
          if (idx >= 0) merged.splice(idx, 1)
          continue
        }
        if (idx >= 0) merged[idx] = strategicMergePatch(merged[idx], item, [...path, k])
        else merged.push(strategicMergePatch(null, item, [...path, k]))
      }
      out[k] = merged
      continue
    }
    out[k] = strategicMergePatch(out[k] ?? null, v, [...path, k])
  }
  if (retainKeys) for (const k of Object.keys(out)) if (!retainKeys.includes(k)) delete out[k]
  return out
}

/** JSON with object keys sorted, so equal documents compare equal whatever their key order. */
export function canonicalJson(v: Json | undefined): string {
  if (v === undefined) return 'undefined'
  if (v === null || typeof v !== 'object') return JSON.stringify(v)
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`
  return `{${Object.keys(v).sort().filter(k => v[k] !== undefined).map(k => `${JSON.stringify(k)}:${canonicalJson(v[k])}`).join(',')}}`
}
