import {describeIngest, describeLeftover, type LeftoverIngest, type LeftoverLease, PS_IMPORTS_ARGV, runningImports} from '../../containerd/index.js'
import type {SshConnection} from '../../ssh/index.js'
import type {NodeTarget} from '../../nodes/index.js'
import {type AddCheck, message, withTimeout} from './check.js'

/** Where a node's leftovers are read from: its containerd, natively or through ctr. */
export interface LeftoverSource {
  leases(): Promise<LeftoverLease[]>
  ingests(): Promise<LeftoverIngest[]>
}

/**
 * What interrupted transfers of ours left on the node: the lease each native push holds (label
 * `sideload/image`) is kept on purpose when a connection drops, so a re-run resumes; it expires
 * by itself. Doctor shows them, with how to resume or drop them.
 */
export async function checkLeftovers(t: NodeTarget, node: LeftoverSource, conn: SshConnection, timeoutMs: number, add: AddCheck): Promise<void> {
  await checkLeases(t, node, timeoutMs, add)
  await checkIngests(t, node, timeoutMs, add)
  await checkImports(t, conn, timeoutMs, add)
}

async function checkLeases(t: NodeTarget, node: LeftoverSource, timeoutMs: number, add: AddCheck): Promise<void> {
  let ours: LeftoverLease[] | undefined
  try {
    ours = await withTimeout(node.leases(), timeoutMs, 'containerd leases')
  } catch (err) {
    add({check: 'leftovers', target: t.name, status: 'warn', detail: `could not list containerd's leases: ${message(err)}`})
  }
  if (ours?.length === 0) add({check: 'leftovers', target: t.name, status: 'ok', detail: 'no interrupted transfer of sideload'})
  else if (ours) {
    add({check: 'leftovers', target: t.name, status: 'warn',
      detail: `${ours.length} interrupted transfer(s) keep partial blobs: ${ours.map((l) => describeLeftover(l)).join('; ')}`,
      hint: `push again to resume them; or drop them: sideload prune, or ctr -n k8s.io leases rm ${ours.map((l) => l.id).join(' ')} (containerd's GC then frees what they held)`})
  }
}

/** Blobs being written or left half-written: sideload's own (native) and `ctr images import`'s. */
async function checkIngests(t: NodeTarget, node: LeftoverSource, timeoutMs: number, add: AddCheck): Promise<void> {
  try {
    const ingests = await withTimeout(node.ingests(), timeoutMs, 'containerd ingests')
    const mine = ingests.filter((i) => i.kind === 'sideload')
    const imports = ingests.filter((i) => i.kind === 'import')
    if (ingests.length === 0) add({check: 'ingests', target: t.name, status: 'ok', detail: 'no partial blob of sideload or of ctr import'})
    else {
      const hints: string[] = []
      if (mine.length) hints.push('sideload\'s go with their push\'s lease (above): push again to resume them, or sideload prune')
      if (imports.length) hints.push('a `ctr images import` (sideload\'s fallback, or another\'s) that is not running any more left them: they go with the lease that ctr could not drop (it expires in 24 h; ctr -n k8s.io leases ls shows it, created when the import started), or wait for the import below to end')
      add({check: 'ingests', target: t.name, status: 'warn',
        detail: [mine.length ? `sideload's: ${mine.map(describeIngest).join(', ')}` : '', imports.length ? `ctr import's: ${imports.map(describeIngest).join(', ')}` : ''].filter(Boolean).join('; '),
        hint: hints.join('; ')})
    }
  } catch (err) {
    add({check: 'ingests', target: t.name, status: 'warn', detail: `could not list containerd's ingests: ${message(err)}`})
  }
}

/** Imports running now (ps shows every user's processes, no root needed). */
async function checkImports(t: NodeTarget, conn: SshConnection, timeoutMs: number, add: AddCheck): Promise<void> {
  try {
    const ps = await withTimeout(conn.execCapture(PS_IMPORTS_ARGV), timeoutMs, 'ps')
    if (ps.code !== 0) throw new Error(ps.stderr.trim() || `ps exited with ${ps.code}`)
    const running = runningImports(ps.stdout)
    if (running.length === 0) add({check: 'imports', target: t.name, status: 'ok', detail: 'no ctr images import running'})
    else {
      add({check: 'imports', target: t.name, status: 'warn',
        detail: `${running.length} ctr images import running: ${running.map((r) => `PID ${r.pid} (${r.user}, for ${r.elapsed}): ${r.command}`).join('; ')}`,
        hint: `a push of sideload ends its import before it reports; one that outlived its push (or someone else's) ends by itself when its input closes; to stop it: kill -TERM ${running.map((r) => r.pid).join(' ')} (as its user: sudo passes it on to ctr)`})
    }
  } catch (err) {
    add({check: 'imports', target: t.name, status: 'warn', detail: `could not list the node's processes: ${message(err)}`})
  }
}
