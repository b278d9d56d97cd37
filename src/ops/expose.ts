import * as crypto from 'node:crypto'
import type {V1Pod, V1Service, V1ServicePort} from '@kubernetes/client-node'
import {KubeClient, nodeAddress} from '../kube/client.js'
import type {KubeTargetOptions} from '../kube/config.js'
import {KubeError, isKubeError} from '../kube/errors.js'

/** The label sideload adds to a pod whose own labels would not select it alone. */
export const EXPOSE_LABEL = 'sideload.dev/expose'
/** Service annotations: which pod it exposes, and which pod label sideload added for it (to remove on --delete). */
export const EXPOSED_POD_ANNOTATION = 'sideload.dev/exposed-pod'
export const ADDED_LABEL_ANNOTATION = 'sideload.dev/added-label'
export const MANAGED_BY = {key: 'app.kubernetes.io/managed-by', value: 'sideload'}

export type Protocol = 'TCP' | 'UDP'

export interface ExposeOptions extends KubeTargetOptions {
  pod: string
  /** the service port (what the NodePort forwards to inside the cluster) */
  port: number
  /** the container port; default: the pod's one declared port, else --port */
  targetPort?: number | string
  /** a fixed node port (the cluster's range, 30000–32767 by default); default: the API server picks one */
  nodePort?: number
  protocol?: Protocol
  /** service name; default: the pod's name (made a valid DNS-1035 label if needed) */
  name?: string
  /** print `ssh USER@IP -p PORT` lines */
  sshUser?: string
  /** expose even when the pod is not Running (default: refuse and say why it is not) */
  allowNotRunning?: boolean
  /** a client to use instead of loading the kubeconfig (tests, other commands) */
  client?: KubeClient
}

export interface ExposeEndpoint {
  node: string
  address: string
  port: number
  /** true for the node the pod runs on */
  podNode: boolean
  /** with sshUser: the ssh command line to connect */
  ssh?: string
}

export interface ExposeResult {
  namespace: string
  pod: string
  service: string
  action: 'created' | 'updated' | 'unchanged'
  selector: Record<string, string>
  /** the label sideload put on the pod so the selector matches it alone */
  addedLabel?: {key: string; value: string}
  port: number
  targetPort: number | string
  nodePort: number
  protocol: Protocol
  endpoints: ExposeEndpoint[]
  /** things the user should know (e.g. the pod is managed by a controller that will replace it unlabelled) */
  warnings: string[]
}

export interface UnexposeOptions extends KubeTargetOptions {
  pod: string
  name?: string
  client?: KubeClient
}

export interface UnexposeResult {
  namespace: string
  pod: string
  service: string
  serviceDeleted: boolean
  labelRemoved?: string
}

export class ExposeError extends Error {
  override name = 'ExposeError'
}

const DNS1035 = /^[a-z]([-a-z0-9]*[a-z0-9])?$/
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/

function shortHash(s: string): string {
  return crypto.createHash('sha256').update(s).digest('hex').slice(0, 8)
}

/** The service name for a pod: its own name when that is a valid DNS-1035 label, else a derived one. */
export function serviceNameFor(pod: string): string {
  if (pod.length <= 63 && DNS1035.test(pod)) return pod
  let base = pod.toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/^[^a-z]+/, '').replace(/-+$/, '')
  base = base.slice(0, 63 - 9).replace(/-+$/, '')
  return `${base || 'pod'}-${shortHash(pod)}`
}

/** The value of the expose label for a pod (label values are at most 63 characters). */
export function exposeLabelValue(pod: string): string {
  if (pod.length <= 63 && LABEL_VALUE.test(pod)) return pod
  return `${pod.slice(0, 63 - 9).replace(/[^A-Za-z0-9]+$/, '')}-${shortHash(pod)}`
}

function checkPort(value: number | undefined, flag: string): void {
  if (value === undefined) return
  if (!Number.isInteger(value) || value < 1 || value > 65535) {
    throw new ExposeError(`${flag} ${value} is not a port: use a number from 1 to 65535`)
  }
}

function selectorString(sel: Record<string, string>): string {
  return Object.entries(sel).map(([k, v]) => `${k}=${v}`).join(',')
}

function sameSelector(a: Record<string, string> | undefined, b: Record<string, string>): boolean {
  const x = a ?? {}
  return Object.keys(x).length === Object.keys(b).length && Object.entries(b).every(([k, v]) => x[k] === v)
}

