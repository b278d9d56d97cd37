import {Flags} from '@oclif/core'
import {loadConfig} from '../config/config.js'
import {sshFlags, sshOptionsFrom, targetFlags, targetsFromFlags} from '../cli/flags.js'
import {describeLeftover, rfc3339} from '../containerd/index.js'
import {DEFAULT_KEEP, prune} from '../ops/prune.js'
import {SideloadCommand, UsageError} from '../ui/command.js'
import {errorJson, renderError} from '../ui/errors.js'
import {durationMs, formatBytes, renderTable} from '../ui/format.js'

export default class Prune extends SideloadCommand {
  static override summary = 'Free nodes of old images sideload pushed: the ones no pod on the node uses, keeping the newest of each repository.'

  static override description = `Per node (in parallel), removes the images sideload pushed (its sideload.dev/digest label still names the record's target) that neither the node nor a pod bound to it uses, oldest first, keeping the newest ${DEFAULT_KEEP} of each repository (--keep); with --older-than, only those pushed longer ago. Images sideload did not push are never touched, nor what the node needs: its containerd's sandbox (pause) image, the image of any container on it (running or stopped), the image of any pod bound to it (pending too). With the records go their pins, and containerd's GC frees the content no other image references: prune prints, per node, how much that is.

It also drops what interrupted pushes left (their leases and partial blobs, as \`sideload doctor\` shows them).

Pods are checked for nodes named through the cluster (--node, --pod, --all-nodes, --node-selector); a node named by --host is left alone unless --force (its own containers and sandbox image are still kept). --dry-run prints what would go and changes nothing.`

  static override examples = [
    {description: 'What would go on every node of the cluster', command: '<%= config.bin %> prune --all-nodes --dry-run'},
    {description: 'Keep only the newest image of each repository, of those older than a week', command: '<%= config.bin %> prune --all-nodes --keep 1 --older-than 7d'},
  ]

  static override flags = {
    keep: Flags.integer({description: `keep the newest N images sideload pushed of each repository (default ${DEFAULT_KEEP})`, min: 0, default: DEFAULT_KEEP}),
    'older-than': Flags.string({description: 'only images pushed longer ago than this (e.g. 12h, 7d)'}),
    'dry-run': Flags.boolean({description: 'print what would be removed; change nothing'}),
    force: Flags.boolean({description: 'prune nodes named by --host too, where sideload cannot see which pods use an image (the node\'s own containers and sandbox image are still kept)'}),
    json: Flags.boolean({description: 'print one result line of JSON on stdout'}),
    jobs: Flags.integer({char: 'j', description: 'nodes to work on in parallel', default: 4, min: 1}),
    ...sshFlags,
    ...targetFlags('prune'),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(Prune)
    let olderThanMs: number | undefined
    if (flags['older-than'] !== undefined) {
      olderThanMs = durationMs(flags['older-than'])
      if (olderThanMs === undefined) throw new UsageError(`--older-than ${flags['older-than']}: not a duration`, 'write it like 90m, 12h or 7d')
    }
    const config = loadConfig(flags.config)
    const {nodes, kube} = await targetsFromFlags(flags, config, 'no nodes to prune')
    const dryRun = flags['dry-run']
    const result = await prune({nodes, kube, keep: flags.keep, olderThanMs, dryRun, force: flags.force, jobs: flags.jobs, ssh: sshOptionsFrom(flags, config)})
    if (flags.json) {
      process.stdout.write(JSON.stringify({type: 'result', ok: result.ok, dryRun, nodes: result.nodes.map(({error, removed, leases, ...n}) => ({...n,
        removed: removed.map((r) => ({...r, pushedAt: rfc3339(r.pushedAt)})), leases: leases.map((l) => ({id: l.id, image: l.image})), ...(error ? errorJson(error) : {})}))}) + '\n')
    } else {
      const rows = result.nodes.flatMap((n) => n.removed.map((r) => [n.node, r.name, rfc3339(r.pushedAt), formatBytes(r.sizeBytes), dryRun ? 'would remove' : 'removed']))
      if (rows.length) process.stdout.write(renderTable(['node', 'image', 'pushed', 'size', 'result'], rows))
      for (const n of result.nodes) {
        if (n.error) {
          this.logToStderr(renderError(n.error))
          continue
        }
        const leases = n.leases.length ? `; ${dryRun ? 'would drop' : 'dropped'} ${n.leases.length} interrupted push(es): ${n.leases.map((l) => describeLeftover(l)).join('; ')}` : ''
        process.stdout.write(`${n.node}: ${dryRun ? 'would free' : 'freed'} ${formatBytes(n.freedBytes)} (${n.removed.length} image(s), ${n.kept.length} of sideload's kept)${leases}\n`)
      }
    }
    if (!result.ok) this.exit(1)
  }
}
