// `sideload fix --watch` and coalescing, on real bed nodes with the test API server and kubelet stand-in.
import {spawn} from 'node:child_process'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {makeImage} from '../bed/images.js'
import {KubeClient} from '../../src/kube/client.js'
import {watchGrants} from '../../src/kube/access.js'
import {fix, type FixRow, fixWatch, type TransferResult} from '../../src/ops/fix/index.js'
import {BIN, cli, createNamespace, createPod, type FixBed, nodeImages, podStatus, startFixBed, waitFor} from './fixture.js'

let fb: FixBed
const ssh = () => ({identityFiles: [fb.bed.keyPath], knownHostsPath: fb.bed.knownHostsPath})

async function archive(name: string): Promise<string> {
  const file = path.join(fb.tmp, `${name.replace(/[^a-z0-9]/g, '_')}.tar`)
  await makeImage({name, layers: [{busybox: true}, {sizeBytes: 512 << 10, seed: name}], format: 'oci', out: file})
  return file
}

const stuck = (ns: string, pod: string) => async () => (await podStatus(fb, ns, pod)).waiting.includes('ErrImageNeverPull')
const running = (ns: string, pod: string) => async () => (await podStatus(fb, ns, pod)).phase === 'Running'

describe('sideload fix --watch on real nodes', () => {
  beforeAll(async () => {
    fb = await startFixBed('slbt-fixw')
  })
  afterAll(async () => {
    await fb?.down()
  })

  it('20 pods stuck on one image across 3 nodes: exactly one transfer per (image, node), all run', async () => {
    const {bed, kubelet} = fb
    const file = await archive('docker.io/local/fix-many:1.0')
    await createNamespace(fb, 'many')
    for (let i = 0; i < 20; i++) await createPod(fb, 'many', `m${i}`, bed.nodes[i % 3].name, 'local/fix-many:1.0')
    await kubelet.syncNow()
    const client = KubeClient.load({kubeconfig: fb.kubeconfig, namespace: 'many'})
    const result = await fix({client, source: {kind: 'archive', path: file}, ssh: ssh(), timeoutMs: 30_000})
    expect(result.transfers.map(t => t.node).sort()).toEqual(bed.nodes.map(n => n.name).sort())
    expect(result.transfers.every(t => t.push?.status === 'pushed' && t.push.sentBytes >= 512 << 10)).toBe(true)
    expect(result.transfers.map(t => t.pods.length).sort()).toEqual([6, 7, 7])
    expect(result.rows).toHaveLength(20)
    expect(result.rows.every(r => r.ok && r.result === 'Running')).toBe(true)
  })

  it('repairs a pod created later within 2 s of it being stuck; coalesces pods arriving during a transfer; stops on abort', async () => {
    const {bed, kubelet} = fb
    const [n1, n2, n3] = bed.nodes
    const file = await archive('docker.io/local/fix-watch:1.0')
    await createNamespace(fb, 'watch')
    const client = KubeClient.load({kubeconfig: fb.kubeconfig, namespace: 'watch'})
    const transfers: TransferResult[] = []
    const abort = new AbortController()
    const watching = fixWatch({client, source: {kind: 'archive', path: file}, ssh: ssh(), signal: abort.signal, onTransfer: t => transfers.push(t)})
    try {
      await new Promise(r => setTimeout(r, 500))
      await createPod(fb, 'watch', 'late', n2.name, 'local/fix-watch:1.0')
      await kubelet.syncNow()
      const stuckAt = await waitFor('pod late stuck', stuck('watch', 'late'), 5000, 20)
      const runningAt = await waitFor('pod late running', running('watch', 'late'), 5000, 20)
      expect(runningAt - stuckAt).toBeLessThan(2000)
      expect(transfers.map(t => t.node)).toEqual([n2.name])

      // 8 pods on node 3 at once: one transfer, every pod nudged and running
      for (let i = 0; i < 8; i++) await createPod(fb, 'watch', `burst${i}`, n3.name, 'local/fix-watch:1.0')
      await kubelet.syncNow()
      for (let i = 0; i < 8; i++) await waitFor(`burst${i} running`, running('watch', `burst${i}`), 10_000)
      expect(transfers.filter(t => t.node === n3.name)).toHaveLength(1)
      expect(transfers.find(t => t.node === n3.name)?.push?.status).toBe('pushed')

      // an Always pod: diagnosed, nothing sent to node 1
      await createPod(fb, 'watch', 'always', n1.name, 'local/fix-watch:1.0', {policy: 'Always'})
      await kubelet.syncNow()
      await new Promise(r => setTimeout(r, 1000))
      expect(transfers.filter(t => t.node === n1.name)).toEqual([])
      expect(await nodeImages(bed, n1)).not.toContain('docker.io/local/fix-watch:1.0')
    } finally {
      abort.abort()
    }
    const summary = await watching
    expect(summary.rows.find(r => r.pod === 'always')).toMatchObject({action: 'not pushed', ok: false})
    expect(summary.transfers).toHaveLength(2)
  })

  it('the watcher\'s own role (rbac.yaml sideload-fix-watch) is enough to repair a pod, and is all it uses: no 403, nothing outside WATCH_ACCESS', async () => {
    const {bed, kubelet, cluster} = fb
    const file = await archive('docker.io/local/fix-role:1.0')
    await createNamespace(fb, 'role')
    const {kubeconfigPath} = await cluster.server.serviceAccountKubeconfig({namespace: 'role', serviceAccount: 'sideload-fix-watch'})
    const client = KubeClient.load({kubeconfig: kubeconfigPath, namespace: 'role'})
    const rows: FixRow[] = []
    const abort = new AbortController()
    const watching = fixWatch({client, source: {kind: 'archive', path: file}, ssh: ssh(), signal: abort.signal, onRow: r => rows.push(r)})
    try {
      await createPod(fb, 'role', 'p', bed.nodes[1].name, 'local/fix-role:1.0')
      await kubelet.syncNow()
      await waitFor('pod p running', running('role', 'p'), 20_000)
    } finally {
      abort.abort()
    }
    await watching
    expect(rows.find(r => r.pod === 'p')).toMatchObject({action: 'pushed', ok: true, result: 'image on the node; kubelet nudged'})
    const used = cluster.server.audit().filter(e => e.user === 'system:serviceaccount:sideload:sideload-fix-watch')
    expect(used.filter(e => e.code === 403)).toEqual([])
    const grants = new Set(watchGrants())
    expect([...new Set(used.map(e => `/${e.resource} ${e.verb}`))].filter(g => !grants.has(g))).toEqual([])
    for (const g of ['/pods list', '/pods watch', '/pods patch', '/nodes get']) expect(used.map(e => `/${e.resource} ${e.verb}`)).toContain(g)
  })

  it('a role without patch pods: the row says the nudge was refused, with the RBAC hint, not that the kubelet was nudged', async () => {
    const {bed, kubelet, cluster} = fb
    const file = await archive('docker.io/local/fix-nudge:1.0')
    await createNamespace(fb, 'nudge')
    const server = cluster.server
    const kubeconfig = await server.userWithRole('nudgeless', {verbs: ['get', 'list', 'watch'], resources: ['pods'], namespace: 'nudge'})
    for (const args of [['create', 'clusterrole', 'nudgeless-nodes', '--verb=get,list', '--resource=nodes'], ['create', 'clusterrolebinding', 'nudgeless-nodes', '--clusterrole=nudgeless-nodes', '--user=nudgeless']]) {
      const r = await server.kubectl(server.adminKubeconfigPath, args)
      expect(r.code, r.stderr).toBe(0)
    }
    const client = KubeClient.load({kubeconfig, namespace: 'nudge'})
    const rows: FixRow[] = []
    const abort = new AbortController()
    const watching = fixWatch({client, source: {kind: 'archive', path: file}, ssh: ssh(), signal: abort.signal, onRow: r => rows.push(r)})
    try {
      await createPod(fb, 'nudge', 'p', bed.nodes[0].name, 'local/fix-nudge:1.0')
      await kubelet.syncNow()
      await waitFor('the repair row', () => rows.some(r => r.pod === 'p'), 20_000)
    } finally {
      abort.abort()
    }
    await watching
    const row = rows.find(r => r.pod === 'p')!
    expect(row).toMatchObject({action: 'pushed', ok: true, result: 'image on the node; the nudge was refused (patch pods is not allowed)'})
    expect(row.hint).toMatch(/grant patch on pods/)
    expect(server.audit().some(e => e.user === 'nudgeless' && e.verb === 'patch' && e.resource === 'pods' && e.code === 403)).toBe(true)
  })

  it('the built CLI: a watcher stopped by Ctrl-C after an API server restart exits 0, at once, every time', async () => {
    const {bed, kubelet, cluster} = fb
    const file = await archive('docker.io/local/fix-stop:1.0')
    await createNamespace(fb, 'stop')
    for (let round = 0; round < 3; round++) {
      const child = spawn(process.execPath, [BIN, 'fix', '--watch', '--kubeconfig', fb.kubeconfig, '-n', 'stop', '--archive', file,
        '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath], {stdio: ['ignore', 'pipe', 'pipe']})
      let out = ''
      child.stdout.on('data', (d: Buffer) => (out += d.toString()))
      child.stderr.on('data', (d: Buffer) => (out += d.toString()))
      const exited = new Promise<{code: number | null; signal: NodeJS.Signals | null}>(resolve => child.on('exit', (code, signal) => resolve({code, signal})))
      try {
        await waitFor('watching', () => out.includes('watching pods'), 20_000)
        await cluster.server.restartApiServer()
        await createPod(fb, 'stop', `p${round}`, bed.nodes[round % 3].name, 'local/fix-stop:1.0')
        await kubelet.syncNow()
        await waitFor(`pod p${round} running`, running('stop', `p${round}`), 30_000)
        await new Promise(r => setTimeout(r, 300)) // idle
      } finally {
        child.kill('SIGINT')
      }
      const started = Date.now()
      const result = await Promise.race([exited, new Promise<undefined>(r => setTimeout(r, 10_000))])
      if (!result) child.kill('SIGKILL')
      expect(result, `round ${round}: still running 10 s after SIGINT\n${out}`).toBeDefined()
      expect(result, out).toEqual({code: 0, signal: null})
      expect(Date.now() - started).toBeLessThan(5000)
      expect(out).toContain('SIGINT: ')
    }
  }, 180_000)

  it('the built CLI: fix --watch repairs a new pod and exits 0 on SIGTERM', async () => {
    const {bed, kubelet} = fb
    const file = await archive('docker.io/local/fix-cliw:1.0')
    await createNamespace(fb, 'cliw')
    const child = spawn(process.execPath, [BIN, 'fix', '--watch', '--kubeconfig', fb.kubeconfig, '-n', 'cliw', '--archive', file,
      '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath], {stdio: ['ignore', 'pipe', 'pipe']})
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (out += d.toString()))
    const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
    try {
      await waitFor('watching', () => out.includes('watching pods'), 20_000)
      await new Promise(r => setTimeout(r, 500))
      await createPod(fb, 'cliw', 'p', bed.nodes[0].name, 'local/fix-cliw:1.0')
      await kubelet.syncNow()
      await waitFor('pod p running', running('cliw', 'p'), 10_000)
      await waitFor('transfer line', () => out.includes('docker.io/local/fix-cliw:1.0 →'), 5000)
    } finally {
      child.kill('SIGTERM')
    }
    expect(await exited, out).toBe(0)
    expect(out).toContain('SIGTERM: 1 transfer(s) done')
    expect(out).toMatch(/cliw\/p \(main\) on \S+: local\/fix-cliw:1.0: pushed/)
  })

  it('push to Kubernetes nodes: --pod (its node) and --node; --all-nodes; the others untouched', async () => {
    const {bed} = fb
    const [n1, n2, n3] = bed.nodes
    const file = await archive('docker.io/local/push-k8s:1.0')
    await createNamespace(fb, 'pushk')
    await createPod(fb, 'pushk', 'here', n1.name, 'local/push-k8s:1.0')
    const ssh = ['--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath, '--kubeconfig', fb.kubeconfig]
    const run = await cli(['push', '--archive', file, '--pod', 'here', '-n', 'pushk', '--node', n3.name, '--json', ...ssh])
    expect(run.code, run.stdout + run.stderr).toBe(0)
    const result = JSON.parse(run.stdout.trim().split('\n').pop() ?? '') as {results: {node: string; status: string}[]}
    expect(result.results.map(r => `${r.node}:${r.status}`).sort()).toEqual([`${n1.name}:pushed`, `${n3.name}:pushed`])
    expect(await nodeImages(bed, n2)).not.toContain('docker.io/local/push-k8s:1.0')

    const all = await cli(['push', '--archive', file, '--all-nodes', '--json', ...ssh])
    expect(all.code, all.stdout + all.stderr).toBe(0)
    const r2 = JSON.parse(all.stdout.trim().split('\n').pop() ?? '') as {results: {node: string; status: string}[]}
    expect(r2.results.map(r => `${r.node}:${r.status}`).sort()).toEqual([`${n1.name}:up to date`, `${n2.name}:pushed`, `${n3.name}:up to date`])

    const missing = await cli(['push', '--archive', file, '--pod', 'ghost', '-n', 'pushk', ...ssh])
    expect(missing.code).toBe(1)
    expect(missing.stderr).toContain('pod "ghost" in namespace "pushk" not found')

    // a mistyped --node: that node fails naming the nodes there are, the other named node still gets its push
    const file2 = await archive('docker.io/local/push-k8s:2.0')
    const typo = await cli(['push', '--archive', file2, '--node', `${n2.name}x`, '--node', n2.name, '--json', ...ssh])
    expect(typo.code, typo.stdout + typo.stderr).toBe(1)
    const r3 = JSON.parse(typo.stdout.trim().split('\n').pop() ?? '') as {results: {node: string; status: string; error?: string; hint?: string}[]}
    expect(r3.results.find(r => r.node === n2.name)?.status).toBe('pushed')
    expect(r3.results.find(r => r.node === `${n2.name}x`)).toMatchObject({
      status: 'failed',
      error: `node ${n2.name}x is not in the cluster`,
      hint: `the cluster's nodes: ${[n1, n2, n3].map(n => n.name).sort().join(', ')} (kubectl get nodes)`,
    })
    expect(await nodeImages(bed, n2)).toContain('docker.io/local/push-k8s:2.0')
  })

  it('keeps repairing after the watch is cut and its history expired (410 → relist); --pod follows one pod', async () => {
    const {bed, kubelet} = fb
    const file = await archive('docker.io/local/fix-relist:1.0')
    await createNamespace(fb, 'relist')
    const client = KubeClient.load({kubeconfig: fb.kubeconfig, namespace: 'relist'})
    const abort = new AbortController()
    const transfers: TransferResult[] = []
    const watching = fixWatch({client, source: {kind: 'archive', path: file}, ssh: ssh(), signal: abort.signal, onTransfer: t => transfers.push(t)})
    const {server} = fb.cluster
    const sa = 'system:serviceaccount:sideload:sideload'
    const lists = () => server.audit().filter(e => e.user === sa && e.verb === 'list' && e.resource === 'pods' && e.namespace === 'relist')
    await waitFor('first list', () => lists().length >= 1, 5000)
    try {
      // the API server restarts (the watch is cut) and the history the watch would resume from is
      // compacted away: the resumed watch gets 410 Gone, and only a new list catches up
      await createNamespace(fb, 'relist-other')
      await server.compactEtcd()
      await server.restartApiServer()
      // (a watch that merely ends is resumed from where it was, without a list: a second list means 410)
      await waitFor('a relist after 410', () => lists().length >= 2, 15_000)
      await createPod(fb, 'relist', 'after', bed.nodes[1].name, 'local/fix-relist:1.0')
      await kubelet.syncNow()
      const stuckAt = await waitFor('pod after stuck', stuck('relist', 'after'), 5000, 20)
      const runningAt = await waitFor('pod after running', running('relist', 'after'), 5000, 20)
      expect(runningAt - stuckAt).toBeLessThan(2000)
      expect(transfers.map(t => t.node)).toEqual([bed.nodes[1].name])
    } finally {
      abort.abort()
    }
    await watching

    // --pod: only that pod is followed
    const only = new AbortController()
    const onlyTransfers: TransferResult[] = []
    const one = fixWatch({client, pod: 'chosen', source: {kind: 'archive', path: file}, ssh: ssh(), signal: only.signal, onTransfer: t => onlyTransfers.push(t)})
    try {
      await new Promise(r => setTimeout(r, 300))
      await createPod(fb, 'relist', 'ignored', bed.nodes[0].name, 'local/fix-relist:1.0')
      await createPod(fb, 'relist', 'chosen', bed.nodes[2].name, 'local/fix-relist:1.0')
      await kubelet.syncNow()
      await waitFor('chosen running', running('relist', 'chosen'), 5000)
      await new Promise(r => setTimeout(r, 500))
      expect(onlyTransfers.map(t => t.node)).toEqual([bed.nodes[2].name])
      expect((await podStatus(fb, 'relist', 'ignored')).waiting).toContain('ErrImageNeverPull')
    } finally {
      only.abort()
    }
    await one
  })

  it('stop during a slow transfer: the push is aborted at once, no image recorded on the node', async () => {
    const {bed, kubelet} = fb
    const [n1] = bed.nodes
    const image = 'docker.io/local/fix-slow:1.0'
    const file = path.join(fb.tmp, 'slow.tar')
    await makeImage({name: image, layers: [{busybox: true}, {sizeBytes: 24 << 20, seed: 'slow'}], format: 'oci', out: file})
    await createNamespace(fb, 'slow')
    const client = KubeClient.load({kubeconfig: fb.kubeconfig, namespace: 'slow'})
    const abort = new AbortController()
    const transfers: TransferResult[] = []
    await bed.shape(n1, {rateMbit: 2})
    try {
      const watching = fixWatch({client, source: {kind: 'archive', path: file}, ssh: ssh(), signal: abort.signal, onTransfer: t => transfers.push(t)})
      await new Promise(r => setTimeout(r, 300))
      await createPod(fb, 'slow', 's', n1.name, 'local/fix-slow:1.0')
      await kubelet.syncNow()
      await new Promise(r => setTimeout(r, 2500))
      const stopAt = Date.now()
      abort.abort()
      await watching
      expect(Date.now() - stopAt).toBeLessThan(3000)
      expect(transfers).toHaveLength(1)
      expect(transfers[0].push).toMatchObject({status: 'failed', error: 'cancelled'})
      expect(await nodeImages(bed, n1)).not.toContain(image)
      expect((await podStatus(fb, 'slow', 's')).waiting).toContain('ErrImageNeverPull')
    } finally {
      await bed.unshape(n1)
    }
  })

  it('tries failed transfers again: the image built later (archive directory), a node whose sshd was down', async () => {
    const {bed, kubelet} = fb
    const [, n2, n3] = bed.nodes
    const fs = await import('node:fs')
    const dir = path.join(fb.tmp, 'archives')
    fs.mkdirSync(dir)
    await createNamespace(fb, 'retry')
    const client = KubeClient.load({kubeconfig: fb.kubeconfig, namespace: 'retry'})
    const abort = new AbortController()
    const rows: FixRow[] = []
    const watching = fixWatch({client, source: {kind: 'archive-dir', dir}, ssh: ssh(), signal: abort.signal, retryMs: 500, onRow: r => rows.push(r)})
    await bed.stopSshd(n3)
    let sshdDown = true
    try {
      await new Promise(r => setTimeout(r, 300))
      await createPod(fb, 'retry', 'r2', n2.name, 'local/fix-retry:1.0')
      await kubelet.syncNow()
      await waitFor('not-in-source row', () => rows.some(r => r.pod === 'r2' && r.action === 'not pushed'), 5000)
      expect(rows.find(r => r.pod === 'r2')?.hint).toContain('docker.io/local/fix-retry:1.0 is not in the archive directory')
      expect(rows.find(r => r.pod === 'r2')?.hint).toContain('It has no images at all')
      // the build lands: the next try finds it
      await makeImage({name: 'docker.io/local/fix-retry:1.0', layers: [{busybox: true}], format: 'docker', out: path.join(dir, 'retry.tar')})
      await waitFor('r2 running', running('retry', 'r2'), 10_000)

      await createPod(fb, 'retry', 'r3', n3.name, 'local/fix-retry:1.0')
      await kubelet.syncNow()
      await waitFor('push failed row', () => rows.some(r => r.pod === 'r3' && r.action === 'push failed'), 10_000)
      expect(rows.find(r => r.pod === 'r3')?.result).toMatch(/refused|connect/i)
      await bed.startSshd(n3)
      sshdDown = false
      await waitFor('r3 running', running('retry', 'r3'), 15_000)
    } finally {
      if (sshdDown) await bed.startSshd(n3)
      abort.abort()
    }
    await watching
  })
})
