// sideload doctor against real bed nodes (sshd, containerd 1.6 with CRI, sudo ctr for a non-root
// user) and the real kube-apiserver (SelfSubjectAccessReviews answered by its RBAC authorizer; the
// nodes registered by the kubelet stand-in with each bed node's address): all green when healthy;
// red with the right hint when sshd or containerd stop, a host key is unknown or changed, or the
// user lacks a verb.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {type Bed, containerdVersionPattern, startBed} from '../bed/bed.js'
import {type Cluster, startCluster} from '../kube-real/cluster.js'
import {type JsonObject, arr} from '../kube-real/rest.js'
import {type CliRun, runCli} from '../push/cli.js'
import {type DoctorCheck, type DoctorOptions, doctor} from '../../src/ops/doctor/index.js'

/** The built CLI, without this machine's home, builder or Docker settings. */
const cli = (args: string[]): Promise<CliRun> => runCli(args, {env: {HOME: os.tmpdir(), DOCKER_HOST: '', BUILDKIT_HOST: ''}, timeoutMs: 60_000})

function rows(checks: DoctorCheck[], check: string, target: string): DoctorCheck[] {
  return checks.filter((c) => c.check === check && c.target === target)
}
function row(checks: DoctorCheck[], check: string, target: string): DoctorCheck {
  const r = rows(checks, check, target)
  expect(r, `one ${check} row for ${target} in ${JSON.stringify(checks, null, 1)}`).toHaveLength(1)
  return r[0]
}

