import {Args, Flags} from '@oclif/core'
import {BuildFailedError, describeFailure} from '../buildkit/errors.js'
import {createProgressRenderer, type ProgressMode as BuildProgressMode} from '../buildkit/progress.js'
import {loadConfig} from '../config/config.js'
import {allNamespacesFlag, buildFlags, builderChoice, replaceFlag, keyValues, kubeFlags, nodeAccessFrom, parseSecrets, restartFlag, sshFlags, sshOptionsFrom} from '../cli/flags.js'
import {type BuildAndPushResult, buildAndPush} from '../ops/build-and-push.js'
import {describeExpose} from '../ops/expose.js'
import {describeRestart, rerunWithRestart, restartErrors} from '../ops/restart/index.js'
import {formatBytes, formatDuration} from '../ui/format.js'
import {createReporter} from '../ui/progress.js'
import {SideloadCommand, UsageError} from '../ui/command.js'
import {type ErrorInfo, errorInfo, renderError} from '../ui/errors.js'

export default class BuildAndPush extends SideloadCommand {
  static override summary = 'Build the image a pod waits for, push it to the pod\'s node over SSH, and wait until the pod runs.'

  static override description = `The image name defaults to the pod's container image (--container when the pod has several), so
the pod finds exactly what was built. The image goes from the build output straight to the node the pod
is scheduled on (only the blobs the node lacks), pinned and unpacked; then the command waits until the
container runs, or reports why it does not (its waiting reason) after --timeout.

For a pod not created yet, name the node with --node (Kubernetes node) or --host ([user@]host[:port]) and the
image with -t. --expose PORT then exposes the running pod on a NodePort (like sideload expose).
A failed build pushes nothing.`

  static override examples = [
    {description: 'Rebuild the image of a pod stuck in ErrImageNeverPull', command: '<%= config.bin %> build-and-push ./app --pod web-0'},
    {description: 'A pod with several containers, in another namespace, then expose port 8080', command: '<%= config.bin %> build-and-push . --pod api-7d9 -n shop --container api --expose 8080'},
    {description: 'Before the pod exists: build and push to a node', command: '<%= config.bin %> build-and-push . -t myapp:dev --node worker-2'},
    {description: 'The pod already runs an older build: restart it onto the new one', command: '<%= config.bin %> build-and-push . --pod web-0 --restart'},
  ]

  static override args = {
    context: Args.string({description: 'build context directory', default: '.', ignoreStdin: true}),
  }

  static override flags = {
    ...buildFlags,
    pod: Flags.string({description: 'the pod whose image to build and whose node to push to'}),
    namespace: Flags.string({char: 'n', description: 'namespace of the pod (default: the context\'s)'}),
    container: Flags.string({char: 'c', description: 'the pod\'s container to build for (default: its only container)'}),
    tag: Flags.string({char: 't', description: 'image name (default: the container\'s image)'}),
    node: Flags.string({description: 'push to this Kubernetes node instead of the pod\'s', exclusive: ['host']}),
    host: Flags.string({char: 'H', description: 'push to this node, [user@]host[:port], instead of the pod\'s'}),
    expose: Flags.integer({description: 'expose the pod on a NodePort with this service port once it runs', min: 1, max: 65535}),
    timeout: Flags.integer({description: 'seconds to wait for the pod to run (0: do not wait)', default: 120, min: 0}),
    platform: Flags.string({description: 'platform to build for, e.g. linux/arm64 (default: the node\'s when it differs from this machine\'s)'}),
    progress: Flags.string({description: 'progress output (on stderr)', options: ['auto', 'plain', 'tty', 'quiet'], default: 'auto'}),
    json: Flags.boolean({description: 'print the result as JSON on stdout'}),
    replace: replaceFlag(),
    ...kubeFlags,
    ...restartFlag,
    ...allNamespacesFlag,
    ...sshFlags,
  }

  protected override cancelledMessage(): string {
    return 'cancelled; nothing was recorded on the node'
  }

