export type CheckStatus = 'ok' | 'warn' | 'fail'

/** One line of the doctor's report. */
export interface DoctorCheck {
  /** What was checked: kubeconfig, api-server, rbac, node, ssh, host-key, containerd, snapshotter, leftovers (sideload's leases), ingests, imports, sudo-ctr, p2p, builder. */
  check: string
  /** What it was checked on: a context, a resource, a node, "local". */
  target: string
  status: CheckStatus
  /** What was found. */
  detail: string
  /** How to fix it (for warn and fail). */
  hint?: string
}

/** Where each check reports its row. */
export type AddCheck = (check: DoctorCheck) => void

export class CheckTimeout extends Error {}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CheckTimeout(`${what}: no answer within ${Math.round(ms / 1000)} s`)), ms)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}

export function message(err: unknown): string {
  const e = err as {hint?: unknown; message?: unknown}
  const text = String(e?.message ?? err)
  // SshError puts its hint into the message too; the hint has its own column here
  return typeof e?.hint === 'string' ? text.replace(`\n  hint: ${e.hint}`, '') : text
}

export function hintOf(err: unknown): string | undefined {
  const hint = (err as {hint?: unknown})?.hint
  return typeof hint === 'string' ? hint : undefined
}
