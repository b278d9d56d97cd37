import {Args, Flags} from '@oclif/core'
import {describeExpose, type ExposeOptions, type UnexposeResult, expose, unexpose} from '../ops/expose.js'
import {kubeFlags} from '../cli/flags.js'
import {SideloadCommand, UsageError} from '../ui/command.js'

export default class Expose extends SideloadCommand {
  static override summary = 'Expose one pod on a NodePort and print where to connect.'

  static override description = `Creates (or brings in line) a NodePort service that selects exactly this pod.

kubectl expose refuses a pod without labels and selects on all of a pod's labels, which can match its sibling replicas too; sideload instead adds a label unique to the pod (sideload.dev/expose=POD) when needed and selects on that only.

Running it again changes nothing, or updates the service to the new flags. The target port defaults to the one port the pod declares, else --port. --delete removes the service and the label sideload added; --until-exit does so on Ctrl-C / SIGTERM.`

  static override examples = [
    {description: 'Expose the SSH port of a pod and print ssh command lines', command: '<%= config.bin %> expose centos-stream-8 --port 22 --ssh-user admin'},
    {description: 'A fixed node port, in another namespace', command: '<%= config.bin %> expose web-0 --port 80 --target-port 8080 --node-port 30080 -n shop'},
    {description: 'Expose only while the command runs', command: '<%= config.bin %> expose centos-stream-8 --port 22 --until-exit'},
    {description: 'Remove the service and the label sideload added', command: '<%= config.bin %> expose centos-stream-8 --delete'},
    {description: 'Machine-readable result', command: '<%= config.bin %> expose centos-stream-8 --port 22 --json'},
  ]

  static override args = {
    pod: Args.string({description: 'name of the pod to expose', required: true}),
  }

  static override flags = {
    port: Flags.integer({char: 'p', description: 'service port (1-65535); required unless --delete'}),
    'target-port': Flags.string({description: 'container port number or name (default: the pod\'s one declared port, else --port)'}),
    'node-port': Flags.integer({description: 'fixed node port (cluster range, 30000-32767 by default); default: a free one'}),
    protocol: Flags.string({description: 'port protocol', options: ['TCP', 'UDP'], default: 'TCP'}),
    name: Flags.string({description: 'service name (default: the pod name)'}),
    'ssh-user': Flags.string({description: 'also print `ssh USER@IP -p PORT` for each node'}),
    'allow-not-running': Flags.boolean({description: 'expose a pod that is not Running yet'}),
    delete: Flags.boolean({description: 'remove the service and the label sideload added', exclusive: ['until-exit']}),
    'until-exit': Flags.boolean({description: 'keep the service until Ctrl-C / SIGTERM, then remove it'}),
    json: Flags.boolean({description: 'print the result as JSON'}),
    namespace: Flags.string({char: 'n', description: 'namespace (default: the context\'s)'}),
    ...kubeFlags,
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(Expose)
    const target = {namespace: flags.namespace, kubeconfig: flags.kubeconfig, context: flags.context, requestTimeout: flags['request-timeout']}
    if (flags.delete) {
      const r = await unexpose({...target, pod: args.pod, name: flags.name})
      this.log(flags.json ? JSON.stringify(r) : describeUnexpose(r))
      return
    }
    if (flags.port === undefined) throw new UsageError('--port is required', 'give the service port, e.g. --port 22')
    const tp = flags['target-port']
    const options: ExposeOptions = {
      ...target, pod: args.pod, port: flags.port,
      targetPort: tp === undefined ? undefined : /^\d+$/.test(tp) ? Number(tp) : tp,
      nodePort: flags['node-port'], protocol: flags.protocol as 'TCP' | 'UDP', name: flags.name,
      sshUser: flags['ssh-user'], allowNotRunning: flags['allow-not-running'],
    }
    // taken before the service exists: a Ctrl-C from here on removes it again (--until-exit)
    const stop = flags['until-exit'] ? this.signal : undefined
    const result = await expose(options)
    this.log(flags.json ? JSON.stringify(result) : describeExpose(result))
    if (stop) {
      await aborted(stop)
      const r = await unexpose({...target, pod: args.pod, name: result.service})
      if (flags.json) this.log(JSON.stringify({...r, signal: this.stopped}))
      else this.log(`${this.stopped}: ${describeUnexpose(r)}`)
    }
  }
}

/** Resolves when `signal` aborts (Ctrl-C / SIGTERM). */
function aborted(signal: AbortSignal): Promise<void> {
  return new Promise(resolve => {
    if (signal.aborted) return resolve()
    // signal listeners do not keep Node alive; this timer does until a signal comes
    const keepAlive = setInterval(() => undefined, 1 << 30)
    signal.addEventListener('abort', () => {
      clearInterval(keepAlive)
      resolve()
    }, {once: true})
  })
}

export function describeUnexpose(r: UnexposeResult): string {
  if (!r.serviceDeleted) return `no service ${r.namespace}/${r.service}: nothing to remove`
  return `service/${r.service} deleted${r.labelRemoved ? `, label ${r.labelRemoved} removed from pod ${r.pod}` : ''}`
}
