// A kubelet stand-in, as a client of the real API server with each node's own identity (client
// certificate CN=system:node:<node>, O=system:nodes; the Node authorizer decides what it may do).
// For every node it registers the Node object, watches the pods bound to it (fieldSelector
// spec.nodeName), and keeps their status in line with the TRUTH: whether the node's real containerd
// has the image (`hasImage`). It follows the real kubelet's image manager
// (pkg/kubelet/images/image_manager.go): pull policy Never + absent → ErrImageNeverPull; Always, or
// IfNotPresent + absent → a pull, which always fails here (no registry) → ErrImagePull, then
// ImagePullBackOff; present (and not Always) → Running. Events as its recorder writes them (a
// repeat bumps count). Pods re-sync every resync period (real: 10 s, jitter 0.5) and at once when
// their spec or metadata change (podsDifferSemantically). A pod being deleted (deletionTimestamp)
// has its containers stopped, then is deleted for good with grace 0, as the kubelet confirms it.
import * as crypto from 'node:crypto'
import * as os from 'node:os'
import {type Informer, inform, keyOf} from './informer.js'
import {type JsonObject, Rest, RestError, arr, corePath, obj, str} from './rest.js'
import type {RealApiServer} from './apiserver.js'

export interface KubeletNode {
  name: string
  /** InternalIP in node.status.addresses */
  ip: string
  architecture?: string
  operatingSystem?: string
  labels?: Record<string, string>
  /** status.nodeInfo.containerRuntimeVersion, e.g. containerd://2.3.7 */
  containerRuntimeVersion: string
}

/** Runs the containers for real (e.g. `ctr run` on a bed node); without it they are only reported running. */
export interface ContainerRuntime {
  /** starts the container; `podIP` is where its ports are reachable (e.g. the node's IP with host networking) */
  start(nodeName: string, pod: JsonObject, container: JsonObject, imageRef: string): Promise<{containerID: string; podIP?: string}>
  /** stops a container started by start(), when its pod is deleted */
  stop?(nodeName: string, containerID: string): Promise<void>
}

export interface KubeletOptions {
  server: RealApiServer
  nodes: KubeletNode[]
  /**
   * Whether the node's container runtime has the image (`imageRef` normalised like the CRI:
   * `foo` → `docker.io/library/foo:latest`); a string is the image ID the CRI reports.
   */
  hasImage(nodeName: string, imageRef: string): Promise<boolean | string>
  /** base re-sync period in ms; each pass waits resyncMs × [0.5, 1.5) (real kubelet: 10 000) */
  resyncMs?: number
  /** first image pull back-off in ms, doubling up to 30× (real: 10 s → 300 s) */
  pullBackoffMs?: number
  runtime?: ContainerRuntime
}

export interface Kubelet {
  /** syncs, now, every pod the API server has bound to the served nodes */
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

export const rfc3339 = (d = new Date()): string => d.toISOString().replace(/\.\d{3}Z$/, 'Z')

const GOARCH: Record<string, string> = {x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x'}

export function nodeObject(n: KubeletNode, kubeletVersion: string): JsonObject {
  const arch = n.architecture ?? GOARCH[process.arch] ?? process.arch
  const osName = n.operatingSystem ?? 'linux'
  const now = rfc3339()
  const cond = (type: string, status: string, reason: string, message: string): JsonObject =>
    ({type, status, lastHeartbeatTime: now, lastTransitionTime: now, reason, message})
  const resources = {cpu: String(os.cpus().length), memory: `${Math.floor(os.totalmem() / 1024)}Ki`, pods: '110'}
  return {
    apiVersion: 'v1', kind: 'Node',
    metadata: {
      name: n.name,
      labels: {
        'beta.kubernetes.io/arch': arch, 'beta.kubernetes.io/os': osName, 'kubernetes.io/arch': arch,
        'kubernetes.io/hostname': n.name, 'kubernetes.io/os': osName, ...(n.labels ?? {}),
      },
      annotations: {'node.alpha.kubernetes.io/ttl': '0', 'volumes.kubernetes.io/controller-managed-attach-detach': 'true'},
    },
    spec: {},
    status: {
      capacity: {...resources, 'ephemeral-storage': '20134592Ki'},
      allocatable: {...resources, 'ephemeral-storage': '18556039957'},
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
        kernelVersion: os.release(), osImage: 'Debian GNU/Linux 12 (bookworm)', containerRuntimeVersion: n.containerRuntimeVersion,
        kubeletVersion, kubeProxyVersion: kubeletVersion, operatingSystem: osName, architecture: arch,
      },
    },
  }
}

/** Writes core/v1 events like the kubelet's recorder: a repeat of the same event bumps count and lastTimestamp. */
export class EventRecorder {
  private readonly seen = new Map<string, {name: string; count: number}>()
  private chain: Promise<void> = Promise.resolve()
  constructor(private readonly rest: Rest, private readonly component: string, private readonly host: string) {}

