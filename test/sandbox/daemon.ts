// The sandbox's background process (started detached by `npm run sandbox -- up`):
//   node --import tsx test/sandbox/daemon.ts --name NAME --dir DIR/
// the real Kubernetes API server (etcd + kube-apiserver) and the real kube-scheduler, with a kubelet
// and a kube-proxy stand-in on every bed node (containers really run with ctr on the node, node
// ports forwarded by socat). Writes DIR/kubeconfig (the admin's, self-contained) then DIR/ready;
// SIGTERM stops it. Its daemons die with it however it dies (see test/kube-real/apiserver.ts).
import * as fs from 'node:fs'
import * as path from 'node:path'
import YAML from 'yaml'
import {openBed} from '../bed/bed.js'
import {startCluster} from '../kube-real/cluster.js'
import {sandboxPaths, sandboxServerName} from './sandbox.js'

function arg(name: string): string {
  const i = process.argv.indexOf(name)
  const v = i >= 0 ? process.argv[i + 1] : undefined
  if (!v) throw new Error(`daemon: ${name} is required`)
  return v
}

const b64 = (file: string): string => fs.readFileSync(file).toString('base64')

async function main(): Promise<void> {
  const name = arg('--name')
  const p = sandboxPaths(name)
  if (path.resolve(arg('--dir')) !== p.dir) throw new Error(`daemon: --dir ${arg('--dir')} is not the dir of sandbox ${name} (${p.dir})`)
  const bed = await openBed(name)
  const cluster = await startCluster(bed, {serverName: sandboxServerName(name, process.pid), scheduler: true, runContainers: true, kubeProxy: true,
    resyncMs: 1000, pullBackoffMs: 2000})
  const {server} = cluster
  // what kind writes: one file, certificates inline, so it works wherever it is copied
  fs.writeFileSync(p.kubeconfig, YAML.stringify({
    apiVersion: 'v1', kind: 'Config',
    clusters: [{name: `sandbox-${name}`, cluster: {server: server.url, 'certificate-authority-data': b64(server.caPath)}}],
    users: [{name: `sandbox-${name}-admin`, user: {'client-certificate-data': b64(server.adminCert.certPath), 'client-key-data': b64(server.adminCert.keyPath)}}],
    contexts: [{name: `sandbox-${name}`, context: {cluster: `sandbox-${name}`, user: `sandbox-${name}-admin`, namespace: 'default'}}],
    'current-context': `sandbox-${name}`,
  }), {mode: 0o600})
  fs.writeFileSync(p.ready, `${server.url}\n`)
  process.stdout.write(`sandbox '${name}': kube-apiserver ${server.version} at ${server.url}, kube-scheduler, nodes ${bed.nodes.map((n) => `${n.name}=${n.ip}`).join(' ')}\n`)
  let stopping = false
  const shutdown = (signal: string): void => {
    if (stopping) return
    stopping = true
    process.stdout.write(`${signal}: stopping\n`)
    void cluster.stop()
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
