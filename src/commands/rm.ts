import {Args, Flags} from '@oclif/core'
import {loadConfig} from '../config/config.js'
import {sshFlags, sshOptionsFrom, targetFlags, targetsFromFlags} from '../cli/flags.js'
import {removeImages} from '../ops/rm.js'
import {SideloadCommand, UsageError} from '../ui/command.js'
import {errorJson, renderError} from '../ui/errors.js'
import {formatBytes, renderTable} from '../ui/format.js'

export default class Rm extends SideloadCommand {
  static override summary = 'Remove images from nodes (the pin goes with them): only the ones sideload pushed, never one the node or a pod uses.'

  static override description = `Per node (in parallel), deletes the image's record in the node's containerd (namespace k8s.io), and its repo@sha256:… and sha256:<id> records where no other image shares them; with the record goes the pin, and containerd's GC frees the content nothing else references.

It never removes what the node needs, --force or not: its containerd's sandbox (pause) image, the image of any container on it (running or stopped), the image of a pod bound to it (pending too; naming the pod). It refuses an image sideload did not push (--any removes it anyway). Pods are checked for nodes named through the cluster (--node, --pod, --all-nodes, --node-selector); a node named by --host needs --force, and then only its own containers are checked. Each node is done on its own: one that fails or refuses does not stop the others, and the exit code is 1.`

  static override examples = [
    {description: 'Remove an image from every node of the cluster that has it', command: '<%= config.bin %> rm myapp:1.0 --all-nodes'},
    {description: 'Remove an image sideload did not push, from one node', command: '<%= config.bin %> rm docker.io/library/busybox:1.36 --node worker-1 --any'},
    {description: 'A node reached over SSH (its pods cannot be checked)', command: '<%= config.bin %> rm myapp:1.0 --host root@10.0.0.12 --force'},
  ]

  static override strict = false

  static override args = {
    image: Args.string({description: 'image(s) to remove (app:1 means docker.io/library/app:1; a name without tag means :latest)', ignoreStdin: true}),
  }

  static override flags = {
    force: Flags.boolean({description: 'remove it from a node named by --host, whose pods cannot be checked (its own containers and sandbox image still are)'}),
    any: Flags.boolean({description: 'remove images sideload did not push, too'}),
    json: Flags.boolean({description: 'print one result line of JSON on stdout'}),
    jobs: Flags.integer({char: 'j', description: 'nodes to work on in parallel', default: 4, min: 1}),
    ...sshFlags,
    ...targetFlags('remove from'),
  }

  async run(): Promise<void> {
    const {argv, flags} = await this.parse(Rm)
    const images = argv as string[]
    if (images.length === 0) throw new UsageError('no image to remove', 'name the image(s): sideload rm IMAGE… --node NAME (see sideload images)')
    const config = loadConfig(flags.config)
    const {nodes, kube} = await targetsFromFlags(flags, config, 'no nodes to remove images from')
    const result = await removeImages({images, nodes, kube, force: flags.force, any: flags.any, jobs: flags.jobs, ssh: sshOptionsFrom(flags, config)})
    const nowhere = result.nowhere.map((image) => ({message: `${image} is on none of the nodes`, hint: 'list what is there with: sideload images', reason: 'not-found'}))
    if (flags.json) {
      process.stdout.write(JSON.stringify({type: 'result', ok: result.ok,
        rows: result.rows.map(({error, ...r}) => ({...r, ...(error ? errorJson(error) : {})})), freed: result.freed, ...(nowhere.length ? errorJson(nowhere[0]) : {})}) + '\n')
    } else {
      const freed = new Map(result.freed.map((f) => [f.node, f.bytes]))
      process.stdout.write(renderTable(['node', 'image', 'result'], result.rows.map((r) => [r.node, r.image, r.status])))
      for (const [node, bytes] of freed) process.stdout.write(`${node}: freed ${formatBytes(bytes)}\n`)
      for (const r of result.rows) if (r.error) this.logToStderr(renderError(r.error))
      for (const info of nowhere) this.logToStderr(renderError(info))
    }
    if (!result.ok) this.exit(1)
  }
}