  record(pod: JsonObject, fieldPath: string, type: 'Normal' | 'Warning', reason: string, message: string): void {
    this.chain = this.chain.then(() => this.write(pod, fieldPath, type, reason, message)).catch(() => undefined)
  }
  flush(): Promise<void> {
    return this.chain
  }

  private async write(pod: JsonObject, fieldPath: string, type: string, reason: string, message: string): Promise<void> {
    const m = obj(pod.metadata)
    const ns = str(m.namespace)
    const key = JSON.stringify([ns, m.name, m.uid, fieldPath, type, reason, message])
    const now = rfc3339()
    const existing = this.seen.get(key)
    if (existing) {
      existing.count++
      try {
        await this.rest.patch(corePath('events', ns, existing.name), {count: existing.count, lastTimestamp: now})
        return
      } catch (err) {
        if (!(err instanceof RestError && err.status === 404)) throw err
      }
    }
    const involved: JsonObject = {kind: 'Pod', namespace: ns, name: str(m.name), uid: str(m.uid), apiVersion: 'v1',
      resourceVersion: str(m.resourceVersion), ...(fieldPath ? {fieldPath} : {})}
    const name = `${str(m.name)}.${(process.hrtime.bigint() + BigInt(Date.now()) * 1000000n).toString(16)}`
    await this.rest.create(corePath('events', ns), {
      apiVersion: 'v1', kind: 'Event', metadata: {name, namespace: ns},
      involvedObject: involved, reason, message, source: {component: this.component, ...(this.host ? {host: this.host} : {})},
      firstTimestamp: now, lastTimestamp: now, count: 1, type, reportingComponent: this.component, reportingInstance: this.host,
    })
    this.seen.set(key, {name, count: 1})
  }
}

interface ContainerMemory {
  running?: {startedAt: string; containerID: string; imageID: string}
  completed?: {startedAt: string; finishedAt: string; containerID: string; imageID: string}
  backoffUntil: number
  backoffMs: number
}

/** One node's kubelet: its identity, its pods, their containers. */
class NodeAgent {
  readonly rest: Rest
  readonly recorder: EventRecorder
  informer: Informer | undefined
  private readonly memory = new Map<string, Map<string, ContainerMemory>>()
  private readonly lastShape = new Map<string, string>()
  private readonly chains = new Map<string, Promise<void>>()
  private readonly podIPs = new Map<string, string>()
  private nextIP = 2
  stopped = false

  constructor(readonly node: KubeletNode, readonly index: number, server: RealApiServer, private readonly opts: KubeletOptions) {
    const cert = server.clientCert(`system:node:${node.name}`, ['system:nodes'])
    this.rest = new Rest({url: server.url, caPath: server.caPath, certPath: cert.certPath, keyPath: cert.keyPath})
    this.recorder = new EventRecorder(this.rest, 'kubelet', node.name)
  }

  async register(kubeletVersion: string): Promise<void> {
    try {
      await this.rest.create(corePath('nodes'), nodeObject(this.node, kubeletVersion))
    } catch (err) {
      if (!(err instanceof RestError && err.status === 409)) throw err
    }
  }

  watch(): Promise<void> {
    this.informer = inform(this.rest, corePath('pods'), {fieldSelector: `spec.nodeName=${this.node.name}`}, (type, pod) => {
      const key = keyOf(pod)
      if (type === 'DELETED') {
        this.forget(pod)
        this.lastShape.delete(key)
        return
      }
      const m = obj(pod.metadata)
      const shape = JSON.stringify([m.uid, m.labels, m.annotations, m.deletionTimestamp, pod.spec])
      if (this.lastShape.get(key) === shape) return
      this.lastShape.set(key, shape)
      setImmediate(() => void this.enqueue(key))
    })
    return this.informer.synced
  }

