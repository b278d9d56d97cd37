import {Flags} from '@oclif/core'
import {loadConfig} from '../config/config.js'
import {kubeFlags, localContainerdFlag, nodeAccessFrom, p2pFlags, p2pFrom, pushFlags, restartFlag, sshFlags, sshOptionsFrom} from '../cli/flags.js'
import {type FixOptions, type FixResult, type FixRow, type TransferResult, FixError, fix, fixWatch} from '../ops/fix/index.js'
import {describeRestart, rerunWithRestart, restartErrors, staleWarning} from '../ops/restart/index.js'
import {p2pFallbacks} from '../ops/push.js'
import {durationMs, formatBytes, renderTable} from '../ui/format.js'
import {createReporter} from '../ui/progress.js'
import {SideloadCommand, UsageError} from '../ui/command.js'
import {renderError} from '../ui/errors.js'
import {sourceFromFlags} from '../sources/index.js'

export default class Fix extends SideloadCommand {
  static override summary = 'Send the images that stuck pods wait for (ErrImageNeverPull, ImagePullBackOff) to their nodes.'

  static override description = `Finds every pod whose containers (init containers too) wait for an image, groups them by image and node, sends each image once to each node that needs it (from the local containerd by default), nudges the pods and waits until they run.

Pods with imagePullPolicy Always (or a :latest tag without a policy) are explained, not pushed: the kubelet would pull anyway. Unscheduled pods are reported (or waited for with --wait-scheduled). The exit code is 1 when something could not be fixed.

--watch keeps going: every pod that gets stuck later is repaired within seconds; one transfer per image and node at a time. Ctrl-C / SIGTERM stop it cleanly (exit 0).`

  static override examples = [
    {description: 'Repair the stuck pods of the current namespace from the local containerd', command: '<%= config.bin %> fix'},
    {description: 'Every namespace, plan only', command: '<%= config.bin %> fix -A --dry-run'},
    {description: 'One pod, image from an archive', command: '<%= config.bin %> fix --pod web-0 --archive web.tar'},
    {description: 'Keep repairing new pods (e.g. on the build node)', command: '<%= config.bin %> fix -A --watch'},
  ]

  static override flags = {
    namespace: Flags.string({char: 'n', description: 'namespace (default: the context\'s)'}),
    'all-namespaces': Flags.boolean({char: 'A', description: 'pods of every namespace', exclusive: ['namespace']}),
    pod: Flags.string({description: 'only this pod'}),
    'dry-run': Flags.boolean({description: 'print the plan, send nothing'}),
    watch: Flags.boolean({char: 'w', description: 'keep watching for pods that get stuck; Ctrl-C stops', exclusive: ['dry-run']}),
    timeout: Flags.string({description: 'how long to wait for the pods to run after the push (e.g. 90s, 5m)', default: '5m'}),
    'wait-scheduled': Flags.boolean({description: 'wait for unscheduled pods to be scheduled instead of reporting them'}),
    source: Flags.string({description: 'where the images come from: containerd (default), docker, or a directory of archives or an archive file'}),
    archive: Flags.string({description: 'an image archive (docker save / nerdctl save / OCI layout tar) to take the images from', exclusive: ['source']}),
    'containerd-address': localContainerdFlag('local containerd socket (with --source containerd)'),
    'containerd-namespace': Flags.string({description: 'local containerd namespace', default: 'k8s.io'}),
    ...kubeFlags,
    json: Flags.boolean({description: 'print the result as JSON (with --watch: one JSON line per event)'}),
    // how to reach the nodes and import there (as push)
    'ssh-user': Flags.string({description: 'SSH user for every node (the config file can set one per node; default: root or ~/.ssh/config)'}),
    'ssh-port': Flags.integer({description: 'SSH port for every node (default 22 or ~/.ssh/config)'}),
    ...pushFlags,
    ...p2pFlags,
    ...restartFlag,
    ...sshFlags,
  }

  protected override cancelledMessage(): string {
    return 'fix cancelled: transfers stopped; nodes that had not finished are left as they were (no image record, partial blobs discarded)'
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(Fix)
    if (flags.watch && flags.restart) throw new UsageError('--restart does not go with --watch', 'run sideload fix --restart once, or push the new build with sideload push IMAGE --node NODE --restart')
    const timeoutMs = parseDuration(flags.timeout)
    const config = loadConfig(flags.config)
    const options: FixOptions = {
      kubeconfig: flags.kubeconfig, context: flags.context, namespace: flags.namespace, requestTimeout: flags['request-timeout'],
      allNamespaces: flags['all-namespaces'], pod: flags.pod, dryRun: flags['dry-run'], timeoutMs,
      waitScheduled: flags['wait-scheduled'],
      source: sourceFromFlags({source: flags.source, archive: flags.archive, containerdAddress: flags['containerd-address'], containerdNamespace: flags['containerd-namespace']}),
      config,
      access: {sshUser: flags['ssh-user'], sshPort: flags['ssh-port'], ...nodeAccessFrom(flags)},
      ssh: sshOptionsFrom(flags, config),
      platform: flags.platform, jobs: flags.jobs, retries: flags.retries, p2p: p2pFrom(flags), pin: flags.pin, replace: flags.replace, unpack: flags.unpack, restart: flags.restart,
      reporter: createReporter(flags.json ? 'quiet' : 'auto'),
      signal: this.signal,
    }
    if (flags.watch) {
      await this.watch(options, flags.json)
      return
    }
    const result = await fix(options)
    // the result line (--json) or table, also after Ctrl-C: what was done, and what is left
    this.log(flags.json ? JSON.stringify(fixJson(result, this.stopped)) : describeFix(result, Boolean(flags['dry-run'])))
    if (!flags.json) {
      for (const line of result.restart ? restartErrors(result.restart) : []) this.logToStderr(line)
      for (const line of p2pFallbacks(result.transfers.flatMap((t) => (t.push ? [t.push] : [])))) this.logToStderr(line)
      const warning = staleWarning(result.stale ?? [], rerunWithRestart(this.id ?? 'fix', this.argv))
      if (warning) this.logToStderr(`warning: ${warning}`)
    }
    this.exitIfStopped()
    if (!result.ok) this.exit(1)
  }

