// The core/v1 resources the test API server serves: discovery entries, defaulting (as
// pkg/apis/core/v1/defaults.go and the admission plugins of a default cluster do), validation,
// allocation (service cluster IPs and node ports) and the server-side tables kubectl prints.
import * as crypto from 'node:crypto'
import {type Json, type JsonObject, canonicalJson} from './patch.js'
import type {FieldError} from './status.js'

export interface ColumnDefinition extends JsonObject {
  name: string
  type: string
  format: string
  description: string
  priority: number
}

export interface AllocContext {
  /** Throws an ApiError (422) when allocation fails. */
  allocateNodePort(wanted: number | undefined, field: string, svc: string): number
  releaseNodePort(port: number): void
  allocateClusterIP(): string
  releaseClusterIP(ip: string): void
}

export interface ResourceType {
  name: string
  /** API group ('' = core) */
  group: string
  singular: string
  kind: string
  namespaced: boolean
  shortNames: string[]
  categories: string[]
  verbs: string[]
  subresources: string[]
  /** fields accepted in a fieldSelector (metadata.name and metadata.namespace are always accepted) */
  fieldLabels: string[]
  defaults(obj: JsonObject): void
  validate(obj: JsonObject, old: JsonObject | undefined): FieldError[]
  /** allocations on create / update; runs after validation */
  allocate?(obj: JsonObject, old: JsonObject | undefined, ctx: AllocContext): void
  release?(obj: JsonObject, ctx: AllocContext): void
  columns: ColumnDefinition[]
  row(obj: JsonObject, now: number): Json[]
}

export const rfc3339 = (ms: number = Date.now()): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z')
export const rfc3339Micro = (ms: number = Date.now()): string => new Date(ms).toISOString().replace(/Z$/, '000Z')

function obj(v: Json | undefined): JsonObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? v : {}
}
function arr(v: Json | undefined): Json[] {
  return Array.isArray(v) ? v : []
}
function str(v: Json | undefined): string {
  return typeof v === 'string' ? v : ''
}