/** The container port the service should forward to. */
function resolveTargetPort(pod: V1Pod, opts: ExposeOptions, protocol: Protocol): number | string {
  if (opts.targetPort !== undefined) {
    if (typeof opts.targetPort === 'number') checkPort(opts.targetPort, '--target-port')
    else {
      // a named port must be declared by the pod
      const named = (pod.spec?.containers ?? []).flatMap(c => c.ports ?? []).find(p => p.name === opts.targetPort)
      if (!named) throw new ExposeError(`pod ${pod.metadata?.name} declares no port named "${opts.targetPort}" (--target-port)`)
    }
    return opts.targetPort
  }
  const declared = (pod.spec?.containers ?? []).flatMap(c => (c.ports ?? []).map(p => ({...p, container: c.name})))
    .filter(p => (p.protocol ?? 'TCP') === protocol)
  if (declared.length === 1) return declared[0].containerPort
  if (declared.length === 0 || declared.some(p => p.containerPort === opts.port)) return opts.port
  const list = declared.map(p => `${p.containerPort}/${p.protocol ?? 'TCP'}${p.name ? ` (${p.name})` : ''} in ${p.container}`).join(', ')
  throw new ExposeError(`pod ${pod.metadata?.name} declares several ${protocol} ports (${list}) and none is ${opts.port}: pass --target-port`)
}

function notRunningMessage(pod: V1Pod): string {
  const name = pod.metadata?.name ?? '?'
  const phase = pod.status?.phase ?? 'Unknown'
  if (!pod.spec?.nodeName) {
    return `pod ${name} is ${phase} and not scheduled on any node yet, so no node can forward to it ` +
      '(kubectl describe pod shows why; pass --allow-not-running to expose it anyway)'
  }
  const waiting = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])]
    .find(c => c.state?.waiting?.reason)
  const why = waiting ? ` (container ${waiting.name}: ${waiting.state?.waiting?.reason}${waiting.state?.waiting?.message ? `: ${waiting.state.waiting.message}` : ''})` : ''
  const hint = waiting && ['ErrImageNeverPull', 'ErrImagePull', 'ImagePullBackOff'].includes(waiting.state?.waiting?.reason ?? '')
    ? `; its image is missing on node ${pod.spec.nodeName}: run \`sideload fix\` (or \`sideload push IMAGE\`) first`
    : ''
  return `pod ${name} is ${phase}, not Running${why}${hint}; pass --allow-not-running to expose it anyway`
}

async function explainNodePortTaken(client: KubeClient, err: KubeError, nodePort: number, namespace: string): Promise<ExposeError> {
  let holder = ''
  try {
    const all = await client.listServices()
    const svc = all.find(s => s.spec?.ports?.some(p => p.nodePort === nodePort))
    if (svc) holder = ` by service ${svc.metadata?.namespace}/${svc.metadata?.name}`
  } catch {
    // best effort: the explanation works without the holder's name
  }
  return new ExposeError(`node port ${nodePort} is already allocated${holder} (API server: ${err.serverMessage}); ` +
    `choose another --node-port, or leave --node-port out and the cluster picks a free one (namespace ${namespace})`)
}

function explainInvalid(err: KubeError, opts: ExposeOptions): ExposeError {
  const field = err.causes[0]?.field ?? ''
  if (/nodePort/.test(field) && /valid range/.test(err.serverMessage)) {
    return new ExposeError(`--node-port ${opts.nodePort} is outside the cluster's node port range (API server: ${err.serverMessage})`)
  }
  return new ExposeError(err.message)
}

/**
 * Exposes exactly one pod with a NodePort service: selects on the pod's labels when they match it
 * alone, else adds a label unique to the pod and selects on that; creates the service or brings an
 * existing sideload service in line (idempotent); returns where to connect, the pod's node first.
 */
