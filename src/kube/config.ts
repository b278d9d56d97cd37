import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import type * as https from 'node:https'
import {
  IsomorphicFetchHttpLibrary, KubeConfig, ResponseContext, ServerConfiguration, createConfiguration, wrapHttpLibrary,
  type ApiType, type Cluster, type Context, type PromiseHttpLibrary, type RequestContext, type User,
} from '@kubernetes/client-node'
import YAML from 'yaml'

export interface KubeTargetOptions {
  /** --kubeconfig: this file only (like kubectl, it wins over $KUBECONFIG) */
  kubeconfig?: string
  /** --context: a context of the kubeconfig instead of its current-context */
  context?: string
  /** -n/--namespace: overrides the context's namespace */
  namespace?: string
  /** environment to read KUBECONFIG, HOME and KUBERNETES_SERVICE_HOST from (default process.env) */
  env?: NodeJS.ProcessEnv
  /**
   * --request-timeout, as kubectl takes it: how long one API request may take (`30s`, `1m`, `500ms`;
   * a bare number is seconds; `0`, the default, is no limit)
   */
  requestTimeout?: string
}

/** A resolved Kubernetes target: which server, as which context, in which namespace. */
export interface KubeTarget {
  config: KubeConfig
  context: string
  namespace: string
  server: string
  /** the kubeconfig files it came from (empty in-cluster) */
  files: string[]
}

export class KubeConfigError extends Error {
  override name = 'KubeConfigError'
}

/** An API request that got no (complete) answer within --request-timeout. */
export class KubeRequestTimeoutError extends Error {
  override name = 'KubeRequestTimeoutError'
  constructor(readonly timeoutMs: number, readonly url: string, override readonly cause?: unknown) {
    super(`no answer from ${url} within ${formatTimeout(timeoutMs)} (--request-timeout)`)
  }
}

/** 1500 → `1.5s`, 300 → `300ms`, 120000 → `2m` */
export function formatTimeout(ms: number): string {
  if (ms < 1000) return `${ms}ms`
  if (ms % 60_000 === 0 && ms >= 60_000) return `${ms / 60_000}m`
  return `${ms / 1000}s`
}

/**
 * The KubeConfig sideload hands to client-node, with what kubectl does and client-node does not:
 * a per-request timeout (--request-timeout) for API calls (the whole request, body included) and for
 * watches (until the server answers; the stream itself is not cut), and the cluster's TLS settings
 * (certificate-authority, tls-server-name, insecure-skip-tls-verify) also for a context without a user.
 */
export class SideloadKubeConfig extends KubeConfig {
  /** 0: no limit */
  requestTimeoutMs = 0

  override getCurrentUser(): User | null {
    const user = super.getCurrentUser()
    if (user) return user
    // a context without a user (anonymous, or a `kubectl proxy` kubeconfig): client-node would then
    // skip the cluster's CA and TLS options; an empty user keeps them
    return this.getContextObject(this.getCurrentContext()) ? {name: ''} : null
  }

  override makeApiClient<T extends ApiType>(apiClientType: new (config: ReturnType<typeof createConfiguration>) => T): T {
    if (this.requestTimeoutMs <= 0) return super.makeApiClient(apiClientType)
    const cluster = this.getCurrentCluster()
    if (!cluster) throw new Error('No active cluster!')
    return new apiClientType(createConfiguration({
      baseServer: new ServerConfiguration(cluster.server, {}),
      authMethods: {default: this},
      httpApi: wrapHttpLibrary(new TimeoutHttpLibrary(this.requestTimeoutMs)),
    }))
  }

  /** used by Watch: node-fetch's `timeout` bounds the wait for the response headers, not the stream */
  override async applyToFetchOptions(opts: https.RequestOptions): ReturnType<KubeConfig['applyToFetchOptions']> {
    const init = await super.applyToFetchOptions(opts)
    if (this.requestTimeoutMs > 0 && !init.timeout) init.timeout = this.requestTimeoutMs
    return init
  }
}

/** client-node's fetch, with an abort after `timeoutMs` that also covers reading the body. */
class TimeoutHttpLibrary implements PromiseHttpLibrary {
  private readonly inner = new IsomorphicFetchHttpLibrary()
  constructor(private readonly timeoutMs: number) {}

  async send(request: RequestContext): Promise<ResponseContext> {
    const controller = new AbortController()
    const outer = request.getSignal()
    request.setSignal(outer ? AbortSignal.any([outer, controller.signal]) : controller.signal)
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      controller.abort()
    }, this.timeoutMs)
    timer.unref()
    const failed = (err: unknown): never => {
      clearTimeout(timer)
      throw timedOut ? new KubeRequestTimeoutError(this.timeoutMs, request.getUrl(), err) : err
    }
    const guard = async <V>(read: () => Promise<V>): Promise<V> => {
      try {
        const v = await read()
        clearTimeout(timer)
        return v
      } catch (err) {
        return failed(err)
      }
    }
    try {
      const res = await this.inner.send(request).toPromise()
      return new ResponseContext(res.httpStatusCode, res.headers, {
        text: () => guard(() => res.body.text()),
        binary: () => guard(() => res.body.binary()),
      })
    } catch (err) {
      return failed(err)
    }
  }
}