  protected override describe(err: unknown): ErrorInfo {
    return err instanceof BuildFailedError ? {message: describeFailure(err), reason: 'build-failed'} : errorInfo(err)
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(BuildAndPush)
    if (!flags.pod && !flags.node && !flags.host) throw new UsageError('no pod or node named', 'name the pod (--pod NAME), or for a pod not created yet the node (--node / --host) and the image (-t)')
    const config = loadConfig(flags.config)
    const quiet = flags.progress === 'quiet'
    const renderer = quiet ? undefined : createProgressRenderer(flags.progress as BuildProgressMode, process.stderr)
    let result: BuildAndPushResult
    try {
      result = await buildAndPush({
        kubeconfig: flags.kubeconfig, context: flags.context, namespace: flags.namespace, requestTimeout: flags['request-timeout'],
        pod: flags.pod, container: flags.container, tag: flags.tag, node: flags.node, host: flags.host,
        build: {
          context: args.context,
          dockerfile: flags.file,
          buildArgs: keyValues(flags['build-arg'] ?? [], '--build-arg'),
          target: flags.target,
          platforms: flags.platform ? [flags.platform] : undefined,
          noCache: flags['no-cache'],
          secrets: parseSecrets(flags.secret ?? []),
          builder: builderChoice(flags.builder, flags['buildkit-host'], flags['docker-host']),
          pull: flags.pull as 'always' | 'missing' | undefined,
          containerdAddress: flags['containerd-address'],
          onStatus: renderer ? (u) => renderer.update(u) : undefined,
        },
        config,
        replace: flags.replace,
        nodeFlags: nodeAccessFrom(flags),
        ssh: sshOptionsFrom(flags, config),
        reporter: createReporter(quiet ? 'quiet' : 'plain'),
        waitTimeoutMs: flags.timeout * 1000,
        exposePort: flags.expose,
        restart: flags.restart,
        allNamespaces: flags['all-namespaces'],
        rerunWithRestart: rerunWithRestart(this.id ?? 'build-and-push', this.argv),
        signal: this.signal,
      })
    } finally {
      renderer?.end()
    }
    if (flags.json) this.log(JSON.stringify(result))
    else {
      this.log(describeResult(result))
      for (const line of result.restart ? restartErrors(result.restart) : []) this.logToStderr(line)
    }
    if (!result.ok) this.exit(1)
  }
}

export function describeResult(r: BuildAndPushResult): string {
  const lines = [`built ${r.image} in ${formatDuration(r.build.durationMs)} (${r.build.builder})`]
  for (const p of r.push.results) {
    lines.push(p.status === 'failed'
      ? renderError({subject: p.node, message: p.error ?? 'unknown error', hint: p.hint}, 'push failed')
      : `${p.status === 'up to date' ? 'already on' : 'pushed to'} node ${p.node}: ${formatBytes(p.sentBytes)} sent, ${formatBytes(p.skippedBytes)} already there (${p.mode ?? '?'}, ${formatDuration(p.durationMs)})`)
  }
  if (r.pod) {
    const o = r.pod.outcome
    const who = `pod ${r.pod.namespace}/${r.pod.name} container ${r.pod.container}`
    if (o.state === 'running') lines.push(`${who}: running`)
    else if (o.state === 'not-waited') lines.push(`${who}: not waited for (--timeout 0)`)
    else if (o.state === 'timeout') lines.push(`${who}: still not running after the timeout${o.reason ? ` (${o.reason}${o.message ? `: ${o.message}` : ''})` : ''}; see kubectl describe pod ${r.pod.name} -n ${r.pod.namespace}`)
    else lines.push(`${who}: ${o.state}${o.reason ? ` (${o.reason}${o.message ? `: ${o.message}` : ''})` : o.message ? ` (${o.message})` : ''}; see kubectl describe pod ${r.pod.name} -n ${r.pod.namespace}`)
  }
  if (r.restart) lines.push(...describeRestart(r.restart))
  if (r.expose) lines.push(describeExpose(r.expose))
  for (const w of r.warnings) lines.push(`warning: ${w}`)
  return lines.join('\n')
}
