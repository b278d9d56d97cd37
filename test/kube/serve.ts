// Runs the test API server until interrupted, for the sandbox and for humans:
//   tsx test/kube/serve.ts [--dir DIR] [--port N] [--bed NAME]
//   tsx test/kube/serve.ts [--node NAME=IP ...] [--ssh-key KEY] [--known-hosts FILE]
// --bed NAME (a bed from `npm run bed -- up`): every bed node becomes a Kubernetes node with a
// kubelet stand-in (image truth from its containerd, containers run with ctr) and a kube-proxy
// stand-in (node ports forwarded by socat). --node: kubelet stand-ins that ask each node over SSH
// (`ssh root@IP ctr -n k8s.io images ls -q`), statuses only.
// Prints the kubeconfig path; `KUBECONFIG=<path> kubectl get pods` then works.
import {execFile} from 'node:child_process'
import {openBed} from '../bed/bed.js'
import {startApiServer} from './apiserver.js'
import {bedForwarder, bedHasImage, bedRuntime, kubeletNodes} from './bed-wiring.js'
import {type Kubelet, type KubeletNode, startKubelet} from './kubelet.js'
import {type KubeProxy, startKubeProxy} from './kubeproxy.js'

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name)
  return i >= 0 ? process.argv[i + 1] : undefined
}

function args(name: string): string[] {
  return process.argv.flatMap((a, i) => (a === name && process.argv[i + 1] !== undefined ? [process.argv[i + 1]] : []))
}

function sshImages(ip: string): Promise<string[]> {
  const key = arg('--ssh-key')
  const known = arg('--known-hosts')
  const sshArgs = [...(key ? ['-i', key] : []), ...(known ? ['-o', `UserKnownHostsFile=${known}`] : []),
    '-o', 'BatchMode=yes', `root@${ip}`, 'ctr -n k8s.io images ls -q']
  return new Promise((resolve, reject) => {
    execFile('ssh', sshArgs, {timeout: 15_000}, (err, stdout, stderr) => {
      if (err) reject(new Error(`ssh root@${ip} ctr images ls failed: ${stderr || err.message}`))
      else resolve(stdout.split('\n').map(s => s.trim()).filter(Boolean))
    })
  })
}

const port = arg('--port')
const server = await startApiServer({dir: arg('--dir'), port: port === undefined ? undefined : Number(port)})
let kubelet: Kubelet | undefined
let proxy: KubeProxy | undefined
const bedName = arg('--bed')
if (bedName) {
  const bed = await openBed(bedName)
  const nodes = kubeletNodes(bed)
  kubelet = startKubelet({store: server.store, nodes, hasImage: bedHasImage(bed), runtime: bedRuntime(bed)})
  proxy = startKubeProxy({store: server.store, nodes, forwarder: bedForwarder(bed)})
  process.stdout.write(`nodes ${nodes.map(n => `${n.name}=${n.ip}`).join(' ')}\n`)
} else {
  const nodes: KubeletNode[] = args('--node').map(spec => {
    const [name, ip] = spec.split('=')
    if (!name || !ip) throw new Error(`--node wants NAME=IP, got "${spec}"`)
    return {name, ip}
  })
  if (nodes.length > 0) {
    kubelet = startKubelet({
      store: server.store, nodes,
      hasImage: async (nodeName, ref) => {
        const node = nodes.find(n => n.name === nodeName)
        return node !== undefined && (await sshImages(node.ip)).includes(ref)
      },
    })
  }
}
process.stdout.write(`API server ${server.url}\nKUBECONFIG=${server.kubeconfigPath}\n`)
const shutdown = (): void => {
  void Promise.resolve()
    .then(() => proxy?.stop())
    .then(() => kubelet?.stop())
    .then(() => server.stop())
    .then(() => process.exit(0))
}
process.on('SIGINT', shutdown)
process.on('SIGTERM', shutdown)
