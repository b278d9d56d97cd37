// manifests/fix-watch.yaml as the cluster would run it: the built CLI with the Deployment's own args and
// env, in a mount namespace that looks like the pod (the service-account token, CA and namespace under
// /var/run/secrets/kubernetes.io/serviceaccount; the build node's containerd socket at
// /run/containerd/containerd.sock; KUBERNETES_SERVICE_HOST/PORT set), authorised only by
// manifests/rbac.yaml applied with kubectl. Pods stuck on two other nodes get the image; SIGTERM → exit 0.
import {spawn} from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import YAML from 'yaml'
import {makeImage} from '../bed/images.js'
import {BIN, createPod, type FixBed, nodeImages, podStatus, startFixBed, waitFor} from './fixture.js'

const MANIFEST = path.resolve(import.meta.dirname, '..', '..', 'manifests', 'fix-watch.yaml')

interface Container {
  args: string[]
  env: {name: string; value: string}[]
}

let fb: FixBed

describe('fix --watch in-cluster, as manifests/fix-watch.yaml runs it', () => {
  beforeAll(async () => {
    fb = await startFixBed('slbt-fixic')
  })
  afterAll(async () => {
    await fb?.down()
  })

  it('repairs pods on the other nodes from the build node\'s containerd with only the rights of rbac.yaml', async () => {
    const {bed, kubelet, tmp} = fb
    const [build, n2, n3] = bed.nodes
    const image = 'docker.io/local/fix-incluster:1.0'
    const archive = path.join(tmp, 'incluster.tar')
    await makeImage({name: image, layers: [{busybox: true}, {sizeBytes: 256 << 10, seed: 'ic'}], format: 'oci', out: archive})
    const imported = await bed.exec(build, ['ctr', '-n', 'k8s.io', 'images', 'import', '-'], {input: fs.readFileSync(archive)})
    expect(imported.code, imported.stderr).toBe(0)

    // the fixture applied manifests/rbac.yaml with kubectl; a TokenRequest gives the account's token
    const {server} = fb.cluster
    const {token} = await server.serviceAccountKubeconfig({namespace: 'sideload'})

    // the pod's view: secrets, the host's containerd socket, the SSH key and known_hosts from Secret/ConfigMap
    const deployment = YAML.parseAllDocuments(fs.readFileSync(MANIFEST, 'utf8')).map(d => d.toJSON() as {kind: string; spec: {template: {spec: {containers: Container[]}}}})
      .find(d => d.kind === 'Deployment')
    const container = deployment?.spec.template.spec.containers[0] as Container
    const secrets = path.join(tmp, 'sa')
    fs.mkdirSync(secrets)
    fs.writeFileSync(path.join(secrets, 'token'), token)
    fs.copyFileSync(server.caPath, path.join(secrets, 'ca.crt'))
    fs.writeFileSync(path.join(secrets, 'namespace'), 'sideload')
    const keyPath = path.join(tmp, 'id_ed25519')
    fs.copyFileSync(bed.keyPath, keyPath)
    fs.chmodSync(keyPath, 0o400)
    const knownHosts = path.join(tmp, 'known_hosts')
    fs.copyFileSync(bed.knownHostsPath, knownHosts)
    const args = container.args.map((a, i, all) => all[i - 1] === '--ssh-key' ? keyPath : all[i - 1] === '--known-hosts' ? knownHosts : a)
    const newRun = path.join(tmp, 'run')
    fs.mkdirSync(newRun)
    const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`
    const script = [
      `mount -n -t tmpfs none ${q(newRun)}`,
      `mkdir -p ${q(newRun)}/containerd ${q(newRun)}/secrets/kubernetes.io/serviceaccount`,
      `touch ${q(newRun)}/containerd/containerd.sock`,
      `mount -n --bind ${q(build.hostSocketPath)} ${q(newRun)}/containerd/containerd.sock`,
      `cp ${q(secrets)}/* ${q(newRun)}/secrets/kubernetes.io/serviceaccount/`,
      `mount -n --move ${q(newRun)} /run`,
      `exec ${q(process.execPath)} ${q(BIN)} ${args.map(q).join(' ')}`,
    ].join(' && ')
    const port = new URL(server.url).port
    const env: NodeJS.ProcessEnv = {PATH: process.env.PATH, KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: port}
    for (const e of container.env) env[e.name] = e.value
    env.HOME = path.join(tmp, 'home') // the manifest's HOME=/tmp, kept apart from this machine's /tmp
    fs.mkdirSync(env.HOME)

    await createPod(fb, 'default', 'ic-2', n2.name, 'local/fix-incluster:1.0')
    await kubelet.syncNow()
    const child = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script], {env, stdio: ['ignore', 'pipe', 'pipe']})
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
    try {
      await waitFor('ic-2 running', async () => (await podStatus(fb, 'default', 'ic-2')).phase === 'Running', 20_000)
      await createPod(fb, 'default', 'ic-3', n3.name, 'local/fix-incluster:1.0')
      await kubelet.syncNow()
      await waitFor('ic-3 running', async () => (await podStatus(fb, 'default', 'ic-3')).phase === 'Running', 10_000)
    } catch (e) {
      throw new Error(`${(e as Error).message}\nstdout: ${out}\nstderr: ${err}`)
    } finally {
      child.kill('SIGTERM')
    }
    expect(await exited, err).toBe(0)
    const lines = out.trim().split('\n').map(l => JSON.parse(l) as {type: string; node?: string; push?: {status: string}; signal?: string})
    expect(lines.filter(l => l.type === 'transfer').map(l => `${l.node}:${l.push?.status}`).sort()).toEqual([`${n2.name}:pushed`, `${n3.name}:pushed`])
    expect(lines.at(-1)).toMatchObject({type: 'stopped', signal: 'SIGTERM', transfers: 2})
    // it spoke as the service account, and only through the rights rbac.yaml grants
    const asSa = server.audit().filter(e => e.user === 'system:serviceaccount:sideload:sideload')
    expect(asSa.map(e => `${e.verb} ${e.resource}`)).toEqual(expect.arrayContaining(['list pods', 'watch pods', 'patch pods', 'get nodes']))
    expect(asSa.filter(e => e.code >= 400)).toEqual([])
    expect(await nodeImages(bed, n2)).toContain(image)
  })
})
