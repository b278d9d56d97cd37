import {Args, Flags} from '@oclif/core'
import {loadConfig} from '../config/config.js'
import {allNamespacesFlag, localContainerdFlag, nodeAccessFrom, p2pFlags, p2pFrom, pushFlags, requireTargets, restartFlag, sshFlags, sshOptionsFrom, targetFlags, targetsFromFlags} from '../cli/flags.js'
import {p2pFallbacks, push, type PushOptions, type PushResult} from '../ops/push.js'
import {reopenable} from '../ops/push-workers.js'
import type {RestartReport, StalePod} from '../ops/restart/index.js'
import {formatBytes, formatDuration, renderTable} from '../ui/format.js'
import {createReporter, type ProgressMode} from '../ui/progress.js'
import {SideloadCommand, UsageError} from '../ui/command.js'
import {renderError} from '../ui/errors.js'
import {sourceFromFlags} from '../sources/index.js'

export default class Push extends SideloadCommand {
  static override summary = 'Send images into nodes\' containerd (namespace k8s.io) over SSH: only the blobs each node lacks.'

  static override description = `Reads each image from an archive (nerdctl save / docker save, OCI layout or docker-archive) or from the local containerd, connects to every node over SSH and imports the image into the node's containerd, where the kubelet finds it.

Per node, only that node's platform is sent, and only the blobs it does not have yet; a node that already has the image is reported "up to date" and nothing is sent. The image is pinned (io.cri-containerd.pinned=pinned) so kubelet image GC keeps it, and unpacked for the node's snapshotter.

When the SSH user can open the containerd socket (root, or its group) sideload talks to containerd's API through the SSH connection; otherwise it falls back to \`sudo -n ctr images import\`. A dropped connection is retried and resumes where the node stopped.`

  static override examples = [
    {description: 'Push an image from the local containerd (after nerdctl build) to two nodes', command: '<%= config.bin %> push myapp:1.0 --host root@10.0.0.12 --host admin@node-b'},
    {description: 'Push from an archive file', command: '<%= config.bin %> push --archive myapp.tar --host root@10.0.0.12'},
    {description: 'Stream an archive from another command', command: 'nerdctl save myapp:1.0 | <%= config.bin %> push --archive - --host root@10.0.0.12'},
    {description: 'Machine-readable events and result', command: '<%= config.bin %> push myapp:1.0 --host root@10.0.0.12 --json'},
    {description: 'A new build of a tag pods already run: push it to their nodes and restart them', command: '<%= config.bin %> push myapp:1.0 --node worker-2 --restart'},
    {description: 'Every node of a cluster that runs Spegel: send to 2 nodes, the others pull from them', command: '<%= config.bin %> push registry.lab/myapp:1.0 --all-nodes --p2p spegel --seeds 2'},
  ]

  static override strict = false

  static override args = {
    image: Args.string({description: 'image name(s); with --archive, default: every image in the archive (an archive\'s only image, when it has no name, goes in under the name given)', ignoreStdin: true}),
  }

  static override flags = {
    archive: Flags.string({char: 'a', description: 'read images from this archive (OCI layout or docker-archive tar; - for stdin)'}),
    'containerd-address': localContainerdFlag('local containerd to read images from'),
    'containerd-namespace': Flags.string({description: 'namespace of the local containerd to read images from', default: 'k8s.io'}),
    ...pushFlags,
    workers: Flags.integer({description: 'worker threads to spread the nodes over, each on a core (1: none); default: one per core when there are 4 or more and 4 or more nodes at once (--jobs), else none', min: 1}),
    ...p2pFlags,
    json: Flags.boolean({description: 'print NDJSON progress events and a final result line on stdout'}),
    progress: Flags.string({description: 'progress output', options: ['auto', 'plain', 'tty', 'json', 'quiet'], default: 'auto'}),
    ...restartFlag,
    ...allNamespacesFlag,
    ...sshFlags,
    ...targetFlags('push to'),
  }

  protected override cancelledMessage(): string {
    return 'push cancelled: nodes that had not finished are left as they were (no image record, partial blobs discarded)'
  }

