import {
  AppsV1Api, BatchV1Api, CoreV1Api, PatchStrategy, setHeaderOptions,
  type CoreV1Event, type V1Job, type V1Node, type V1Pod, type V1ReplicaSet, type V1Service,
} from '@kubernetes/client-node'
import {API_ACCESS, RESTART_ACCESS, type ApiResource, type ApiVerb, type RestartGroup, type RestartResource} from './access.js'
import {type KubeTarget, type KubeTargetOptions, loadKubeTarget} from './config.js'
import {describeKubeError, isKubeError} from './errors.js'
import {type PodWatch, type PodWatchOptions, watchPods} from './pod-watch.js'

export {type PodEventType, type PodWatch, type PodWatchOptions, REFUSAL_GRACE_MS} from './pod-watch.js'

const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch)

/**
 * The Kubernetes API as sideload uses it: typed helpers over CoreV1Api, each one allowed only
 * what API_ACCESS grants, each failure turned into a KubeError naming the resource and the fix.
 */
/** The owners `--restart` rolls out as `kubectl rollout restart` does. */
export type RolloutKind = 'Deployment' | 'StatefulSet' | 'DaemonSet'

/** The pod template annotation `kubectl rollout restart` sets (its value: when). */
export const RESTARTED_AT_ANNOTATION = 'kubectl.kubernetes.io/restartedAt'

export class KubeClient {
  readonly core: CoreV1Api
  readonly apps: AppsV1Api
  readonly batch: BatchV1Api

  constructor(readonly target: KubeTarget) {
    this.core = target.config.makeApiClient(CoreV1Api)
    this.apps = target.config.makeApiClient(AppsV1Api)
    this.batch = target.config.makeApiClient(BatchV1Api)
  }

  static load(opts: KubeTargetOptions = {}): KubeClient {
    return new KubeClient(loadKubeTarget(opts))
  }

  /** the namespace of --namespace, else of the context, else "default" */
  get namespace(): string {
    return this.target.namespace
  }

  get server(): string {
    return this.target.server
  }

  private async call<R extends ApiResource, T>(resource: R, verb: ApiVerb<R>, name: string | undefined,
    namespace: string | undefined, fn: () => Promise<T>): Promise<T> {
    if (!(API_ACCESS[resource] as readonly string[]).includes(verb)) throw new Error(`internal: ${verb} ${resource} is not in API_ACCESS`)
    try {
      return await fn()
    } catch (err) {
      throw describeKubeError(err, {verb, resource, name, namespace}, this.server)
    }
  }

  /** the same, for what only --restart calls (RESTART_ACCESS) */
  private async callRestart<G extends RestartGroup, T>(group: G, resource: RestartResource<G>, verb: string, name: string | undefined,
    namespace: string | undefined, fn: () => Promise<T>): Promise<T> {
    const verbs = (RESTART_ACCESS[group] as Record<string, readonly string[]>)[resource as string]
    if (!verbs?.includes(verb)) throw new Error(`internal: ${verb} ${group}/${String(resource)} is not in RESTART_ACCESS`)
    try {
      return await fn()
    } catch (err) {
      throw describeKubeError(err, {verb, resource: String(resource), name, namespace}, this.server)
    }
  }

  getPod(name: string, namespace = this.namespace): Promise<V1Pod> {
    return this.call('pods', 'get', name, namespace, () => this.core.readNamespacedPod({name, namespace}))
  }

  async listPods(opts: {namespace?: string; labelSelector?: string; fieldSelector?: string} = {}): Promise<{items: V1Pod[]; resourceVersion: string}> {
    const {namespace, labelSelector, fieldSelector} = opts
    const list = await this.call('pods', 'list', undefined, namespace, () => namespace === undefined
      ? this.core.listPodForAllNamespaces({labelSelector, fieldSelector})
      : this.core.listNamespacedPod({namespace, labelSelector, fieldSelector}))
    return {items: list.items, resourceVersion: list.metadata?.resourceVersion ?? ''}
  }

  /** JSON merge patch of a pod (labels, annotations); a null value removes the key. */
  patchPod(name: string, namespace: string, patch: {metadata?: {labels?: Record<string, string | null>; annotations?: Record<string, string | null>}}): Promise<V1Pod> {
    return this.call('pods', 'patch', name, namespace, () => this.core.patchNamespacedPod({name, namespace, body: patch}, MERGE_PATCH))
  }

  createPod(namespace: string, body: V1Pod): Promise<V1Pod> {
    return this.callRestart('', 'pods', 'create', body.metadata?.name, namespace, () => this.core.createNamespacedPod({namespace, body}))
  }

  /** Deletes the pod if it is still the one with this uid (a pod re-created meanwhile is left alone). */
  async deletePod(name: string, namespace: string, uid?: string): Promise<void> {
    await this.callRestart('', 'pods', 'delete', name, namespace, () => this.core.deleteNamespacedPod({name, namespace,
      body: uid ? {preconditions: {uid}} : undefined}))
  }

  /**
   * Evicts the pod (policy/v1 Eviction) if it is still the one with this uid: deleted as
   * `kubectl drain` deletes, unless a PodDisruptionBudget forbids it (the API server answers 429).
   */
  async evictPod(name: string, namespace: string, uid?: string): Promise<void> {
    const body = {apiVersion: 'policy/v1', kind: 'Eviction', metadata: {name, namespace}, ...(uid ? {deleteOptions: {preconditions: {uid}}} : {})}
    await this.callRestart('', 'pods/eviction', 'create', name, namespace, () => this.core.createNamespacedPodEviction({name, namespace, body}))
  }

