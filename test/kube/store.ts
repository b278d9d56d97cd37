// The object store behind the test API server: one global resourceVersion counter (like etcd's
// revision), a bounded window of past changes for watches (older resourceVersions get 410 Expired),
// defaulting, validation and allocation per resource type, managedFields per field manager.
import {type Json, type JsonObject, canonicalJson, clone, jsonPatch, mergePatch, strategicMergePatch, PatchError} from './patch.js'
import {type ResourceType, RESOURCES, apiVersionOf, generateNameSuffix, newUid, rfc3339, NODE_PORT_MIN, NODE_PORT_MAX} from './resources.js'
import {type FieldRequirement, type LabelRequirement, matchesFields, matchesLabels} from './selectors.js'
import {ApiError, alreadyExists, badRequest, conflict, expired, invalid, notFound, unsupportedMediaType} from './status.js'

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR'

export interface WatchEvent {
  type: WatchEventType
  object: JsonObject
}

interface Change {
  rv: number
  resource: string
  type: 'ADDED' | 'MODIFIED' | 'DELETED'
  object: JsonObject
  previous?: JsonObject
}

export interface Filter {
  namespace?: string
  labels: LabelRequirement[]
  fields: FieldRequirement[]
}

interface Watcher {
  resource: string
  filter: Filter
  send(e: WatchEvent): void
}

export type PatchType = 'json' | 'merge' | 'strategic'

export interface WriteOptions {
  /** the field manager recorded in managedFields */
  manager?: string
  subresource?: 'status'
}

export interface StoreOptions {
  /** how many past changes a watch can resume from; older resourceVersions get 410 Expired */
  watchWindow?: number
  serviceCidrPrefix?: string
}

const PATCH_TYPES: Record<string, PatchType> = {
  'application/json-patch+json': 'json',
  'application/merge-patch+json': 'merge',
  'application/strategic-merge-patch+json': 'strategic',
}

export function patchTypeOf(contentType: string | undefined): PatchType {
  const base = (contentType ?? '').split(';')[0].trim()
  const t = PATCH_TYPES[base]
  if (t === undefined) throw unsupportedMediaType(base)
  return t
}

function meta(o: JsonObject): JsonObject {
  const m = o.metadata
  if (m === null || typeof m !== 'object' || Array.isArray(m)) {
    const fresh: JsonObject = {}
    o.metadata = fresh
    return fresh
  }
  return m
}

/** A FieldsV1 set naming every field the request set (lists of keyed items by their key). */
function fieldSet(v: Json, parentKey = ''): JsonObject {
  const out: JsonObject = {}
  if (v === null || typeof v !== 'object') return out
  if (Array.isArray(v)) {
    for (const item of v) {
      if (item !== null && typeof item === 'object' && !Array.isArray(item)) {
        // keyed like the real server: ports by port+protocol, other lists by their merge key
        const portKey = parentKey === 'ports' ? ['containerPort', 'port'].find(k => k in item) : undefined
        const key: JsonObject | undefined = portKey !== undefined
          ? {[portKey]: item[portKey], protocol: item.protocol ?? 'TCP'}
          : (() => {
            const k = ['name', 'type', 'ip', 'mountPath', 'uid'].find(n => n in item)
            return k === undefined ? undefined : {[k]: item[k]}
          })()
        if (key) {
          out[`k:${JSON.stringify(key)}`] = {'.': {}, ...fieldSet(item, 'item')}
          continue
        }
      }
      out[`v:${JSON.stringify(item)}`] = {}
    }
    return out
  }
  for (const [k, child] of Object.entries(v)) {
    if (parentKey === '' && ['apiVersion', 'kind', 'status'].includes(k)) continue
    if (k === 'metadata') {
      const m = child as JsonObject
      const sub: JsonObject = {}
      for (const mk of ['labels', 'annotations', 'ownerReferences', 'finalizers']) {
        if (m[mk] !== undefined) sub[`f:${mk}`] = {'.': {}, ...fieldSet(m[mk])}
      }
      if (Object.keys(sub).length) out['f:metadata'] = sub
      continue
    }
    out[`f:${k}`] = child !== null && typeof child === 'object' ? {'.': {}, ...fieldSet(child, k)} : {}
  }
  return out
}

export class Store {
  readonly types = new Map<string, ResourceType>(RESOURCES.map(r => [r.name, r]))
  private rv = 0
  private readonly objects = new Map<string, Map<string, JsonObject>>()
  private history: Change[] = []
  /** every change with rv <= compactedRv has been dropped from history */
  private compactedRv = 0
  private readonly watchers = new Set<Watcher>()
  private watchWindow: number
  private readonly nodePorts = new Set<number>()
  private readonly clusterIPs = new Set<string>()
  private nextIP = 2

