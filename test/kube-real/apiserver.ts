// The real Kubernetes API server for tests: etcd v3.6 and kube-apiserver v1.36 (built from their Go
// modules by `scripts/build-daemons.sh etcd kube`), on loopback, on random free ports, with TLS,
// client-certificate and token authentication, service accounts and RBAC (Node,RBAC), as a real
// cluster has them. No controllers, scheduler or kubelet: objects are stored and served, nothing
// more (pods stay Pending).
//
// Everything of one server lives under /run/sideload-kube/<name>/ (PKI, etcd data, kubeconfigs,
// logs, pid files, owner.json). Nothing is left behind:
//  - stop() kills both daemons, waits for them and removes the folder;
//  - on a normal exit without stop(), and on SIGINT/SIGTERM/SIGHUP, a synchronous hook does the same;
//  - the daemons run under `setpriv --pdeathsig KILL`, so they die with the test process even when
//    it is SIGKILLed, and a detached watchdog (`tail --pid=OWNER`) then removes the folder;
//  - every start first sweeps folders whose owner process is dead (their processes, then the files).
import {execFileSync, spawn, type ChildProcess} from 'node:child_process'
import * as fs from 'node:fs'
import * as https from 'node:https'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import {CoreV1Api, KubeConfig} from '@kubernetes/client-node'
import YAML from 'yaml'
import {isAlive, kill, pidsMentioning, processStartTime, sleep, waitGone} from '../bed/processes.js'
import {daemonBinary} from '../daemons/daemons.js'
import {type ClientCert, type TestPki, createClientCert, createPki} from './tls.js'
import {REPO_ROOT, type KubectlResult, kubectl, kubectlEnv, kubectlPath} from './kubectl.js'

/** Where every real API server of this machine keeps its files (tmpfs; falls back to the temp dir when not root). */
export const REAL_KUBE_ROOT = process.env.SIDELOAD_REAL_KUBE_ROOT ??
  (process.getuid?.() === 0 ? '/run/sideload-kube' : path.join(os.tmpdir(), 'sideload-kube'))

export const RBAC_MANIFEST_PATH = path.join(REPO_ROOT, 'manifests', 'rbac.yaml')

/** The extra name the server answers to with its own certificate (see `sni`). */
export const SNI_NAME = 'kube-real.sideload.test'

export interface RealApiServerOptions {
  /** folder name under REAL_KUBE_ROOT (default: unique per process and call) */
  name?: string
  /** how long to wait for /readyz (default 60 s) */
  readyTimeoutMs?: number
  /** --min-request-timeout: the server ends each watch after this many seconds × [1, 2) (default 1800) */
  minRequestTimeoutSeconds?: number
}

export interface KubeconfigUser {
  token?: string
  'client-certificate'?: string
  'client-key'?: string
  exec?: {apiVersion: string; command: string; args?: string[]; env?: {name: string; value: string}[]; interactiveMode?: string}
}