  /** Ctrl-C / SIGTERM stop the watch cleanly: exit 0, with a last line saying so. */
  private async watch(options: FixOptions, json: boolean): Promise<void> {
    const out = (line: string): void => this.log(line)
    if (!json) out(`watching pods${options.allNamespaces ? ' in every namespace' : ''}; Ctrl-C stops`)
    const summary = await fixWatch({
      ...options,
      onRow: (row) => out(json ? JSON.stringify({type: 'pod', ...row}) : describeRow(row)),
      onTransfer: (t) => {
        if (json) out(JSON.stringify({type: 'transfer', ...transferJson(t)}))
        else if (t.push && t.push.status !== 'failed') out(`${t.image} → ${t.node}: ${t.push.status}, ${formatBytes(t.push.sentBytes)} sent (${t.pods.length} pod(s))`)
      },
    })
    if (json) out(JSON.stringify({type: 'stopped', signal: this.stopped, transfers: summary.transfers.length}))
    else out(`${this.stopped ?? 'stopped'}: ${summary.transfers.length} transfer(s) done`)
  }
}

/** A transfer as --json shows it: its pods' rows carry the failure (error, hint), said once there. */
function transferJson(t: TransferResult): TransferResult {
  if (!t.push || t.push.status !== 'failed') return t
  const {hint: _hint, ...push} = t.push
  return {...t, push}
}

/**
 * The --json result: as fix returns it, each hint once — a transfer's failure on its pods' rows, an
 * image the source lacks on its diagnosis (which names the pods) — and the signal when one stopped it.
 */
export function fixJson(result: FixResult, signal: NodeJS.Signals | undefined): FixResult & {signal?: NodeJS.Signals} {
  const saidInDiagnosis = new Set(result.diagnoses.flatMap((d) => (d.kind === 'not-in-source' ? [d.hint] : [])))
  const rows = result.rows.map((r) => {
    if (!r.hint || !saidInDiagnosis.has(r.hint)) return r
    const {hint: _hint, ...row} = r
    return row
  })
  return {...result, rows, transfers: result.transfers.map(transferJson), ...(signal ? {signal} : {})}
}

/** `90`, `90s`, `5m`, `1h`, `500ms` → milliseconds. */
export function parseDuration(text: string): number {
  const ms = durationMs(text)
  if (ms === undefined) throw new FixError(`--timeout ${text}: expected a duration such as 90s, 5m or 1h`)
  return ms
}

function describeRow(r: FixRow): string {
  const line = `${r.namespace}/${r.pod}${r.container ? ` (${r.container})` : ''} on ${r.node || '<none>'}: ${r.image}: ${r.action}: ${r.result}`
  return r.hint && !r.ok ? renderError({message: line, hint: r.hint}, '') : line
}

export function describeFix(result: FixResult, dryRun: boolean): string {
  if (result.rows.length === 0) return 'no pod waits for an image'
  const lines = [renderTable(['POD', 'NODE', 'IMAGE', 'ACTION', 'RESULT'], result.rows.map((r) => [
    `${r.namespace}/${r.pod}`, r.node || '<none>', r.image, r.action, r.result,
  ])).trimEnd()]
  const hints = [...new Set(result.rows.filter((r) => !r.ok && r.hint).map((r) => r.hint as string))]
  for (const d of result.diagnoses) if (d.kind === 'not-in-source' && !hints.includes(d.hint)) hints.push(d.hint)
  for (const h of hints) lines.push(`hint: ${h}`)
  if (!dryRun) {
    const sent = result.transfers.filter((t) => t.push && t.push.status !== 'failed')
    if (sent.length > 0) {
      lines.push(`${sent.length} transfer(s): ${sent.map((t) => `${t.image} → ${t.node} (${formatBytes(t.push?.sentBytes ?? 0)}${t.push?.via ? `, ${t.push.via}` : ''})`).join(', ')}`)
    }
  } else {
    lines.push(`${result.transfers.length} transfer(s) planned: ${result.transfers.map((t) => `${t.image} → ${t.node}`).join(', ') || 'none'}`)
  }
  if (result.restart) lines.push(...describeRestart(result.restart))
  return lines.join('\n')
}