/** duration.HumanDuration from k8s.io/apimachinery. */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000)
  if (seconds < -1) return '<invalid>'
  if (seconds < 0) return '0s'
  if (seconds < 120) return `${seconds}s`
  const minutes = Math.floor(seconds / 60)
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`
  if (minutes < 180) return `${minutes}m`
  const hours = Math.floor(minutes / 60)
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`
  if (hours < 48) return `${hours}h`
  if (hours < 24 * 8) return hours % 24 === 0 ? `${hours / 24}d` : `${Math.floor(hours / 24)}d${hours % 24}h`
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`
  if (hours < 24 * 365 * 8) return `${Math.floor(hours / 24 / 365)}y${Math.floor(hours / 24) % 365}d`
  return `${Math.floor(hours / 24 / 365)}y`
}

function since(ts: Json | undefined, now: number): string {
  if (typeof ts !== 'string' || ts === '') return '<unknown>'
  return humanDuration(now - Date.parse(ts))
}

function col(name: string, type: string, description: string, priority = 0, format = ''): ColumnDefinition {
  return {name, type, format, description, priority}
}
const NAME_COL = col('Name', 'string', 'Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: http://kubernetes.io/docs/user-guide/identifiers#names', 0, 'name')
const AGE_COL = col('Age', 'string', 'CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata')

// --- validation helpers (k8s.io/apimachinery/pkg/util/validation) ---
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/

function validateSubdomainName(name: string): FieldError[] {
  if (name === '') return [{type: 'FieldValueRequired', field: 'metadata.name', detail: 'name or generateName is required'}]
  if (name.length > 253) return [{type: 'FieldValueInvalid', field: 'metadata.name', value: name, detail: 'must be no more than 253 characters'}]
  if (!DNS1123_SUBDOMAIN.test(name)) {
    return [{type: 'FieldValueInvalid', field: 'metadata.name', value: name,
      detail: "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"}]
  }
  return []
}

function validateDns1035Name(name: string): FieldError[] {
  if (name === '') return [{type: 'FieldValueRequired', field: 'metadata.name', detail: 'name or generateName is required'}]
  if (name.length > 63 || !DNS1035_LABEL.test(name)) {
    return [{type: 'FieldValueInvalid', field: 'metadata.name', value: name,
      detail: "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"}]
  }
  return []
}

export function validateLabels(labels: JsonObject, field: string): FieldError[] {
  const errs: FieldError[] = []
  for (const [k, v] of Object.entries(labels)) {
    const slash = k.lastIndexOf('/')
    const namepart = slash >= 0 ? k.slice(slash + 1) : k
    const prefix = slash >= 0 ? k.slice(0, slash) : ''
    if (namepart === '' || namepart.length > 63 || !QUALIFIED_NAME.test(namepart) ||
        (prefix !== '' && (prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix)))) {
      errs.push({type: 'FieldValueInvalid', field, value: k,
        detail: "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"})
    }
    const value = typeof v === 'string' ? v : String(v)
    if (value.length > 63) errs.push({type: 'FieldValueInvalid', field, value, detail: 'must be no more than 63 characters'})
    else if (!LABEL_VALUE.test(value)) {
      errs.push({type: 'FieldValueInvalid', field, value,
        detail: "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"})
    }
  }
  return errs
}

function validateMeta(o: JsonObject): FieldError[] {
  const m = obj(o.metadata)
  return validateLabels(obj(m.labels), 'metadata.labels')
}

// --- pods ---

/** pkg/apis/core/v1/defaults.go SetDefaults_Container: `:latest` or no tag → Always, else IfNotPresent. */
export function defaultPullPolicy(image: string): string {
  if (image.includes('@')) return 'IfNotPresent'
  const lastSlash = image.lastIndexOf('/')
  const tagSep = image.indexOf(':', lastSlash + 1)
  const tag = tagSep >= 0 ? image.slice(tagSep + 1) : ''
  return tag === '' || tag === 'latest' ? 'Always' : 'IfNotPresent'
}

function defaultContainer(c: JsonObject): void {
  if (c.imagePullPolicy === undefined) c.imagePullPolicy = defaultPullPolicy(str(c.image))
  if (c.terminationMessagePath === undefined) c.terminationMessagePath = '/dev/termination-log'
  if (c.terminationMessagePolicy === undefined) c.terminationMessagePolicy = 'File'
  if (c.resources === undefined) c.resources = {}
  for (const p of arr(c.ports)) {
    const port = obj(p)
    if (port.protocol === undefined) port.protocol = 'TCP'
  }
}

function defaultPod(o: JsonObject): void {
  const spec = obj(o.spec)
  o.spec = spec
  for (const c of [...arr(spec.containers), ...arr(spec.initContainers)]) defaultContainer(obj(c))
  spec.restartPolicy ??= 'Always'
  spec.terminationGracePeriodSeconds ??= 30
  spec.dnsPolicy ??= 'ClusterFirst'
  spec.securityContext ??= {}
  spec.schedulerName ??= 'default-scheduler'
  spec.serviceAccountName ??= 'default'
  spec.serviceAccount ??= spec.serviceAccountName
  spec.enableServiceLinks ??= true
  spec.priority ??= 0
  spec.preemptionPolicy ??= 'PreemptLowerPriority'
  // DefaultTolerationSeconds admission plugin
  if (spec.tolerations === undefined) {
    spec.tolerations = [
      {key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300},
      {key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300},
    ]
  }
  const status = obj(o.status)
  o.status = status
  status.phase ??= 'Pending'
  status.qosClass ??= 'BestEffort'
  if (str(spec.nodeName) !== '' && status.conditions === undefined) {
    status.conditions = [{type: 'PodScheduled', status: 'True', lastProbeTime: null, lastTransitionTime: rfc3339()}]
  }
}

function validatePod(o: JsonObject, old: JsonObject | undefined): FieldError[] {
  const errs = [...validateSubdomainName(str(obj(o.metadata).name)), ...validateMeta(o)]
  const spec = obj(o.spec)
  const containers = arr(spec.containers)
  if (containers.length === 0) errs.push({type: 'FieldValueRequired', field: 'spec.containers', detail: ''})
  containers.forEach((c, i) => {
    const co = obj(c)
    if (str(co.name) === '') errs.push({type: 'FieldValueRequired', field: `spec.containers[${i}].name`, detail: ''})
    else if (!DNS1123_LABEL.test(str(co.name))) {
      errs.push({type: 'FieldValueInvalid', field: `spec.containers[${i}].name`, value: co.name,
        detail: "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"})
    }
    if (str(co.image).trim() === '') errs.push({type: 'FieldValueRequired', field: `spec.containers[${i}].image`, detail: ''})
    const policy = str(co.imagePullPolicy)
    if (!['Always', 'IfNotPresent', 'Never'].includes(policy)) {
      errs.push({type: 'FieldValueNotSupported', field: `spec.containers[${i}].imagePullPolicy`, value: policy,
        detail: 'supported values: "Always", "IfNotPresent", "Never"'})
    }
  })
  if (old) {
    // ValidatePodUpdate: only images, activeDeadlineSeconds and toleration additions may change.
    const strip = (s: JsonObject): JsonObject => {
      const c = structuredClone(s)
      for (const k of ['containers', 'initContainers']) {
        for (const x of arr(c[k])) delete obj(x).image
      }
      delete c.activeDeadlineSeconds
      delete c.tolerations
      // the scheduler binds through pods/binding; an update may set nodeName once
      if (str(obj(old.spec).nodeName) === '') delete c.nodeName
      return c
    }
    if (canonicalJson(strip(spec)) !== canonicalJson(strip(obj(old.spec)))) {
      errs.push({type: 'FieldValueForbidden', field: 'spec',
        detail: 'pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds` or `spec.tolerations` (only additions to existing tolerations)'})
    }
  }
  return errs
}

