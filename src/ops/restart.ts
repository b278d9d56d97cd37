// `--restart` (push, fix, build-and-push): after a node got a new digest under a tag, the pods on
// it that run that tag with an older digest are restarted so they run the new one. An owner is
// rolled out as `kubectl rollout restart` does it; a bare pod is deleted and created again from its
// own spec on its node, its manifest written to a file first so that it is never lost.
//
// Where restarted pods land: a StatefulSet's or bare pod's replacement keeps its place (the bare
// pod's nodeName is kept); a Deployment's new pods are placed by the scheduler, and a DaemonSet's
// on every node it covers. So before an owner is rolled out, the image goes to every node its pods
// run on (`pushMore`); a new pod that still lands on a node without it is reported with the command
// that sends it there. Nothing is pinned: that would rewrite the owner's template behind its back.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import type {V1Pod} from '@kubernetes/client-node'
import YAML from 'yaml'
import {normalizeImageName} from '../image/index.js'
import {type KubeClient, type RolloutKind, nodeAddress} from '../kube/client.js'
import {isKubeError} from '../kube/errors.js'
import type {NodeTarget} from '../nodes/index.js'
import {parseTarget} from '../ssh/index.js'
import {type ErrorInfo, errorInfo, renderError} from '../ui/errors.js'
import {sleep} from '../util/async.js'
import type {NodeAccess, SideloadConfig} from '../config/config.js'
import {type NodeImageResult, type PushOptions, push} from './push.js'
import {targetsFor} from './targets.js'

/** A node that now holds `digest` under `image` (a push that succeeded, or found it up to date). */
export interface PushedDigest {
  /** Kubernetes node name */
  node: string
  /** the record name (docker.io/library/app:1) */
  image: string
  digest: string
}

/** A running pod whose container runs `image` with another digest than the one its node now holds. */
export interface StalePod {
  namespace: string
  pod: string
  uid: string
  node: string
  image: string
  containers: string[]
  /** the digest the containers run (from status imageID) */
  running: string
  /** the digest the node holds now */
  pushed: string
  /** the controller that owns the pod (a ReplicaSet's Deployment already resolved), when it has one */
  owner?: {kind: string; name: string}
}

/** What happened to one owner, or to one bare pod. */
export interface RestartRow {
  namespace: string
  /** `deployment/web`, `statefulset/db`, `pod/centos-stream-8` */
  target: string
  /** the stale pods it had */
  pods: string[]
  image: string
  action: 'rolled out' | 're-created' | 'deleted for its owner to re-create' | 'not restarted' | 'failed'
  /** the pods now running it: `name on node` */
  result: string
  ok: boolean
  error?: ErrorInfo
  /** a bare pod's manifest, kept when it could not be created again */
  manifest?: string
}

export interface RestartReport {
  stale: StalePod[]
  rows: RestartRow[]
  ok: boolean
}

export interface RestartOptions {
  client: KubeClient
  pushed: PushedDigest[]
  /**
   * Sends `image` to more nodes (an owner's other pods run there) and says what they hold now;
   * without it, an owner whose pods run on nodes not pushed to is not rolled out.
   */
  pushMore?: (image: string, nodes: string[]) => Promise<{pushed: PushedDigest[]; failed: {node: string; error: ErrorInfo}[]}>
  /** where a bare pod's manifest is written before it is deleted (default: restartStateDir()) */
  manifestDir?: string
  /** how long to wait for the restarted pods to run the new digest (default 120 s) */
  timeoutMs?: number
  signal?: AbortSignal
}

const ROLLOUT_KINDS = new Set<string>(['Deployment', 'StatefulSet', 'DaemonSet'])

/** Where bare pods' manifests go: $XDG_STATE_HOME/sideload/pods (~/.local/state/sideload/pods). */
export function restartStateDir(): string {
  const base = process.env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state')
  return path.join(base, 'sideload', 'pods')
}