export async function expose(opts: ExposeOptions): Promise<ExposeResult> {
  checkPort(opts.port, '--port')
  checkPort(opts.nodePort, '--node-port')
  const protocol: Protocol = opts.protocol ?? 'TCP'
  if (protocol !== 'TCP' && protocol !== 'UDP') throw new ExposeError(`--protocol ${String(protocol)}: use TCP or UDP`)
  const client = opts.client ?? KubeClient.load(opts)
  const namespace = opts.namespace || client.namespace
  const serviceName = opts.name ?? serviceNameFor(opts.pod)
  if (serviceName.length > 63 || !DNS1035.test(serviceName)) {
    throw new ExposeError(`--name ${serviceName} is not a valid service name: lower case letters, digits and '-', starting with a letter, at most 63 characters`)
  }

  const found = await exposablePod(client, opts, namespace)
  const targetPort = resolveTargetPort(found, opts, protocol)
  const existing = await client.findService(serviceName, namespace)
  checkServiceOwner(existing, opts.pod, namespace, serviceName)
  const {pod, selector, addedLabel} = await choosePodSelector(client, found, opts.pod, namespace, existing)

  const plan: ServicePlan = {namespace, name: serviceName, pod: opts.pod, selector, addedLabel, port: servicePort(opts, targetPort, protocol, existing)}
  let written: {service: V1Service; action: ExposeResult['action']}
  try {
    written = await writeService(client, existing, plan, opts.nodePort)
  } catch (err) {
    throw await serviceFailure(client, err, opts, namespace, addedLabel, existing)
  }

  const nodePort = written.service.spec?.ports?.[0]?.nodePort
  if (!nodePort) throw new ExposeError(`service ${namespace}/${serviceName} got no node port from the API server`)
  const endpoints = await endpointsFor(client, pod.spec?.nodeName, nodePort, opts.sshUser)
  return {
    namespace, pod: opts.pod, service: serviceName, action: written.action, selector, addedLabel,
    port: opts.port, targetPort, nodePort, protocol, endpoints, warnings: exposeWarnings(pod, opts.pod, selector),
  }
}

/** The pod, when it can be exposed: Running (unless allowNotRunning) and not being deleted. */
async function exposablePod(client: KubeClient, opts: ExposeOptions, namespace: string): Promise<V1Pod> {
  const pod = await client.getPod(opts.pod, namespace)
  if (pod.status?.phase !== 'Running' && !opts.allowNotRunning) throw new ExposeError(notRunningMessage(pod))
  if (pod.metadata?.deletionTimestamp) throw new ExposeError(`pod ${opts.pod} is being deleted`)
  return pod
}

/** A service of that name may only be one sideload made for this pod. */
function checkServiceOwner(existing: V1Service | undefined, pod: string, namespace: string, serviceName: string): void {
  const owner = existing?.metadata?.annotations?.[EXPOSED_POD_ANNOTATION]
  if (existing && owner === undefined) {
    throw new ExposeError(`service ${namespace}/${serviceName} already exists and was not created by sideload; ` +
      'pass --name to use another service name (or delete it: kubectl delete svc ' + serviceName + ` -n ${namespace})`)
  }
  if (existing && owner !== pod) {
    throw new ExposeError(`service ${namespace}/${serviceName} already exposes pod ${owner}; pass --name to use another service name`)
  }
}

/**
 * Which selector picks this pod and no other: its own labels when they match it alone, else the
 * expose label, put on the pod when it does not have it yet (the pod as it is then).
 */
async function choosePodSelector(client: KubeClient, pod: V1Pod, name: string, namespace: string, existing: V1Service | undefined): Promise<{pod: V1Pod; selector: Record<string, string>; addedLabel?: {key: string; value: string}}> {
  const labels = pod.metadata?.labels ?? {}
  const previouslyAdded = existing?.metadata?.annotations?.[ADDED_LABEL_ANNOTATION]
  const ownLabels = Object.fromEntries(Object.entries(labels).filter(([k]) => k !== EXPOSE_LABEL))
  let unique = false
  if (Object.keys(ownLabels).length > 0 && previouslyAdded === undefined) {
    const matching = await client.listPods({namespace, labelSelector: selectorString(ownLabels)})
    unique = matching.items.every(p => p.metadata?.name === name)
  }
  if (unique) return {pod, selector: ownLabels, addedLabel: undefined}
  const value = exposeLabelValue(name)
  const labelled = labels[EXPOSE_LABEL] !== value ? await client.patchPod(name, namespace, {metadata: {labels: {[EXPOSE_LABEL]: value}}}) : pod
  const addedLabel = labels[EXPOSE_LABEL] !== value || previouslyAdded === EXPOSE_LABEL ? {key: EXPOSE_LABEL, value} : undefined
  return {pod: labelled, selector: {[EXPOSE_LABEL]: value}, addedLabel}
}

