import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import type {V1Pod} from '@kubernetes/client-node'
import YAML from 'yaml'
import {isKubeError} from '../../kube/errors.js'
import {errorInfo} from '../../ui/errors.js'
import {sleep} from '../../util/async.js'
import {shellWord} from './messages.js'
import type {RestartOptions} from './options.js'
import {describePods, runsDigest, short} from './pod-state.js'
import type {RestartRow, RestartRowBase, StalePod} from './result.js'

/** Where bare pods' manifests go: $XDG_STATE_HOME/sideload/pods (~/.local/state/sideload/pods). */
export function restartStateDir(): string {
  const base = process.env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state')
  return path.join(base, 'sideload', 'pods')
}

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
  // set by the RuntimeClass admission plugin from runtimeClassName, the same way
  delete spec.overhead
  // added through the pods/ephemeralcontainers subresource (kubectl debug); a create that has them is refused
  delete spec.ephemeralContainers
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

/**
 * Deletes a bare pod and creates it again from its own spec on its node, its manifest written to
 * a file first (kept when it could not be created again), and waits until it runs the pushed digest.
 */
export async function recreateBarePod(opts: RestartOptions, s: StalePod, deadline: number): Promise<RestartRow> {
  const {client} = opts
  const subject = `${s.namespace}/${s.pod}`
  const base: RestartRowBase = {namespace: s.namespace, target: `pod/${s.pod}`, pods: [s.pod], image: s.image}
  const pod = await client.getPod(s.pod, s.namespace)
  const manifest = recreatableManifest(pod)

  // the manifest goes to disk before the pod goes away
  const file = keepManifest(opts.manifestDir ?? restartStateDir(), s, subject, manifest)

  await client.deletePod(s.pod, s.namespace, s.uid)
  if (!(await waitUntilGone(opts, s, deadline))) {
    return {...base, action: 'failed', result: 'deleted, not gone yet', ok: false, manifest: file, error: {subject,
      message: `deleted, but it was still terminating after the timeout, so it was not created again`,
      hint: `once it is gone (kubectl get pod ${s.pod} -n ${s.namespace}), create it again: kubectl create -f ${shellWord(file)}`, reason: 'pod-not-gone'}}
  }
  try {
    await client.createPod(s.namespace, manifest)
  } catch (err) {
    const info = errorInfo(err)
    return {...base, action: 'failed', result: 'deleted, not created again', ok: false, manifest: file, error: {subject,
      message: `deleted to restart it, but creating it again failed: ${info.message}; its manifest is kept in ${file}`,
      hint: `${info.hint ? `${info.hint}; then ` : ''}create it by hand: kubectl create -f ${shellWord(file)}`, reason: info.reason ?? 'recreate-failed'}}
  }
  return waitUntilRunsPushed(opts, s, base, subject, file, deadline)
}

/** Writes the pod's manifest to a file of its own in `dir` (with the command that creates it again); its path. */
function keepManifest(dir: string, s: StalePod, subject: string, manifest: V1Pod): string {
  fs.mkdirSync(dir, {recursive: true, mode: 0o700})
  const file = path.join(dir, `${s.namespace}.${s.pod}.${new Date().toISOString().replace(/[:.]/g, '-')}.yaml`)
  fs.writeFileSync(file, `# pod ${subject} as sideload --restart deleted it, to create it again: kubectl create -f ${file}\n${YAML.stringify(manifest)}`, {mode: 0o600})
  return file
}

/** The kubelet stops the containers, then the name is free: true once it is, false at the deadline. */
async function waitUntilGone(opts: RestartOptions, s: StalePod, deadline: number): Promise<boolean> {
  for (;;) {
    const now = await opts.client.getPod(s.pod, s.namespace).catch((err: unknown) => {
      if (isKubeError(err, 'not-found')) return undefined
      throw err
    })
    if (!now || now.metadata?.uid !== s.uid) return true
    if (Date.now() >= deadline || opts.signal?.aborted) return false
    await sleep(250, opts.signal)
  }
}

/** Waits for the pod created again to run the pushed digest; then its kept manifest goes. */
async function waitUntilRunsPushed(opts: RestartOptions, s: StalePod, base: RestartRowBase, subject: string, file: string, deadline: number): Promise<RestartRow> {
  for (;;) {
    const now = await opts.client.getPod(s.pod, s.namespace).catch(() => undefined)
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