/** The digest of a status imageID: `repo@sha256:…` → `sha256:…`; an image ID (`sha256:…`) as it is. */
export function imageIdDigest(imageID: string): string {
  const at = imageID.lastIndexOf('@')
  return at >= 0 ? imageID.slice(at + 1) : imageID.replace(/^docker-pullable:\/\/|^docker:\/\//, '')
}

/**
 * The Kubernetes node names of push targets: a cluster node's target is its name; a --host target is
 * the node whose address (InternalIP, ExternalIP, Hostname) is the host it was reached at.
 */
export async function nodeNamesOf(client: KubeClient, targets: NodeTarget[]): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  const nodes = await client.listNodes()
  const byName = new Set(nodes.map((n) => n.metadata?.name ?? ''))
  for (const t of targets) {
    if (byName.has(t.name)) {
      out.set(t.name, t.name)
      continue
    }
    const host = parseTarget(t.sshTarget).host
    const node = nodes.find((n) => (n.status?.addresses ?? []).some((a) => a.address === host) || nodeAddress(n) === host)
    if (node?.metadata?.name) out.set(t.name, node.metadata.name)
  }
  return out
}

/** The running pods on the pushed nodes (every namespace) whose containers run an older digest of a pushed image. */
export async function findStalePods(client: KubeClient, pushed: PushedDigest[]): Promise<StalePod[]> {
  const stale: StalePod[] = []
  for (const node of [...new Set(pushed.map((p) => p.node))]) {
    const onNode = pushed.filter((p) => p.node === node)
    const {items} = await client.listPods({fieldSelector: `spec.nodeName=${node}`})
    for (const pod of items) {
      if (pod.metadata?.deletionTimestamp) continue
      for (const p of onNode) {
        const containers: string[] = []
        let running = ''
        for (const c of pod.spec?.containers ?? []) {
          if (!c.image || normalizeImageName(c.image) !== p.image) continue
          const s = pod.status?.containerStatuses?.find((x) => x.name === c.name)
          if (!s?.state?.running || !s.imageID) continue
          const digest = imageIdDigest(s.imageID)
          if (digest === p.digest) continue
          containers.push(c.name)
          running = digest
        }
        if (containers.length === 0) continue
        stale.push({namespace: pod.metadata?.namespace ?? '', pod: pod.metadata?.name ?? '', uid: pod.metadata?.uid ?? '', node, image: p.image,
          containers, running, pushed: p.digest, owner: controllerOf(pod)})
      }
    }
  }
  return stale
}

function controllerOf(pod: V1Pod): {kind: string; name: string} | undefined {
  const ref = pod.metadata?.ownerReferences?.find((o) => o.controller)
  return ref ? {kind: ref.kind, name: ref.name} : undefined
}

/** A ReplicaSet owned by a Deployment stands for that Deployment (`kubectl rollout restart` acts on it). */
async function resolveOwners(client: KubeClient, stale: StalePod[]): Promise<void> {
  const cache = new Map<string, {kind: string; name: string}>()
  for (const s of stale) {
    if (s.owner?.kind !== 'ReplicaSet') continue
    const key = `${s.namespace}/${s.owner.name}`
    let owner = cache.get(key)
    if (!owner) {
      const rs = await client.getReplicaSet(s.owner.name, s.namespace)
      const ref = rs.metadata?.ownerReferences?.find((o) => o.controller)
      owner = ref?.kind === 'Deployment' ? {kind: 'Deployment', name: ref.name} : s.owner
      cache.set(key, owner)
    }
    s.owner = owner
  }
}

/** `deployment/web`; a bare pod: `pod/NAME`. */
export function restartTarget(s: Pick<StalePod, 'owner' | 'pod'>): string {
  return s.owner ? `${s.owner.kind.toLowerCase()}/${s.owner.name}` : `pod/${s.pod}`
}

/** The command line that was run, again, with --restart: what restarts the pods it left on the old image. */
export function rerunWithRestart(id: string, argv: string[]): string {
  return ['sideload', id, ...argv.filter((a) => a !== '--no-restart').map(shellWord), '--restart'].join(' ')
}