/** The service's one port: the node port asked for, else the one the service already has. */
function servicePort(opts: ExposeOptions, targetPort: number | string, protocol: Protocol, existing: V1Service | undefined): V1ServicePort {
  const wantedPort: V1ServicePort = {port: opts.port, targetPort, protocol}
  const oldPort = existing?.spec?.ports?.find(p => p.port === opts.port && (p.protocol ?? 'TCP') === protocol)
  if (opts.nodePort !== undefined) wantedPort.nodePort = opts.nodePort
  else if (oldPort?.nodePort) wantedPort.nodePort = oldPort.nodePort
  return wantedPort
}

/** The NodePort service expose wants: it exposes `pod`; `addedLabel` when sideload put a label on the pod for the selector. */
interface ServicePlan {
  namespace: string
  name: string
  pod: string
  selector: Record<string, string>
  addedLabel?: {key: string; value: string}
  port: V1ServicePort
}

/** Which pod the service exposes, and which label sideload added to it (to remove on --delete). */
function serviceAnnotations(plan: ServicePlan): Record<string, string> {
  const annotations: Record<string, string> = {[EXPOSED_POD_ANNOTATION]: plan.pod}
  if (plan.addedLabel) annotations[ADDED_LABEL_ANNOTATION] = plan.addedLabel.key
  return annotations
}

/** Creates the service, or brings an existing sideload service in line (left alone when it already is). */
async function writeService(client: KubeClient, existing: V1Service | undefined, plan: ServicePlan, requestedNodePort: number | undefined): Promise<{service: V1Service; action: ExposeResult['action']}> {
  const annotations = serviceAnnotations(plan)
  if (!existing) {
    const service = await client.createService(plan.namespace, {
      apiVersion: 'v1', kind: 'Service',
      metadata: {name: plan.name, namespace: plan.namespace, labels: {[MANAGED_BY.key]: MANAGED_BY.value}, annotations},
      spec: {type: 'NodePort', selector: plan.selector, ports: [plan.port]},
    })
    return {service, action: 'created'}
  }
  if (serviceUpToDate(existing, plan, annotations, requestedNodePort)) return {service: existing, action: 'unchanged'}
  const selectorPatch: Record<string, string | null> = {...plan.selector}
  for (const k of Object.keys(existing.spec?.selector ?? {})) if (!(k in plan.selector)) selectorPatch[k] = null
  const service = await client.patchService(plan.name, plan.namespace, {
    metadata: {annotations: {...annotations, [ADDED_LABEL_ANNOTATION]: plan.addedLabel ? plan.addedLabel.key : null}},
    spec: {type: 'NodePort', selector: selectorPatch, ports: [plan.port]},
  })
  return {service, action: 'updated'}
}

/** The existing service already is the plan: same type, selector, port (and node port, when one was asked for), annotations. */
function serviceUpToDate(existing: V1Service, plan: ServicePlan, annotations: Record<string, string>, requestedNodePort: number | undefined): boolean {
  const ports = existing.spec?.ports ?? []
  const sameSpec = existing.spec?.type === 'NodePort' && sameSelector(existing.spec?.selector, plan.selector) && ports.length === 1 &&
    ports[0].port === plan.port.port && (ports[0].protocol ?? 'TCP') === plan.port.protocol &&
    String(ports[0].targetPort) === String(plan.port.targetPort) && (requestedNodePort === undefined || ports[0].nodePort === requestedNodePort)
  const sameAnnotations = Object.entries(annotations).every(([k, v]) => existing.metadata?.annotations?.[k] === v) &&
    (plan.addedLabel !== undefined || existing.metadata?.annotations?.[ADDED_LABEL_ANNOTATION] === undefined)
  return sameSpec && sameAnnotations
}

/**
 * Writing the service failed: a label added to the pod for a new service goes again (the pod is
 * left as it was), and the API server's refusal is explained. The error to throw.
 */
async function serviceFailure(client: KubeClient, err: unknown, opts: ExposeOptions, namespace: string, addedLabel: {key: string} | undefined, existing: V1Service | undefined): Promise<unknown> {
  if (addedLabel && !existing) {
    await client.patchPod(opts.pod, namespace, {metadata: {labels: {[addedLabel.key]: null}}}).catch(() => undefined)
  }
  if (isKubeError(err, 'invalid')) {
    if (opts.nodePort !== undefined && /already allocated/.test(err.serverMessage)) {
      return explainNodePortTaken(client, err, opts.nodePort, namespace)
    }
    return explainInvalid(err, opts)
  }
  return err
}