  enqueue(key: string): Promise<void> {
    const prev = this.chains.get(key) ?? Promise.resolve()
    const next = prev.then(() => this.sync(key)).catch(() => undefined)
    this.chains.set(key, next)
    return next
  }

  async syncAll(): Promise<void> {
    const list = await this.rest.list(corePath('pods'), {fieldSelector: `spec.nodeName=${this.node.name}`})
    await Promise.all(list.items.map(p => this.enqueue(keyOf(p))))
    await this.recorder.flush()
  }

  async drain(): Promise<void> {
    await Promise.all([...this.chains.values()])
    await this.recorder.flush()
  }

  private forget(pod: JsonObject): void {
    const uid = str(obj(pod.metadata).uid)
    for (const cm of this.memory.get(uid)?.values() ?? []) {
      if (cm.running && this.opts.runtime?.stop) void this.opts.runtime.stop(this.node.name, cm.running.containerID).catch(() => undefined)
    }
    this.memory.delete(uid)
  }

  private async sync(key: string): Promise<void> {
    if (this.stopped) return
    const [ns, name] = key.split('/')
    const pod = await this.rest.tryGet(corePath('pods', ns, name))
    if (!pod || this.stopped || str(obj(pod.spec).nodeName) !== this.node.name) return
    const meta = obj(pod.metadata)
    const uid = str(meta.uid)
    if (meta.deletionTimestamp !== undefined) {
      // the kubelet stops the containers, then confirms the deletion
      this.forget(pod)
      await this.rest.delete(corePath('pods', ns, name), {gracePeriodSeconds: 0, preconditions: {uid}}).catch(() => undefined)
      return
    }
    const status = await this.podStatus(pod)
    if (!status || this.stopped) return
    // podIPs merges by ip in a strategic merge patch: a pod IP that changed (the runtime's, e.g. the
    // node's with host networking, after the one given while the image was missing) must replace the
    // list, or the server refuses two IPs of one family (422); the real kubelet's two-way patch deletes the old one
    const podIPs = Array.isArray(status.podIPs) ? [...status.podIPs, {$patch: 'replace'}] : status.podIPs
    try {
      await this.rest.patch(corePath('pods', ns, name, 'status'), {metadata: {uid}, status: {...status, podIPs}})
    } catch (err) {
      // gone or replaced meanwhile: the watch brings the new pod
      if (!(err instanceof RestError && (err.status === 404 || err.status === 409))) throw err
    }
  }

  private containerMemory(uid: string, key: string): ContainerMemory {
    let mem = this.memory.get(uid)
    if (!mem) {
      mem = new Map()
      this.memory.set(uid, mem)
    }
    let cm = mem.get(key)
    if (!cm) {
      cm = {backoffUntil: 0, backoffMs: 0}
      mem.set(key, cm)
    }
    return cm
  }

