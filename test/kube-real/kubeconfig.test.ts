// Kubeconfigs as kubectl takes them, against the real kube-apiserver v1.36 (issue 15, first slice):
// client certificates, bearer tokens (token, tokenFile), insecure-skip-tls-verify, tls-server-name,
// an exec credential plugin, several contexts and --context, KUBECONFIG with two files merged,
// an http:// server (kubectl proxy), proxy-url through an HTTP CONNECT proxy, and --request-timeout
// against an API server that accepts connections and never answers. Each form goes through
// sideload's own loader and client (loadKubeTarget, KubeClient), and where it matters through the
// built CLI; real kubectl 1.20 reads the same files, so each file is one kubectl takes.
import {execFile} from 'node:child_process'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import * as path from 'node:path'
import {AuthenticationV1Api, CoreV1Api, VersionApi, type V1Pod} from '@kubernetes/client-node'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {KubeClient} from '../../src/kube/client.js'
import {type KubeTarget, KubeConfigError, loadKubeTarget, parseRequestTimeout} from '../../src/kube/config.js'
import {KubeError} from '../../src/kube/errors.js'
import {REPO_ROOT, kubectlPath} from './kubectl.js'
import {type RealApiServer, REAL_KUBE_ROOT, startRealApiServer, sweepDeadServers} from './apiserver.js'
import {clusterRoleRules} from '../expose/rbac.js'

const BIN = path.join(REPO_ROOT, 'bin', 'run.js')
const SA_USER = 'system:serviceaccount:sideload:sideload'

let server: RealApiServer
let sa: {token: string; kubeconfigPath: string}
let work: string // kubeconfigs and scripts of this file (inside the server's folder: removed by stop())

/** Who the API server says we are (SelfSubjectReview, allowed to every authenticated user). */
async function whoami(target: KubeTarget): Promise<{username: string; groups: string[]}> {
  const r = await target.config.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({
    body: {apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview'},
  })
  return {username: r.status?.userInfo?.username ?? '', groups: r.status?.userInfo?.groups ?? []}
}

function write(file: string, config: object): string {
  return server.writeKubeconfig(path.join(work, file), config)
}

function cluster(name: string, fields: Record<string, unknown>): object {
  return {name, cluster: {server: server.url, 'certificate-authority': server.caPath, ...fields}}
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p
  } catch (err) {
    return err as Error
  }
  throw new Error('expected the call to fail, it succeeded')
}

interface Run {code: number; stdout: string; stderr: string; ms: number}
function sideload(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const t0 = Date.now()
  return new Promise(resolve => {
    execFile(process.execPath, [BIN, ...args], {
      cwd: work, timeout: 60_000,
      env: {PATH: process.env.PATH, HOME: work, OCLIF_COLUMNS: '1000', KUBECONFIG: path.join(work, 'no-kubeconfig'), ...env},
    }, (err, stdout, stderr) => resolve({code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr, ms: Date.now() - t0}))
  })
}

beforeAll(async () => {
  server = await startRealApiServer()
  // the numbers this slice reports: how long a real API server takes to come up here
  process.stderr.write(`real kube-apiserver ${server.version} at ${server.url}: ready in ${server.startup.totalMs} ms ` +
    `(pki ${server.startup.pkiMs}, etcd ${server.startup.etcdMs}, kube-apiserver ${server.startup.apiserverMs})\n`)
  work = path.join(server.dir, 'work')
  fs.mkdirSync(work)
  sa = await server.serviceAccountKubeconfig()
  // a pod to find (Pending for ever: no scheduler, no kubelet)
  const admin = loadKubeTarget({kubeconfig: server.adminKubeconfigPath}).config.makeApiClient(CoreV1Api)
  await admin.createNamespacedPod({namespace: 'default', body: {metadata: {name: 'token-pod'}, spec: {containers: [{name: 'c', image: 'busybox'}]}}})
}, 120_000)

afterAll(async () => {
  await server?.stop()
})