describe('sideload doctor on the bed', () => {
  let bed: Bed
  let cluster: Cluster
  let kubeconfig: string
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'slbt-doctor-'))
  const knownHosts = path.join(tmp, 'known_hosts')
  // no builder here: its absence must only warn
  const noBuilder = {kind: 'docker', dockerHost: `unix://${tmp}/no-docker.sock`} as const
  const base = (): DoctorOptions => ({
    kubeconfig,
    ssh: {identityFiles: [bed.keyPath], knownHostsPath: knownHosts, agent: false, resolve: {configPath: null}},
    builder: noBuilder,
    timeoutMs: 8000,
  })

  beforeAll(async () => {
    bed = await startBed({name: 'slbt-doctor', nodes: 2})
    fs.copyFileSync(bed.knownHostsPath, knownHosts)
    cluster = await startCluster(bed, {resyncMs: 1000})
    kubeconfig = cluster.kubeconfig
  }, 120_000)
  afterAll(async () => {
    await cluster?.stop()
    await bed?.down()
    fs.rmSync(tmp, {recursive: true, force: true})
  })

  it('is green on a healthy bed: API, every RBAC verb, and for each node SSH, host key, containerd, snapshotter', async () => {
    const r = await doctor(base())
    expect(r.checks.filter((c) => c.status === 'fail'), JSON.stringify(r.checks, null, 1)).toEqual([])
    expect(r.ok).toBe(true)
    expect(row(r.checks, 'api-server', cluster.server.url).detail).toBe(`Kubernetes ${cluster.server.version}`)
    expect(cluster.server.version).toMatch(/^v1\.36\./)
    for (const res of ['pods', 'nodes', 'events', 'services']) expect(row(r.checks, 'rbac', res).status).toBe('ok')
    expect(row(r.checks, 'rbac', 'pods').detail).toBe('get, list, watch, patch in namespace default')
    for (const n of bed.nodes) {
      expect(row(r.checks, 'ssh', n.name)).toMatchObject({status: 'ok', detail: `root@${n.ip}:22`})
      expect(row(r.checks, 'host-key', n.name).detail).toMatch(/^ssh-ed25519 SHA256:\S+ known/)
      expect(row(r.checks, 'containerd', n.name)).toMatchObject({status: 'ok'})
      expect(row(r.checks, 'containerd', n.name).detail).toMatch(new RegExp(`^${containerdVersionPattern(n.containerdLine)} at /run/containerd/containerd\\.sock \\(native import, linux/amd64\\)$`))
      expect(row(r.checks, 'snapshotter', n.name)).toMatchObject({status: 'ok', detail: `${n.snapshotter} (CRI)`})
      expect(row(r.checks, 'sudo-ctr', n.name)).toMatchObject({status: 'ok', detail: 'not needed (root)'})
    }
    const builder = row(r.checks, 'builder', 'local')
    expect(builder.status).toBe('warn')
    expect(builder.hint).toContain('only needed for sideload build')
  })

  it('a non-root user over --host: socket denied (warn), containerd through sudo -n ctr, no cluster needed', async () => {
    const n = bed.nodes[0]
    const host = `${bed.nonRootUser}@${n.ip}`
    const r = await doctor({...base(), kubeconfig: undefined, env: {HOME: tmp}, hosts: [host]})
    expect(row(r.checks, 'kubeconfig', '-').status).toBe('warn')
    const sock = rows(r.checks, 'containerd', host)
    expect(sock.map((c) => c.status)).toEqual(['warn', 'ok'])
    expect(sock[0].detail).toContain(`${bed.nonRootUser} cannot open /run/containerd/containerd.sock (permission denied)`)
    expect(sock[1].detail).toMatch(new RegExp(`^${containerdVersionPattern(n.containerdLine)} at /run/containerd/containerd\\.sock \\(ctr import, linux/amd64\\)$`))
    expect(row(r.checks, 'sudo-ctr', host)).toMatchObject({status: 'ok', detail: `${bed.nonRootUser} may run sudo -n ctr`})
    expect(r.ok).toBe(true)
  })

  it('opens the node as push does: --import-mode ctr is checked through ctr, a configured snapshotter against the CRI\'s', async () => {
    const n = bed.nodes[0]
    const other = n.snapshotter === 'native' ? 'overlayfs' : 'native'
    const r = await doctor({...base(), nodes: [n.name], nodeFlags: {importMode: 'ctr', snapshotter: other}})
    // root, asked for ctr: no "cannot open" warning, ctr without sudo
    expect(rows(r.checks, 'containerd', n.name).map((c) => c.status)).toEqual(['ok'])
    expect(row(r.checks, 'containerd', n.name).detail).toMatch(new RegExp(`^${containerdVersionPattern(n.containerdLine)} at /run/containerd/containerd\\.sock \\(ctr import, linux/amd64\\)$`))
    expect(row(r.checks, 'snapshotter', n.name)).toMatchObject({status: 'warn', detail: `configured ${other}, but the CRI uses ${n.snapshotter}`})
    expect(row(r.checks, 'sudo-ctr', n.name)).toMatchObject({status: 'ok', detail: 'not needed (root)'})
    expect(row(r.checks, 'leftovers', n.name).status).toBe('ok')
    expect(r.ok).toBe(true)
  })

  it('turns red when a node\'s sshd is stopped, and when its containerd is stopped', async () => {
    const [n1, n2] = bed.nodes
    await bed.stopSshd(n1)
    await bed.stopContainerd(n2)
    try {
      const r = await doctor({...base(), nodes: [n1.name, n2.name]})
      expect(r.ok).toBe(false)
      const ssh = row(r.checks, 'ssh', n1.name)
      expect(ssh.status).toBe('fail')
      expect(ssh.detail).toMatch(/refused|unreachable|cannot connect/i)
      expect(ssh.hint).toBeTruthy()
      expect(rows(r.checks, 'containerd', n1.name)).toEqual([])
      expect(row(r.checks, 'ssh', n2.name).status).toBe('ok')
      const ctd = row(r.checks, 'containerd', n2.name)
      expect(ctd.status).toBe('fail')
      expect(ctd.detail).toContain('no containerd socket')
      expect(ctd.hint).toContain('is containerd running on the node')
    } finally {
      await bed.startSshd(n1)
      await bed.startContainerd(n2)
    }
    expect((await doctor({...base(), nodes: [n1.name, n2.name]})).ok).toBe(true)
  })

  it('an unknown host key: fingerprint and --trust-new-host-keys; with it, recorded and green', async () => {
    const n = bed.nodes[0]
    const empty = path.join(tmp, 'known_hosts_empty')
    fs.writeFileSync(empty, '')
    const opts = {...base(), nodes: [n.name]}
    const r = await doctor({...opts, ssh: {...opts.ssh, knownHostsPath: empty}})
    const hk = row(r.checks, 'host-key', n.name)
    expect(hk.status).toBe('fail')
    expect(hk.detail).toMatch(/not known.*ssh-ed25519 SHA256:/)
    expect(hk.hint).toContain('--trust-new-host-keys')
    const trusted = await doctor({...opts, ssh: {...opts.ssh, knownHostsPath: empty, trustOnFirstUse: true}})
    expect(row(trusted.checks, 'host-key', n.name).detail).toContain(`recorded now in ${empty}`)
    expect(trusted.ok).toBe(true)
  })

  it('the user lacks a verb: that resource fails with the RBAC hint', async () => {
    // as the admin: the ClusterRole rbac.yaml created, less patch on pods, bound to a client-certificate user
    const rbac = '/apis/rbac.authorization.k8s.io/v1'
    const role = await cluster.admin.get(`${rbac}/clusterroles/sideload`)
    // (and without the apps rules --restart needs)
    const rules = arr(role.rules).filter((r) => !(r.apiGroups as string[]).includes('apps')).map((r): JsonObject => {
      const resources = r.resources as string[]
      const verbs = r.verbs as string[]
      return {...r, verbs: resources.includes('pods') ? verbs.filter((v) => v !== 'patch') : verbs}
    })
    expect(rules.find((r) => (r.resources as string[]).includes('pods'))?.verbs).toEqual(['get', 'list', 'watch'])
    await cluster.admin.create(`${rbac}/clusterroles`, {apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole',
      metadata: {name: 'sideload-no-pod-patch'}, rules})
    const bound = await cluster.server.kubectl(cluster.server.adminKubeconfigPath,
      ['create', 'clusterrolebinding', 'sideload-no-pod-patch', '--clusterrole=sideload-no-pod-patch', '--user=lacks-patch'])
    expect(bound.code, bound.stderr).toBe(0)
    const cert = cluster.server.clientCert('lacks-patch')
    const lacking = cluster.server.kubeconfigFor('lacks-patch.kubeconfig', {'client-certificate': cert.certPath, 'client-key': cert.keyPath}, {namespace: 'default'})
    const r = await doctor({...base(), kubeconfig: lacking, nodes: [bed.nodes[0].name]})
    expect(r.ok).toBe(false)
    expect(row(r.checks, 'rbac', 'pods')).toMatchObject({status: 'fail', detail: 'not allowed: patch pods in namespace default'})
    expect(row(r.checks, 'rbac', 'pods').hint).toContain('manifests/rbac.yaml')
    expect(row(r.checks, 'rbac', 'services').status).toBe('ok')
    expect(row(r.checks, 'rbac', 'nodes').status).toBe('ok')
    // what only --restart needs is a warning, saying so
    expect(row(r.checks, 'rbac', 'deployments.apps (--restart)')).toMatchObject({status: 'warn',
      detail: 'not allowed: patch deployments.apps in namespace default (needed only for --restart)'})
    expect(row(r.checks, 'rbac', 'pods (--restart)').status).toBe('ok')
  })

  it('the real server answers real kubectl 1.20 `auth can-i` (SelfSubjectAccessReview) the way doctor reads it', async () => {
    const yes = await cluster.server.kubectl(kubeconfig, ['auth', 'can-i', 'patch', 'pods'])
    expect(yes.stdout.trim(), yes.stderr).toBe('yes')
    const no = await cluster.server.kubectl(kubeconfig, ['auth', 'can-i', 'delete', 'nodes'])
    expect(no.stdout.trim()).toBe('no')
    expect(no.code).toBe(1)
  })

  it('the CLI: a table, and exit 1 with the ssh-keygen -R hint when a host key changed', async () => {
    const [n1, n2] = bed.nodes
    const flags = ['--kubeconfig', kubeconfig, '--ssh-key', bed.keyPath, '--known-hosts', knownHosts, '--builder', 'docker']
    const green = await cli(['doctor', ...flags, '--node', n2.name])
    expect(green.stderr).toBe('')
    expect(green.code).toBe(0)
    expect(green.stdout.split('\n')[0]).toMatch(/^CHECK\s+TARGET\s+STATUS\s+DETAIL \/ HINT$/)
    expect(green.stdout).toMatch(new RegExp(`containerd\\s+${n2.name}\\s+ok\\s+${containerdVersionPattern(n2.containerdLine)}`))
    expect(green.stdout).toMatch(/all checks passed \(1 warning\(s\)\)/)

    await bed.regenerateHostKey(n1)
    const red = await cli(['doctor', ...flags, '--node', n1.name, '--json'])
    expect(red.code).toBe(1)
    const result = JSON.parse(red.stdout) as {ok: boolean; checks: DoctorCheck[]}
    expect(result.ok).toBe(false)
    const hk = row(result.checks, 'host-key', n1.name)
    expect(hk.status).toBe('fail')
    expect(hk.detail).toContain('HAS CHANGED')
    expect(hk.hint).toContain(`ssh-keygen -R '${n1.ip}' -f ${knownHosts}`)
    const table = await cli(['doctor', ...flags, '--node', n1.name])
    expect(table.code).toBe(1)
    expect(table.stdout).toMatch(new RegExp(`host-key\\s+${n1.name}\\s+FAIL\\s+HOST KEY OF`))
    expect(table.stdout).toContain('hint: only if you know the node\'s key changed: ssh-keygen -R')
    expect(table.stdout).toMatch(/1 check\(s\) failed/)
  })
})