/** printPod from pkg/printers/internalversion/printers.go (1.20). */
export function podStatusReason(o: JsonObject): string {
  const status = obj(o.status)
  let reason = str(status.phase)
  if (str(status.reason) !== '') reason = str(status.reason)
  let initializing = false
  const inits = arr(status.initContainerStatuses)
  for (let i = 0; i < inits.length; i++) {
    const cs = obj(inits[i])
    const state = obj(cs.state)
    const term = obj(state.terminated)
    const wait = obj(state.waiting)
    if (state.terminated !== undefined && term.exitCode === 0) continue
    if (state.terminated !== undefined) {
      reason = str(term.reason) !== '' ? `Init:${str(term.reason)}` : `Init:ExitCode:${String(term.exitCode)}`
    } else if (state.waiting !== undefined && str(wait.reason) !== '' && str(wait.reason) !== 'PodInitializing') {
      reason = `Init:${str(wait.reason)}`
    } else {
      reason = `Init:${i}/${arr(obj(o.spec).initContainers).length}`
    }
    initializing = true
    break
  }
  if (!initializing) {
    let hasRunning = false
    const css = arr(status.containerStatuses)
    for (let i = css.length - 1; i >= 0; i--) {
      const cs = obj(css[i])
      const state = obj(cs.state)
      const wait = obj(state.waiting)
      const term = obj(state.terminated)
      if (state.waiting !== undefined && str(wait.reason) !== '') reason = str(wait.reason)
      else if (state.terminated !== undefined && str(term.reason) !== '') reason = str(term.reason)
      else if (state.terminated !== undefined) {
        reason = term.signal ? `Signal:${String(term.signal)}` : `ExitCode:${String(term.exitCode)}`
      } else if (state.running !== undefined && cs.ready === true) hasRunning = true
    }
    if (reason === 'Completed' && hasRunning) reason = 'Running'
  }
  if (obj(o.metadata).deletionTimestamp !== undefined && str(status.reason) === 'NodeLost') reason = 'Unknown'
  else if (obj(o.metadata).deletionTimestamp !== undefined) reason = 'Terminating'
  return reason
}