export interface RealApiServer {
  name: string
  /** https://127.0.0.1:PORT */
  url: string
  port: number
  dir: string
  /** the cluster CA (it signed the serving certificate and every client certificate) */
  caPath: string
  pki: TestPki
  /**
   * A second, independent CA whose only certificate is the one the server presents for SNI_NAME
   * (--tls-sni-cert-key): a client trusting only this CA gets through only when it sends SNI_NAME
   * (kubeconfig tls-server-name).
   */
  sni: {name: string; caPath: string}
  /** kubeconfig of the admin: client certificate, group system:masters */
  adminKubeconfigPath: string
  adminCert: ClientCert
  /** a static bearer token (--token-auth-file) of user "token-admin" in system:masters */
  adminToken: string
  /** what `kubectl version` calls the server: v1.36.3 */
  version: string
  /** milliseconds from the call to a ready server, and its parts */
  startup: {pkiMs: number; etcdMs: number; apiserverMs: number; totalMs: number}
  /** the kube-apiserver command line that is running (binary, then flags) */
  apiserverArgs: string[]
  /** a client certificate for `user` in `groups`, signed by the cluster CA */
  clientCert(user: string, groups?: string[]): ClientCert
  /**
   * Applies manifests/rbac.yaml with the admin kubeconfig (real kubectl 1.20, once), asks the
   * TokenRequest API for a token of ServiceAccount sideload/sideload, and writes a kubeconfig that
   * uses it (context namespace: `namespace`, default "default").
   */
  serviceAccountKubeconfig(opts?: {namespace?: string; expirationSeconds?: number; serviceAccount?: string}): Promise<{token: string; kubeconfigPath: string}>
  /**
   * Creates the namespace (if missing) and its "default" ServiceAccount, as kube-controller-manager
   * would (it does not run here; without that account the ServiceAccount admission plugin refuses pods).
   */
  ensureNamespace(namespace: string): Promise<void>
  /** writes a kubeconfig file (plain object → YAML) under the server's folder; returns its path */
  writeKubeconfig(file: string, config: object): string
  /** a one-context kubeconfig for this server: CA, the given user, optional namespace */
  kubeconfigFor(file: string, user: KubeconfigUser, opts?: {namespace?: string; context?: string}): string
  /**
   * A kubeconfig for a client-certificate user `user` bound (kubectl create role/rolebinding, as the
   * admin) to a Role in `namespace` that grants `verbs` on `resources` and nothing else.
   */
  userWithRole(user: string, rule: {verbs: string[]; resources: string[]; namespace?: string}): Promise<string>
  /** runs the real kubectl (1.20) with a kubeconfig */
  kubectl(kubeconfigPath: string, args: string[]): Promise<KubectlResult>
  /** `kubectl proxy` on a free loopback port against a kubeconfig; the server is plain http */
  startKubectlProxy(kubeconfigPath: string): Promise<{url: string; port: number; stop(): Promise<void>}>
  /**
   * Kills kube-apiserver and starts it again on the same port and etcd (watches are cut; its watch
   * cache starts afresh from etcd's current revision, as after any API server restart).
   */
  restartApiServer(): Promise<void>
  /** compacts etcd's history up to its current revision (what the API server does every 5 min); returns that revision */
  compactEtcd(): Promise<number>
  /**
   * Starts the real kube-scheduler (same module and version) as system:kube-scheduler, without
   * leader election or a serving port; resolves once it has bound nothing yet but is running.
   * It binds pods to nodes that are Ready and untainted (see cluster.ts: the kubelet stand-in
   * registers them, the fixture lifts the not-ready taint as the node lifecycle controller would).
   */
  startScheduler(): Promise<void>
  /**
   * Starts the real kube-controller-manager (same module and version) as
   * system:kube-controller-manager, each controller with its own service account
   * (--use-service-account-credentials, tokens from the TokenRequest API), without leader election
   * or a serving port, running only `controllers` (default CONTROLLERS). Never the node lifecycle
   * controller: the kubelet stand-in sends no heartbeats, so it would taint every node
   * unreachable and evict the pods. Resolves once its informers have synced.
   */
  startControllerManager(controllers?: readonly string[]): Promise<void>
  /** what the API server's audit log recorded so far (level Metadata, every request but its own health checks) */
  audit(): AuditRecord[]
  /** the tail of the daemons' logs (for failure messages) */
  logs(): string
  stop(): Promise<void>
}

export interface AuditRecord {
  user: string
  verb: string
  /** resource[/subresource] */
  resource: string
  namespace?: string
  name?: string
  code: number
}

/**
 * The controllers the tests need: rollouts (Deployment → ReplicaSet → Pod, StatefulSet, DaemonSet),
 * owners' pods deleted with them, and ResourceQuota usage (the quota admission plugin refuses
 * every pod while a quota's status is unknown).
 */
export const CONTROLLERS = ['deployment-controller', 'replicaset-controller', 'statefulset-controller', 'daemonset-controller',
  'garbage-collector-controller', 'resourcequota-controller'] as const

