import {Args, Command, Flags} from '@oclif/core'
import {loadConfig} from '../config/config.js'
import {sshFlags, sshOptionsFrom, localContainerdFlag} from '../config/flags.js'
import {hostTarget} from '../ops/host-targets.js'
import type {NodeSelection} from '../ops/targets.js'
import {push, PushCancelledError, type PushResult, type PushSource} from '../ops/push.js'
import {formatBytes, formatDuration, renderTable} from '../ui/format.js'
import {createReporter, type ProgressMode} from '../ui/progress.js'
import {withFlagSuggestion} from '../ui/suggest.js'

export default class Push extends Command {
  static override summary = 'Send images into nodes\' containerd (namespace k8s.io) over SSH: only the blobs each node lacks.'

  static override description = `Reads each image from an archive (nerdctl save / docker save, OCI layout or docker-archive) or from the local containerd, connects to every node over SSH and imports the image into the node's containerd, where the kubelet finds it.

Per node, only that node's platform is sent, and only the blobs it does not have yet; a node that already has the image is reported "up to date" and nothing is sent. The image is pinned (io.cri-containerd.pinned=pinned) so kubelet image GC keeps it, and unpacked for the node's snapshotter.

When the SSH user can open the containerd socket (root, or its group) sideload talks to containerd's API through the SSH connection; otherwise it falls back to \`sudo -n ctr images import\`. A dropped connection is retried and resumes where the node stopped.`

  static override examples = [
    {description: 'Push an image from the local containerd (after nerdctl build) to two nodes', command: '<%= config.bin %> push myapp:1.0 --host root@10.0.0.12 --host admin@node-b'},
    {description: 'Push from an archive file', command: '<%= config.bin %> push --archive myapp.tar --host root@10.0.0.12'},
    {description: 'Stream an archive from another command', command: 'nerdctl save myapp:1.0 | <%= config.bin %> push --archive - --host root@10.0.0.12'},
    {description: 'Machine-readable events and result', command: '<%= config.bin %> push myapp:1.0 --host root@10.0.0.12 --json'},
  ]

  static override strict = false

  static override args = {
    image: Args.string({description: 'image name(s); with --archive, default: every image in the archive', ignoreStdin: true}),
  }

  static override flags = {
    host: Flags.string({char: 'H', description: 'node to push to, [user@]host[:port] or an ssh_config alias (repeatable)', multiple: true, multipleNonGreedy: true}),
    archive: Flags.string({char: 'a', description: 'read images from this archive (OCI layout or docker-archive tar; - for stdin)'}),
    'containerd-address': localContainerdFlag('local containerd to read images from'),
    'containerd-namespace': Flags.string({description: 'namespace of the local containerd to read images from', default: 'k8s.io'}),
    platform: Flags.string({description: 'send this platform instead of each node\'s own (e.g. linux/arm64)'}),
    jobs: Flags.integer({char: 'j', description: 'nodes to push to in parallel', default: 4, min: 1}),
    pin: Flags.boolean({description: 'label the image io.cri-containerd.pinned=pinned so kubelet GC keeps it', default: true, allowNo: true}),
    unpack: Flags.boolean({description: 'unpack on the node now instead of at first container start', default: true, allowNo: true}),
    retries: Flags.integer({description: 'reconnect and resume this many times when a node\'s connection drops', default: 3, min: 0}),
    json: Flags.boolean({description: 'print NDJSON progress events and a final result line on stdout'}),
    progress: Flags.string({description: 'progress output', options: ['auto', 'plain', 'tty', 'json', 'quiet'], default: 'auto'}),
    ...sshFlags,
    // Kubernetes nodes as targets (with or instead of --host)
    node: Flags.string({description: 'Kubernetes node to push to (repeatable); reached at its InternalIP, else ExternalIP, else Hostname, or the config file\'s address', multiple: true, multipleNonGreedy: true}),
    pod: Flags.string({description: 'push to the node this pod is scheduled on (repeatable)', multiple: true, multipleNonGreedy: true}),
    'all-nodes': Flags.boolean({description: 'push to every node of the cluster'}),
    'node-selector': Flags.string({description: 'push to the nodes with these labels (k=v[,k2=v2])'}),
    namespace: Flags.string({char: 'n', description: 'Kubernetes namespace of --pod (default: the context\'s)', aliases: ['pod-namespace'], deprecateAliases: true}),
    kubeconfig: Flags.string({description: 'kubeconfig file (default: $KUBECONFIG or ~/.kube/config)'}),
    context: Flags.string({description: 'kubeconfig context (default: its current-context)'}),
    'request-timeout': Flags.string({description: 'how long one Kubernetes API request may take, as kubectl\'s (e.g. 30s, 1m; 0: no limit)', default: '0'}),
  }