const pods: ResourceType = {
  name: 'pods', group: '', singular: 'pod', kind: 'Pod', namespaced: true, shortNames: ['po'], categories: ['all'],
  verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'],
  subresources: ['status'],
  fieldLabels: ['spec.nodeName', 'spec.restartPolicy', 'spec.schedulerName', 'spec.serviceAccountName',
    'status.phase', 'status.podIP', 'status.nominatedNodeName'],
  defaults: defaultPod,
  validate: validatePod,
  columns: [
    NAME_COL,
    col('Ready', 'string', 'The aggregate readiness state of this pod for accepting traffic.'),
    col('Status', 'string', 'The aggregate status of the containers in this pod.'),
    col('Restarts', 'integer', 'The number of times the containers in this pod have been restarted.'),
    AGE_COL,
    col('IP', 'string', 'IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.', 1),
    col('Node', 'string', "NodeName is a request to schedule this pod onto a specific node. If it is non-empty, the scheduler simply schedules this pod onto that node, assuming that it fits resource requirements.", 1),
    col('Nominated Node', 'string', 'nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.', 1),
    col('Readiness Gates', 'string', 'If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to "True" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates', 1),
  ],
  row(o, now) {
    const status = obj(o.status)
    const css = arr(status.containerStatuses)
    const ready = css.filter(c => obj(c).ready === true).length
    const restarts = css.reduce<number>((n, c) => n + (Number(obj(c).restartCount) || 0), 0)
    const gates = arr(obj(o.spec).readinessGates)
    let gatesCell = '<none>'
    if (gates.length > 0) {
      const conds = arr(status.conditions).map(obj)
      const trueGates = gates.filter(g => conds.some(c => c.type === obj(g).conditionType && c.status === 'True')).length
      gatesCell = `${trueGates}/${gates.length}`
    }
    return [
      str(obj(o.metadata).name),
      `${ready}/${arr(obj(o.spec).containers).length}`,
      podStatusReason(o),
      restarts,
      since(obj(o.metadata).creationTimestamp, now),
      str(status.podIP) || '<none>',
      str(obj(o.spec).nodeName) || '<none>',
      str(status.nominatedNodeName) || '<none>',
      gatesCell,
    ]
  },
}

// --- services ---
export const NODE_PORT_MIN = 30000
export const NODE_PORT_MAX = 32767
const SERVICE_TYPES = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName']

function defaultService(o: JsonObject): void {
  const spec = obj(o.spec)
  o.spec = spec
  spec.type ??= 'ClusterIP'
  spec.sessionAffinity ??= 'None'
  for (const p of arr(spec.ports)) {
    const port = obj(p)
    port.protocol ??= 'TCP'
    if (port.targetPort === undefined || port.targetPort === 0 || port.targetPort === '') port.targetPort = port.port ?? null
  }
  if (spec.type === 'NodePort' || spec.type === 'LoadBalancer') spec.externalTrafficPolicy ??= 'Cluster'
  if (spec.type !== 'ExternalName') {
    spec.ipFamilies ??= ['IPv4']
    spec.ipFamilyPolicy ??= 'SingleStack'
  }
  o.status ??= {loadBalancer: {}}
}