  /** The image manager's verdict for one container, with its events (pull attempts always fail). */
  private async ensureImage(pod: JsonObject, c: JsonObject, fieldPath: string, cm: ContainerMemory): Promise<{imageID: string} | {waiting: JsonObject}> {
    const rec = this.recorder
    const image = str(c.image)
    const ref = normalizeImageRef(image)
    const policy = str(c.imagePullPolicy)
    const present = await this.opts.hasImage(this.node.name, ref)
    const imageID = typeof present === 'string' ? present : ref
    if (policy === 'Never') {
      if (present) {
        rec.record(pod, fieldPath, 'Normal', 'Pulled', `Container image "${image}" already present on machine`)
        return {imageID}
      }
      const msg = `Container image "${image}" is not present with pull policy of Never`
      rec.record(pod, fieldPath, 'Warning', 'ErrImageNeverPull', msg)
      rec.record(pod, fieldPath, 'Warning', 'Failed', 'Error: ErrImageNeverPull')
      return {waiting: {reason: 'ErrImageNeverPull', message: msg}}
    }
    if (policy === 'IfNotPresent' && present) {
      rec.record(pod, fieldPath, 'Normal', 'Pulled', `Container image "${image}" already present on machine`)
      return {imageID}
    }
    // a pull: there is no registry, so it always fails, then backs off (10 s doubling to 300 s)
    const now = Date.now()
    if (now < cm.backoffUntil) {
      const msg = `Back-off pulling image "${image}"`
      rec.record(pod, fieldPath, 'Normal', 'BackOff', msg)
      rec.record(pod, fieldPath, 'Warning', 'Failed', 'Error: ImagePullBackOff')
      return {waiting: {reason: 'ImagePullBackOff', message: msg}}
    }
    const host = ref.split('/')[0]
    const repo = ref.slice(host.length + 1).replace(/[:@].*$/, '')
    const registryHost = host === 'docker.io' ? 'registry-1.docker.io' : host
    const pullError = `rpc error: code = Unknown desc = failed to pull and unpack image "${ref}": failed to resolve reference "${ref}": failed to do request: Head "https://${registryHost}/v2/${repo}/manifests/${ref.split(/[:@]/).pop() ?? 'latest'}": dial tcp: lookup ${registryHost}: no such host`
    rec.record(pod, fieldPath, 'Normal', 'Pulling', `Pulling image "${image}"`)
    rec.record(pod, fieldPath, 'Warning', 'Failed', `Failed to pull image "${image}": ${pullError}`)
    rec.record(pod, fieldPath, 'Warning', 'Failed', 'Error: ErrImagePull')
    const base = this.opts.pullBackoffMs ?? 10_000
    cm.backoffMs = cm.backoffMs === 0 ? base : Math.min(cm.backoffMs * 2, base * 30)
    cm.backoffUntil = now + cm.backoffMs
    return {waiting: {reason: 'ErrImagePull', message: pullError}}
  }