  getJob(name: string, namespace: string): Promise<V1Job> {
    return this.callRestart('batch', 'jobs', 'get', name, namespace, () => this.batch.readNamespacedJob({name, namespace}))
  }

  getReplicaSet(name: string, namespace: string): Promise<V1ReplicaSet> {
    return this.callRestart('apps', 'replicasets', 'get', name, namespace, () => this.apps.readNamespacedReplicaSet({name, namespace}))
  }

  /** `kubectl rollout restart`: the pod template gets RESTARTED_AT_ANNOTATION = at, so the owner rolls its pods. */
  async restartRollout(kind: RolloutKind, name: string, namespace: string, at: string): Promise<void> {
    const body = {spec: {template: {metadata: {annotations: {[RESTARTED_AT_ANNOTATION]: at}}}}}
    switch (kind) {
      case 'Deployment':
        await this.callRestart('apps', 'deployments', 'patch', name, namespace, () => this.apps.patchNamespacedDeployment({name, namespace, body}, MERGE_PATCH))
        return
      case 'StatefulSet':
        await this.callRestart('apps', 'statefulsets', 'patch', name, namespace, () => this.apps.patchNamespacedStatefulSet({name, namespace, body}, MERGE_PATCH))
        return
      case 'DaemonSet':
        await this.callRestart('apps', 'daemonsets', 'patch', name, namespace, () => this.apps.patchNamespacedDaemonSet({name, namespace, body}, MERGE_PATCH))
    }
  }

  getNode(name: string): Promise<V1Node> {
    return this.call('nodes', 'get', name, undefined, () => this.core.readNode({name}))
  }

  async listNodes(labelSelector?: string): Promise<V1Node[]> {
    return (await this.call('nodes', 'list', undefined, undefined, () => this.core.listNode({labelSelector}))).items
  }

  async listEvents(namespace: string | undefined, fieldSelector?: string): Promise<CoreV1Event[]> {
    const list = await this.call('events', 'list', undefined, namespace, () => namespace === undefined
      ? this.core.listEventForAllNamespaces({fieldSelector})
      : this.core.listNamespacedEvent({namespace, fieldSelector}))
    return list.items
  }

  /** The service, or undefined when it does not exist. */
  async findService(name: string, namespace = this.namespace): Promise<V1Service | undefined> {
    try {
      return await this.call('services', 'get', name, namespace, () => this.core.readNamespacedService({name, namespace}))
    } catch (err) {
      if (isKubeError(err, 'not-found')) return undefined
      throw err
    }
  }

  async listServices(namespace?: string): Promise<V1Service[]> {
    const list = await this.call('services', 'list', undefined, namespace, () => namespace === undefined
      ? this.core.listServiceForAllNamespaces({})
      : this.core.listNamespacedService({namespace}))
    return list.items
  }

  createService(namespace: string, body: V1Service): Promise<V1Service> {
    return this.call('services', 'create', body.metadata?.name, namespace, () => this.core.createNamespacedService({namespace, body}))
  }

  /** JSON merge patch of a service (lists such as spec.ports are replaced whole). */
  patchService(name: string, namespace: string, patch: object): Promise<V1Service> {
    return this.call('services', 'patch', name, namespace, () => this.core.patchNamespacedService({name, namespace, body: patch}, MERGE_PATCH))
  }

  async deleteService(name: string, namespace: string): Promise<void> {
    await this.call('services', 'delete', name, namespace, () => this.core.deleteNamespacedService({name, namespace}))
  }

  /** Lists, then watches pods, listing again when it must (pod-watch.ts). */
  watchPods(opts: PodWatchOptions): PodWatch {
    return watchPods(this, opts)
  }
}

/** What sideload needs to know about a node to reach it and pick the image's platform. */
export interface ClusterNode {
  name: string
  /** InternalIP, else ExternalIP, else Hostname; undefined when the node reports none */
  address?: string
  /** OS/architecture from the node status: `linux/amd64` (nodes report no CPU variant) */
  platform: string
  /** `containerd://1.6.20` */
  containerRuntime: string
  ready: boolean
}

export function clusterNode(node: V1Node): ClusterNode {
  const p = nodePlatform(node)
  return {
    name: node.metadata?.name ?? '',
    address: nodeAddress(node),
    platform: `${p.os}/${p.architecture}`,
    containerRuntime: node.status?.nodeInfo?.containerRuntimeVersion ?? '',
    ready: isNodeReady(node),
  }
}

/** The address to reach a node on: InternalIP, else ExternalIP, else Hostname. */
export function nodeAddress(node: V1Node): string | undefined {
  const addrs = node.status?.addresses ?? []
  for (const type of ['InternalIP', 'ExternalIP', 'Hostname']) {
    const a = addrs.find(x => x.type === type)
    if (a) return a.address
  }
  return undefined
}

/** The node's platform as an OCI platform string part: `linux/amd64`. */
export function nodePlatform(node: V1Node): {os: string; architecture: string} {
  const info = node.status?.nodeInfo
  const labels = node.metadata?.labels ?? {}
  return {
    os: info?.operatingSystem || labels['kubernetes.io/os'] || 'linux',
    architecture: info?.architecture || labels['kubernetes.io/arch'] || 'amd64',
  }
}

export function isNodeReady(node: V1Node): boolean {
  return node.status?.conditions?.some(c => c.type === 'Ready' && c.status === 'True') ?? false
}