  constructor(private readonly opts: StoreOptions = {}) {
    this.watchWindow = opts.watchWindow ?? 1000
    for (const r of RESOURCES) this.objects.set(r.name, new Map())
    for (const ns of ['default', 'kube-system', 'kube-public', 'kube-node-lease']) {
      this.create('namespaces', undefined, {metadata: {name: ns}}, {manager: 'kube-apiserver'})
    }
    this.clusterIPs.add(`${this.cidrPrefix()}0.1`)
    this.create('services', 'default', {
      metadata: {name: 'kubernetes', labels: {component: 'apiserver', provider: 'kubernetes'}},
      spec: {clusterIP: `${this.cidrPrefix()}0.1`, ports: [{name: 'https', port: 443, protocol: 'TCP', targetPort: 6443}]},
    }, {manager: 'kube-apiserver'})
  }

  private cidrPrefix(): string {
    return this.opts.serviceCidrPrefix ?? '10.96.'
  }

  get resourceVersion(): number {
    return this.rv
  }

  /** Sets the watch window (number of retained changes) and drops older changes at once. */
  setWatchWindow(n: number): void {
    this.watchWindow = n
    this.trim()
  }

  /** Drops the whole change history: every resourceVersion before now becomes too old (410). */
  compact(): void {
    this.compactedRv = this.rv
    this.history = []
  }

  private trim(): void {
    while (this.history.length > this.watchWindow) {
      const dropped = this.history.shift()
      if (dropped) this.compactedRv = dropped.rv
    }
  }

  type(resource: string): ResourceType {
    const t = this.types.get(resource)
    if (!t) throw notFound('resource', resource)
    return t
  }

  private bucket(resource: string): Map<string, JsonObject> {
    const b = this.objects.get(resource)
    if (!b) throw notFound('resource', resource)
    return b
  }

  private key(t: ResourceType, ns: string | undefined, name: string): string {
    return t.namespaced ? `${ns ?? ''}/${name}` : name
  }

  private checkNamespace(t: ResourceType, ns: string | undefined): void {
    if (t.namespaced && t.name !== 'namespaces' && !this.objects.get('namespaces')?.has(ns ?? '')) {
      throw notFound('namespaces', ns ?? '')
    }
  }

  private record(resource: string, type: Change['type'], object: JsonObject, previous?: JsonObject): void {
    const change: Change = {rv: this.rv, resource, type, object: clone(object), previous: previous && clone(previous)}
    this.history.push(change)
    this.trim()
    for (const w of this.watchers) this.deliver(w, change)
  }

  private deliver(w: Watcher, c: Change): void {
    if (w.resource !== c.resource) return
    const now = this.matches(w.filter, c.object)
    const before = c.previous !== undefined && this.matches(w.filter, c.previous)
    if (c.type === 'MODIFIED') {
      if (now && before) w.send({type: 'MODIFIED', object: clone(c.object)})
      else if (now) w.send({type: 'ADDED', object: clone(c.object)})
      else if (before) w.send({type: 'DELETED', object: clone(c.object)})
    } else if (now) w.send({type: c.type, object: clone(c.object)})
  }

  matches(f: Filter, o: JsonObject): boolean {
    const m = meta(o)
    if (f.namespace !== undefined && f.namespace !== '' && m.namespace !== f.namespace) return false
    return matchesLabels(f.labels, m.labels as Record<string, string> | undefined) && matchesFields(f.fields, o)
  }

  checkFieldSelector(resource: string, fields: FieldRequirement[]): void {
    const t = this.type(resource)
    for (const f of fields) {
      if (!['metadata.name', 'metadata.namespace', ...t.fieldLabels].includes(f.field)) {
        throw badRequest(`field label not supported: ${f.field}`)
      }
    }
  }

  private stamp(t: ResourceType, o: JsonObject): JsonObject {
    o.apiVersion = apiVersionOf(t)
    o.kind = t.kind
    return o
  }

  private manage(t: ResourceType, o: JsonObject, request: JsonObject, opts: WriteOptions, operation: 'Update' | 'Apply'): void {
    const manager = opts.manager ?? 'unknown'
    const m = meta(o)
    const entries = Array.isArray(m.managedFields) ? (m.managedFields as JsonObject[]) : []
    const subresource = opts.subresource ?? ''
    const entry: JsonObject = {manager, operation, apiVersion: apiVersionOf(t), time: rfc3339(), fieldsType: 'FieldsV1',
      fieldsV1: subresource === 'status' ? {'f:status': fieldSet(request.status ?? {})} : fieldSet(request)}
    if (subresource) entry.subresource = subresource
    const rest = entries.filter(e => !(e.manager === manager && e.operation === operation && (e.subresource ?? '') === subresource))
    m.managedFields = [...rest, entry]
  }