  /** The pod's status as the kubelet would write it now (undefined: stopped meanwhile). */
  private async podStatus(pod: JsonObject): Promise<JsonObject | undefined> {
    const spec = obj(pod.spec)
    const uid = str(obj(pod.metadata).uid)
    const rec = this.recorder
    const baseStatus = (c: JsonObject): JsonObject =>
      ({name: str(c.name), image: str(c.image), imageID: '', ready: false, restartCount: 0, started: false, lastState: {}})

    // init containers run one after the other, to completion (here: at once when the image is there)
    const initStatuses: JsonObject[] = []
    let initialized = true
    for (const c of arr(spec.initContainers)) {
      const cname = str(c.name)
      const cm = this.containerMemory(uid, `init:${cname}`)
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
      const outcome = await this.ensureImage(pod, c, fieldPath, cm)
      if (this.stopped) return undefined
      if ('waiting' in outcome) {
        initialized = false
        initStatuses.push({...base, state: {waiting: outcome.waiting}})
        continue
      }
      rec.record(pod, fieldPath, 'Normal', 'Created', `Created container ${cname}`)
      rec.record(pod, fieldPath, 'Normal', 'Started', `Started container ${cname}`)
      const t = rfc3339()
      cm.completed = {imageID: outcome.imageID, containerID: `containerd://${crypto.randomBytes(32).toString('hex')}`, startedAt: t, finishedAt: t}
      initStatuses.push({...base, ready: true, imageID: cm.completed.imageID, containerID: cm.completed.containerID,
        state: {terminated: {exitCode: 0, reason: 'Completed', startedAt: t, finishedAt: t}}})
    }

    let runtimeIP: string | undefined
    const statuses: JsonObject[] = []
    for (const c of arr(spec.containers)) {
      const cname = str(c.name)
      const fieldPath = `spec.containers{${cname}}`
      const cm = this.containerMemory(uid, cname)
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
      const outcome = await this.ensureImage(pod, c, fieldPath, cm)
      if (this.stopped) return undefined
      if ('waiting' in outcome) {
        statuses.push({...base, state: {waiting: outcome.waiting}})
        continue
      }
      let containerID = `containerd://${crypto.randomBytes(32).toString('hex')}`
      if (this.opts.runtime) {
        try {
          const started = await this.opts.runtime.start(this.node.name, pod, c, normalizeImageRef(str(c.image)))
          containerID = started.containerID
          if (started.podIP) runtimeIP = started.podIP
        } catch (err) {
          const msg = (err as Error).message
          rec.record(pod, fieldPath, 'Warning', 'Failed', `Error: ${msg}`)
          statuses.push({...base, state: {waiting: {reason: 'CreateContainerError', message: msg}}})
          continue
        }
      }
      rec.record(pod, fieldPath, 'Normal', 'Created', `Created container ${cname}`)
      rec.record(pod, fieldPath, 'Normal', 'Started', `Started container ${cname}`)
      cm.running = {startedAt: rfc3339(), containerID, imageID: outcome.imageID}
      statuses.push({...base, state: {running: {startedAt: cm.running.startedAt}}, ready: true, started: true,
        imageID: outcome.imageID, containerID})
    }

    const old = obj(pod.status)
    const allReady = statuses.length > 0 && statuses.every(s => s.ready === true)
    const notReady = statuses.filter(s => s.ready !== true).map(s => str(s.name))
    const oldConds = arr(old.conditions)
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
    if (runtimeIP) this.podIPs.set(uid, runtimeIP)
    let ip = this.podIPs.get(uid) ?? (str(old.podIP) || undefined)
    if (!ip) {
      ip = `10.244.${this.index + 1}.${this.nextIP++}`
      this.podIPs.set(uid, ip)
    }
    const incomplete = initStatuses.filter(s => s.ready !== true).map(s => str(s.name))
    return {
      phase: allReady ? 'Running' : 'Pending',
      conditions: [
        cond('Initialized', initialized, 'ContainersNotInitialized', `containers with incomplete status: [${incomplete.join(' ')}]`),
        cond('Ready', allReady, 'ContainersNotReady', unready),
        cond('ContainersReady', allReady, 'ContainersNotReady', unready),
        cond('PodScheduled', true),
      ],
      hostIP: this.node.ip, hostIPs: [{ip: this.node.ip}], podIP: ip, podIPs: [{ip}],
      startTime: str(old.startTime) || rfc3339(),
      containerStatuses: statuses,
      ...(initStatuses.length > 0 ? {initContainerStatuses: initStatuses} : {}),
      qosClass: str(old.qosClass) || 'BestEffort',
    }
  }
}

/** Starts a kubelet for each node: registers it, lists and watches its pods; resolves when all have synced once. */
export async function startKubelet(opts: KubeletOptions): Promise<Kubelet> {
  const resyncMs = opts.resyncMs ?? 10_000
  const agents = opts.nodes.map((n, i) => new NodeAgent(n, i, opts.server, opts))
  await Promise.all(agents.map(a => a.register(opts.server.version)))
  await Promise.all(agents.map(a => a.watch()))
  let stopped = false
  let timer: NodeJS.Timeout | undefined
  const loop = (): void => {
    if (stopped) return
    timer = setTimeout(() => {
      void Promise.all(agents.map(a => a.syncAll().catch(() => undefined))).finally(loop)
    }, resyncMs * (0.5 + Math.random()))
  }
  loop()
  return {
    async syncNow() {
      await Promise.all(agents.map(a => a.syncAll()))
    },
    async stop() {
      stopped = true
      if (timer) clearTimeout(timer)
      for (const a of agents) {
        a.stopped = true
        a.informer?.stop()
      }
      await Promise.all(agents.map(a => a.drain()))
      for (const a of agents) a.rest.close()
    },
  }
}

/**
 * The scheduler stand-in, only when a test asks: binds the pod as kube-scheduler does, with a
 * Binding (the API server sets spec.nodeName and the PodScheduled condition), and a Scheduled event.
 */
export async function bindPod(server: RealApiServer, namespace: string, name: string, nodeName: string): Promise<void> {
  const cert = server.clientCert('system:kube-scheduler')
  const rest = new Rest({url: server.url, caPath: server.caPath, certPath: cert.certPath, keyPath: cert.keyPath})
  try {
    const pod = await rest.get(corePath('pods', namespace, name))
    await rest.create(corePath('pods', namespace, name, 'binding'), {
      apiVersion: 'v1', kind: 'Binding', metadata: {name, namespace, uid: str(obj(pod.metadata).uid)},
      target: {apiVersion: 'v1', kind: 'Node', name: nodeName},
    })
    const recorder = new EventRecorder(rest, 'default-scheduler', '')
    recorder.record(pod, '', 'Normal', 'Scheduled', `Successfully assigned ${namespace}/${name} to ${nodeName}`)
    await recorder.flush()
  } finally {
    rest.close()
  }
}
