// A kubelet stand-in for the test API server. For every node it serves it registers a Node object
// and keeps the status of the pods bound to that node (spec.nodeName) in line with the TRUTH: whether
// the node's real containerd has the image (the `hasImage` callback). It follows the real kubelet's
// image manager (pkg/kubelet/images/image_manager.go): pull policy Never + absent → ErrImageNeverPull;
// Always, or IfNotPresent + absent → a pull, which always fails here (no registry) → ErrImagePull,
// then ImagePullBackOff; present (and not Always) → Running. Events are recorded with counts that
// grow on repeats like the kubelet's event correlator. Pods are re-synced every resync period
// (real: 10 s with 0.5 jitter) and at once when their spec or metadata changes.
import * as crypto from 'node:crypto'
import * as os from 'node:os'
import type {Json, JsonObject} from './patch.js'
import {rfc3339} from './resources.js'
import type {Store} from './store.js'

export interface KubeletNode {
  name: string
  /** InternalIP in node.status.addresses */
  ip: string
  architecture?: string
  operatingSystem?: string
  labels?: Record<string, string>
  /** status.nodeInfo.containerRuntimeVersion (default containerd://1.6.20) */
  containerRuntimeVersion?: string
}

/**
 * Optionally runs the containers for real (e.g. `ctr run` on a bed node). Without it the stand-in
 * only reports them running.
 */
export interface ContainerRuntime {
  /** starts the container; `podIP` is where its ports are reachable (e.g. the node's IP with host networking) */
  start(nodeName: string, pod: JsonObject, container: JsonObject, imageRef: string): Promise<{containerID: string; podIP?: string}>
  /** stops a container started by start(), when its pod is deleted */
  stop?(nodeName: string, containerID: string): Promise<void>
}

export interface KubeletOptions {
  store: Store
  nodes: KubeletNode[]
  /**
   * Whether the node's container runtime has the image; `imageRef` is normalised like the CRI does
   * (`foo` → `docker.io/library/foo:latest`). A string result is taken as the image id.
   */
  hasImage(nodeName: string, imageRef: string): Promise<boolean | string>
  /** base re-sync period in ms; each pass waits resyncMs × [0.5, 1.5) (real kubelet: 10 000) */
  resyncMs?: number
  /** first image pull back-off in ms, doubling up to 30× (real: 10 s → 300 s) */
  pullBackoffMs?: number
  /** register the Node objects (default true) */
  registerNodes?: boolean
  runtime?: ContainerRuntime
}

export interface Kubelet {
  /** syncs every pod bound to the served nodes now */
  syncNow(): Promise<void>
  stop(): Promise<void>
}

/** Normalises an image reference like the CRI/docker reference parser (`docker.io/library/x:latest`). */
export function normalizeImageRef(ref: string): string {
  let name = ref
  let suffix = ''
  const at = name.indexOf('@')
  if (at >= 0) {
    suffix = name.slice(at)
    name = name.slice(0, at)
  }
  const slash = name.indexOf('/')
  const first = slash >= 0 ? name.slice(0, slash) : ''
  const hasDomain = slash >= 0 && (first.includes('.') || first.includes(':') || first === 'localhost')
  if (!hasDomain) name = slash >= 0 ? `docker.io/${name}` : `docker.io/library/${name}`
  const lastSlash = name.lastIndexOf('/')
  if (suffix === '' && !name.slice(lastSlash + 1).includes(':')) name += ':latest'
  return name + suffix
}

function obj(v: Json | undefined): JsonObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? v : {}
}
function str(v: Json | undefined): string {
  return typeof v === 'string' ? v : ''
}

interface ContainerMemory {
  running?: {startedAt: string; containerID: string; imageID: string; nodeName: string}
  completed?: {startedAt: string; finishedAt: string; containerID: string; imageID: string}
  backoffUntil: number
  backoffMs: number
}

