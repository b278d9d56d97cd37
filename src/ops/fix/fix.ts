// `sideload fix`, once: find the pods that wait for an image the kubelet will not pull, send each
// image once to each node that needs it, nudge the pods and wait until they run.
import {normalizeImageName} from '../../image/index.js'
import {KubeClient} from '../../kube/client.js'
import type {NodeTarget} from '../../nodes/index.js'
import {sourceInventory} from '../../sources/index.js'
import {SshPool} from '../../ssh/index.js'
import {pushMoreWith, restartStalePods, stalePods} from '../restart/index.js'
import type {FixOptions} from './options.js'
import {type FixPlan, isUnscheduled, planFix, type StuckContainer, type Transfer} from './plan.js'
import {type ErrorInfo, errorInfo} from '../../ui/errors.js'
import {annotate, listTargetPods, type NudgeRefused, waitForContainers, waitScheduled} from './pods.js'
import {containerRow, diagnosisRows, failedAction, type FixDiagnosis, type FixResult, type FixRow, type TransferResult} from './result.js'
import {checkSource, nodeTargets, pushOnce} from './transfer.js'

/**
 * Repair the pods stuck for want of an image: plan (one transfer per image and node), check the
 * source has each image, push each image to the nodes that need it, annotate the pods so the
 * kubelet looks again at once, and wait until they run (opts.timeoutMs).
 */
export async function fix(opts: FixOptions): Promise<FixResult> {
  const client = opts.client ?? KubeClient.load(opts)
  const deadline = Date.now() + (opts.timeoutMs ?? 300_000)
  let pods = await listTargetPods(client, opts)
  if (opts.waitScheduled && pods.some(isUnscheduled)) pods = await waitScheduled(client, opts, pods, deadline)
  const plan = planFix(pods, normalizeImageName)
  const checked = await checkSource(plan.transfers, sourceInventory(opts.source)).catch((err: unknown) => {
    if (opts.dryRun) return errorInfo(err) // the plan still shows: each row says the source could not be asked
    throw err
  })
  if (!('ready' in checked)) return planWithoutSource(plan, checked)
  const {ready, missing} = checked
  const diagnoses: FixDiagnosis[] = [...plan.diagnoses, ...missing]
  const rows: FixRow[] = notInSourceRows(plan.transfers.filter((t) => !ready.includes(t)), missing)
  if (opts.dryRun) {
    const transfers = ready.map((t) => ({image: t.image, node: t.node, pods: podsOf(t)}))
    for (const t of ready) for (const c of t.containers) rows.push(containerRow(c, t.node, {action: 'would push', result: c.reason, ok: true}))
    for (const d of diagnoses) rows.push(...diagnosisRows(d))
    return {rows, transfers, diagnoses, ok: diagnoses.length === 0}
  }
  const transfers = ready.length > 0 ? await sendAll(client, opts, ready) : []
  if (ready.length > 0) rows.push(...await outcomeRows(client, opts, ready, transfers, deadline))
  for (const d of diagnoses) rows.push(...diagnosisRows(d))
  const ok = diagnoses.length === 0 && rows.every((r) => r.ok)
  const after = await restartOrWarn(client, opts, transfers, deadline)
  return {rows, transfers, diagnoses, ...after, ok: ok && (after.restart?.ok ?? true)}
}

/** --dry-run when the source cannot be asked: every stuck pod, its node and image, with why nothing can be sent (not ok). */
function planWithoutSource(plan: FixPlan, why: ErrorInfo): FixResult {
  const rows: FixRow[] = plan.transfers.flatMap((t) => t.containers.map((c) => containerRow(c, t.node, {action: 'would push', result: `source unavailable: ${why.message}`, ok: false, hint: why.hint})))
  for (const d of plan.diagnoses) rows.push(...diagnosisRows(d))
  return {rows, transfers: plan.transfers.map((t) => ({image: t.image, node: t.node, pods: podsOf(t)})), diagnoses: plan.diagnoses, ok: false}
}

function podsOf(t: Transfer): string[] {
  return t.containers.map((c) => `${c.namespace}/${c.pod}`)
}

/** The containers of the transfer that sent `image` to `node`. */
function containersOf(ready: Transfer[], t: {image: string; node: string}): StuckContainer[] {
  return ready.find((x) => x.image === t.image && x.node === t.node)?.containers ?? []
}