interface Owner {
  pid: number
  startTime: string
}

// ---------------------------------------------------------------------------------------------
// processes (the bed's helpers)

function ownerAlive(o: Owner | undefined): boolean {
  return o !== undefined && isAlive(o.pid) && processStartTime(o.pid) === o.startTime
}

const killQuietly = (pid: number, signal: NodeJS.Signals = 'SIGKILL'): void => kill(pid, signal)

/** Removes the folders of servers whose owner is dead: their processes first, then the files. */
export async function sweepDeadServers(root = REAL_KUBE_ROOT): Promise<string[]> {
  let names: string[]
  try {
    names = fs.readdirSync(root)
  } catch {
    return []
  }
  const removed: string[] = []
  for (const name of names) {
    const dir = path.join(root, name)
    let owner: Owner | undefined
    try {
      owner = JSON.parse(fs.readFileSync(path.join(dir, 'owner.json'), 'utf8')) as Owner
    } catch {
      // no owner file: a start that died before writing it, or not ours; old enough → stale
      try {
        if (Date.now() - fs.statSync(dir).mtimeMs < 60_000) continue
      } catch {
        continue
      }
    }
    if (ownerAlive(owner)) continue
    const pids = pidsMentioning(dir)
    for (const pid of pids) killQuietly(pid)
    await waitGone(pids, 5000)
    fs.rmSync(dir, {recursive: true, force: true})
    removed.push(name)
  }
  return removed
}

/** A free TCP port on 127.0.0.1 (the kernel's pick; released before the daemon binds it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })
}

// ---------------------------------------------------------------------------------------------
// PKI

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, {cwd, stdio: ['ignore', 'ignore', 'pipe']})
}

/** A second CA and a serving certificate for `name` only, signed by it. */
function createSniPki(dir: string, name: string): {caPath: string; certPath: string; keyPath: string} {
  fs.mkdirSync(dir, {recursive: true})
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'sni-ca.key'], dir)
  openssl(['req', '-x509', '-new', '-key', 'sni-ca.key', '-sha256', '-days', '2', '-subj', '/CN=sideload-sni-ca',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', 'sni-ca.crt'], dir)
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'sni.key'], dir)
  openssl(['req', '-new', '-key', 'sni.key', '-subj', `/CN=${name}`, '-out', 'sni.csr'], dir)
  fs.writeFileSync(path.join(dir, 'sni.ext'),
    `subjectAltName=DNS:${name}\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n`)
  openssl(['x509', '-req', '-in', 'sni.csr', '-CA', 'sni-ca.crt', '-CAkey', 'sni-ca.key', '-CAcreateserial',
    '-days', '2', '-sha256', '-extfile', 'sni.ext', '-out', 'sni.crt'], dir)
  return {caPath: path.join(dir, 'sni-ca.crt'), certPath: path.join(dir, 'sni.crt'), keyPath: path.join(dir, 'sni.key')}
}

// ---------------------------------------------------------------------------------------------
// exit hooks: every live server of this process, cleaned up synchronously

const live = new Map<string, {pids: () => number[]; dir: string; watchdog: () => number | undefined}>()
let hooksInstalled = false

function cleanupSync(): void {
  for (const [name, s] of live) {
    for (const pid of s.pids()) killQuietly(pid)
    // the watchdog is for our death; we are cleaning up ourselves
    const watchdog = s.watchdog()
    if (watchdog !== undefined) killQuietly(watchdog)
    // SIGKILL is delivered at once; the processes may still hold files open, rm works regardless
    try {
      fs.rmSync(s.dir, {recursive: true, force: true})
    } catch {
      // the watchdog or the next sweep removes it
    }
    live.delete(name)
  }
}

function installHooks(): void {
  if (hooksInstalled) return
  hooksInstalled = true
  process.on('exit', cleanupSync)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      cleanupSync()
      // let the signal do what it would have done without us (unless someone else handles it)
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig)
    })
  }
}

