// The sandbox's background process (started detached by `npm run sandbox -- up`):
//   node --import tsx test/sandbox/daemon.ts --name NAME --dir DIR/
// the test API server, a kubelet and a kube-proxy stand-in on every bed node (containers really
// run with ctr on the node, node ports forwarded by socat), and a scheduler stand-in that binds
// every new pod to the node with the fewest pods. Writes DIR/kubeconfig then DIR/ready; SIGTERM stops it.
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {openBed} from '../bed/bed.js'
import {startApiServer} from '../kube/apiserver.js'
import {bedForwarder, bedHasImage, bedRuntime, kubeletNodes} from '../kube/bed-wiring.js'
import {bindPod, startKubelet} from '../kube/kubelet.js'
import {startKubeProxy} from '../kube/kubeproxy.js'
import type {JsonObject} from '../kube/patch.js'
import type {Store} from '../kube/store.js'
import {sandboxPaths} from './sandbox.js'

function arg(name: string): string {
  const i = process.argv.indexOf(name)
  const v = i >= 0 ? process.argv[i + 1] : undefined
  if (!v) throw new Error(`daemon: ${name} is required`)
  return v
}

const obj = (v: unknown): JsonObject => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as JsonObject) : {})

/** The scheduler stand-in: unbound pods go to the node with the fewest pods (ties: by pod name). */
function schedule(store: Store, nodeNames: string[]): void {
  const pods = store.list('pods', {labels: [], fields: []}).items
  const load = new Map(nodeNames.map((n) => [n, 0]))
  for (const pod of pods) {
    const node = String(obj(pod.spec).nodeName ?? '')
    if (load.has(node)) load.set(node, (load.get(node) ?? 0) + 1)
  }
  for (const pod of pods) {
    const meta = obj(pod.metadata)
    if (obj(pod.spec).nodeName || meta.deletionTimestamp) continue
    const name = String(meta.name)
    const least = Math.min(...load.values())
    const candidates = nodeNames.filter((n) => load.get(n) === least)
    const pick = candidates[crypto.createHash('sha256').update(name).digest()[0] % candidates.length]
    bindPod(store, String(meta.namespace ?? 'default'), name, pick)
    load.set(pick, least + 1)
    process.stdout.write(`scheduler: ${String(meta.namespace)}/${name} → ${pick}\n`)
  }
}

async function main(): Promise<void> {
  const name = arg('--name')
  const p = sandboxPaths(name)
  if (path.resolve(arg('--dir')) !== p.dir) throw new Error(`daemon: --dir ${arg('--dir')} is not the dir of sandbox ${name} (${p.dir})`)
  const bed = await openBed(name)
  const server = await startApiServer({dir: p.apiserverDir})
  const nodes = kubeletNodes(bed)
  const kubelet = startKubelet({store: server.store, nodes, hasImage: bedHasImage(bed), runtime: bedRuntime(bed), resyncMs: 1000, pullBackoffMs: 2000})
  const proxy = startKubeProxy({store: server.store, nodes, forwarder: bedForwarder(bed), syncMs: 500})
  const timer = setInterval(() => {
    try {
      schedule(server.store, nodes.map((n) => n.name))
    } catch (e) {
      process.stderr.write(`scheduler: ${e instanceof Error ? e.message : String(e)}\n`)
    }
  }, 200)
  fs.copyFileSync(server.kubeconfigPath, p.kubeconfig)
  fs.writeFileSync(p.ready, `${server.url}\n`)
  process.stdout.write(`sandbox '${name}': API server ${server.url}, nodes ${nodes.map((n) => `${n.name}=${n.ip}`).join(' ')}\n`)
  let stopping = false
  const shutdown = (signal: string): void => {
    if (stopping) return
    stopping = true
    process.stdout.write(`${signal}: stopping\n`)
    clearInterval(timer)
    void Promise.resolve()
      .then(() => proxy.stop())
      .then(() => kubelet.stop())
      .then(() => server.stop())
      .catch((e: unknown) => process.stderr.write(`stopping: ${e instanceof Error ? e.message : String(e)}\n`))
      .then(() => process.exit(0))
  }
  process.on('SIGINT', () => shutdown('SIGINT'))
  process.on('SIGTERM', () => shutdown('SIGTERM'))
}

main().catch((e: unknown) => {
  process.stderr.write(`sandbox daemon: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  process.exit(1)
})