/**
 * The warning after a push without --restart: which pods keep the old image, and the command that
 * restarts them (`rerun`: the same command with --restart; it finds the image up to date and restarts).
 */
export function staleWarning(stale: StalePod[], rerun: string): string | undefined {
  if (stale.length === 0) return undefined
  const pods = stale.map((s) => `${s.namespace}/${s.pod} on ${s.node}${s.owner ? ` (${restartTarget(s)})` : ''}`)
  const owners = [...new Set(stale.filter((s) => s.owner && ROLLOUT_KINDS.has(s.owner.kind)).map((s) => `kubectl rollout restart ${restartTarget(s)} -n ${s.namespace}`))]
  const images = [...new Set(stale.map((s) => s.image))].join(', ')
  return `${stale.length === 1 ? 'pod' : 'pods'} ${pods.join(', ')} still ${stale.length === 1 ? 'runs' : 'run'} the old image of ${images}; ` +
    `restart ${stale.length === 1 ? 'it' : 'them'} with: ${rerun}${owners.length ? ` (or ${owners.join('; ')})` : ''}`
}

/** One line per restarted owner or bare pod, for people (stdout). */
export function describeRestart(report: RestartReport): string[] {
  return report.rows.map((r) => `restart ${r.namespace}/${r.target}: ${r.action}: ${r.result}`)
}

/** The failures, as every error is rendered (stderr): subject, message, hint. */
export function restartErrors(report: RestartReport): string[] {
  return report.rows.filter((r) => r.error).map((r) => renderError(r.error!))
}

/** Finds the stale pods of every pushed node, with their owners resolved (a Deployment for its ReplicaSet). */
export async function stalePods(client: KubeClient, pushed: PushedDigest[]): Promise<StalePod[]> {
  const stale = await findStalePods(client, pushed)
  await resolveOwners(client, stale)
  return stale
}

/**
 * Restarts the stale pods of the pushed nodes: each owner rolled out once (after the image went to
 * every node its pods run on), each bare pod re-created on its node, each pod of another owner
 * deleted for it to re-create. Waits until the new pods run the pushed digest (timeoutMs).
 */
export async function restartStalePods(opts: RestartOptions): Promise<RestartReport> {
  const {client} = opts
  const stale = await stalePods(client, opts.pushed)
  const rows: RestartRow[] = []
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000)
  const holds = new Map<string, string>(opts.pushed.map((p) => [`${p.node}\u0000${p.image}`, p.digest]))

  const groups = new Map<string, StalePod[]>()
  for (const s of stale) {
    const key = `${s.namespace}\u0000${restartTarget(s)}\u0000${s.image}`
    groups.set(key, [...(groups.get(key) ?? []), s])
  }
  for (const group of groups.values()) {
    if (opts.signal?.aborted) break
    const first = group[0]
    const base = {namespace: first.namespace, target: restartTarget(first), pods: group.map((s) => s.pod), image: first.image}
    try {
      if (!first.owner) rows.push(await recreateBarePod(opts, first, deadline))
      else if (ROLLOUT_KINDS.has(first.owner.kind)) rows.push(await rollOut(opts, group, holds, deadline))
      else {
        for (const s of group) await client.deletePod(s.pod, s.namespace, s.uid)
        rows.push({...base, action: 'deleted for its owner to re-create', ok: true,
          result: `${first.owner.kind} ${first.owner.name} creates ${group.length === 1 ? 'it' : 'them'} again (not waited for)`})
      }
    } catch (err) {
      rows.push({...base, action: 'failed', result: 'still running the old image', ok: false, error: errorInfo(err, `${first.namespace}/${base.target}`)})
    }
  }
  return {stale, rows, ok: rows.every((r) => r.ok)}
}

/**
 * pushMore for push(): the same image from the same source to more cluster nodes (their targets from
 * the API and the config). An archive read from stdin cannot be read twice: those nodes fail.
 */