  create(resource: string, ns: string | undefined, input: JsonObject, opts: WriteOptions = {}): JsonObject {
    const t = this.type(resource)
    this.checkNamespace(t, ns)
    const o = clone(input)
    const m = meta(o)
    if ((m.name === undefined || m.name === '') && typeof m.generateName === 'string' && m.generateName !== '') {
      m.name = `${m.generateName}${generateNameSuffix()}`
    }
    const name = typeof m.name === 'string' ? m.name : ''
    if (t.namespaced) {
      if (m.namespace !== undefined && m.namespace !== '' && m.namespace !== ns) {
        throw badRequest('the namespace of the provided object does not match the namespace sent on the request')
      }
      m.namespace = ns ?? 'default'
    } else delete m.namespace
    for (const k of ['uid', 'resourceVersion', 'creationTimestamp', 'deletionTimestamp', 'managedFields', 'selfLink']) delete m[k]
    t.defaults(o)
    const errs = t.validate(o, undefined)
    if (errs.length) throw invalid(t.kind, name, errs)
    const b = this.bucket(resource)
    const key = this.key(t, ns, name)
    if (b.has(key)) throw alreadyExists(resource, name)
    t.allocate?.(o, undefined, this.alloc)
    m.uid = newUid()
    m.creationTimestamp = rfc3339()
    this.manage(t, o, input, opts, 'Update')
    this.rv++
    m.resourceVersion = String(this.rv)
    this.stamp(t, o)
    b.set(key, o)
    this.record(resource, 'ADDED', o)
    return clone(o)
  }

  get(resource: string, ns: string | undefined, name: string): JsonObject {
    const t = this.type(resource)
    const o = this.bucket(resource).get(this.key(t, ns, name))
    if (!o) throw notFound(resource, name)
    return clone(o)
  }

  tryGet(resource: string, ns: string | undefined, name: string): JsonObject | undefined {
    const t = this.type(resource)
    const o = this.bucket(resource).get(this.key(t, ns, name))
    return o && clone(o)
  }

  list(resource: string, filter: Filter): {items: JsonObject[]; resourceVersion: string} {
    const items = [...this.bucket(resource).values()].filter(o => this.matches(filter, o)).map(o => clone(o))
    items.sort((a, b) => {
      const ma = meta(a)
      const mb = meta(b)
      return `${String(ma.namespace ?? '')}/${String(ma.name)}`.localeCompare(`${String(mb.namespace ?? '')}/${String(mb.name)}`)
    })
    return {items, resourceVersion: String(this.rv)}
  }

  /** A list at an exact older resourceVersion can only be served while it is inside the window. */
  checkListResourceVersion(rv: number): void {
    if (rv < this.compactedRv) throw expired('The resourceVersion for the provided list is too old.')
  }

  update(resource: string, ns: string | undefined, name: string, input: JsonObject, opts: WriteOptions = {}): JsonObject {
    return this.write(resource, ns, name, input, opts, input)
  }

  /** `requestShape` is what the client sent (the body or the patch): its fields go to the manager's entry. */
  private write(resource: string, ns: string | undefined, name: string, input: JsonObject, opts: WriteOptions, requestShape: JsonObject): JsonObject {
    const t = this.type(resource)
    const b = this.bucket(resource)
    const key = this.key(t, ns, name)
    const old = b.get(key)
    if (!old) throw notFound(resource, name)
    const o = clone(input)
    const m = meta(o)
    if (m.name !== undefined && m.name !== name) {
      throw badRequest(`the name of the object (${String(m.name)}) does not match the name on the URL (${name})`)
    }
    const om = meta(old)
    if (m.resourceVersion !== undefined && m.resourceVersion !== '' && m.resourceVersion !== om.resourceVersion) {
      throw conflict(resource, name)
    }
    let next: JsonObject
    if (opts.subresource === 'status') {
      next = clone(old)
      next.status = o.status ?? {}
    } else {
      next = o
      // the main resource cannot change status, nor the system metadata
      if (old.status !== undefined && t.subresources.includes('status')) next.status = clone(old.status)
      const nm = meta(next)
      for (const k of ['uid', 'creationTimestamp', 'deletionTimestamp', 'namespace', 'generateName']) {
        if (om[k] !== undefined) nm[k] = om[k]
        else delete nm[k]
      }
      nm.name = name
      nm.managedFields = om.managedFields ?? []
    }
    t.defaults(next)
    const errs = t.validate(next, old)
    if (errs.length) throw invalid(t.kind, name, errs)
    t.allocate?.(next, old, this.alloc)
    if (canonicalJson(this.comparable(next)) === canonicalJson(this.comparable(old))) return clone(old)
    this.manage(t, next, requestShape, opts, 'Update')
    this.rv++
    meta(next).resourceVersion = String(this.rv)
    this.stamp(t, next)
    b.set(key, next)
    this.record(resource, 'MODIFIED', next, old)
    return clone(next)
  }