function validateService(o: JsonObject, old: JsonObject | undefined): FieldError[] {
  const errs = [...validateDns1035Name(str(obj(o.metadata).name)), ...validateMeta(o)]
  const spec = obj(o.spec)
  const type = str(spec.type)
  if (!SERVICE_TYPES.includes(type)) {
    errs.push({type: 'FieldValueNotSupported', field: 'spec.type', value: type,
      detail: 'supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"'})
  }
  const ports = arr(spec.ports).map(obj)
  if (ports.length === 0 && type !== 'ExternalName' && spec.clusterIP !== 'None') {
    errs.push({type: 'FieldValueRequired', field: 'spec.ports', detail: ''})
  }
  const seen = new Set<string>()
  const names = new Set<string>()
  ports.forEach((p, i) => {
    const f = `spec.ports[${i}]`
    if (ports.length > 1 && str(p.name) === '') errs.push({type: 'FieldValueRequired', field: `${f}.name`, detail: ''})
    if (str(p.name) !== '') {
      if (names.has(str(p.name))) errs.push({type: 'FieldValueDuplicate', field: `${f}.name`, value: p.name, detail: ''})
      names.add(str(p.name))
    }
    const port = p.port
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
      errs.push({type: 'FieldValueInvalid', field: `${f}.port`, value: port ?? 0, detail: 'must be between 1 and 65535, inclusive'})
    }
    const proto = str(p.protocol)
    if (!['TCP', 'UDP', 'SCTP'].includes(proto)) {
      errs.push({type: 'FieldValueNotSupported', field: `${f}.protocol`, value: proto, detail: 'supported values: "SCTP", "TCP", "UDP"'})
    }
    const tp = p.targetPort
    if (typeof tp === 'number' && (!Number.isInteger(tp) || tp < 1 || tp > 65535)) {
      errs.push({type: 'FieldValueInvalid', field: `${f}.targetPort`, value: tp, detail: 'must be between 1 and 65535, inclusive'})
    }
    const key = `${String(port)}/${proto}`
    if (seen.has(key)) errs.push({type: 'FieldValueDuplicate', field: `${f}`, value: {port, protocol: proto}, detail: ''})
    seen.add(key)
    const np = p.nodePort
    if (np !== undefined && np !== 0 && np !== null) {
      if (type === 'ClusterIP') errs.push({type: 'FieldValueForbidden', field: `${f}.nodePort`, detail: "may not be used when `type` is 'ClusterIP'"})
      else if (typeof np !== 'number' || np < 1 || np > 65535) {
        errs.push({type: 'FieldValueInvalid', field: `${f}.nodePort`, value: np, detail: 'must be between 1 and 65535, inclusive'})
      }
    }
  })
  const nodePorts = new Map<number, number>()
  ports.forEach((p, i) => {
    const np = p.nodePort
    if (typeof np !== 'number' || np === 0) return
    const prev = nodePorts.get(np)
    if (prev !== undefined && str(ports[prev].protocol) === str(p.protocol)) {
      errs.push({type: 'FieldValueDuplicate', field: `spec.ports[${i}].nodePort`, value: np, detail: ''})
    }
    nodePorts.set(np, i)
  })
  errs.push(...validateLabels(obj(spec.selector), 'spec.selector'))
  if (old) {
    const oldIP = str(obj(old.spec).clusterIP)
    if (spec.clusterIP !== undefined && str(spec.clusterIP) !== '' && str(spec.clusterIP) !== oldIP) {
      errs.push({type: 'FieldValueInvalid', field: 'spec.clusterIP', value: spec.clusterIP, detail: 'field is immutable'})
    }
  }
  return errs
}

function allocateService(o: JsonObject, old: JsonObject | undefined, ctx: AllocContext): void {
  const spec = obj(o.spec)
  const name = str(obj(o.metadata).name)
  const oldSpec = old ? obj(old.spec) : undefined
  if (spec.type !== 'ExternalName') {
    if (oldSpec && str(spec.clusterIP) === '') spec.clusterIP = oldSpec.clusterIP ?? null
    if (str(spec.clusterIP) === '') spec.clusterIP = ctx.allocateClusterIP()
    spec.clusterIPs = [str(spec.clusterIP)]
  }
  const oldPorts = oldSpec ? arr(oldSpec.ports).map(obj) : []
  const usesNodePorts = spec.type === 'NodePort' || spec.type === 'LoadBalancer'
  const kept = new Set<number>()
  const allocated: number[] = []
  try {
    arr(spec.ports).map(obj).forEach((p, i) => {
      const field = `spec.ports[${i}].nodePort`
      if (!usesNodePorts) {
        delete p.nodePort
        return
      }
      const np = typeof p.nodePort === 'number' ? p.nodePort : 0
      // patchAllocatedValues: an update that omits the node port keeps the one already allocated
      const same = oldPorts.find(q => q.port === p.port && q.protocol === p.protocol && typeof q.nodePort === 'number')
      if (np === 0 && same) {
        p.nodePort = same.nodePort ?? null
        kept.add(Number(same.nodePort))
        return
      }
      if (np !== 0 && oldPorts.some(q => q.nodePort === np)) {
        kept.add(np)
        return
      }
      p.nodePort = ctx.allocateNodePort(np === 0 ? undefined : np, field, name)
      allocated.push(Number(p.nodePort))
    })
  } catch (e) {
    for (const p of allocated) ctx.releaseNodePort(p)
    throw e
  }
  for (const q of oldPorts) {
    if (typeof q.nodePort === 'number' && !kept.has(q.nodePort)) ctx.releaseNodePort(q.nodePort)
  }
}

