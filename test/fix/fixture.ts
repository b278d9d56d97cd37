// Shared set-up for the fix tests: a real bed, the test API server, the kubelet stand-in whose
// image truth is each bed node's containerd, and helpers to make stuck pods and wait on them.
import {execFile} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {type Bed, type BedNode, startBed} from '../bed/bed.js'
import {type ApiServer, startApiServer} from '../kube/apiserver.js'
import {bedHasImage, kubeletNodes} from '../kube/bed-wiring.js'
import {type Kubelet, startKubelet} from '../kube/kubelet.js'
import type {JsonObject} from '../kube/patch.js'
import {rbacAccessRules} from '../expose/rbac.js'

export const BIN = path.resolve(import.meta.dirname, '..', '..', 'bin', 'run.js')

export interface FixBed {
  bed: Bed
  server: ApiServer
  kubelet: Kubelet
  /** kubeconfig of a user with exactly the rights of manifests/rbac.yaml */
  kubeconfig: string
  tmp: string
  down(): Promise<void>
}

export async function startFixBed(name: string, nodes = 3): Promise<FixBed> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `${name}-`))
  const bed = await startBed({name, nodes})
  const server = await startApiServer()
  // a real kubelet re-syncs every 10 s; the annotation fix patches makes it look at once
  const kubelet = startKubelet({store: server.store, nodes: kubeletNodes(bed), hasImage: bedHasImage(bed), resyncMs: 10_000, pullBackoffMs: 10_000})
  const kubeconfig = server.addUser('sideload', {rules: rbacAccessRules()}).kubeconfigPath
  return {
    bed, server, kubelet, kubeconfig, tmp,
    async down() {
      await kubelet.stop()
      await server.stop()
      await bed.down()
      fs.rmSync(tmp, {recursive: true, force: true})
    },
  }
}

export function createNamespace(server: ApiServer, ns: string): void {
  server.store.create('namespaces', undefined, {metadata: {name: ns}})
}

export function createPod(server: ApiServer, ns: string, name: string, node: string | undefined, image: string,
  opts: {policy?: string; init?: boolean} = {}): void {
  const container = {name: 'main', image, imagePullPolicy: opts.policy ?? 'Never', command: ['sleep', '3600']}
  server.store.create('pods', ns, {
    metadata: {name, labels: {app: name}},
    spec: {
      ...(node ? {nodeName: node} : {}),
      containers: opts.init ? [{name: 'app', image, imagePullPolicy: opts.policy ?? 'Never'}] : [container],
      ...(opts.init ? {initContainers: [{...container, name: 'init'}]} : {}),
    },
  })
}

export function podStatus(server: ApiServer, ns: string, name: string): {phase: string; waiting: string[]} {
  const status = server.store.get('pods', ns, name).status as JsonObject | undefined
  const all = [...((status?.initContainerStatuses as JsonObject[] | undefined) ?? []), ...((status?.containerStatuses as JsonObject[] | undefined) ?? [])]
  const waiting = all.map(s => ((s.state as JsonObject | undefined)?.waiting as JsonObject | undefined)?.reason).filter((r): r is string => typeof r === 'string')
  return {phase: String(status?.phase ?? ''), waiting}
}

export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000, stepMs = 50): Promise<number> {
  const start = Date.now()
  while (!(await cond())) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise(r => setTimeout(r, stepMs))
  }
  return Date.now()
}

export async function nodeImages(bed: Bed, node: BedNode): Promise<string[]> {
  return (await bed.ctr(node, ['images', 'ls', '-q'])).split('\n').map(s => s.trim()).filter(Boolean)
}

export function cli(args: string[], timeoutMs = 60_000): Promise<{code: number; stdout: string; stderr: string}> {
  const t0 = Date.now()
  return new Promise(resolve => {
    execFile(process.execPath, [BIN, ...args], {timeout: timeoutMs}, (err, stdout, stderr) => {
      if (process.env.FIX_DEBUG) console.log(`cli ${args.join(' ')}: ${Date.now() - t0} ms`)
      resolve({code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr})
    })
  })
}