  private comparable(o: JsonObject): JsonObject {
    const c = clone(o)
    const m = meta(c)
    delete m.resourceVersion
    delete m.managedFields
    return c
  }

  patch(resource: string, ns: string | undefined, name: string, type: PatchType, patch: Json, opts: WriteOptions = {}): JsonObject {
    const t = this.type(resource)
    const old = this.bucket(resource).get(this.key(t, ns, name))
    if (!old) throw notFound(resource, name)
    let next: Json
    try {
      if (type === 'json') next = jsonPatch(old, patch)
      else if (type === 'merge') next = mergePatch(old, patch)
      else next = strategicMergePatch(old, patch)
    } catch (e) {
      if (e instanceof PatchError) throw new ApiError({...badRequest(e.message).status, code: 422, reason: 'Invalid'})
      throw e
    }
    if (next === null || typeof next !== 'object' || Array.isArray(next)) throw badRequest('the patch did not produce an object')
    const nm = meta(next)
    // a patch that names a resourceVersion is a precondition; one that does not always applies
    const patchedRv = patch !== null && typeof patch === 'object' && !Array.isArray(patch) &&
      typeof patch.metadata === 'object' && patch.metadata !== null && !Array.isArray(patch.metadata)
      ? patch.metadata.resourceVersion : undefined
    if (patchedRv === undefined || type === 'json') nm.resourceVersion = meta(old).resourceVersion ?? null
    return this.write(resource, ns, name, next, opts, type === 'json' ? next : (patch as JsonObject))
  }

  delete(resource: string, ns: string | undefined, name: string): JsonObject {
    const t = this.type(resource)
    const b = this.bucket(resource)
    const key = this.key(t, ns, name)
    const old = b.get(key)
    if (!old) throw notFound(resource, name)
    b.delete(key)
    t.release?.(old, this.alloc)
    this.rv++
    const gone = clone(old)
    meta(gone).resourceVersion = String(this.rv)
    this.record(resource, 'DELETED', gone)
    return clone(gone)
  }

  /**
   * Starts a watch. `fromRv` undefined or 0: synthetic ADDED for every current object, then changes.
   * Otherwise every change after `fromRv`; throws 410 Expired when those changes are no longer kept.
   */
  watch(resource: string, filter: Filter, fromRv: number | undefined, send: (e: WatchEvent) => void): () => void {
    this.type(resource)
    const w: Watcher = {resource, filter, send}
    if (fromRv === undefined || fromRv === 0) {
      for (const o of this.list(resource, filter).items) send({type: 'ADDED', object: o})
    } else {
      if (fromRv < this.compactedRv) {
        const oldest = this.history.length ? this.history[0].rv : this.rv + 1
        throw expired(`too old resource version: ${fromRv} (${oldest - 1})`)
      }
      for (const c of this.history) if (c.rv > fromRv) this.deliver(w, c)
    }
    this.watchers.add(w)
    return () => {
      this.watchers.delete(w)
    }
  }

  readonly alloc = {
    allocateNodePort: (wanted: number | undefined, field: string, svc: string): number => {
      if (wanted !== undefined) {
        if (wanted < NODE_PORT_MIN || wanted > NODE_PORT_MAX) {
          throw invalid('Service', svc, [{type: 'FieldValueInvalid', field, value: wanted,
            detail: `provided port is not in the valid range. The range of valid ports is ${NODE_PORT_MIN}-${NODE_PORT_MAX}`}])
        }
        if (this.nodePorts.has(wanted)) {
          throw invalid('Service', svc, [{type: 'FieldValueInvalid', field, value: wanted, detail: 'provided port is already allocated'}])
        }
        this.nodePorts.add(wanted)
        return wanted
      }
      const span = NODE_PORT_MAX - NODE_PORT_MIN + 1
      const start = Math.floor(Math.random() * span)
      for (let i = 0; i < span; i++) {
        const p = NODE_PORT_MIN + ((start + i) % span)
        if (!this.nodePorts.has(p)) {
          this.nodePorts.add(p)
          return p
        }
      }
      throw invalid('Service', svc, [{type: 'FieldValueInvalid', field, value: 0, detail: 'range is full'}])
    },
    releaseNodePort: (port: number): void => {
      this.nodePorts.delete(port)
    },
    allocateClusterIP: (): string => {
      for (;;) {
        const n = this.nextIP++
        const ip = `${this.cidrPrefix()}${Math.floor(n / 254)}.${(n % 254) + 1}`
        if (!this.clusterIPs.has(ip)) {
          this.clusterIPs.add(ip)
          return ip
        }
      }
    },
    releaseClusterIP: (ip: string): void => {
      this.clusterIPs.delete(ip)
    },
  }
}