  override async catch(err: Error): Promise<unknown> {
    return super.catch(withFlagSuggestion(err, this))
  }

  async run(): Promise<void> {
    const {argv, flags} = await this.parse(Push)
    const images = argv as string[]
    if (flags.namespace !== undefined && !flags.pod?.length) {
      // --namespace used to name the local containerd's namespace; it is the Kubernetes one now, as in kubectl
      this.warn('-n/--namespace is the Kubernetes namespace of --pod and has no effect here; the local containerd\'s namespace is --containerd-namespace')
    }
    const config = loadConfig(flags.config)
    const selection: NodeSelection = {nodes: flags.node, pods: flags.pod, allNodes: flags['all-nodes'], nodeSelector: flags['node-selector'], namespace: flags.namespace}
    // Same test as ops/targets hasNodeSelection, kept here so a --host push never loads the
    // Kubernetes client (~0.3 s of start-up).
    const clusterNodes = Boolean(selection.nodes?.length || selection.pods?.length || selection.allNodes || selection.nodeSelector)
    if (!flags.host?.length && !clusterNodes) {
      this.error('no nodes to push to. Hint: name them with --host [user@]host (repeatable), or Kubernetes nodes with --node, --pod, --all-nodes or --node-selector', {exit: 2})
    }
    const source: PushSource = flags.archive !== undefined ? {kind: 'archive', path: flags.archive} : {kind: 'containerd', address: flags['containerd-address'], namespace: flags['containerd-namespace']}
    if (source.kind === 'containerd' && images.length === 0) {
      this.error('name the image(s) to push, or give --archive FILE', {exit: 2})
    }
    const nodeFlags = {
      containerdSocket: flags['containerd-socket'],
      snapshotter: flags.snapshotter,
      importMode: flags['import-mode'] as 'auto' | 'native' | 'ctr',
    }
    const nodes = (flags.host ?? []).map((h) => hostTarget(h, config, nodeFlags))
    if (clusterNodes) {
      const [{KubeClient}, {KubeConfigError}, {KubeError}, {NodeTargetError, resolveNodeTargets}] = await Promise.all([
        import('../kube/client.js'),
        import('../kube/config.js'),
        import('../kube/errors.js'),
        import('../ops/targets.js'),
      ])
      try {
        const client = KubeClient.load({kubeconfig: flags.kubeconfig, context: flags.context, namespace: flags.namespace, requestTimeout: flags['request-timeout']})
        nodes.push(...(await resolveNodeTargets(client, selection, config, nodeFlags)).targets)
      } catch (err) {
        if (err instanceof KubeError || err instanceof KubeConfigError || err instanceof NodeTargetError) {
          this.logToStderr(`error: ${err.message}`)
          this.exit(1)
        }
        throw err
      }
    }
    const mode: ProgressMode = flags.json ? 'json' : (flags.progress as ProgressMode)
    const reporter = createReporter(mode)
    const abort = new AbortController()
    const onSignal = (): void => abort.abort()
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
    let result: PushResult
    try {
      result = await push({
        images,
        source,
        nodes,
        platform: flags.platform,
        jobs: flags.jobs,
        pin: flags.pin,
        unpack: flags.unpack,
        retries: flags.retries,
        ssh: sshOptionsFrom(flags, config),
        reporter,
        signal: abort.signal,
      })
    } catch (err) {
      if (err instanceof PushCancelledError) {
        this.logToStderr('push cancelled: nodes that had not finished are left as they were (no image record, partial blobs discarded)')
        this.exit(130)
      }
      throw err
    } finally {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    }
    if (flags.json) {
      process.stdout.write(JSON.stringify({type: 'result', ...result}) + '\n')
    } else {
      process.stdout.write(renderPushTable(result))
      for (const r of result.results.filter((x) => x.status === 'failed')) {
        this.logToStderr(`error: node ${r.node}: ${r.error}${r.hint ? `\n  hint: ${r.hint}` : ''}`)
      }
    }
    if (!result.ok) this.exit(1)
  }
}

export function renderPushTable(result: PushResult): string {
  return renderTable(
    ['node', 'image', 'result', 'sent', 'skipped', 'time'],
    result.results.map((r) => [r.node, r.image, r.status, formatBytes(r.sentBytes), formatBytes(r.skippedBytes), formatDuration(r.durationMs)]),
  )
}
