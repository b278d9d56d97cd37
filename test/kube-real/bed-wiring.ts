// Wires the kubelet and kube-proxy stand-ins to real bed nodes: image presence from the node's
// containerd, containers run with `ctr run --net-host`, node ports forwarded by socat in the node.
import * as crypto from 'node:crypto'
import type {Bed, BedNode} from '../bed/bed.js'
import {daemonVersion} from '../daemons/daemons.js'
import type {ContainerRuntime, KubeletNode} from './kubelet.js'
import type {Forwarder, ForwardRule} from './kubeproxy.js'
import type {JsonObject} from './rest.js'

function sh(argv: string[]): string {
  return argv.map(a => `'${a.replace(/'/g, `'\\''`)}'`).join(' ')
}

function nodeOf(bed: Bed, name: string): BedNode {
  const node = bed.nodes.find(n => n.name === name)
  if (!node) throw new Error(`no bed node ${name}`)
  return node
}

export function kubeletNodes(bed: Bed): KubeletNode[] {
  // what the kubelet reports from the node's CRI: containerd://<its version>
  const runtime = (n: BedNode) => `containerd://${n.containerdLine === '2' ? daemonVersion('containerd').replace(/^v/, '') : '1.6.20'}`
  return bed.nodes.map(n => ({name: n.name, ip: n.ip, containerRuntimeVersion: runtime(n)}))
}

/**
 * The truth for the kubelet stand-in: the node's containerd (`ctr -n k8s.io images ls`). Present →
 * the image ID the CRI reports for it, `<repository>@<manifest digest>` (its repo digest).
 */
export function bedHasImage(bed: Bed): (nodeName: string, ref: string) => Promise<boolean | string> {
  return async (nodeName, ref) => {
    const rows = (await bed.ctr(nodeOf(bed, nodeName), ['images', 'ls'])).split('\n').slice(1).map(l => l.trim().split(/\s+/))
    const row = rows.find(r => r[0] === ref)
    if (!row) return false
    const repo = ref.replace(/@.*$/, '').replace(/:[^:/]+$/, '')
    return `${repo}@${row[2]}`
  }
}

/** Runs pod containers on the node with host networking, so the pod's ports are on the node's IP. */
export function bedRuntime(bed: Bed): ContainerRuntime {
  return {
    async start(nodeName, pod, container, ref) {
      const node = nodeOf(bed, nodeName)
      const podName = String((pod.metadata as JsonObject).name)
      const id = `${podName}-${String(container.name)}-${crypto.randomBytes(3).toString('hex')}`.replace(/[^a-zA-Z0-9_.-]/g, '-')
      const argv = [...((container.command as string[] | undefined) ?? []), ...((container.args as string[] | undefined) ?? [])]
      const r = await bed.exec(node, ['sh', '-c', `ctr -n k8s.io run -d --net-host ${sh([ref, id, ...argv])} >/dev/null 2>/tmp/${id}.err; rc=$?; cat /tmp/${id}.err; exit $rc`])
      if (r.code !== 0) throw new Error(`ctr run ${ref} on ${nodeName} failed: ${r.stdout}${r.stderr}`)
      return {containerID: `containerd://${id}`, podIP: node.ip}
    },
    async stop(nodeName, containerID) {
      const id = containerID.replace(/^containerd:\/\//, '')
      await bed.exec(nodeOf(bed, nodeName), ['sh', '-c',
        `ctr -n k8s.io tasks kill -s SIGKILL ${id}; sleep 0.2; ctr -n k8s.io tasks rm -f ${id}; ctr -n k8s.io containers rm ${id}`])
    },
  }
}

/** Node ports as socat listeners inside the node (kube-proxy's job). */
export function bedForwarder(bed: Bed): Forwarder {
  const pids = new Map<string, string>()
  const key = (node: KubeletNode, r: ForwardRule): string => `${node.name}|${r.protocol}|${r.nodePort}|${r.targetIP}|${r.targetPort}`
  return {
    async open(node, rule) {
      const proto = rule.protocol
      const listen = `${proto}-LISTEN:${rule.nodePort},fork,reuseaddr`
      const target = `${proto}:${rule.targetIP}:${rule.targetPort}`
      const r = await bed.exec(nodeOf(bed, node.name), ['sh', '-c', `socat ${listen} ${target} </dev/null >/dev/null 2>&1 & echo $!`])
      if (r.code !== 0) throw new Error(`socat on ${node.name} failed: ${r.stderr}`)
      pids.set(key(node, rule), r.stdout.trim())
    },
    async close(node, rule) {
      const pid = pids.get(key(node, rule))
      if (!pid) return
      pids.delete(key(node, rule))
      await bed.exec(nodeOf(bed, node.name), ['kill', pid])
    },
  }
}