export function pushMoreWith(client: KubeClient, base: Omit<PushOptions, 'images' | 'nodes'>, config: SideloadConfig, access?: NodeAccess): NonNullable<RestartOptions['pushMore']> {
  return async (image, nodeNames) => {
    if (base.source.kind === 'archive' && base.source.path === '-') {
      return {pushed: [], failed: nodeNames.map((node) => ({node, error: {message: 'the archive came from stdin and cannot be read again'}}))}
    }
    const nodes = await Promise.all(nodeNames.map((n) => client.getNode(n)))
    const r = await push({...base, images: [image], nodes: targetsFor(nodes, config, access).targets})
    return {
      pushed: r.results.filter((x) => x.status !== 'failed' && x.digest).map((x) => ({node: x.node, image: x.image, digest: x.digest!})),
      failed: r.results.filter((x) => x.status === 'failed').map((x) => ({node: x.node, error: {message: x.error ?? 'failed', hint: x.hint}})),
    }
  }
}

/** What push() reported as on the nodes, by Kubernetes node name (targets of --host matched by address). */
export function pushedDigests(results: NodeImageResult[], nodeNames: Map<string, string>): PushedDigest[] {
  return results.filter((r) => r.status !== 'failed' && r.digest && nodeNames.has(r.node))
    .map((r) => ({node: nodeNames.get(r.node)!, image: r.image, digest: r.digest!}))
}

// ---------------------------------------------------------------------------------------------
// owners

/** Every pod (not being deleted) of an owner: a Deployment's through its ReplicaSets. */
async function ownerPods(client: KubeClient, namespace: string, owner: {kind: string; name: string}): Promise<V1Pod[]> {
  const {items} = await client.listPods({namespace})
  const rsOwner = new Map<string, string | undefined>()
  const out: V1Pod[] = []
  for (const pod of items) {
    if (pod.metadata?.deletionTimestamp) continue
    const ref = controllerOf(pod)
    if (!ref) continue
    if (owner.kind === 'Deployment' && ref.kind === 'ReplicaSet') {
      if (!rsOwner.has(ref.name)) {
        const rs = await client.getReplicaSet(ref.name, namespace).catch(() => undefined)
        const dep = rs?.metadata?.ownerReferences?.find((o) => o.controller && o.kind === 'Deployment')
        rsOwner.set(ref.name, dep?.name)
      }
      if (rsOwner.get(ref.name) === owner.name) out.push(pod)
    } else if (ref.kind === owner.kind && ref.name === owner.name) out.push(pod)
  }
  return out
}