const DURATION_UNITS: Record<string, number> = {ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000}

/** kubectl's --request-timeout: `0` (none), a bare number of seconds, or a Go duration (`1m30s`, `500ms`) → milliseconds. */
export function parseRequestTimeout(text: string): number {
  const t = text.trim()
  if (/^\d+$/.test(t)) return Number(t) * 1000
  const parts = /^(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h)/
  let rest = t
  let ms = 0
  if (rest === '') rest = 'x'
  while (rest !== '') {
    const m = parts.exec(rest)
    if (!m) throw new KubeConfigError(`--request-timeout ${text}: expected a duration such as 30s, 1m or 500ms (a bare number is seconds, 0 is no limit)`)
    const unit = /(ns|us|µs|ms|s|m|h)$/.exec(m[0])![1]
    ms += Number(m[0].slice(0, -unit.length)) * DURATION_UNITS[unit]
    rest = rest.slice(m[0].length)
  }
  return Math.round(ms)
}

function kubeconfigFiles(opts: KubeTargetOptions, env: NodeJS.ProcessEnv): string[] {
  if (opts.kubeconfig) {
    if (!fs.existsSync(opts.kubeconfig)) throw new KubeConfigError(`kubeconfig ${opts.kubeconfig} (--kubeconfig) does not exist`)
    return [path.resolve(opts.kubeconfig)]
  }
  if (env.KUBECONFIG) {
    // like kubectl: a path list; missing files are skipped; the first file to define a name wins
    const files = env.KUBECONFIG.split(path.delimiter).filter(f => f !== '').map(f => path.resolve(f))
    const existing = files.filter(f => fs.existsSync(f))
    if (existing.length === 0) throw new KubeConfigError(`none of the files in KUBECONFIG exists: ${files.join(', ')}`)
    return existing
  }
  const home = env.HOME ?? os.homedir()
  const def = path.join(home, '.kube', 'config')
  return fs.existsSync(def) ? [def] : []
}

/**
 * Loads the kubeconfig the way kubectl does: --kubeconfig, else $KUBECONFIG (merged, first wins),
 * else ~/.kube/config, else the in-cluster service account. Then --context and --namespace.
 */