describe('the real API server fixture', () => {
  it('is kube-apiserver v1.36 with RBAC: the admin is system:masters, the service account has exactly manifests/rbac.yaml', async () => {
    expect(server.version).toBe('v1.36.3')
    expect(server.startup.totalMs).toBeLessThan(30_000)
    const admin = await whoami(loadKubeTarget({kubeconfig: server.adminKubeconfigPath}))
    expect(admin.groups).toContain('system:masters')
    const can = await server.kubectl(sa.kubeconfigPath, ['auth', 'can-i', '--list'])
    expect(can.code).toBe(0)
    // every rule of rbac.yaml's ClusterRole, as RBAC merges them per resource (verbs in rule order)
    const want = new Map<string, string[]>()
    for (const rule of clusterRoleRules()) {
      for (const group of rule.apiGroups ?? ['']) {
        for (const resource of rule.resources ?? []) {
          const key = group ? `${resource}.${group}` : resource
          want.set(key, [...new Set([...(want.get(key) ?? []), ...(rule.verbs ?? [])])])
        }
      }
    }
    expect(want.get('pods')).toEqual(expect.arrayContaining(['get', 'list', 'watch', 'patch']))
    for (const [resource, verbs] of want) {
      expect(can.stdout).toMatch(new RegExp(`^${resource.replace(/\./g, '\\.')}\\s+\\[\\]\\s+\\[\\]\\s+\\[${verbs.join(' ')}\\]$`, 'm'))
    }
    expect(can.stdout).not.toMatch(/^secrets/m)
  })

  it('stop() kills etcd and kube-apiserver and removes every file; a start sweeps what a killed run left', async () => {
    const other = await startRealApiServer({name: `stop-test-${process.pid}`})
    const pids = ['etcd', 'kube-apiserver'].map(d => Number(fs.readFileSync(path.join(other.dir, `${d}.pid`), 'utf8')))
    for (const pid of pids) expect(fs.existsSync(`/proc/${pid}`)).toBe(true)
    await other.stop()
    for (const pid of pids) expect(fs.existsSync(`/proc/${pid}`)).toBe(false)
    expect(fs.existsSync(other.dir)).toBe(false)

    // what a SIGKILLed run leaves at worst: its folder, its owner dead, a process still mentioning the folder
    const stale = path.join(REAL_KUBE_ROOT, `stale-${process.pid}`)
    fs.mkdirSync(path.join(stale, 'etcd'), {recursive: true})
    fs.writeFileSync(path.join(stale, 'owner.json'), JSON.stringify({pid: 999_999_999, startTime: '1'}))
    const straggler = execFile(process.execPath, ['-e', 'setInterval(() => {}, 1000)', `${stale}/etcd`], () => undefined)
    await new Promise(r => setTimeout(r, 300))
    expect(straggler.exitCode).toBe(null)
    const removed = await sweepDeadServers()
    expect(removed).toContain(`stale-${process.pid}`)
    expect(fs.existsSync(stale)).toBe(false)
    await until(() => straggler.exitCode !== null || straggler.signalCode !== null, 5000)
    expect(straggler.signalCode).toBe('SIGKILL')
    // the live server of this file is not touched
    expect(fs.existsSync(server.dir)).toBe(true)
  })
})

