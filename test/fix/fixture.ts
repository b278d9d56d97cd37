// Shared set-up for the fix tests: a real bed, the test API server, the kubelet stand-in whose
// image truth is each bed node's containerd, and helpers to make stuck pods and wait on them.
import {execFile} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {type Bed, type BedNode, startBed} from '../bed/bed.js'
import {type Cluster, type ClusterOptions, type PodOptions, startCluster} from '../kube-real/cluster.js'
import type {Kubelet} from '../kube-real/kubelet.js'

export const BIN = path.resolve(import.meta.dirname, '..', '..', 'bin', 'run.js')

export interface FixBed {
  bed: Bed
  /** the real API server with a kubelet stand-in per node */
  cluster: Cluster
  kubelet: Kubelet
  /** kubeconfig of ServiceAccount sideload/sideload: exactly the rights of manifests/rbac.yaml */
  kubeconfig: string
  tmp: string
  down(): Promise<void>
}

export async function startFixBed(name: string, nodes = 3, opts: ClusterOptions = {}): Promise<FixBed> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `${name}-`))
  const bed = await startBed({name, nodes})
  // a real kubelet re-syncs every 10 s; the annotation fix patches makes it look at once
  const cluster = await startCluster(bed, {resyncMs: 10_000, pullBackoffMs: 10_000, ...opts}).catch(async (err: unknown) => {
    await bed.down()
    throw err
  })
  return {
    bed, cluster, kubelet: cluster.kubelet, kubeconfig: cluster.kubeconfig, tmp,
    async down() {
      await cluster.stop()
      await bed.down()
      fs.rmSync(tmp, {recursive: true, force: true})
    },
  }
}

export function createNamespace(fb: FixBed, ns: string): Promise<void> {
  return fb.cluster.createNamespace(ns)
}

export async function createPod(fb: FixBed, ns: string, name: string, node: string | undefined, image: string, opts: PodOptions = {}): Promise<void> {
  await fb.cluster.createPod(ns, name, node, image, opts)
}

export function podStatus(fb: FixBed, ns: string, name: string): Promise<{phase: string; waiting: string[]; imageIDs: string[]}> {
  return fb.cluster.podStatus(ns, name)
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
