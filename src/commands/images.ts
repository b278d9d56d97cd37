import {Args, Flags} from '@oclif/core'
import {loadConfig} from '../config/config.js'
import {sshFlags, sshOptionsFrom, targetFlags, targetsFromFlags} from '../cli/flags.js'
import {rfc3339} from '../containerd/index.js'
import {shortDigest} from '../image/index.js'
import {listNodeImages, type ImagesResult} from '../ops/images.js'
import {imageJson} from '../ops/node-images.js'
import {SideloadCommand} from '../ui/command.js'
import {errorJson, renderError} from '../ui/errors.js'
import {formatBytes, renderTable} from '../ui/format.js'

export default class Images extends SideloadCommand {
  static override summary = 'List the images on nodes: size, pinned, pushed by sideload and when, and the pods that use them.'

  static override description = `Per node (in parallel): every image in the node's containerd (namespace k8s.io) — its name, digest, size of its content on the node, whether it is pinned against kubelet GC, whether sideload pushed it, when and from where (the sideload.dev/pushed-at and sideload.dev/source labels) — and, for nodes named through the cluster (--node, --pod, --all-nodes, --node-selector), the pods on that node that use it (matched by the image ID in their container statuses, init containers too).

An image's other records (repo@sha256:… and the CRI's sha256:<id>) are shown with it, not as images of their own. A node that cannot be reached is a row saying so; the others still answer, and the exit code is 1.`

  static override examples = [
    {description: 'Every image on every node of the cluster, with the pods using them', command: '<%= config.bin %> images --all-nodes'},
    {description: 'Every tag of one repository on a node reached over SSH', command: '<%= config.bin %> images myapp --host root@10.0.0.12'},
    {description: 'Machine-readable', command: '<%= config.bin %> images --node worker-1 --json'},
  ]

  static override strict = false

  static override args = {
    image: Args.string({description: 'only these images (a name without tag: every tag of that repository)', ignoreStdin: true}),
  }

  static override flags = {
    json: Flags.boolean({description: 'print one result line of JSON on stdout'}),
    output: Flags.string({char: 'o', description: 'wide: whole digests, and each image\'s other records (repo@sha256:…, sha256:<id>)', options: ['wide']}),
    jobs: Flags.integer({char: 'j', description: 'nodes to ask in parallel', default: 4, min: 1}),
    ...sshFlags,
    ...targetFlags('list images on'),
  }

  async run(): Promise<void> {
    const {argv, flags} = await this.parse(Images)
    const config = loadConfig(flags.config)
    const {nodes, kube} = await targetsFromFlags(flags, config, 'no nodes to list images on')
    const result = await listNodeImages({images: argv as string[], nodes, kube, jobs: flags.jobs, ssh: sshOptionsFrom(flags, config)})
    if (flags.json) {
      process.stdout.write(JSON.stringify({type: 'result', ok: result.ok, nodes: result.nodes.map((n) => ({node: n.node,
        ...(n.error ? errorJson(n.error) : {images: n.images!.map((r) => imageJson(r.image, r.pods))})}))}) + '\n')
    } else {
      process.stdout.write(renderImagesTable(result, flags.output === 'wide'))
      for (const n of result.nodes) if (n.error) this.logToStderr(renderError(n.error))
    }
    if (!result.ok) this.exit(1)
  }
}

/**
 * The table for people: an image named only by digest (`repo@sha256:<64 hex>`) shortened as its
 * digest column is (`repo@sha256:<12 hex>`), so the table fits a terminal; `wide` shows every name
 * and digest whole, with the image's other records. PUSHED is `-` for an image sideload did not write.
 */
export function renderImagesTable(result: ImagesResult, wide = false): string {
  const rows: string[][] = []
  const blank = wide ? ['', '', '', '', '', '', ''] : ['', '', '', '', '', '']
  for (const n of result.nodes) {
    if (n.error) {
      rows.push([n.node, '(no answer: the error is below)', ...blank.slice(1)])
      continue
    }
    if (n.images!.length === 0) rows.push([n.node, '(no images)', ...blank.slice(1)])
    for (const {image, pods} of n.images!) {
      const name = wide ? image.name : image.name.replace(/@(sha256:[a-f0-9]{64})$/, (_, d: string) => `@${shortDigest(d)}`)
      rows.push([n.node, name, wide ? image.digest : shortDigest(image.digest), formatBytes(image.sizeBytes), image.pinned ? 'yes' : 'no',
        image.pushedAt ? rfc3339(image.pushedAt) : '-', pods === undefined ? '?' : pods.join(',') || '-', ...(wide ? [image.aliases.join(',') || '-'] : [])])
    }
  }
  return renderTable(['node', 'image', 'digest', 'size', 'pinned', 'pushed', 'pods', ...(wide ? ['other records'] : [])], rows)
}