const GOARCH: Record<string, string> = {x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x'}

export function nodeObject(n: KubeletNode): JsonObject {
  const arch = n.architecture ?? GOARCH[process.arch] ?? process.arch
  const osName = n.operatingSystem ?? 'linux'
  const now = rfc3339()
  const cond = (type: string, status: string, reason: string, message: string): JsonObject =>
    ({type, status, lastHeartbeatTime: now, lastTransitionTime: now, reason, message})
  return {
    metadata: {
      name: n.name,
      labels: {
        'beta.kubernetes.io/arch': arch, 'beta.kubernetes.io/os': osName, 'kubernetes.io/arch': arch,
        'kubernetes.io/hostname': n.name, 'kubernetes.io/os': osName, ...(n.labels ?? {}),
      },
      annotations: {'node.alpha.kubernetes.io/ttl': '0', 'volumes.kubernetes.io/controller-managed-attach-detach': 'true'},
    },
    spec: {podCIDR: '10.244.0.0/24', podCIDRs: ['10.244.0.0/24']},
    status: {
      capacity: {cpu: String(os.cpus().length), memory: `${Math.floor(os.totalmem() / 1024)}Ki`, pods: '110', 'ephemeral-storage': '20134592Ki'},
      allocatable: {cpu: String(os.cpus().length), memory: `${Math.floor(os.totalmem() / 1024)}Ki`, pods: '110', 'ephemeral-storage': '18556039957'},
      conditions: [
        cond('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'kubelet has sufficient memory available'),
        cond('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'kubelet has no disk pressure'),
        cond('PIDPressure', 'False', 'KubeletHasSufficientPID', 'kubelet has sufficient PID available'),
        cond('Ready', 'True', 'KubeletReady', 'kubelet is posting ready status'),
      ],
      addresses: [{type: 'InternalIP', address: n.ip}, {type: 'Hostname', address: n.name}],
      daemonEndpoints: {kubeletEndpoint: {Port: 10250}},
      nodeInfo: {
        machineID: crypto.randomBytes(16).toString('hex'), systemUUID: crypto.randomUUID(), bootID: crypto.randomUUID(),
        kernelVersion: os.release(), osImage: 'Debian GNU/Linux 12 (bookworm)', containerRuntimeVersion: n.containerRuntimeVersion ?? 'containerd://1.6.20',
        kubeletVersion: 'v1.20.15', kubeProxyVersion: 'v1.20.15', operatingSystem: osName, architecture: arch,
      },
    },
  }
}

/** Records an event like the kubelet's recorder: a repeat of the same event bumps count and lastTimestamp. */
export class EventRecorder {
  private readonly seen = new Map<string, string>()
  constructor(private readonly store: Store, private readonly component: string, private readonly host: string) {}

  record(pod: JsonObject, fieldPath: string, type: 'Normal' | 'Warning', reason: string, message: string): void {
    const m = obj(pod.metadata)
    const ns = str(m.namespace)
    const involved: JsonObject = {kind: 'Pod', namespace: ns, name: str(m.name), uid: str(m.uid), apiVersion: 'v1',
      resourceVersion: str(m.resourceVersion)}
    if (fieldPath) involved.fieldPath = fieldPath
    const key = JSON.stringify([ns, m.name, m.uid, fieldPath, type, reason, message])
    const now = rfc3339()
    const existing = this.seen.get(key)
    if (existing !== undefined) {
      const ev = this.store.tryGet('events', ns, existing)
      if (ev) {
        this.store.patch('events', ns, existing, 'strategic', {count: Number(ev.count ?? 1) + 1, lastTimestamp: now}, {manager: this.component})
        return
      }
    }
    const name = `${str(m.name)}.${(process.hrtime.bigint() + BigInt(Date.now()) * 1000000n).toString(16)}`
    this.store.create('events', ns, {
      metadata: {name, namespace: ns},
      involvedObject: involved, reason, message, source: {component: this.component, host: this.host},
      firstTimestamp: now, lastTimestamp: now, count: 1, type, eventTime: null, reportingComponent: '', reportingInstance: '',
    }, {manager: this.component})
    this.seen.set(key, name)
  }
}

export function startKubelet(opts: KubeletOptions): Kubelet {
  const {store} = opts
  const resyncMs = opts.resyncMs ?? 10_000
  const backoffBase = opts.pullBackoffMs ?? 10_000
  const served = new Map(opts.nodes.map(n => [n.name, n]))
  const recorders = new Map(opts.nodes.map(n => [n.name, new EventRecorder(store, 'kubelet', n.name)]))
  const memory = new Map<string, Map<string, ContainerMemory>>()
  const lastSeen = new Map<string, string>()
  const chains = new Map<string, Promise<void>>()
  const podIPs = new Map<string, string>()
  const runtimeIPs = new Map<string, string>()
  let nextIP = 2
  let stopped = false

  if (opts.registerNodes !== false) {
    for (const n of opts.nodes) {
      if (store.tryGet('nodes', undefined, n.name) === undefined) store.create('nodes', undefined, nodeObject(n), {manager: 'kubelet'})
    }
  }

  const podKey = (p: JsonObject): string => `${str(obj(p.metadata).namespace)}/${str(obj(p.metadata).name)}`

  const syncPod = async (key: string): Promise<void> => {
    const [ns, name] = key.split('/')
    const pod = store.tryGet('pods', ns, name)
    if (!pod || stopped) return
    const spec = obj(pod.spec)
    const nodeName = str(spec.nodeName)
    const node = served.get(nodeName)
    const recorder = recorders.get(nodeName)
    if (!node || !recorder || obj(pod.metadata).deletionTimestamp !== undefined) return
    const uid = str(obj(pod.metadata).uid)
    let mem = memory.get(uid)
    if (!mem) {
      mem = new Map()
      memory.set(uid, mem)
    }
    const now = Date.now()
    type Outcome = {imageID: string} | {waiting: JsonObject}
    /** The image manager's verdict for one container, with its events (pull attempts always fail). */
    const ensureImage = async (c: JsonObject, fieldPath: string, cm: ContainerMemory): Promise<Outcome | undefined> => {
      const image = str(c.image)
      const ref = normalizeImageRef(image)
      const policy = str(c.imagePullPolicy)
      const present = await opts.hasImage(nodeName, ref)
      if (stopped) return undefined
      const imageID = typeof present === 'string' ? present : ref
      if (policy === 'Never') {
        if (present) {
          recorder.record(pod, fieldPath, 'Normal', 'Pulled', `Container image "${image}" already present on machine`)
          return {imageID}
        }
        const msg = `Container image "${image}" is not present with pull policy of Never`
        recorder.record(pod, fieldPath, 'Warning', 'ErrImageNeverPull', msg)
        recorder.record(pod, fieldPath, 'Warning', 'Failed', 'Error: ErrImageNeverPull')
        return {waiting: {reason: 'ErrImageNeverPull', message: msg}}
      }
      if (policy === 'IfNotPresent' && present) {
        recorder.record(pod, fieldPath, 'Normal', 'Pulled', `Container image "${image}" already present on machine`)
        return {imageID}
      }
      // a pull: there is no registry, so it always fails, then backs off (10 s doubling to 300 s)
      if (now < cm.backoffUntil) {
        const msg = `Back-off pulling image "${image}"`
        recorder.record(pod, fieldPath, 'Normal', 'BackOff', msg)
        recorder.record(pod, fieldPath, 'Warning', 'Failed', 'Error: ImagePullBackOff')
        return {waiting: {reason: 'ImagePullBackOff', message: msg}}
      }
      const host = ref.split('/')[0]
      const repo = ref.slice(host.length + 1).replace(/[:@].*$/, '')
      const registryHost = host === 'docker.io' ? 'registry-1.docker.io' : host
      const pullError = `rpc error: code = Unknown desc = failed to pull and unpack image "${ref}": failed to resolve reference "${ref}": failed to do request: Head "https://${registryHost}/v2/${repo}/manifests/${ref.split(/[:@]/).pop() ?? 'latest'}": dial tcp: lookup ${registryHost}: no such host`
      recorder.record(pod, fieldPath, 'Normal', 'Pulling', `Pulling image "${image}"`)
      recorder.record(pod, fieldPath, 'Warning', 'Failed', `Failed to pull image "${image}": ${pullError}`)
      recorder.record(pod, fieldPath, 'Warning', 'Failed', 'Error: ErrImagePull')
      cm.backoffMs = cm.backoffMs === 0 ? backoffBase : Math.min(cm.backoffMs * 2, backoffBase * 30)
      cm.backoffUntil = now + cm.backoffMs
      return {waiting: {reason: 'ErrImagePull', message: pullError}}
    }
    const memoryOf = (key: string): ContainerMemory => {
      let cm = mem.get(key)
      if (!cm) {
        cm = {backoffUntil: 0, backoffMs: 0}
        mem.set(key, cm)
      }
      return cm
    }
    const baseStatus = (c: JsonObject): JsonObject =>
      ({name: str(c.name), image: str(c.image), imageID: '', ready: false, restartCount: 0, started: false, lastState: {}})

    // init containers run one after the other, to completion (here: at once when the image is there)
    const initStatuses: JsonObject[] = []
    let initialized = true
    for (const c of (Array.isArray(spec.initContainers) ? spec.initContainers : []).map(obj)) {
      const cname = str(c.name)
      const cm = memoryOf(`init:${cname}`)
      const base = baseStatus(c)
      if (!initialized) {
        initStatuses.push({...base, state: {waiting: {reason: 'PodInitializing'}}})
        continue
      }
      if (cm.completed) {
        initStatuses.push({...base, ready: true, imageID: cm.completed.imageID, containerID: cm.completed.containerID,
          state: {terminated: {exitCode: 0, reason: 'Completed', startedAt: cm.completed.startedAt, finishedAt: cm.completed.finishedAt}}})
        continue
      }
      const fieldPath = `spec.initContainers{${cname}}`
      const outcome = await ensureImage(c, fieldPath, cm)
      if (outcome === undefined) return
      if ('waiting' in outcome) {
        initialized = false
        initStatuses.push({...base, state: {waiting: outcome.waiting}})
        continue
      }
      recorder.record(pod, fieldPath, 'Normal', 'Created', `Created container ${cname}`)
      recorder.record(pod, fieldPath, 'Normal', 'Started', `Started container ${cname}`)
      const t = rfc3339()
      cm.completed = {imageID: outcome.imageID, containerID: `containerd://${crypto.randomBytes(32).toString('hex')}`, startedAt: t, finishedAt: t}
      initStatuses.push({...base, ready: true, imageID: cm.completed.imageID, containerID: cm.completed.containerID,
        state: {terminated: {exitCode: 0, reason: 'Completed', startedAt: t, finishedAt: t}}})
    }

    const statuses: JsonObject[] = []
    for (const c of (Array.isArray(spec.containers) ? spec.containers : []).map(obj)) {
      const cname = str(c.name)
      const fieldPath = `spec.containers{${cname}}`
      const cm = memoryOf(cname)
      const base = baseStatus(c)
      if (cm.running) {
        statuses.push({...base, state: {running: {startedAt: cm.running.startedAt}}, ready: true, started: true,
          imageID: cm.running.imageID, containerID: cm.running.containerID})
        continue
      }
      if (!initialized) {
        statuses.push({...base, state: {waiting: {reason: 'PodInitializing'}}})
        continue
      }
      const outcome = await ensureImage(c, fieldPath, cm)
      if (outcome === undefined) return
      if ('waiting' in outcome) {
        statuses.push({...base, state: {waiting: outcome.waiting}})
        continue
      }
      let containerID = `containerd://${crypto.randomBytes(32).toString('hex')}`
      if (opts.runtime) {
        try {
          const started = await opts.runtime.start(nodeName, pod, c, normalizeImageRef(str(c.image)))
          containerID = started.containerID
          if (started.podIP) runtimeIPs.set(uid, started.podIP)
        } catch (err) {
          const msg = (err as Error).message
          recorder.record(pod, fieldPath, 'Warning', 'Failed', `Error: ${msg}`)
          statuses.push({...base, state: {waiting: {reason: 'CreateContainerError', message: msg}}})
          continue
        }
      }
      recorder.record(pod, fieldPath, 'Normal', 'Created', `Created container ${cname}`)
      recorder.record(pod, fieldPath, 'Normal', 'Started', `Started container ${cname}`)
      cm.running = {startedAt: rfc3339(), containerID, imageID: outcome.imageID, nodeName}
      statuses.push({...base, state: {running: {startedAt: cm.running.startedAt}}, ready: true, started: true,
        imageID: outcome.imageID, containerID})
    }
    const fresh = store.tryGet('pods', ns, name)
    if (!fresh || str(obj(fresh.metadata).uid) !== uid) return
    const old = obj(fresh.status)
    const allReady = statuses.length > 0 && statuses.every(s => s.ready === true)
    const notReady = statuses.filter(s => s.ready !== true).map(s => str(s.name))
    const oldConds = (Array.isArray(old.conditions) ? old.conditions : []).map(obj)
    const cond = (type: string, ok: boolean, reason?: string, message?: string): JsonObject => {
      const prev = oldConds.find(x => x.type === type)
      const status = ok ? 'True' : 'False'
      const c: JsonObject = {type, status, lastProbeTime: null,
        lastTransitionTime: prev && prev.status === status ? (prev.lastTransitionTime ?? rfc3339()) : rfc3339()}
      if (!ok && reason) {
        c.reason = reason
        c.message = message ?? ''
      }
      return c
    }
    const unready = `containers with unready status: [${notReady.join(' ')}]`
    let ip = runtimeIPs.get(uid) ?? podIPs.get(uid)
    if (!ip) {
      ip = `10.244.${opts.nodes.indexOf(node) + 1}.${nextIP++}`
      podIPs.set(uid, ip)
    }
    const incomplete = initStatuses.filter(s => s.ready !== true).map(s => str(s.name))
    const status: JsonObject = {
      ...old,
      phase: allReady ? 'Running' : 'Pending',
      conditions: [
        cond('Initialized', initialized, 'ContainersNotInitialized', `containers with incomplete status: [${incomplete.join(' ')}]`),
        cond('Ready', allReady, 'ContainersNotReady', unready),
        cond('ContainersReady', allReady, 'ContainersNotReady', unready),
        cond('PodScheduled', true),
      ],
      hostIP: node.ip, podIP: ip, podIPs: [{ip}],
      startTime: str(old.startTime) || rfc3339(),
      containerStatuses: statuses,
      ...(initStatuses.length > 0 ? {initContainerStatuses: initStatuses} : {}),
      qosClass: str(old.qosClass) || 'BestEffort',
    }
    store.update('pods', ns, name, {...fresh, status}, {subresource: 'status', manager: 'kubelet'})
  }

  const enqueue = (key: string): Promise<void> => {
    const prev = chains.get(key) ?? Promise.resolve()
    const next = prev.then(() => syncPod(key)).catch(() => undefined)
    chains.set(key, next)
    return next
  }

  const boundPods = (): string[] => store.list('pods', {labels: [], fields: []}).items
    .filter(p => served.has(str(obj(p.spec).nodeName))).map(podKey)

  const cancelWatch = store.watch('pods', {labels: [], fields: []}, store.resourceVersion, e => {
    const key = podKey(e.object)
    if (e.type === 'DELETED') {
      const uid = str(obj(e.object.metadata).uid)
      for (const cm of memory.get(uid)?.values() ?? []) {
        if (cm.running && opts.runtime?.stop) void opts.runtime.stop(cm.running.nodeName, cm.running.containerID).catch(() => undefined)
      }
      memory.delete(uid)
      lastSeen.delete(key)
      return
    }
    if (!served.has(str(obj(e.object.spec).nodeName))) return
    const m = obj(e.object.metadata)
    const shape = JSON.stringify([m.uid, m.labels, m.annotations, e.object.spec])
    if (lastSeen.get(key) === shape) return
    lastSeen.set(key, shape)
    // like the pod workers: a change in the pod's spec or metadata triggers a sync at once
    setImmediate(() => void enqueue(key))
  })

  let timer: NodeJS.Timeout | undefined
  const loop = (): void => {
    if (stopped) return
    timer = setTimeout(() => {
      void Promise.all(boundPods().map(enqueue)).finally(loop)
    }, resyncMs * (0.5 + Math.random()))
  }
  for (const key of boundPods()) {
    lastSeen.set(key, '')
    void enqueue(key)
  }
  loop()

  return {
    async syncNow() {
      await Promise.all(boundPods().map(enqueue))
    },
    async stop() {
      stopped = true
      cancelWatch()
      if (timer) clearTimeout(timer)
      await Promise.all([...chains.values()])
    },
  }
}

/**
 * The scheduler stand-in: binds a pod to a node (spec.nodeName, PodScheduled, a Scheduled event),
 * only when a test asks for it.
 */
export function bindPod(store: Store, namespace: string, name: string, nodeName: string): JsonObject {
  const pod = store.get('pods', namespace, name)
  const bound = store.update('pods', namespace, name, {...pod, spec: {...obj(pod.spec), nodeName}}, {manager: 'kube-scheduler'})
  const status = obj(bound.status)
  const conds = (Array.isArray(status.conditions) ? status.conditions : []).map(obj).filter(c => c.type !== 'PodScheduled')
  store.update('pods', namespace, name, {...bound, status: {...status, conditions: [...conds,
    {type: 'PodScheduled', status: 'True', lastProbeTime: null, lastTransitionTime: rfc3339()}]}},
  {subresource: 'status', manager: 'kube-scheduler'})
  new EventRecorder(store, 'default-scheduler', '').record(bound, '', 'Normal', 'Scheduled',
    `Successfully assigned ${namespace}/${name} to ${nodeName}`)
  return store.get('pods', namespace, name)
}