describe('kubeconfigs as kubectl takes them', () => {
  it('client certificates: files (relative to the kubeconfig) and inline data', async () => {
    const alice = server.clientCert('alice', ['sideload-users'])
    fs.copyFileSync(alice.certPath, path.join(work, 'alice.crt'))
    fs.copyFileSync(alice.keyPath, path.join(work, 'alice.key'))
    fs.copyFileSync(server.caPath, path.join(work, 'ca.crt'))
    const files = write('cert-files.kubeconfig', {
      apiVersion: 'v1', kind: 'Config', 'current-context': 'alice',
      clusters: [{name: 'real', cluster: {server: server.url, 'certificate-authority': 'ca.crt'}}],
      users: [{name: 'alice', user: {'client-certificate': 'alice.crt', 'client-key': 'alice.key'}}],
      contexts: [{name: 'alice', context: {cluster: 'real', user: 'alice'}}],
    })
    const b64 = (p: string): string => fs.readFileSync(p).toString('base64')
    const inline = write('cert-data.kubeconfig', {
      apiVersion: 'v1', kind: 'Config', 'current-context': 'alice',
      clusters: [{name: 'real', cluster: {server: server.url, 'certificate-authority-data': b64(server.caPath)}}],
      users: [{name: 'alice', user: {'client-certificate-data': b64(alice.certPath), 'client-key-data': b64(alice.keyPath)}}],
      contexts: [{name: 'alice', context: {cluster: 'real', user: 'alice'}}],
    })
    for (const kubeconfig of [files, inline]) {
      const me = await whoami(loadKubeTarget({kubeconfig}))
      expect(me.username).toBe('alice')
      expect(me.groups).toContain('sideload-users')
      // alice has no RBAC binding: the real 403 comes back as sideload's KubeError
      const err = await rejection(KubeClient.load({kubeconfig}).listPods({namespace: 'default'}))
      expect(err).toBeInstanceOf(KubeError)
      expect((err as KubeError).kind).toBe('forbidden')
      expect(err.message).toContain('User "alice" cannot list resource "pods"')
      // kubectl reads the same file the same way
      const k = await server.kubectl(kubeconfig, ['auth', 'can-i', 'list', 'pods'])
      expect(k.stdout.trim()).toBe('no')
    }
  })

  it('a bearer token: token (a TokenRequest token of the sideload service account) and tokenFile', async () => {
    const client = KubeClient.load({kubeconfig: sa.kubeconfigPath})
    expect((await whoami(client.target)).username).toBe(SA_USER)
    const pods = await client.listPods({namespace: 'default'})
    expect(pods.items.map(p => p.metadata?.name)).toContain('token-pod')
    expect(await client.listNodes()).toEqual([])
    const denied = await rejection(client.core.listNamespacedSecret({namespace: 'default'}))
    expect(denied.message).toContain('secrets is forbidden')

    // tokenFile, as kubectl spells it (client-go's `tokenFile`), relative to the kubeconfig
    fs.writeFileSync(path.join(work, 'sa.token'), `${sa.token}\n`)
    const tokenFile = write('token-file.kubeconfig', {
      apiVersion: 'v1', kind: 'Config', 'current-context': 'sa',
      clusters: [cluster('real', {})],
      users: [{name: 'sa', user: {tokenFile: 'sa.token'}}],
      contexts: [{name: 'sa', context: {cluster: 'real', user: 'sa'}}],
    })
    expect((await whoami(loadKubeTarget({kubeconfig: tokenFile}))).username).toBe(SA_USER)
    expect((await server.kubectl(tokenFile, ['auth', 'can-i', 'list', 'pods'])).stdout.trim()).toBe('yes')
    // a static token (--token-auth-file) works the same way
    const staticToken = write('static-token.kubeconfig', {
      apiVersion: 'v1', kind: 'Config', 'current-context': 'admin',
      clusters: [cluster('real', {})],
      users: [{name: 'admin', user: {token: server.adminToken}}],
      contexts: [{name: 'admin', context: {cluster: 'real', user: 'admin'}}],
    })
    expect((await whoami(loadKubeTarget({kubeconfig: staticToken}))).username).toBe('token-admin')
  })

  it('insecure-skip-tls-verify: true talks to a server whose CA it does not know; without it, a TLS error', async () => {
    const config = (skip: boolean): object => ({
      apiVersion: 'v1', kind: 'Config', 'current-context': 'sa',
      clusters: [{name: 'real', cluster: {server: server.url, ...(skip ? {'insecure-skip-tls-verify': true} : {})}}],
      users: [{name: 'sa', user: {token: sa.token}}],
      contexts: [{name: 'sa', context: {cluster: 'real', user: 'sa', namespace: 'default'}}],
    })
    const insecure = write('insecure.kubeconfig', config(true))
    const client = KubeClient.load({kubeconfig: insecure})
    expect((await client.listPods()).items.length).toBeGreaterThan(0)
    expect((await server.kubectl(insecure, ['get', 'pods', '-o', 'name'])).stdout).toContain('pod/token-pod')

    const strict = write('no-ca.kubeconfig', config(false))
    const err = await rejection(KubeClient.load({kubeconfig: strict}).listPods())
    expect((err as KubeError).kind).toBe('tls')
  })

  it('tls-server-name: server https://127.0.0.1:PORT, certificate for another name, verified as that name', async () => {
    const config = (serverName?: string): object => ({
      apiVersion: 'v1', kind: 'Config', 'current-context': 'sa',
      // the CA knows only the certificate the server presents for SNI name server.sni.name
      clusters: [{name: 'real', cluster: {server: server.url, 'certificate-authority': server.sni.caPath,
        ...(serverName ? {'tls-server-name': serverName} : {})}}],
      users: [{name: 'sa', user: {token: sa.token}}],
      contexts: [{name: 'sa', context: {cluster: 'real', user: 'sa', namespace: 'default'}}],
    })
    const named = write('tls-server-name.kubeconfig', config(server.sni.name))
    expect((await whoami(loadKubeTarget({kubeconfig: named}))).username).toBe(SA_USER)
    expect((await KubeClient.load({kubeconfig: named}).listPods()).items.length).toBeGreaterThan(0)
    expect((await server.kubectl(named, ['auth', 'can-i', 'list', 'pods'])).stdout.trim()).toBe('yes')

    // without it the server presents its 127.0.0.1 certificate, which this CA did not sign
    const unnamed = write('tls-no-server-name.kubeconfig', config())
    expect((await rejection(KubeClient.load({kubeconfig: unnamed}).listPods())) as KubeError).toMatchObject({kind: 'tls'})
    // a name the certificate is not for: the server falls back to its default certificate, refused too
    const wrong = write('tls-wrong-server-name.kubeconfig', config('other.sideload.test'))
    expect((await rejection(KubeClient.load({kubeconfig: wrong}).listPods())) as KubeError).toMatchObject({kind: 'tls'})
  })

  it('an exec credential plugin (users[].user.exec): a relative command, its args and env, KUBERNETES_EXEC_INFO', async () => {
    const plugins = path.join(work, 'plugins')
    fs.mkdirSync(plugins)
    fs.writeFileSync(path.join(plugins, 'get-token.sh'), `#!/bin/sh
# an exec credential plugin: prints an ExecCredential with a token; records how it was called
printf '%s|%s|%s\\n' "$1" "$GREETING" "$KUBERNETES_EXEC_INFO" >> "${path.join(work, 'exec-calls.log')}"
cat <<EOF
{"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential", "status": {"token": "$(cat "$2")"}}
EOF
`, {mode: 0o755})
    fs.writeFileSync(path.join(work, 'exec.token'), sa.token)
    const kubeconfig = write('exec.kubeconfig', {
      apiVersion: 'v1', kind: 'Config', 'current-context': 'exec',
      clusters: [cluster('real', {})],
      users: [{name: 'exec', user: {exec: {
        apiVersion: 'client.authentication.k8s.io/v1beta1',
        // kubectl resolves a command with a slash relative to the kubeconfig's folder
        command: './plugins/get-token.sh', args: ['first-arg', path.join(work, 'exec.token')],
        env: [{name: 'GREETING', value: 'hello'}],
      }}}],
      contexts: [{name: 'exec', context: {cluster: 'real', user: 'exec', namespace: 'default'}}],
    })
    expect((await whoami(loadKubeTarget({kubeconfig}))).username).toBe(SA_USER)
    expect((await KubeClient.load({kubeconfig}).listPods()).items.map(p => p.metadata?.name)).toContain('token-pod')
    const calls = fs.readFileSync(path.join(work, 'exec-calls.log'), 'utf8').trim().split('\n')
    const [arg, greeting, info] = calls[0].split('|')
    expect(arg).toBe('first-arg')
    expect(greeting).toBe('hello')
    expect(JSON.parse(info)).toMatchObject({apiVersion: 'client.authentication.k8s.io/v1beta1', kind: 'ExecCredential', spec: {interactive: false}})
    // kubectl 1.20 runs the same plugin from the same file
    expect((await server.kubectl(kubeconfig, ['auth', 'can-i', 'list', 'pods'])).stdout.trim()).toBe('yes')

    // a plugin that fails: its stderr in the error
    const failing = write('exec-fails.kubeconfig', {
      apiVersion: 'v1', kind: 'Config', 'current-context': 'exec',
      clusters: [cluster('real', {})],
      users: [{name: 'exec', user: {exec: {apiVersion: 'client.authentication.k8s.io/v1beta1', command: 'sh',
        args: ['-c', 'echo "token expired, run login" >&2; exit 3']}}}],
      contexts: [{name: 'exec', context: {cluster: 'real', user: 'exec', namespace: 'default'}}],
    })
    expect((await rejection(KubeClient.load({kubeconfig: failing}).listPods())).message).toContain('token expired, run login')
  })

  it('several contexts: current-context, --context, a context\'s namespace, an unknown context', async () => {
    const deadPort = await closedPort()
    const kubeconfig = write('contexts.kubeconfig', {
      apiVersion: 'v1', kind: 'Config', 'current-context': 'sa',
      clusters: [cluster('real', {}), {name: 'gone', cluster: {server: `https://127.0.0.1:${deadPort}`}}],
      users: [
        {name: 'admin', user: {'client-certificate': server.adminCert.certPath, 'client-key': server.adminCert.keyPath}},
        {name: 'sa', user: {token: sa.token}},
      ],
      contexts: [
        {name: 'sa', context: {cluster: 'real', user: 'sa', namespace: 'sideload'}},
        {name: 'admin', context: {cluster: 'real', user: 'admin'}},
        {name: 'gone', context: {cluster: 'gone', user: 'admin'}},
      ],
    })
    const current = KubeClient.load({kubeconfig})
    expect(current.target.context).toBe('sa')
    expect(current.namespace).toBe('sideload')
    expect((await whoami(current.target)).username).toBe(SA_USER)

    const admin = KubeClient.load({kubeconfig, context: 'admin'})
    expect(admin.namespace).toBe('default')
    expect((await whoami(admin.target)).groups).toContain('system:masters')
    expect(KubeClient.load({kubeconfig, context: 'admin', namespace: 'kube-system'}).namespace).toBe('kube-system')

    const gone = await rejection(KubeClient.load({kubeconfig, context: 'gone'}).listPods())
    expect(gone).toMatchObject({kind: 'unreachable'})
    expect(gone.message).toContain(`https://127.0.0.1:${deadPort}`)

    expect(() => loadKubeTarget({kubeconfig, context: 'nope'})).toThrow(KubeConfigError)
    expect(() => loadKubeTarget({kubeconfig, context: 'nope'})).toThrow('contexts: sa, admin, gone')
  })

  it('KUBECONFIG with two files: merged, the first file to define a name wins, paths relative to their own file', async () => {
    const a = path.join(work, 'merge-a')
    const b = path.join(work, 'merge-b')
    fs.mkdirSync(a)
    fs.mkdirSync(b)
    const deadPort = await closedPort()
    fs.copyFileSync(server.caPath, path.join(a, 'ca.crt'))
    fs.copyFileSync(server.adminCert.certPath, path.join(b, 'admin.crt'))
    fs.copyFileSync(server.adminCert.keyPath, path.join(b, 'admin.key'))
    const fileA = write('merge-a/config', {
      apiVersion: 'v1', kind: 'Config', 'current-context': 'main',
      clusters: [{name: 'shared', cluster: {server: server.url, 'certificate-authority': 'ca.crt'}}],
      users: [{name: 'me', user: {token: sa.token}}],
      contexts: [{name: 'main', context: {cluster: 'shared', user: 'me', namespace: 'default'}}],
    })
    const fileB = write('merge-b/config', {
      apiVersion: 'v1', kind: 'Config', 'current-context': 'extra',
      // the same names as file A: ignored (A is first)
      clusters: [{name: 'shared', cluster: {server: `https://127.0.0.1:${deadPort}`}}],
      users: [{name: 'me', user: {token: 'not-a-valid-token'}}, {name: 'admin', user: {'client-certificate': 'admin.crt', 'client-key': 'admin.key'}}],
      contexts: [{name: 'main', context: {cluster: 'shared', user: 'admin'}}, {name: 'extra', context: {cluster: 'shared', user: 'admin', namespace: 'kube-system'}}],
    })
    const env = {KUBECONFIG: [fileA, path.join(work, 'missing-is-skipped'), fileB].join(path.delimiter), HOME: work}

    const main = KubeClient.load({env})
    expect(main.target.files).toEqual([fileA, fileB])
    expect(main.target.context).toBe('main')
    expect(main.server).toBe(server.url)
    expect((await whoami(main.target)).username).toBe(SA_USER)

    // context "extra" exists only in B; its cluster "shared" and B's relative cert paths
    const extra = KubeClient.load({env, context: 'extra'})
    expect(extra.server).toBe(server.url)
    expect(extra.namespace).toBe('kube-system')
    expect((await whoami(extra.target)).groups).toContain('system:masters')

    // kubectl resolves the same merged files to the same context, cluster and user
    const kubectlMerged = await new Promise<string>((resolve, reject) => execFile(kubectlPath(),
      ['config', 'view', '--minify', '-o', 'jsonpath={.contexts[0].name} {.clusters[0].cluster.server} {.contexts[0].context.user}'],
      {env: {...env, PATH: process.env.PATH}}, (err, out) => (err ? reject(err) : resolve(out))))
    expect(kubectlMerged).toBe(`main ${server.url} me`)
    expect(`${main.target.context} ${main.server} ${main.target.config.getCurrentUser()?.name}`).toBe(kubectlMerged)
  })

  it('an http:// server, as `kubectl proxy` serves it (a context without a user), watches included', async () => {
    const proxy = await server.startKubectlProxy(server.adminKubeconfigPath)
    try {
      const kubeconfig = write('kubectl-proxy.kubeconfig', {
        apiVersion: 'v1', kind: 'Config', 'current-context': 'proxy',
        clusters: [{name: 'proxy', cluster: {server: proxy.url}}],
        contexts: [{name: 'proxy', context: {cluster: 'proxy', namespace: 'default'}}],
      })
      const client = KubeClient.load({kubeconfig})
      expect(client.server).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
      // through the proxy we are whoever the proxy's kubeconfig is: the admin
      expect((await whoami(client.target)).groups).toContain('system:masters')
      expect((await client.listPods()).items.map(p => p.metadata?.name)).toContain('token-pod')

      // the watch goes over http too
      const seen: string[] = []
      const watch = client.watchPods({namespace: 'default', onEvent: (type, pod: V1Pod) => seen.push(`${type} ${pod.metadata?.name}`)})
      try {
        await until(() => seen.includes('ADDED token-pod'))
        const admin = loadKubeTarget({kubeconfig: server.adminKubeconfigPath}).config.makeApiClient(CoreV1Api)
        await admin.createNamespacedPod({namespace: 'default', body: {metadata: {name: 'watched-pod'}, spec: {containers: [{name: 'c', image: 'busybox'}]}}})
        await until(() => seen.includes('ADDED watched-pod'))
      } finally {
        watch.stop()
      }
    } finally {
      await proxy.stop()
    }
  })

  it('an https server with a context without a user: the cluster\'s CA still applies (anonymous /version)', async () => {
    const kubeconfig = write('no-user.kubeconfig', {
      apiVersion: 'v1', kind: 'Config', 'current-context': 'anon',
      clusters: [cluster('real', {})],
      contexts: [{name: 'anon', context: {cluster: 'real'}}],
    })
    const v = await loadKubeTarget({kubeconfig}).config.makeApiClient(VersionApi).getCode()
    expect(v.gitVersion).toBe('v1.36.3')
    // (kubectl 1.20 would ask for a basic-auth username here: no cross-check)
  })

  it('proxy-url: every request goes through the HTTP CONNECT proxy the kubeconfig names', async () => {
    const connects: string[] = []
    const sockets = new Set<net.Socket>()
    const proxy = http.createServer((_req, res) => res.writeHead(405).end())
    proxy.on('connect', (req, client: net.Socket, head: Buffer) => {
      connects.push(req.url ?? '')
      const [host, port] = (req.url ?? '').split(':')
      const upstream = net.connect(Number(port), host, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
        if (head.length > 0) upstream.write(head)
        upstream.pipe(client)
        client.pipe(upstream)
      })
      for (const s of [client, upstream]) {
        sockets.add(s)
        s.on('error', () => undefined)
        s.on('close', () => sockets.delete(s))
      }
    })
    await new Promise<void>(resolve => proxy.listen(0, '127.0.0.1', resolve))
    const proxyPort = (proxy.address() as net.AddressInfo).port
    try {
      const config = (proxyUrl: string): object => ({
        apiVersion: 'v1', kind: 'Config', 'current-context': 'sa',
        clusters: [cluster('real', {'proxy-url': proxyUrl})],
        users: [{name: 'sa', user: {token: sa.token}}],
        contexts: [{name: 'sa', context: {cluster: 'real', user: 'sa', namespace: 'default'}}],
      })
      const kubeconfig = write('proxy-url.kubeconfig', config(`http://127.0.0.1:${proxyPort}`))
      const client = KubeClient.load({kubeconfig})
      expect((await client.listPods()).items.map(p => p.metadata?.name)).toContain('token-pod')
      expect((await whoami(client.target)).username).toBe(SA_USER)
      expect(connects.length).toBeGreaterThan(0)
      expect(new Set(connects)).toEqual(new Set([`127.0.0.1:${server.port}`]))

      // a proxy that is not there: unreachable, though the API server itself is up
      const deadProxy = write('proxy-url-dead.kubeconfig', config(`http://127.0.0.1:${await closedPort()}`))
      expect(await rejection(KubeClient.load({kubeconfig: deadProxy}).listPods())).toMatchObject({kind: 'unreachable'})
    } finally {
      for (const s of sockets) s.destroy()
      await new Promise(resolve => proxy.close(resolve))
    }
  })
})