function servicePortsCell(o: JsonObject): string {
  const ports = arr(obj(o.spec).ports).map(obj)
  if (ports.length === 0) return '<none>'
  return ports.map(p => typeof p.nodePort === 'number' && p.nodePort !== 0
    ? `${String(p.port)}:${p.nodePort}/${str(p.protocol)}` : `${String(p.port)}/${str(p.protocol)}`).join(',')
}

const services: ResourceType = {
  name: 'services', group: '', singular: 'service', kind: 'Service', namespaced: true, shortNames: ['svc'], categories: ['all'],
  verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
  subresources: ['status'],
  fieldLabels: ['spec.clusterIP', 'spec.type'],
  defaults: defaultService,
  validate: validateService,
  allocate: allocateService,
  release(o, ctx) {
    const spec = obj(o.spec)
    if (str(spec.clusterIP) !== '' && spec.clusterIP !== 'None') ctx.releaseClusterIP(str(spec.clusterIP))
    for (const p of arr(spec.ports).map(obj)) if (typeof p.nodePort === 'number') ctx.releaseNodePort(p.nodePort)
  },
  columns: [
    NAME_COL,
    col('Type', 'string', 'The type of service.'),
    col('Cluster-IP', 'string', 'The cluster IP of the service.'),
    col('External-IP', 'string', 'The external IP of the service.'),
    col('Port(s)', 'string', 'The ports of the service.'),
    AGE_COL,
    col('Selector', 'string', 'Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/', 1),
  ],
  row(o, now) {
    const spec = obj(o.spec)
    const ext = arr(spec.externalIPs).map(String)
    const selector = Object.entries(obj(spec.selector)).map(([k, v]) => `${k}=${String(v)}`).sort().join(',')
    return [
      str(obj(o.metadata).name),
      str(spec.type),
      str(spec.clusterIP) || '<none>',
      ext.length > 0 ? ext.join(',') : spec.type === 'LoadBalancer' ? '<pending>' : spec.type === 'ExternalName' ? str(spec.externalName) : '<none>',
      servicePortsCell(o),
      since(obj(o.metadata).creationTimestamp, now),
      selector || '<none>',
    ]
  },
}

// --- nodes ---
const nodes: ResourceType = {
  name: 'nodes', group: '', singular: 'node', kind: 'Node', namespaced: false, shortNames: ['no'], categories: [],
  verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'],
  subresources: ['status'],
  fieldLabels: ['spec.unschedulable'],
  defaults(o) {
    o.spec ??= {}
    o.status ??= {}
  },
  validate(o) {
    return [...validateSubdomainName(str(obj(o.metadata).name)), ...validateMeta(o)]
  },
  columns: [
    NAME_COL,
    col('Status', 'string', 'The status of the node'),
    col('Roles', 'string', 'The roles of the node'),
    AGE_COL,
    col('Version', 'string', 'Kubelet Version reported by the node.'),
    col('Internal-IP', 'string', 'List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/concepts/nodes/node/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See http://pr.k8s.io/79391 for an example.', 1),
    col('External-IP', 'string', 'List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/concepts/nodes/node/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See http://pr.k8s.io/79391 for an example.', 1),
    col('OS-Image', 'string', 'OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).', 1),
    col('Kernel-Version', 'string', "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).", 1),
    col('Container-Runtime', 'string', 'ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).', 1),
  ],
  row(o, now) {
    const status = obj(o.status)
    const ready = arr(status.conditions).map(obj).find(c => c.type === 'Ready')
    let st = ready === undefined ? 'Unknown' : ready.status === 'True' ? 'Ready' : 'NotReady'
    if (obj(o.spec).unschedulable === true) st += ',SchedulingDisabled'
    const roles = Object.keys(obj(obj(o.metadata).labels))
      .filter(k => k.startsWith('node-role.kubernetes.io/')).map(k => k.slice('node-role.kubernetes.io/'.length)).sort()
    const addr = (t: string): string => str(arr(status.addresses).map(obj).find(a => a.type === t)?.address) || '<none>'
    const info = obj(status.nodeInfo)
    return [
      str(obj(o.metadata).name), st, roles.length ? roles.join(',') : '<none>', since(obj(o.metadata).creationTimestamp, now),
      str(info.kubeletVersion), addr('InternalIP'), addr('ExternalIP'), str(info.osImage) || '<unknown>',
      str(info.kernelVersion) || '<unknown>', str(info.containerRuntimeVersion) || '<unknown>',
    ]
  },
}