export function loadKubeTarget(opts: KubeTargetOptions = {}): KubeTarget {
  const env = opts.env ?? process.env
  const requestTimeoutMs = opts.requestTimeout === undefined ? 0 : parseRequestTimeout(opts.requestTimeout)
  const files = kubeconfigFiles(opts, env)
  const config = new SideloadKubeConfig()
  config.requestTimeoutMs = requestTimeoutMs
  const unusable = new Map<string, string>()
  if (files.length === 0) {
    if (env.KUBERNETES_SERVICE_HOST) {
      config.loadFromCluster()
    } else {
      throw new KubeConfigError('no kubeconfig found: pass --kubeconfig FILE, set KUBECONFIG, or create ~/.kube/config')
    }
  } else {
    const clusters: Cluster[] = []
    const users: User[] = []
    const contexts: Context[] = []
    let currentContext = ''
    for (const file of files) {
      const one = new KubeConfig()
      try {
        one.loadFromFile(file)
      } catch (err) {
        throw new KubeConfigError(`cannot read kubeconfig ${file}: ${(err as Error).message}`)
      }
      const raw = rawUsers(file)
      for (const c of one.getClusters()) if (!clusters.some(x => x.name === c.name)) clusters.push(c)
      for (const u of one.getUsers()) if (!users.some(x => x.name === u.name)) users.push(asKubectlReadsIt(u, raw.get(u.name), file, unusable))
      for (const c of one.getContexts()) if (!contexts.some(x => x.name === c.name)) contexts.push(c)
      if (currentContext === '' && one.getCurrentContext()) currentContext = one.getCurrentContext()
    }
    // kubectl talks plain HTTP to an http:// server (e.g. `kubectl proxy`); client-node refuses
    // unless skipTLSVerify is set, which means nothing without TLS
    const plain = clusters.map(c => (/^http:\/\//i.test(c.server) && !c.skipTLSVerify ? {...c, skipTLSVerify: true} : c))
    config.loadFromOptions({clusters: plain, users, contexts, currentContext})
  }
  if (opts.context) {
    if (!config.getContextObject(opts.context)) {
      const known = config.getContexts().map(c => c.name)
      throw new KubeConfigError(`context "${opts.context}" is not in ${files.join(', ') || 'the kubeconfig'} (contexts: ${known.join(', ') || 'none'})`)
    }
    config.setCurrentContext(opts.context)
  }
  const context = config.getCurrentContext()
  const ctx = config.getContextObject(context)
  if (!ctx && files.length > 0) {
    throw new KubeConfigError(`${files.join(', ')} has no current context: pass --context NAME or run kubectl config use-context NAME`)
  }
  const cluster = config.getCurrentCluster()
  if (!cluster) throw new KubeConfigError(`context "${context}" names cluster "${ctx?.cluster ?? ''}", which is not in ${files.join(', ')}`)
  if (ctx?.user && unusable.has(ctx.user)) throw new KubeConfigError(unusable.get(ctx.user)!)
  if (ctx?.user) withExecInfo(config, ctx.user, cluster)
  const namespace = opts.namespace || ctx?.namespace || inClusterNamespace(files) || 'default'
  return {config, context, namespace, server: cluster.server, files}
}

/** The users of a kubeconfig file as written (for the fields client-node does not read). */
function rawUsers(file: string): Map<string, Record<string, unknown>> {
  const out = new Map<string, Record<string, unknown>>()
  try {
    const doc = YAML.parse(fs.readFileSync(file, 'utf8')) as {users?: {name?: string; user?: Record<string, unknown>}[]} | null
    for (const u of doc?.users ?? []) if (u?.name && u.user) out.set(u.name, u.user)
  } catch {
    // client-node already read it; nothing more to learn
  }
  return out
}

/**
 * A user of `file` as kubectl reads it: tokenFile, and an exec command relative to the file's folder.
 * A tokenFile that cannot be read is an error only when that user is used (`unusable`), as in kubectl.
 */
function asKubectlReadsIt(user: User, raw: Record<string, unknown> | undefined, file: string, unusable: Map<string, string>): User {
  let u = user
  // kubectl's key is `tokenFile` (client-node reads only `token-file`); `token` wins when both are set
  const tokenFile = raw?.tokenFile
  if (!u.token && typeof tokenFile === 'string' && tokenFile !== '') {
    const p = path.resolve(path.dirname(file), tokenFile)
    try {
      u = {...u, token: fs.readFileSync(p, 'utf8').trim()}
    } catch (err) {
      unusable.set(u.name, `user "${u.name}" in ${file}: cannot read its tokenFile ${p}: ${(err as Error).message}`)
    }
  }
  // kubectl: an exec command with a slash in it is relative to the kubeconfig's folder; without one, it is looked up in PATH
  const exec = u.exec as {command?: unknown} | undefined
  if (exec && typeof exec.command === 'string' && exec.command.includes('/') && !path.isAbsolute(exec.command)) {
    u = {...u, exec: {...exec, command: path.resolve(path.dirname(file), exec.command)}}
  }
  return u
}

/** Like kubectl, tells an exec credential plugin how it is called (KUBERNETES_EXEC_INFO). */
function withExecInfo(config: KubeConfig, userName: string, cluster: Cluster): void {
  const user = config.getUser(userName)
  const exec = user?.exec as {apiVersion?: string; env?: {name: string; value: string}[] | null; provideClusterInfo?: boolean} | undefined
  if (!user || !exec) return
  const info = {
    apiVersion: exec.apiVersion ?? 'client.authentication.k8s.io/v1beta1', kind: 'ExecCredential',
    spec: {
      interactive: false,
      ...(exec.provideClusterInfo ? {cluster: {
        server: cluster.server, 'tls-server-name': cluster.tlsServerName, 'insecure-skip-tls-verify': cluster.skipTLSVerify || undefined,
        'certificate-authority-data': clusterCaData(cluster), 'proxy-url': cluster.proxyUrl,
      }} : {}),
    },
  }
  const env = [...(exec.env ?? []).filter(e => e.name !== 'KUBERNETES_EXEC_INFO'), {name: 'KUBERNETES_EXEC_INFO', value: JSON.stringify(info)}]
  const users = config.getUsers().map(u => (u.name === userName ? {...u, exec: {...exec, env}} : u))
  config.loadFromOptions({clusters: config.getClusters(), users, contexts: config.getContexts(), currentContext: config.getCurrentContext()})
}

function clusterCaData(cluster: Cluster): string | undefined {
  if (cluster.caData) return cluster.caData
  try {
    return cluster.caFile ? fs.readFileSync(cluster.caFile).toString('base64') : undefined
  } catch {
    return undefined
  }
}

function inClusterNamespace(files: string[]): string | undefined {
  if (files.length > 0) return undefined
  try {
    return fs.readFileSync('/var/run/secrets/kubernetes.io/serviceaccount/namespace', 'utf8').trim() || undefined
  } catch {
    return undefined
  }
}