let counter = 0

// ---------------------------------------------------------------------------------------------

/** Starts etcd and kube-apiserver; resolves when /readyz answers 200. */
export async function startRealApiServer(opts: RealApiServerOptions = {}): Promise<RealApiServer> {
  const t0 = Date.now()
  const etcdBin = daemonBinary('etcd', 'etcd')
  const apiserverBin = daemonBinary('kube', 'kube-apiserver')
  await sweepDeadServers()

  const name = opts.name ?? `t${process.pid}-${++counter}`
  const dir = path.join(REAL_KUBE_ROOT, name)
  const existing = (() => {
    try {
      return JSON.parse(fs.readFileSync(path.join(dir, 'owner.json'), 'utf8')) as Owner
    } catch {
      return undefined
    }
  })()
  if (ownerAlive(existing)) throw new Error(`a real API server named ${name} is running (owner pid ${existing!.pid}); stop it or pick another name`)
  fs.rmSync(dir, {recursive: true, force: true})
  fs.mkdirSync(dir, {recursive: true, mode: 0o700})
  fs.writeFileSync(path.join(dir, 'owner.json'), JSON.stringify({pid: process.pid, startTime: processStartTime(process.pid)}))

  const children: ChildProcess[] = []
  const pidsOf = (): number[] => [
    ...children.map(c => c.pid).filter((p): p is number => p !== undefined && isAlive(p)),
    ...pidsMentioning(dir).filter(p => p !== watchdogPid),
  ]
  let watchdogPid: number | undefined
  installHooks()
  live.set(name, {pids: pidsOf, dir, watchdog: () => watchdogPid})

  // the watchdog: when this process is gone (even SIGKILLed), kill what mentions the folder, remove it
  const watchdog = spawn('sh', ['-c',
    'tail --pid="$1" -f /dev/null; for p in $(cat "$2"/*.pid 2>/dev/null); do kill -9 "$p" 2>/dev/null; done; rm -rf "$2"',
    'sideload-kube-watchdog', String(process.pid), `${dir}/`], {detached: true, stdio: 'ignore'})
  watchdog.unref()
  watchdogPid = watchdog.pid

  const daemon = (label: string, bin: string, args: string[]): ChildProcess => {
    const log = fs.openSync(path.join(dir, `${label}.log`), 'a')
    // setpriv --pdeathsig: the daemon gets SIGKILL when this (test) process dies, however it dies
    const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', bin, ...args], {cwd: dir, stdio: ['ignore', log, log]})
    fs.closeSync(log)
    child.on('error', err => fs.appendFileSync(path.join(dir, `${label}.log`), `cannot start ${bin}: ${err.message}\n`))
    children.push(child)
    if (child.pid !== undefined) fs.writeFileSync(path.join(dir, `${label}.pid`), `${child.pid}\n`)
    return child
  }
  const tail = (label: string, lines = 30): string => {
    try {
      return fs.readFileSync(path.join(dir, `${label}.log`), 'utf8').split('\n').slice(-lines).join('\n')
    } catch {
      return ''
    }
  }
  const logs = (): string => `--- etcd.log\n${tail('etcd')}\n--- kube-apiserver.log\n${tail('kube-apiserver')}`

  const stop = async (): Promise<void> => {
    if (!live.has(name)) return
    live.delete(name)
    const pids = pidsOf()
    for (const pid of pids) killQuietly(pid)
    // our own children: wait until node has reaped them (no zombie left either)
    await Promise.all(children.map(c => c.exitCode !== null || c.signalCode !== null ? undefined
      : new Promise<void>(resolve => {
        const t = setTimeout(resolve, 10_000)
        c.once('exit', () => {
          clearTimeout(t)
          resolve()
        })
      })))
    const left = await waitGone(pids, 10_000)
    if (watchdogPid !== undefined) killQuietly(watchdogPid)
    fs.rmSync(dir, {recursive: true, force: true})
    if (left.length > 0) throw new Error(`real API server ${name}: processes ${left.join(', ')} did not exit`)
  }

  try {
    // PKI: cluster CA, serving cert (127.0.0.1, localhost), admin client cert, SA signing key, SNI cert
    const pki = createPki(path.join(dir, 'pki'))
    const adminCert = createClientCert(pki, 'kube-real-admin', ['system:masters'])
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'sa.key'], pki.dir)
    openssl(['ec', '-in', 'sa.key', '-pubout', '-out', 'sa.pub'], pki.dir)
    const sniPki = createSniPki(path.join(dir, 'pki'), SNI_NAME)
    const adminToken = `admin-${Math.random().toString(36).slice(2)}${Date.now().toString(36)}`
    fs.writeFileSync(path.join(pki.dir, 'tokens.csv'), `${adminToken},token-admin,token-admin-uid,"system:masters"\n`, {mode: 0o600})
    const tPki = Date.now()

    // etcd, on two free ports; another process may take one between our pick and etcd's bind
    // (seen once in CI: "bind: address already in use"), then again on two others
    let etcdUrl = ''
    for (let attempt = 1; ; attempt++) {
      const [etcdClient, etcdPeer] = [await freePort(), await freePort()]
      etcdUrl = `http://127.0.0.1:${etcdClient}`
      const url = etcdUrl
      const etcd = daemon('etcd', etcdBin, [
        '--name', 'kube-real', '--data-dir', path.join(dir, 'etcd'),
        '--listen-client-urls', url, '--advertise-client-urls', url,
        '--listen-peer-urls', `http://127.0.0.1:${etcdPeer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${etcdPeer}`,
        '--initial-cluster', `kube-real=http://127.0.0.1:${etcdPeer}`,
        '--log-level', 'warn', '--unsafe-no-fsync',
      ])
      try {
        await waitUntil('etcd /health', 20_000, etcd, logs, async () => {
          const r = await fetch(`${url}/health`).catch(() => undefined)
          return r?.status === 200
        })
        break
      } catch (err) {
        if (attempt >= 3 || !/address already in use/.test(tail('etcd'))) throw err
        children.splice(children.indexOf(etcd), 1)
        fs.rmSync(path.join(dir, 'etcd'), {recursive: true, force: true})
        fs.rmSync(path.join(dir, 'etcd.log'), {force: true})
      }
    }
    const tEtcd = Date.now()

    // kube-apiserver, with an audit log of who did what (ResponseComplete, Metadata level)
    const auditPolicy = path.join(dir, 'audit-policy.yaml')
    fs.writeFileSync(auditPolicy, YAML.stringify({apiVersion: 'audit.k8s.io/v1', kind: 'Policy', omitStages: ['RequestReceived', 'ResponseStarted'],
      rules: [{level: 'None', nonResourceURLs: ['/readyz', '/healthz', '/livez', '/version']}, {level: 'Metadata'}]}))
    const port = await freePort()
    const apiserverArgs = [
      `--etcd-servers=${etcdUrl}`,
      `--secure-port=${port}`, '--bind-address=127.0.0.1', '--advertise-address=127.0.0.1',
      '--endpoint-reconciler-type=none', // loopback may not be an Endpoints address; nothing needs the "kubernetes" endpoints here
      '--service-cluster-ip-range=10.96.0.0/16',
      `--tls-cert-file=${pki.serverCertPath}`, `--tls-private-key-file=${pki.serverKeyPath}`,
      `--tls-sni-cert-key=${sniPki.certPath},${sniPki.keyPath}:${SNI_NAME}`,
      `--client-ca-file=${pki.caCertPath}`,
      `--token-auth-file=${path.join(pki.dir, 'tokens.csv')}`,
      `--service-account-key-file=${path.join(pki.dir, 'sa.pub')}`,
      `--service-account-signing-key-file=${path.join(pki.dir, 'sa.key')}`,
      '--service-account-issuer=https://kubernetes.default.svc',
      '--api-audiences=https://kubernetes.default.svc',
      '--authorization-mode=Node,RBAC',
      `--cert-dir=${path.join(dir, 'apiserver-certs')}`,
      '--profiling=false',
      ...(opts.minRequestTimeoutSeconds ? [`--min-request-timeout=${opts.minRequestTimeoutSeconds}`] : []),
      `--audit-policy-file=${auditPolicy}`, `--audit-log-path=${path.join(dir, 'audit.log')}`, '--audit-log-format=json',
    ]
    let apiserver = daemon('kube-apiserver', apiserverBin, apiserverArgs)
    const url = `https://127.0.0.1:${port}`
    const ca = fs.readFileSync(pki.caCertPath)
    const cert = fs.readFileSync(adminCert.certPath)
    const key = fs.readFileSync(adminCert.keyPath)
    const apiserverReady = (): Promise<void> => waitUntil('kube-apiserver /readyz', opts.readyTimeoutMs ?? 60_000, apiserver, logs,
      async () => (await httpsGet(`${url}/readyz`, {ca, cert, key}).catch(() => undefined))?.status === 200)
    await apiserverReady()
    const tApi = Date.now()
    const version = (JSON.parse((await httpsGet(`${url}/version`, {ca, cert, key})).body) as {gitVersion: string}).gitVersion

    const writeKubeconfig = (file: string, config: object): string => {
      const p = path.isAbsolute(file) ? file : path.join(dir, file)
      fs.mkdirSync(path.dirname(p), {recursive: true})
      fs.writeFileSync(p, YAML.stringify(config), {mode: 0o600})
      return p
    }
    const kubeconfigFor = (file: string, user: KubeconfigUser, o: {namespace?: string; context?: string} = {}): string => {
      const context = o.context ?? 'kube-real'
      return writeKubeconfig(file, {
        apiVersion: 'v1', kind: 'Config',
        clusters: [{name: 'kube-real', cluster: {server: url, 'certificate-authority': pki.caCertPath}}],
        users: [{name: `${context}-user`, user}],
        contexts: [{name: context, context: {cluster: 'kube-real', user: `${context}-user`, ...(o.namespace ? {namespace: o.namespace} : {})}}],
        'current-context': context,
      })
    }
    const adminKubeconfigPath = kubeconfigFor('admin.kubeconfig', {'client-certificate': adminCert.certPath, 'client-key': adminCert.keyPath},
      {context: 'kube-real-admin'})

    const adminCore = (): CoreV1Api => {
      const kc = new KubeConfig()
      kc.loadFromFile(adminKubeconfigPath)
      return kc.makeApiClient(CoreV1Api)
    }
    const ignoreExists = (err: unknown): void => {
      if ((err as {code?: number}).code !== 409) throw err
    }
    const ensureNamespace = async (namespace: string): Promise<void> => {
      const core = adminCore()
      await core.createNamespace({body: {metadata: {name: namespace}}}).catch(ignoreExists)
      await core.createNamespacedServiceAccount({namespace, body: {metadata: {name: 'default'}}}).catch(ignoreExists)
    }
    for (const ns of ['default', 'kube-system', 'kube-public']) await ensureNamespace(ns)
    const tReady = Date.now()

    let rbacApplied: Promise<void> | undefined
    const server: RealApiServer = {
      name, url, port, dir, caPath: pki.caCertPath, pki,
      sni: {name: SNI_NAME, caPath: sniPki.caPath},
      adminKubeconfigPath, adminCert, adminToken, version,
      startup: {pkiMs: tPki - t0, etcdMs: tEtcd - tPki, apiserverMs: tApi - tEtcd, totalMs: tReady - t0},
      apiserverArgs: [apiserverBin, ...apiserverArgs],
      clientCert: (user, groups = []) => createClientCert(pki, user, groups),
      async serviceAccountKubeconfig(o = {}) {
        rbacApplied ??= (async () => {
          const r = await kubectl(adminKubeconfigPath, ['apply', '-f', RBAC_MANIFEST_PATH])
          if (r.code !== 0) throw new Error(`kubectl apply -f manifests/rbac.yaml failed (${r.code}): ${r.stderr}`)
          await ensureNamespace('sideload')
        })()
        await rbacApplied
        const kc = new KubeConfig()
        kc.loadFromFile(adminKubeconfigPath)
        const tr = await kc.makeApiClient(CoreV1Api).createNamespacedServiceAccountToken({
          name: o.serviceAccount ?? 'sideload', namespace: 'sideload',
          body: {apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: {audiences: ['https://kubernetes.default.svc'], expirationSeconds: o.expirationSeconds ?? 3600}},
        })
        const token = tr.status?.token
        if (!token) throw new Error(`TokenRequest for sideload/${o.serviceAccount ?? 'sideload'} returned no token`)
        const kubeconfigPath = kubeconfigFor(`sa-${++counter}.kubeconfig`, {token}, {namespace: o.namespace ?? 'default', context: 'sideload-sa'})
        return {token, kubeconfigPath}
      },
      ensureNamespace,
      writeKubeconfig,
      kubeconfigFor,
      async userWithRole(user, rule) {
        const ns = rule.namespace ?? 'default'
        const run = async (args: string[]): Promise<void> => {
          const r = await kubectl(adminKubeconfigPath, args)
          if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${r.code}): ${r.stderr}`)
        }
        await run(['create', 'role', `${user}-role`, '-n', ns, `--verb=${rule.verbs.join(',')}`, `--resource=${rule.resources.join(',')}`])
        await run(['create', 'rolebinding', `${user}-binding`, '-n', ns, `--role=${user}-role`, `--user=${user}`])
        const cert = createClientCert(pki, user)
        return kubeconfigFor(`${user}.kubeconfig`, {'client-certificate': cert.certPath, 'client-key': cert.keyPath}, {namespace: ns})
      },
      kubectl: (kubeconfigPath, args) => kubectl(kubeconfigPath, args),
      async startKubectlProxy(kubeconfigPath) {
        const proxyPort = await freePort()
        const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', kubectlPath(), 'proxy', `--port=${proxyPort}`, '--address=127.0.0.1',
          `--kubeconfig=${kubeconfigPath}`], {env: kubectlEnv(kubeconfigPath), stdio: ['ignore', 'pipe', 'pipe']})
        children.push(child)
        if (child.pid !== undefined) fs.writeFileSync(path.join(dir, `kubectl-proxy-${child.pid}.pid`), `${child.pid}\n`)
        let out = ''
        child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
        child.stderr!.on('data', (d: Buffer) => (out += d.toString()))
        await waitUntil('kubectl proxy', 15_000, child, () => out, async () => /Starting to serve on/.test(out))
        return {
          url: `http://127.0.0.1:${proxyPort}`, port: proxyPort,
          async stop() {
            if (child.pid !== undefined) {
              killQuietly(child.pid, 'SIGTERM')
              await waitGone([child.pid], 5000)
              fs.rmSync(path.join(dir, `kubectl-proxy-${child.pid}.pid`), {force: true})
            }
          },
        }
      },
      async restartApiServer() {
        await new Promise<void>(resolve => {
          if (apiserver.exitCode !== null || apiserver.signalCode !== null) return resolve()
          apiserver.once('exit', () => resolve())
          apiserver.kill('SIGKILL')
        })
        children.splice(children.indexOf(apiserver), 1)
        apiserver = daemon('kube-apiserver', apiserverBin, apiserverArgs)
        await apiserverReady()
      },
      async startScheduler() {
        const cert = createClientCert(pki, 'system:kube-scheduler')
        const kubeconfig = kubeconfigFor('scheduler.kubeconfig', {'client-certificate': cert.certPath, 'client-key': cert.keyPath}, {context: 'scheduler'})
        const scheduler = daemon('kube-scheduler', daemonBinary('kube', 'kube-scheduler'), [
          `--kubeconfig=${kubeconfig}`, '--leader-elect=false', '--secure-port=0', '--profiling=false', '-v=1',
        ])
        // running and past its informers' first sync: its log says it started (else it exits with why)
        await waitUntil('kube-scheduler', 30_000, scheduler, () => tail('kube-scheduler'), async () =>
          /Attempting to acquire leader lease|Starting Kubernetes Scheduler|"Started"|caches populated/i.test(tail('kube-scheduler', 200)))
      },
      async startControllerManager(controllers = CONTROLLERS) {
        if (controllers.some(c => /node-?lifecycle/.test(c) || c === '*')) {
          throw new Error('the node lifecycle controller cannot run here: the kubelet stand-in sends no heartbeats')
        }
        const cert = createClientCert(pki, 'system:kube-controller-manager')
        const kubeconfig = kubeconfigFor('controller-manager.kubeconfig', {'client-certificate': cert.certPath, 'client-key': cert.keyPath},
          {context: 'controller-manager'})
        const manager = daemon('kube-controller-manager', daemonBinary('kube', 'kube-controller-manager'), [
          `--kubeconfig=${kubeconfig}`, `--controllers=${controllers.join(',')}`, '--use-service-account-credentials=true',
          '--leader-elect=false', '--secure-port=0', '--profiling=false', '--concurrent-deployment-syncs=2', '-v=2',
        ])
        // its controllers start once the shared informers have synced (else it exits with why)
        await waitUntil('kube-controller-manager', 60_000, manager, () => tail('kube-controller-manager'), async () =>
          /Caches are synced|Started controller/i.test(tail('kube-controller-manager', 400)))
      },
      async compactEtcd() {
        const post = async (api: string, body: object): Promise<{header?: {revision?: string}}> => {
          const r = await fetch(`${etcdUrl}/v3/kv/${api}`, {method: 'POST', body: JSON.stringify(body)})
          if (!r.ok) throw new Error(`etcd ${api}: ${r.status} ${await r.text()}`)
          return await r.json() as {header?: {revision?: string}}
        }
        const revision = (await post('range', {key: Buffer.from('/').toString('base64')})).header?.revision
        if (!revision) throw new Error('etcd range: no revision in the answer')
        await post('compaction', {revision, physical: true})
        return Number(revision)
      },
      audit() {
        let text = ''
        try {
          text = fs.readFileSync(path.join(dir, 'audit.log'), 'utf8')
        } catch {
          return []
        }
        return text.split('\n').filter(Boolean).map(l => JSON.parse(l) as {user: {username: string}; verb: string; objectRef?: {resource?: string; subresource?: string; namespace?: string; name?: string}; responseStatus?: {code?: number}})
          .map(e => ({user: e.user.username, verb: e.verb, resource: [e.objectRef?.resource, e.objectRef?.subresource].filter(Boolean).join('/'),
            namespace: e.objectRef?.namespace, name: e.objectRef?.name, code: e.responseStatus?.code ?? 0}))
      },
      logs,
      stop,
    }
    return server
  } catch (err) {
    await stop().catch(() => undefined)
    throw err
  }
}

async function waitUntil(what: string, timeoutMs: number, child: ChildProcess, logs: () => string, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let exited: string | undefined
  child.once('exit', (code, signal) => (exited = `exited (${signal ?? code})`))
  for (;;) {
    if (await probe()) return
    if (exited) throw new Error(`${what}: the process ${exited}\n${logs()}`)
    if (Date.now() > deadline) throw new Error(`${what}: not ready within ${timeoutMs} ms\n${logs()}`)
    await sleep(50)
  }
}

function httpsGet(url: string, tls: {ca: Buffer; cert: Buffer; key: Buffer}): Promise<{status: number; body: string}> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, {...tls, timeout: 2000}, res => {
      let body = ''
      res.on('data', (d: Buffer) => (body += d.toString()))
      res.on('end', () => resolve({status: res.statusCode ?? 0, body}))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', reject)
  })
}