/** A row per container whose image the source lacks, with the diagnosis's hint. */
function notInSourceRows(lacking: Transfer[], missing: FixDiagnosis[]): FixRow[] {
  return lacking.flatMap((t) => {
    const d = missing.find((m) => m.kind === 'not-in-source' && m.image === t.image)
    return t.containers.map((c) => containerRow(c, t.node, {action: 'not pushed', result: 'image not in the source', ok: false, hint: d?.hint}))
  })
}

/** One push per image, to exactly the nodes that need it. */
async function sendAll(client: KubeClient, opts: FixOptions, ready: Transfer[]): Promise<TransferResult[]> {
  const targets = await nodeTargets(client, [...new Set(ready.map((t) => t.node))], opts)
  const pool = opts.pool ?? new SshPool(opts.ssh)
  const transfers: TransferResult[] = []
  try {
    for (const image of [...new Set(ready.map((t) => t.image))]) {
      const forImage = ready.filter((t) => t.image === image)
      const result = await pushOnce(opts, pool, image, forImage.map((t) => targets.get(t.node)).filter((t): t is NodeTarget => t !== undefined))
      for (const t of forImage) transfers.push({image, node: t.node, pods: podsOf(t), push: result.find((x) => x.node === t.node)})
    }
  } finally {
    if (!opts.pool) await pool.closeAll()
  }
  return transfers
}

/** Nudge the kubelet about the repaired pods, wait for its verdict, and say for each container how it went. */
async function outcomeRows(client: KubeClient, opts: FixOptions, ready: Transfer[], transfers: TransferResult[], deadline: number): Promise<FixRow[]> {
  const repaired = transfers.filter((t) => t.push && t.push.status !== 'failed')
  // per pod: why its nudge was refused (a role without patch pods)
  const refused = new Map<string, NudgeRefused | undefined>()
  if (opts.annotate !== false) {
    for (const c of repaired.flatMap((t) => containersOf(ready, t))) {
      const key = `${c.namespace}/${c.pod}`
      if (!refused.has(key)) refused.set(key, await annotate(client, c))
    }
  }
  const states = await waitForContainers(client, repaired.flatMap((t) => containersOf(ready, t)), deadline, opts.signal)
  const rows: FixRow[] = []
  for (const t of transfers) {
    const r = t.push
    for (const c of containersOf(ready, t)) {
      if (!r || r.status === 'failed') {
        rows.push(containerRow(c, t.node, {action: failedAction(r), result: r?.error ?? 'not pushed', ok: false, hint: r?.hint}))
        continue
      }
      const s = states.get(c)
      const still = s?.stuck ?? true
      const nudge = refused.get(`${c.namespace}/${c.pod}`)
      rows.push(containerRow(c, t.node, {action: r.status, result: still ? `still ${s?.state ?? c.reason} after the push${nudge ? `; ${nudge.message}` : ''}` : (s?.state ?? 'unknown'), ok: !still,
        hint: still ? nudge?.hint ?? `the image is on node ${t.node} now; the kubelet should start the pod on its next re-sync (kubectl describe pod ${c.pod} -n ${c.namespace})` : undefined}))
    }
  }
  return rows
}

/** The other pods on those nodes that run an older digest of an image sent: restarted (--restart), or named. */
async function restartOrWarn(client: KubeClient, opts: FixOptions, transfers: TransferResult[], deadline: number): Promise<Pick<FixResult, 'restart' | 'stale'>> {
  const pushed = transfers.flatMap((t) => t.push && t.push.status !== 'failed' && t.push.digest ? [{node: t.node, image: t.image, digest: t.push.digest}] : [])
  if (pushed.length === 0) return {}
  // the pods fix looked at: the namespace's (-n, else the context's), or every namespace's (-A)
  const namespace = opts.allNamespaces ? undefined : client.namespace
  if (opts.restart) {
    const pushMore = pushMoreWith(client, {source: opts.source, ssh: opts.ssh, platform: opts.platform, pin: opts.pin, replace: opts.replace, unpack: opts.unpack, retries: opts.retries, signal: opts.signal},
      opts.config ?? {defaults: {}, nodes: {}}, opts.access)
    return {restart: await restartStalePods({client, pushed, namespace, timeoutMs: Math.max(deadline - Date.now(), 60_000), signal: opts.signal, pushMore})}
  }
  const stale = await stalePods(client, pushed, namespace).catch(() => [])
  return stale.length ? {stale} : {}
}
