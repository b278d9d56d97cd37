import {Flags} from '@oclif/core'
import {loadConfig} from '../config/config.js'
import {builderChoice, kubeFlags, nodeAccessFrom, sshFlags, sshOptionsFrom} from '../cli/flags.js'
import {type DoctorCheck, type DoctorResult, doctor} from '../ops/doctor/index.js'
import {renderTable} from '../ui/format.js'
import {SideloadCommand} from '../ui/command.js'
import {renderError} from '../ui/errors.js'

export default class Doctor extends SideloadCommand {
  static override summary = 'Check everything sideload needs (cluster access, RBAC, SSH, host keys, containerd, builder) and say how to fix what fails.'

  static override description = `Checks, without changing anything:
- the kubeconfig and whether the API server answers;
- every API right sideload uses (a SelfSubjectAccessReview per verb, like kubectl auth can-i);
- for each node (--node, --host, or every node of the cluster): SSH reachability and login, the host key
  (unknown: its fingerprint and --trust-new-host-keys; changed: refused, with the ssh-keygen -R line),
  the containerd socket, containerd's version, the CRI snapshotter, and sudo -n ctr for non-root users;
- with --p2p spegel, whether each node can pull from its peers: its registry mirror set up and answering;
- a local BuildKit or Docker daemon (only a warning when absent: needed for build only).

Exits 1 when any check FAILs (warnings do not count).`

  static override examples = [
    {description: 'Check the current context and every node', command: '<%= config.bin %> doctor'},
    {description: 'Check two nodes reached by SSH only', command: '<%= config.bin %> doctor --host root@10.0.0.12 --host admin@node-b'},
    {description: 'Machine-readable', command: '<%= config.bin %> doctor --node worker-1 --json'},
  ]

  static override flags = {
    node: Flags.string({description: 'Kubernetes node to check (repeatable; default: every node)', multiple: true, multipleNonGreedy: true}),
    host: Flags.string({char: 'H', description: 'node reached by SSH, [user@]host[:port] (repeatable)', multiple: true, multipleNonGreedy: true}),
    ...kubeFlags,
    namespace: Flags.string({char: 'n', description: 'namespace whose rights are checked (default: the context\'s)'}),
    builder: Flags.string({description: 'which builder to look for', options: ['auto', 'buildkit', 'docker'], default: 'auto'}),
    p2p: Flags.string({description: 'also check that each node can pull from its peers as push --p2p asks it to: containerd\'s registry config_path, a hosts.toml mirror that may pull and resolve, that mirror answering /readyz from the node, layers kept after unpacking', options: ['spegel']}),
    json: Flags.boolean({description: 'print the checks as JSON'}),
    ...sshFlags,
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(Doctor)
    const config = loadConfig(flags.config)
    const result = await doctor({
      kubeconfig: flags.kubeconfig,
      context: flags.context,
      requestTimeout: flags['request-timeout'],
      namespace: flags.namespace,
      nodes: flags.node,
      hosts: flags.host,
      config,
      nodeFlags: nodeAccessFrom(flags),
      ssh: sshOptionsFrom(flags, config),
      builder: builderChoice(flags.builder),
      p2p: flags.p2p === 'spegel' ? 'spegel' : undefined,
    })
    this.log(flags.json ? JSON.stringify(result, null, 2) : renderDoctor(result))
    if (!result.ok) this.exit(1)
  }
}

const STATUS: Record<DoctorCheck['status'], string> = {ok: 'ok', warn: 'warn', fail: 'FAIL'}

export function renderDoctor(result: DoctorResult): string {
  const rows = result.checks.map((c) => [c.check, c.target, STATUS[c.status], renderError({message: c.detail, hint: c.status === 'ok' ? undefined : c.hint}, '', 'block')])
  // renderTable pads columns; a multi-line last cell is indented under the DETAIL column
  const table = renderTable(['check', 'target', 'status', 'detail / hint'], rows.map((r) => [r[0], r[1], r[2], r[3].split('\n')[0]]))
  const widths = [0, 1, 2].map((i) => Math.max(['CHECK', 'TARGET', 'STATUS'][i].length, ...rows.map((r) => r[i].length)))
  const indent = ' '.repeat(widths.reduce((a, b) => a + b + 3, 0))
  const lines = table.trimEnd().split('\n')
  const out = [lines[0]]
  rows.forEach((r, i) => {
    out.push(lines[i + 1])
    for (const extra of r[3].split('\n').slice(1)) out.push(indent + extra.trim())
  })
  const fails = result.checks.filter((c) => c.status === 'fail').length
  const warns = result.checks.filter((c) => c.status === 'warn').length
  out.push('', fails ? `${fails} check(s) failed${warns ? `, ${warns} warning(s)` : ''}` : `all checks passed${warns ? ` (${warns} warning(s))` : ''}`)
  return out.join('\n')
}
