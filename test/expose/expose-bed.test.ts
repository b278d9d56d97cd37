// The whole field story on real bed nodes: a pod stuck in ErrImageNeverPull, the image imported into
// its node's containerd, the pod Running (its container really runs), `sideload expose` from the
// built CLI, and the printed NODE_IP:NODE_PORT addresses answer — on every node; --delete closes them.
// The API server is the real kube-apiserver (it allocates the node port); the kubelet and kube-proxy
// stand-ins are its clients with their own identities; sideload has rbac.yaml's service account.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {type Bed, startBed} from '../bed/bed.js'
import {makeImage} from '../bed/images.js'
import {type Cluster, startCluster} from '../kube-real/cluster.js'
import {corePath} from '../kube-real/rest.js'
import {type CliRun, runCli} from '../push/cli.js'

const IMAGE = 'local/expose-web:1.0'

const cli = (args: string[]): Promise<CliRun> => runCli(args, {timeoutMs: 60_000})

async function get(url: string): Promise<string> {
  const res = await fetch(url, {signal: AbortSignal.timeout(3000)})
  return `${res.status} ${await res.text()}`
}

/** What `url` answers once it answers (the forwarder and the server in the pod start asynchronously). */
async function answer(url: string, ms = 20_000): Promise<string> {
  const end = Date.now() + ms
  for (;;) {
    try {
      return await get(url)
    } catch (err) {
      if (Date.now() > end) throw err
      await new Promise(r => setTimeout(r, 200))
    }
  }
}

/** Whether `url` stops answering within `ms` (a closed forwarder may take a moment to exit). */
async function closes(url: string, ms = 20_000): Promise<boolean> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await get(url).then(() => false, () => true)) return true
    await new Promise(r => setTimeout(r, 200))
  }
  return false
}

describe('expose on real bed nodes', () => {
  let bed: Bed
  let cluster: Cluster
  let kubeconfig: string
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'slbt-expose-bed-'))

  beforeAll(async () => {
    bed = await startBed({name: 'slbt-expose', nodes: 2})
    cluster = await startCluster(bed, {runContainers: true, kubeProxy: true, resyncMs: 500})
    kubeconfig = cluster.kubeconfig
  }, 120_000)
  afterAll(async () => {
    await cluster?.stop()
    await bed?.down()
    fs.rmSync(tmp, {recursive: true, force: true})
  })

  it('a stuck pod, its image imported, Running, exposed: every printed address answers; --delete closes them', async () => {
    const [node1, node2] = bed.nodes
    await cluster.admin.create(corePath('pods', 'default'), {
      apiVersion: 'v1', kind: 'Pod',
      metadata: {name: 'web', labels: {app: 'web'}},
      spec: {nodeName: node2.name, containers: [{
        name: 'web', image: IMAGE, imagePullPolicy: 'Never', ports: [{containerPort: 18080, name: 'http'}],
        command: ['sh', '-c', 'mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 18080 -h /www'],
      }]},
    })
    await cluster.kubelet.syncNow()
    const refused = await cli(['expose', 'web', '--port', '80', '--kubeconfig', kubeconfig])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toContain('ErrImageNeverPull')

    const archive = path.join(tmp, 'web.tar')
    await makeImage({name: IMAGE, layers: [{busybox: true}], format: 'oci', out: archive})
    const imported = await bed.exec(node2, ['ctr', '-n', 'k8s.io', 'images', 'import', '-'], {input: fs.readFileSync(archive)})
    expect(imported.code, imported.stderr).toBe(0)
    const end = Date.now() + 30_000
    while ((await cluster.podStatus('default', 'web')).phase !== 'Running') {
      if (Date.now() > end) throw new Error(`pod web not Running: ${JSON.stringify((await cluster.getPod('default', 'web'))?.status)}`)
      await new Promise(r => setTimeout(r, 100))
    }

    const r = await cli(['expose', 'web', '--port', '80', '--ssh-user', 'admin', '--kubeconfig', kubeconfig])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const port = Number(/NodePort (\d+)/.exec(r.stdout)?.[1])
    const lines = r.stdout.split('\n')
    expect(lines[0]).toBe(`service/web created: NodePort ${port} → pod web port 18080/TCP (namespace default)`)
    // the pod's node first, then the other; the labels of the pod already select it alone
    expect(lines.filter(l => /^\s+\d+\.\d+\.\d+\.\d+:\d+/.test(l)).map(l => l.trim())).toEqual([
      `${node2.ip}:${port}  node ${node2.name} (runs the pod)`,
      `${node1.ip}:${port}  node ${node1.name}`,
    ])
    expect(r.stdout).toContain(`ssh admin@${node2.ip} -p ${port}`)
    expect(r.stdout).toContain('selector app=web\n')

    await cluster.proxy!.syncNow()
    expect(await answer(`http://${node2.ip}:${port}/`)).toBe('200 hello-from-web\n')
    expect(await answer(`http://${node1.ip}:${port}/`)).toBe('200 hello-from-web\n')

    const del = await cli(['expose', 'web', '--delete', '--kubeconfig', kubeconfig])
    expect(del.stdout.trim()).toBe('service/web deleted')
    await cluster.proxy!.syncNow()
    expect(await closes(`http://${node2.ip}:${port}/`)).toBe(true)
    expect(await closes(`http://${node1.ip}:${port}/`)).toBe(true)
  }, 120_000)
})