/** A pod a controller replaces loses the expose label with it. */
function exposeWarnings(pod: V1Pod, name: string, selector: Record<string, string>): string[] {
  const warnings: string[] = []
  const controller = pod.metadata?.ownerReferences?.find(o => o.controller)
  if (controller && selector[EXPOSE_LABEL] !== undefined) {
    warnings.push(`pod ${name} is managed by ${controller.kind} ${controller.name}: a replacement pod will not carry ` +
      `${EXPOSE_LABEL}=${selector[EXPOSE_LABEL]}, so run expose again for the new pod`)
  }
  return warnings
}

async function endpointsFor(client: KubeClient, podNode: string | undefined, nodePort: number, sshUser?: string): Promise<ExposeEndpoint[]> {
  const nodes = await client.listNodes()
  const out: ExposeEndpoint[] = []
  for (const n of nodes) {
    const address = nodeAddress(n)
    const name = n.metadata?.name ?? ''
    if (!address) continue
    const e: ExposeEndpoint = {node: name, address, port: nodePort, podNode: name === podNode}
    if (sshUser) e.ssh = `ssh ${sshUser}@${address} -p ${nodePort}`
    out.push(e)
  }
  out.sort((a, b) => Number(b.podNode) - Number(a.podNode) || a.node.localeCompare(b.node))
  return out
}

/** Removes what expose created: the service, and the label sideload added to the pod. */
export async function unexpose(opts: UnexposeOptions): Promise<UnexposeResult> {
  const client = opts.client ?? KubeClient.load(opts)
  const namespace = opts.namespace || client.namespace
  const serviceName = opts.name ?? serviceNameFor(opts.pod)
  const result: UnexposeResult = {namespace, pod: opts.pod, service: serviceName, serviceDeleted: false}
  const existing = await client.findService(serviceName, namespace)
  if (existing) {
    const owner = existing.metadata?.annotations?.[EXPOSED_POD_ANNOTATION]
    if (owner === undefined) {
      throw new ExposeError(`service ${namespace}/${serviceName} was not created by sideload; not deleting it (kubectl delete svc ${serviceName} -n ${namespace} if you mean it)`)
    }
    if (owner !== opts.pod) throw new ExposeError(`service ${namespace}/${serviceName} exposes pod ${owner}, not ${opts.pod}`)
    const added = existing.metadata?.annotations?.[ADDED_LABEL_ANNOTATION]
    await client.deleteService(serviceName, namespace).catch((err: unknown) => {
      if (!isKubeError(err, 'not-found')) throw err
    })
    result.serviceDeleted = true
    if (added) {
      try {
        await client.patchPod(opts.pod, namespace, {metadata: {labels: {[added]: null}}})
        result.labelRemoved = added
      } catch (err) {
        if (!isKubeError(err, 'not-found')) throw err
      }
    }
  }
  return result
}

/** The result as the expose and build-and-push commands print it. */
export function describeExpose(r: ExposeResult): string {
  const sel = Object.entries(r.selector).map(([k, v]) => `${k}=${v}`).join(',')
  const lines = [
    `service/${r.service} ${r.action}: NodePort ${r.nodePort} → pod ${r.pod} port ${r.targetPort}/${r.protocol} (namespace ${r.namespace})`,
    `selector ${sel}${r.addedLabel ? ` (label added to the pod; \`sideload expose ${r.pod} --delete\` removes it with the service)` : ''}`,
  ]
  if (r.endpoints.length === 0) lines.push('no node has an address in its status; use any node\'s IP with port ' + r.nodePort)
  else {
    lines.push('connect to:')
    for (const e of r.endpoints) lines.push(`  ${e.address}:${e.port}  node ${e.node}${e.podNode ? ' (runs the pod)' : ''}`)
    const ssh = r.endpoints.filter(e => e.ssh)
    if (ssh.length > 0) for (const e of ssh) lines.push(`  ${e.ssh}`)
  }
  for (const w of r.warnings) lines.push(`warning: ${w}`)
  return lines.join('\n')
}
