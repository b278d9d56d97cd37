// `sideload doctor`: check, one by one, everything sideload needs (kubeconfig, API server, RBAC
// verbs, each node's SSH, host key, containerd, sudo ctr, a local builder) and say how to fix
// what fails. Every check is a row; nothing here changes the cluster or the nodes.
import type {V1Node} from '@kubernetes/client-node'
import {accessFor, type SideloadConfig} from '../../config/config.js'
import type {NodeTarget} from '../../nodes/index.js'
import {SshPool} from '../../ssh/index.js'
import {hostTarget} from '../host-targets.js'
import {nodeTarget} from '../targets.js'
import {checkBuilder} from './builder.js'
import {type AddCheck, type DoctorCheck, hintOf, message} from './check.js'
import {checkKube} from './kube.js'
import {checkNode} from './node.js'
import type {DoctorOptions, DoctorResult} from './options.js'

/** Nodes checked at once (each holds one SSH connection while checked). */
const NODE_JOBS = 8

/** Check everything sideload needs; never throws for what it checks (each failure is a row). */
export async function doctor(opts: DoctorOptions = {}): Promise<DoctorResult> {
  const checks: DoctorCheck[] = []
  const timeoutMs = opts.timeoutMs ?? 15_000
  const add = (c: DoctorCheck): void => {
    checks.push(c)
    opts.onCheck?.(c)
  }
  const config = opts.config ?? {defaults: {}, nodes: {}}
  const hostsOnly = (opts.hosts?.length ?? 0) > 0 && (opts.nodes?.length ?? 0) === 0
  const kubeNodes = await checkKube(opts, hostsOnly, timeoutMs, add)
  const targets = nodeTargets(kubeNodes, opts, config, add)
  await checkNodes(targets, opts, timeoutMs, add)
  await checkBuilder(opts.builder ?? {kind: 'auto'}, timeoutMs, add)
  return {checks, ok: checks.every((c) => c.status !== 'fail')}
}

/** The cluster's nodes and the --host targets as push would reach them; a row for each that cannot be. */
function nodeTargets(kubeNodes: V1Node[], opts: DoctorOptions, config: SideloadConfig, add: AddCheck): NodeTarget[] {
  const targets: NodeTarget[] = []
  for (const node of kubeNodes) {
    const name = node.metadata?.name ?? ''
    try {
      targets.push(nodeTarget(node, accessFor(config, name, opts.nodeFlags)))
    } catch (err) {
      add({check: 'node', target: name, status: 'fail', detail: message(err)})
    }
  }
  for (const host of opts.hosts ?? []) {
    try {
      targets.push(hostTarget(host, config, opts.nodeFlags))
    } catch (err) {
      add({check: 'ssh', target: host, status: 'fail', detail: message(err), hint: hintOf(err)})
    }
  }
  return targets
}

/** Up to NODE_JOBS nodes at a time over one SSH pool, their rows in node order. */
async function checkNodes(targets: NodeTarget[], opts: DoctorOptions, timeoutMs: number, add: AddCheck): Promise<void> {
  const keys = [...(opts.ssh?.identityFiles ?? []), ...targets.flatMap((t) => (t.sshKey ? [t.sshKey] : []))]
  const pool = new SshPool({...opts.ssh, identityFiles: keys.length ? [...new Set(keys)] : undefined})
  try {
    const perNode: DoctorCheck[][] = targets.map(() => [])
    let next = 0
    await Promise.all(Array.from({length: Math.min(NODE_JOBS, targets.length)}, async () => {
      for (let i = next++; i < targets.length; i = next++) await checkNode(targets[i], pool, timeoutMs, (c) => perNode[i].push(c), opts.p2p)
    }))
    for (const rows of perNode) for (const r of rows) add(r)
  } finally {
    await pool.closeAll()
  }
}
