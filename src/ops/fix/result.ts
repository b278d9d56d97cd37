// What `sideload fix` reports: one row per container (POD NODE IMAGE ACTION RESULT), the transfers
// as push() reported them, and what pushing cannot fix.
import type {NodeImageResult} from '../push.js'
import type {RestartReport, StalePod} from '../restart/index.js'
import type {Diagnosis, StuckContainer} from './plan.js'

export type FixAction = 'would push' | 'pushed' | 'up to date' | 'push failed' | 'not pushed' | 'cancelled'

/** One line of the result table: POD NODE IMAGE ACTION RESULT. */
export interface FixRow {
  namespace: string
  pod: string
  container: string
  node: string
  image: string
  action: FixAction
  /** 'Running', 'ContainerCreating', the new waiting reason, or what went wrong */
  result: string
  ok: boolean
  hint?: string
}

/** One (image, node) transfer as push() reported it. */
export interface TransferResult {
  image: string
  node: string
  pods: string[]
  push?: NodeImageResult
}

export interface FixResult {
  rows: FixRow[]
  transfers: TransferResult[]
  diagnoses: FixDiagnosis[]
  /** --restart: what was restarted */
  restart?: RestartReport
  /** without --restart: running pods on the nodes pushed to that keep an older digest */
  stale?: StalePod[]
  /** nothing failed and nothing was left that pushing cannot fix */
  ok: boolean
}

/** What pushing cannot fix (planFix's diagnoses) or what the source lacks. */
export type FixDiagnosis = Diagnosis | {kind: 'not-in-source'; image: string; pods: string[]; hint: string}

/**
 * Why a transfer failed, for programs (NodeImageResult.reason); besides these, the reason of the
 * error that stopped it (host-key-unknown, unavailable, no-space…).
 */
export const TRANSFER_CANCELLED = 'cancelled'
export const IMAGE_NOT_IN_SOURCE = 'not-in-source'

export class FixError extends Error {
  override name = 'FixError'
}

/** The ACTION of a container whose transfer failed (or never ran): told apart by the reason, never the text. */
export function failedAction(push: NodeImageResult | undefined): FixAction {
  if (push?.reason === TRANSFER_CANCELLED) return 'cancelled'
  if (push?.reason === IMAGE_NOT_IN_SOURCE) return 'not pushed'
  return 'push failed'
}

/** A row for one container. */
export function containerRow(c: StuckContainer, node: string, row: Pick<FixRow, 'action' | 'result' | 'ok' | 'hint'>): FixRow {
  return {namespace: c.namespace, pod: c.pod, container: c.container, node, image: c.image, ...row}
}

/** The rows of a diagnosis (a not-in-source one has its rows per container already). */
export function diagnosisRows(d: FixDiagnosis): FixRow[] {
  switch (d.kind) {
    case 'pull-policy-always':
      return [containerRow(d.container, d.container.node ?? '', {action: 'not pushed', result: `imagePullPolicy ${d.container.pullPolicy}`, ok: false, hint: d.hint})]
    case 'unscheduled':
      return [{namespace: d.namespace, pod: d.pod, container: '', node: '<none>', image: d.images.join(','), action: 'not pushed',
        result: 'not scheduled', ok: false, hint: d.hint}]
    case 'not-in-source':
      return []
  }
}