describe('--request-timeout, as kubectl takes it', () => {
  let dead: net.Server
  let deadPort: number
  const held = new Set<net.Socket>()
  let deadKubeconfig: string

  beforeAll(async () => {
    // an API server that accepts connections and never answers (not even the TLS handshake)
    dead = net.createServer(s => {
      held.add(s)
      s.on('error', () => undefined)
      s.on('close', () => held.delete(s))
    })
    await new Promise<void>(resolve => dead.listen(0, '127.0.0.1', resolve))
    deadPort = (dead.address() as net.AddressInfo).port
    deadKubeconfig = write('dead.kubeconfig', {
      apiVersion: 'v1', kind: 'Config', 'current-context': 'dead',
      clusters: [{name: 'dead', cluster: {server: `https://127.0.0.1:${deadPort}`, 'certificate-authority': server.caPath}}],
      users: [{name: 'sa', user: {token: sa.token}}],
      contexts: [{name: 'dead', context: {cluster: 'dead', user: 'sa', namespace: 'default'}}],
    })
  })
  afterAll(async () => {
    for (const s of held) s.destroy()
    await new Promise(resolve => dead?.close(resolve))
  })

  it('parses durations as kubectl does: 0 is none, a bare number is seconds, Go units', () => {
    expect(parseRequestTimeout('0')).toBe(0)
    expect(parseRequestTimeout('5')).toBe(5000)
    expect(parseRequestTimeout('1.5s')).toBe(1500)
    expect(parseRequestTimeout('300ms')).toBe(300)
    expect(parseRequestTimeout('1m30s')).toBe(90_000)
    expect(parseRequestTimeout('2h')).toBe(7_200_000)
    expect(() => parseRequestTimeout('soon')).toThrow(KubeConfigError)
    expect(() => parseRequestTimeout('-1s')).toThrow(/--request-timeout/)
  })

  it('a dead API server: one clear error within the timeout, for calls and for watches', async () => {
    const client = KubeClient.load({kubeconfig: deadKubeconfig, requestTimeout: '1500ms'})
    const t0 = Date.now()
    const err = await rejection(client.listPods())
    const ms = Date.now() - t0
    expect(ms).toBeGreaterThanOrEqual(1400)
    expect(ms).toBeLessThan(4000)
    expect(err).toBeInstanceOf(KubeError)
    expect((err as KubeError).kind).toBe('unreachable')
    expect(err.message).toContain(`https://127.0.0.1:${deadPort}`)
    expect(err.message).toContain('did not answer within 1.5s (--request-timeout)')

    // doctor-style direct API clients of the same target time out as well
    const t1 = Date.now()
    await rejection(client.target.config.makeApiClient(VersionApi).getCode())
    expect(Date.now() - t1).toBeLessThan(4000)

    // a watch: the relist times out and is retried (the watch keeps waiting for the server), no hang
    const relists: string[] = []
    const errors: KubeError[] = []
    const watch = client.watchPods({namespace: 'default', onEvent: () => undefined, onError: e => errors.push(e), onRelist: rv => relists.push(rv)})
    await new Promise(r => setTimeout(r, 2500))
    watch.stop()
    expect(errors).toEqual([])
    expect(relists).toEqual([])
  })

  it('a server that stalls half-way: a body that never ends, a watch that never answers', async () => {
    // a front of the real server (through kubectl proxy, plain http) that stalls some requests
    const proxy = await server.startKubectlProxy(server.adminKubeconfigPath)
    const stalled: string[] = []
    const front = http.createServer((req, res) => {
      const url = req.url ?? ''
      if (url.includes('/namespaces/stall-body/')) {
        stalled.push(`body ${url}`)
        res.writeHead(200, {'content-type': 'application/json'})
        res.write('{"kind":"PodList","apiVersion":"v1","items":[') // and nothing more
        return
      }
      if (/[?&]watch=true/.test(url)) {
        stalled.push(`watch ${url}`) // no answer at all
        return
      }
      const up = http.request(`${proxy.url}${url}`, {method: req.method, headers: req.headers}, r => {
        res.writeHead(r.statusCode ?? 502, r.headers)
        r.pipe(res)
      })
      up.on('error', () => res.destroy())
      req.pipe(up)
    })
    const open = new Set<net.Socket>()
    front.on('connection', c => {
      open.add(c)
      c.on('close', () => open.delete(c))
    })
    await new Promise<void>(resolve => front.listen(0, '127.0.0.1', resolve))
    try {
      const kubeconfig = write('stalling.kubeconfig', {
        apiVersion: 'v1', kind: 'Config', 'current-context': 'front',
        clusters: [{name: 'front', cluster: {server: `http://127.0.0.1:${(front.address() as net.AddressInfo).port}`}}],
        contexts: [{name: 'front', context: {cluster: 'front', namespace: 'default'}}],
      })
      const client = KubeClient.load({kubeconfig, requestTimeout: '1s'})
      const t0 = Date.now()
      const err = await rejection(client.listPods({namespace: 'stall-body'}))
      expect(Date.now() - t0).toBeLessThan(3000)
      expect(err).toMatchObject({kind: 'unreachable'})
      expect(err.message).toContain('did not answer within 1s (--request-timeout)')

      // the list answers, the watch request never does: it is given up after 1 s and made again
      const relists: string[] = []
      const errors: KubeError[] = []
      const watch = client.watchPods({namespace: 'default', onEvent: () => undefined, onRelist: rv => relists.push(rv), onError: e => errors.push(e)})
      try {
        await until(() => relists.length === 1)
        await until(() => stalled.filter(x => x.startsWith('watch ')).length >= 2, 8000)
        // the watch resumes from where the list was, it does not list again
        expect(relists).toHaveLength(1)
        expect(stalled.filter(x => x.startsWith('watch ')).every(x => x.includes(`resourceVersion=${relists[0]}`))).toBe(true)
        expect(errors).toEqual([])
      } finally {
        watch.stop()
      }
    } finally {
      for (const c of open) c.destroy()
      await new Promise(resolve => front.close(resolve))
      await proxy.stop()
    }
  })

  it('the same server with the timeout on a live server: calls still work (a timeout bounds, it does not cut short)', async () => {
    const client = KubeClient.load({kubeconfig: sa.kubeconfigPath, requestTimeout: '10s'})
    expect((await client.listPods()).items.length).toBeGreaterThan(0)
    // and a watch on a live server is not cut by the timeout: it delivers changes after the timeout has passed
    const quick = KubeClient.load({kubeconfig: sa.kubeconfigPath, requestTimeout: '1s'})
    const seen: string[] = []
    const watch = quick.watchPods({namespace: 'default', onEvent: (type, pod) => seen.push(`${type} ${pod.metadata?.name}`)})
    try {
      await until(() => seen.includes('ADDED token-pod'))
      await new Promise(r => setTimeout(r, 1500))
      const admin = loadKubeTarget({kubeconfig: server.adminKubeconfigPath}).config.makeApiClient(CoreV1Api)
      await admin.createNamespacedPod({namespace: 'default', body: {metadata: {name: 'late-pod'}, spec: {containers: [{name: 'c', image: 'busybox'}]}}})
      await until(() => seen.includes('ADDED late-pod'))
    } finally {
      watch.stop()
    }
  })

  it('the CLI: fix --request-timeout 2s against the dead server exits 1 with one line, in about 2 s', async () => {
    const r = await sideload(['fix', '--dry-run', '--kubeconfig', deadKubeconfig, '--request-timeout', '2s'])
    expect(r.code).toBe(1)
    expect(r.ms).toBeLessThan(15_000)
    const lines = r.stderr.trim().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(/^error: /)
    expect(lines[0]).toContain('did not answer within 2s (--request-timeout)')

    const d = await sideload(['doctor', '--kubeconfig', deadKubeconfig, '--request-timeout', '2s', '--json'])
    expect(d.code).toBe(1)
    expect(d.ms).toBeLessThan(15_000)
    const api = (JSON.parse(d.stdout) as {checks: {check: string; status: string; detail: string}[]}).checks.find(c => c.check === 'api-server')
    expect(api?.status).toBe('fail')
    expect(api?.detail).toContain('did not answer within 2s (--request-timeout)')

    const bad = await sideload(['fix', '--dry-run', '--kubeconfig', deadKubeconfig, '--request-timeout', 'soon'])
    expect(bad.code).not.toBe(0)
    expect(bad.stderr).toContain('--request-timeout')

    // every kube command takes it
    for (const cmd of ['push', 'expose', 'doctor', 'build-and-push']) {
      const help = await sideload([cmd, '--help'])
      expect(help.stdout, cmd).toContain('--request-timeout')
    }
  })

  it('the CLI: fix and doctor against the live server through the same flags (kubeconfig, --context, --request-timeout)', async () => {
    const r = await sideload(['fix', '--dry-run', '--kubeconfig', sa.kubeconfigPath, '--context', 'sideload-sa', '-n', 'sideload', '--request-timeout', '20s'])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('no pod waits for an image')

    // doctor asks the real RBAC (SelfSubjectAccessReview) what the service account of manifests/rbac.yaml may do
    const d = await sideload(['doctor', '--kubeconfig', sa.kubeconfigPath, '--request-timeout', '20s', '--json'])
    const checks = (JSON.parse(d.stdout) as {checks: {check: string; target: string; status: string; detail: string}[]}).checks
    expect(checks.find(c => c.check === 'api-server')).toMatchObject({status: 'ok', detail: 'Kubernetes v1.36.3'})
    const rbac = checks.filter(c => c.check === 'rbac')
    expect(rbac.map(c => `${c.target}:${c.status}`)).toEqual(['pods:ok', 'nodes:ok', 'events:ok', 'services:ok', 'pods (--restart):ok', 'pods/eviction (--restart):ok',
      'deployments.apps (--restart):ok', 'statefulsets.apps (--restart):ok', 'daemonsets.apps (--restart):ok', 'replicasets.apps (--restart):ok', 'jobs.batch (--restart):ok'])
  })
})

async function until(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out waiting')
    await new Promise(r => setTimeout(r, 50))
  }
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = net.createServer()
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as net.AddressInfo).port
  await new Promise(resolve => s.close(resolve))
  return port
}