// --- events ---
const events: ResourceType = {
  name: 'events', group: '', singular: 'event', kind: 'Event', namespaced: true, shortNames: ['ev'], categories: [],
  verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'],
  subresources: [],
  fieldLabels: ['involvedObject.kind', 'involvedObject.namespace', 'involvedObject.name', 'involvedObject.uid',
    'involvedObject.apiVersion', 'involvedObject.resourceVersion', 'involvedObject.fieldPath', 'reason',
    'reportingComponent', 'source', 'type'],
  defaults(o) {
    o.involvedObject ??= {}
    o.source ??= {}
  },
  validate(o) {
    const errs = [...validateSubdomainName(str(obj(o.metadata).name))]
    const inv = obj(o.involvedObject)
    if (str(inv.namespace) !== '' && str(inv.namespace) !== str(obj(o.metadata).namespace)) {
      errs.push({type: 'FieldValueInvalid', field: 'involvedObject.namespace', value: inv.namespace, detail: 'does not match event.namespace'})
    }
    return errs
  },
  columns: [
    col('Last Seen', 'string', 'The last time this event was observed.'),
    col('Type', 'string', 'Type of this event (Normal, Warning), new types could be added in the future.'),
    col('Reason', 'string', 'This should be a short, machine understandable string that gives the reason for the transition into the object\'s current status.'),
    col('Object', 'string', 'The object that this event is about.'),
    col('Subobject', 'string', 'The subobject that this event is about.', 1),
    col('Source', 'string', 'The component reporting this event. Should be a short machine understandable string.', 1),
    col('Message', 'string', 'A human-readable description of the status of this operation.'),
    col('First Seen', 'string', 'The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)', 1),
    col('Count', 'string', 'The number of times this event has occurred.', 1),
    col('Name', 'string', NAME_COL.description, 1, 'name'),
  ],
  row(o, now) {
    const first = o.firstTimestamp ? since(o.firstTimestamp, now) : since(o.eventTime, now)
    const last = o.lastTimestamp ? since(o.lastTimestamp, now) : first
    const inv = obj(o.involvedObject)
    const target = str(inv.name) !== '' ? `${str(inv.kind).toLowerCase()}/${str(inv.name)}` : str(inv.kind).toLowerCase()
    const src = obj(o.source)
    const source = str(src.host) !== '' ? `${str(src.component)}, ${str(src.host)}` : str(src.component)
    return [last, str(o.type), str(o.reason), target, str(inv.fieldPath), source, str(o.message).trim(), first,
      Number(o.count ?? 0), str(obj(o.metadata).name)]
  },
}

// --- namespaces ---
const namespaces: ResourceType = {
  name: 'namespaces', group: '', singular: 'namespace', kind: 'Namespace', namespaced: false, shortNames: ['ns'], categories: [],
  verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
  subresources: ['status'],
  fieldLabels: ['status.phase'],
  defaults(o) {
    o.spec ??= {finalizers: ['kubernetes']}
    o.status ??= {phase: 'Active'}
  },
  validate(o) {
    const name = str(obj(o.metadata).name)
    if (name === '' || name.length > 63 || !DNS1123_LABEL.test(name)) {
      return [{type: 'FieldValueInvalid', field: 'metadata.name', value: name,
        detail: "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"}]
    }
    return validateMeta(o)
  },
  columns: [NAME_COL, col('Status', 'string', 'The status of the namespace'), AGE_COL],
  row(o, now) {
    return [str(obj(o.metadata).name), str(obj(o.status).phase), since(obj(o.metadata).creationTimestamp, now)]
  },
}