  async run(): Promise<void> {
    const {argv, flags} = await this.parse(Push)
    const images = argv as string[]
    if (flags.namespace !== undefined && !flags.pod?.length && !flags.restart) {
      // --namespace used to name the local containerd's namespace; it is the Kubernetes one now, as in kubectl
      this.logToStderr('warning: -n/--namespace is the Kubernetes namespace of --pod and of the pods --restart restarts, not the local containerd\'s: that is --containerd-namespace')
    }
    requireTargets(flags, 'no nodes to push to')
    const source = sourceFromFlags({archive: flags.archive, containerdAddress: flags['containerd-address'], containerdNamespace: flags['containerd-namespace']})
    if (source.kind === 'containerd' && images.length === 0) {
      throw new UsageError('no image to push', 'name the image(s) to push, or give --archive FILE')
    }
    if ((flags.workers ?? 1) > 1 && !reopenable(source)) {
      this.logToStderr(`warning: --workers: ${source.kind === 'docker' ? 'a Docker daemon\'s export' : 'an archive on stdin'} is read by one thread only, so this push runs without worker threads; save it to a file first to spread the nodes over threads`)
    }
    const config = loadConfig(flags.config)
    const {nodes, kube} = await targetsFromFlags(flags, config, 'no nodes to push to')
    const mode: ProgressMode = flags.json ? 'json' : (flags.progress as ProgressMode)
    const base: Omit<PushOptions, 'images' | 'nodes'> = {
      source,
      platform: flags.platform,
      jobs: flags.jobs,
      pin: flags.pin,
      replace: flags.replace,
      unpack: flags.unpack,
      retries: flags.retries,
      workers: flags.workers,
      p2p: p2pFrom(flags),
      ssh: sshOptionsFrom(flags, config),
      signal: this.signal,
    }
    const result = await push({...base, images, nodes, reporter: createReporter(mode)})

    // running pods on those nodes that keep an older digest of the tag: restarted, or named in a warning
    let restart: RestartReport | undefined
    let stale: StalePod[] = []
    const client = kube?.client ?? (flags.restart ? (await import('../kube/client.js')).KubeClient.load({kubeconfig: flags.kubeconfig,
      context: flags.context, namespace: flags.namespace, requestTimeout: flags['request-timeout']}) : undefined)
    let said: {warning?: string; lines: string[]; errors: string[]} = {lines: [], errors: []}
    if (client && result.results.some((r) => r.status !== 'failed')) {
      // loaded only here: the Kubernetes client is ~70 MB of a push's peak RSS and ~0.4 s of its start-up
      const r = await import('../ops/restart/index.js')
      const pushed = r.pushedDigests(result.results, await r.nodeNamesOf(client, nodes))
      const namespace = flags['all-namespaces'] ? undefined : client.namespace
      if (flags.restart) restart = await r.restartStalePods({client, pushed, namespace, pushMore: r.pushMoreWith(client, base, config, nodeAccessFrom(flags)), signal: this.signal})
      // only a warning: a cluster that does not let us list pods still got its push
      else stale = await r.stalePods(client, pushed, namespace).catch(() => [])
      said = {warning: r.staleWarning(stale, r.rerunWithRestart(this.id ?? 'push', this.argv)), lines: restart ? r.describeRestart(restart) : [], errors: restart ? r.restartErrors(restart) : []}
    }
    const warning = said.warning
    const ok = result.ok && (restart?.ok ?? true)
    if (flags.json) {
      process.stdout.write(JSON.stringify({type: 'result', ...result, ok, ...(restart ? {restart} : {}), ...(stale.length ? {stale, warnings: [warning]} : {})}) + '\n')
    } else {
      process.stdout.write(renderPushTable(result))
      for (const line of said.lines) process.stdout.write(line + '\n')
      for (const line of p2pFallbacks(result.results)) this.logToStderr(line)
      for (const line of pushFailures(result)) this.logToStderr(line)
      for (const line of said.errors) this.logToStderr(line)
      if (warning) this.logToStderr(`warning: ${warning}`)
    }
    if (!ok) this.exit(1)
  }
}

/** One line per node that failed; a node whose images all failed alike is named once, else each image too. */
export function pushFailures(result: PushResult): string[] {
  const failed = result.results.filter((r) => r.status === 'failed')
  const lines = failed.map((r) => {
    const alike = failed.filter((o) => o.node === r.node).every((o) => o.error === r.error)
    return renderError({subject: alike ? r.node : `${r.node} (${r.image})`, message: r.error ?? 'failed', hint: r.hint})
  })
  return [...new Set(lines)]
}

export function renderPushTable(result: PushResult): string {
  // with --p2p: how each node got it (seed, p2p, direct)
  const via = result.results.some((r) => r.via)
  return renderTable(
    ['node', 'image', 'result', ...(via ? ['via'] : []), 'sent', 'skipped', 'time'],
    result.results.map((r) => [r.node, r.image, r.status, ...(via ? [r.via ?? ''] : []), formatBytes(r.sentBytes), formatBytes(r.skippedBytes), formatDuration(r.durationMs)]),
  )
}