async function rollOut(opts: RestartOptions, group: StalePod[], holds: Map<string, string>, deadline: number): Promise<RestartRow> {
  const {client} = opts
  const first = group[0]
  const owner = first.owner!
  const base = {namespace: first.namespace, target: restartTarget(first), pods: group.map((s) => s.pod), image: first.image}
  const subject = `${first.namespace}/${base.target}`

  // the image first goes to every node the owner's pods run on, so no new pod waits for it there
  const before = await ownerPods(client, first.namespace, owner)
  const nodes = [...new Set(before.map((p) => p.spec?.nodeName).filter((n): n is string => Boolean(n)))]
  const lacking = nodes.filter((n) => holds.get(`${n}\u0000${first.image}`) !== first.pushed)
  if (lacking.length > 0) {
    const more = opts.pushMore ? await opts.pushMore(first.image, lacking) : {pushed: [], failed: lacking.map((node) => ({node, error: {message: 'not pushed there'}}))}
    for (const p of more.pushed) holds.set(`${p.node}\u0000${p.image}`, p.digest)
    const still = lacking.filter((n) => holds.get(`${n}\u0000${first.image}`) !== first.pushed)
    if (still.length > 0) {
      const why = more.failed.filter((f) => still.includes(f.node)).map((f) => `${f.node}: ${f.error.message}`).join('; ')
      return {...base, action: 'not restarted', result: 'still running the old image', ok: false, error: {subject,
        message: `not rolled out: its pods also run on ${still.join(', ')}, which ${still.length === 1 ? 'does' : 'do'} not hold ${first.pushed} of ${first.image}${why ? ` (${why})` : ''}`,
        hint: `send the image there too, then restart: sideload push ${first.image} ${still.map((n) => `--node ${n}`).join(' ')} --restart`,
        reason: 'image-not-on-owner-nodes'}}
    }
  }
  await client.restartRollout(owner.kind as RolloutKind, owner.name, first.namespace, new Date().toISOString())

  // the rollout: done when every pod of the owner runs the pushed digest, and none of the old ones is left
  const old = new Set(before.map((p) => p.metadata?.uid))
  for (;;) {
    const pods = await ownerPods(client, first.namespace, owner)
    const fresh = pods.filter((p) => !old.has(p.metadata?.uid))
    const done = pods.length > 0 && pods.every((p) => !old.has(p.metadata?.uid) && runsDigest(p, first.image, first.pushed))
    if (done || Date.now() >= deadline || opts.signal?.aborted) {
      const where = fresh.map((p) => `${p.metadata?.name ?? ''} on ${p.spec?.nodeName ?? '<none>'}`)
      if (done) return {...base, action: 'rolled out', result: `${where.join(', ')}: running ${short(first.pushed)}`, ok: true}
      // a new pod the scheduler put on a node without the image waits for it there
      const elsewhere = fresh.filter((p) => waitingForImage(p) && p.spec?.nodeName)
      const hint = elsewhere.length > 0
        ? `new pods landed on ${[...new Set(elsewhere.map((p) => p.spec!.nodeName!))].join(', ')}, which ${elsewhere.length === 1 ? 'does' : 'do'} not have the image: sideload push ${first.image} ${[...new Set(elsewhere.map((p) => `--node ${p.spec!.nodeName!}`))].join(' ')} (or sideload fix -n ${first.namespace})`
        : `kubectl rollout status ${base.target} -n ${first.namespace}`
      return {...base, action: 'rolled out', result: where.join(', ') || 'no new pod yet', ok: false,
        error: {subject, message: `the rollout did not finish in time: ${describePods(pods, first.image)}`, hint, reason: elsewhere.length > 0 ? 'landed-without-image' : 'rollout-timeout'}}
    }
    await sleep(500, opts.signal)
  }
}

function containerStatusesFor(pod: V1Pod, image: string) {
  const names = new Set((pod.spec?.containers ?? []).filter((c) => c.image && normalizeImageName(c.image) === image).map((c) => c.name))
  return (pod.status?.containerStatuses ?? []).filter((s) => names.has(s.name))
}

function runsDigest(pod: V1Pod, image: string, digest: string): boolean {
  const statuses = containerStatusesFor(pod, image)
  return statuses.length > 0 && statuses.every((s) => s.state?.running && s.imageID && imageIdDigest(s.imageID) === digest)
}

function waitingForImage(pod: V1Pod): boolean {
  return (pod.status?.containerStatuses ?? []).some((s) => ['ErrImageNeverPull', 'ErrImagePull', 'ImagePullBackOff'].includes(s.state?.waiting?.reason ?? ''))
}

function describePods(pods: V1Pod[], image: string): string {
  return pods.map((p) => {
    const s = containerStatusesFor(p, image)[0]
    const state = s?.state?.running ? `running ${short(imageIdDigest(s.imageID ?? ''))}` : s?.state?.waiting?.reason ?? p.status?.phase ?? 'Pending'
    return `${p.metadata?.name ?? ''} on ${p.spec?.nodeName ?? '<none>'}: ${state}`
  }).join(', ') || 'no pods'
}

const short = (digest: string): string => digest.replace(/^sha256:/, '').slice(0, 12)

// ---------------------------------------------------------------------------------------------
// bare pods