// --- service accounts and RBAC (stored and enforced for users whose access is 'rbac') ---
function simple(name: string, singular: string, kind: string, group: string, namespaced: boolean, shortNames: string[],
  validate: (o: JsonObject) => FieldError[], columns: ColumnDefinition[], row: (o: JsonObject, now: number) => Json[]): ResourceType {
  return {
    name, group, singular, kind, namespaced, shortNames, categories: [],
    verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'],
    subresources: [], fieldLabels: [], defaults: () => undefined,
    validate: o => [...validateSubdomainName(str(obj(o.metadata).name)), ...validateMeta(o), ...validate(o)],
    columns, row,
  }
}
const RBAC = 'rbac.authorization.k8s.io'
function validateRules(o: JsonObject): FieldError[] {
  return arr(o.rules).map(obj).flatMap((r, i) => arr(r.verbs).length === 0
    ? [{type: 'FieldValueRequired' as const, field: `rules[${i}].verbs`, detail: 'verbs must contain at least one value'}] : [])
}
function validateBinding(o: JsonObject): FieldError[] {
  const ref = obj(o.roleRef)
  const errs: FieldError[] = []
  if (str(ref.name) === '') errs.push({type: 'FieldValueRequired', field: 'roleRef.name', detail: ''})
  if (!['Role', 'ClusterRole'].includes(str(ref.kind))) {
    errs.push({type: 'FieldValueNotSupported', field: 'roleRef.kind', value: ref.kind ?? '', detail: 'supported values: "Role", "ClusterRole"'})
  }
  return errs
}
const createdAt = col('Created At', 'date', 'CreationTimestamp is a timestamp representing the server time when this object was created.')
const roleColumns = [NAME_COL, createdAt]
const roleRow = (o: JsonObject): Json[] => [str(obj(o.metadata).name), str(obj(o.metadata).creationTimestamp)]
const bindingColumns = [NAME_COL, col('Role', 'string', 'RoleRef is the reference to the role.'), AGE_COL,
  col('Users', 'string', 'Users in the binding', 1), col('Groups', 'string', 'Groups in the binding', 1),
  col('ServiceAccounts', 'string', 'ServiceAccounts in the binding', 1)]
const bindingRow = (o: JsonObject, now: number): Json[] => {
  const subjects = arr(o.subjects).map(obj)
  const of = (kind: string): string => subjects.filter(x => x.kind === kind)
    .map(x => kind === 'ServiceAccount' ? `${str(x.namespace)}:${str(x.name)}` : str(x.name)).join(', ')
  return [str(obj(o.metadata).name), `${str(obj(o.roleRef).kind)}/${str(obj(o.roleRef).name)}`,
    since(obj(o.metadata).creationTimestamp, now), of('User'), of('Group'), of('ServiceAccount')]
}

const serviceaccounts = simple('serviceaccounts', 'serviceaccount', 'ServiceAccount', '', true, ['sa'], () => [],
  [NAME_COL, col('Secrets', 'string', 'Secrets is the list of secrets allowed to be used by pods running using this ServiceAccount.'), AGE_COL],
  (o, now) => [str(obj(o.metadata).name), arr(o.secrets).length, since(obj(o.metadata).creationTimestamp, now)])
const roles = simple('roles', 'role', 'Role', RBAC, true, [], validateRules, roleColumns, roleRow)
const clusterroles = simple('clusterroles', 'clusterrole', 'ClusterRole', RBAC, false, [], validateRules, roleColumns, roleRow)
const rolebindings = simple('rolebindings', 'rolebinding', 'RoleBinding', RBAC, true, [], validateBinding, bindingColumns, bindingRow)
const clusterrolebindings = simple('clusterrolebindings', 'clusterrolebinding', 'ClusterRoleBinding', RBAC, false, [], validateBinding, bindingColumns, bindingRow)

export const RESOURCES: ResourceType[] = [pods, services, nodes, events, namespaces, serviceaccounts, roles, clusterroles, rolebindings, clusterrolebindings]

export function apiVersionOf(t: ResourceType): string {
  return t.group === '' ? 'v1' : `${t.group}/v1`
}

export function resourceByName(name: string): ResourceType | undefined {
  return RESOURCES.find(r => r.name === name)
}

export function newUid(): string {
  return crypto.randomUUID()
}

/** names.SimpleNameGenerator: 5 random characters from a consonant/digit alphabet. */
export function generateNameSuffix(): string {
  const alphabet = 'bcdfghjklmnpqrstvwxz2456789'
  let s = ''
  for (let i = 0; i < 5; i++) s += alphabet[crypto.randomInt(alphabet.length)]
  return s
}