/** The pod as it can be created again: its own spec and metadata, without what the server set. */
export function recreatableManifest(pod: V1Pod): V1Pod {
  const m = pod.metadata ?? {}
  const spec = structuredClone(pod.spec ?? {containers: []})
  // the ServiceAccount admission plugin adds its token volume again (a second one would clash)
  const tokenVolumes = new Set((spec.volumes ?? []).filter((v) => v.name.startsWith('kube-api-access-') && v.projected).map((v) => v.name))
  if (tokenVolumes.size > 0) {
    spec.volumes = spec.volumes!.filter((v) => !tokenVolumes.has(v.name))
    if (spec.volumes.length === 0) delete spec.volumes
    for (const c of [...spec.containers, ...(spec.initContainers ?? [])]) {
      c.volumeMounts = c.volumeMounts?.filter((vm) => !tokenVolumes.has(vm.name))
      if (c.volumeMounts?.length === 0) delete c.volumeMounts
    }
  }
  // set by the Priority admission plugin from priorityClassName (it refuses a value given by hand that differs)
  delete spec.priority
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: {
      name: m.name, namespace: m.namespace,
      ...(m.labels ? {labels: m.labels} : {}),
      ...(m.annotations ? {annotations: m.annotations} : {}),
      ...(m.finalizers?.length ? {finalizers: m.finalizers} : {}),
    },
    spec,
  }
}

function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`
}

async function recreateBarePod(opts: RestartOptions, s: StalePod, deadline: number): Promise<RestartRow> {
  const {client} = opts
  const subject = `${s.namespace}/${s.pod}`
  const base = {namespace: s.namespace, target: `pod/${s.pod}`, pods: [s.pod], image: s.image}
  const pod = await client.getPod(s.pod, s.namespace)
  const manifest = recreatableManifest(pod)

  // the manifest goes to disk before the pod goes away
  const dir = opts.manifestDir ?? restartStateDir()
  fs.mkdirSync(dir, {recursive: true, mode: 0o700})
  const file = path.join(dir, `${s.namespace}.${s.pod}.${new Date().toISOString().replace(/[:.]/g, '-')}.yaml`)
  fs.writeFileSync(file, `# pod ${subject} as sideload --restart deleted it, to create it again: kubectl create -f ${file}\n${YAML.stringify(manifest)}`, {mode: 0o600})

  await client.deletePod(s.pod, s.namespace, s.uid)
  // the kubelet stops the containers, then the name is free
  for (;;) {
    const now = await client.getPod(s.pod, s.namespace).catch((err: unknown) => {
      if (isKubeError(err, 'not-found')) return undefined
      throw err
    })
    if (!now || now.metadata?.uid !== s.uid) break
    if (Date.now() >= deadline || opts.signal?.aborted) {
      return {...base, action: 'failed', result: 'deleted, not gone yet', ok: false, manifest: file, error: {subject,
        message: `deleted, but it was still terminating after the timeout, so it was not created again`,
        hint: `once it is gone (kubectl get pod ${s.pod} -n ${s.namespace}), create it again: kubectl create -f ${shellWord(file)}`, reason: 'pod-not-gone'}}
    }
    await sleep(250, opts.signal)
  }
  try {
    await client.createPod(s.namespace, manifest)
  } catch (err) {
    const info = errorInfo(err)
    return {...base, action: 'failed', result: 'deleted, not created again', ok: false, manifest: file, error: {subject,
      message: `deleted to restart it, but creating it again failed: ${info.message}; its manifest is kept in ${file}`,
      hint: `${info.hint ? `${info.hint}; then ` : ''}create it by hand: kubectl create -f ${shellWord(file)}`, reason: info.reason ?? 'recreate-failed'}}
  }
  for (;;) {
    const now = await client.getPod(s.pod, s.namespace).catch(() => undefined)
    if (now && runsDigest(now, s.image, s.pushed)) {
      fs.rmSync(file, {force: true})
      return {...base, action: 're-created', result: `${s.pod} on ${now.spec?.nodeName ?? s.node}: running ${short(s.pushed)}`, ok: true}
    }
    if (Date.now() >= deadline || opts.signal?.aborted) {
      return {...base, action: 're-created', result: now ? describePods([now], s.image) : 'gone again', ok: false, manifest: file,
        error: {subject, message: `created again, but not running ${short(s.pushed)} after the timeout`, hint: `kubectl describe pod ${s.pod} -n ${s.namespace}`, reason: 'restart-timeout'}}
    }
    await sleep(500, opts.signal)
  }
}
