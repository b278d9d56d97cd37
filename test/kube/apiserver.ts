// A Kubernetes API server for tests: HTTPS with a generated CA, bearer tokens and client certificates,
// an RBAC-like rule list per user, discovery + /openapi/v2 + /version for kubectl, and core/v1
// get/list/watch/create/update/patch/delete with the real API's Status bodies and table output.
import * as fs from 'node:fs'
import * as https from 'node:https'
import type {IncomingMessage, ServerResponse} from 'node:http'
import * as os from 'node:os'
import * as path from 'node:path'
import * as crypto from 'node:crypto'
import type {TLSSocket} from 'node:tls'
import YAML from 'yaml'
import type {Json, JsonObject} from './patch.js'
import {type ResourceType, apiVersionOf} from './resources.js'
import {rbacAllows} from './rbac.js'
import {SelectorError, parseFieldSelector, parseLabelSelector} from './selectors.js'
import {ApiError, badRequest, conflict, forbidden, methodNotAllowed, pathNotFound, unauthorized} from './status.js'
import {type Filter, Store, type WatchEvent, patchTypeOf} from './store.js'
import {type ClientCert, type TestPki, createClientCert, createPki} from './tls.js'

export const SERVER_VERSION = {
  major: '1', minor: '20', gitVersion: 'v1.20.15', gitCommit: '8f1e5bf0b9729a899b8df86249b56e2c74aebc55',
  gitTreeState: 'clean', buildDate: '2022-01-19T17:23:01Z', goVersion: 'go1.15.15', compiler: 'gc', platform: 'linux/amd64',
}

/** One RBAC-style rule: the verbs allowed on the resources ("pods", "pods/status", "*"). */
export interface AccessRule {
  verbs: string[]
  resources: string[]
  /** default [''] (core); '*' for any */
  apiGroups?: string[]
  namespaces?: string[]
}

export interface UserSpec {
  token?: string
  /**
   * 'all' = cluster-admin; a rule list = only those verbs (anything else is 403 Forbidden);
   * 'rbac' = what the stored ClusterRoleBindings/RoleBindings grant (kubectl apply -f manifests/rbac.yaml)
   */
  rules: AccessRule[] | 'all' | 'rbac'
  groups?: string[]
}

export interface ApiServerOptions {
  /** directory for the PKI and kubeconfig files (default: a fresh temp dir, removed by stop()) */
  dir?: string
  /** number of changes a watch can resume from; older resourceVersions get 410 */
  watchWindow?: number
  /** how often watches that allow bookmarks get a BOOKMARK event (real: ~1 min) */
  bookmarkIntervalMs?: number
  /** namespace written into the kubeconfig's context (default "default") */
  namespace?: string
  port?: number
}

export interface ApiServer {
  url: string
  /** kubeconfig of the admin user (bearer token) */
  kubeconfigPath: string
  caPath: string
  token: string
  dir: string
  store: Store
  /** adds (or replaces) a user; returns a kubeconfig path using its bearer token */
  addUser(name: string, spec: UserSpec): {token: string; kubeconfigPath: string}
  /** a kubeconfig that authenticates `name` with a client certificate instead of a token */
  addCertUser(name: string, spec: UserSpec): {kubeconfigPath: string; cert: ClientCert}
  setRules(name: string, rules: UserSpec['rules']): void
  /** a token and kubeconfig for the service account NAMESPACE/NAME, authorized by the stored RBAC objects */
  serviceAccountKubeconfig(namespace: string, name: string): {token: string; kubeconfigPath: string}
  /** ends every open watch, as a server restart or watch timeout would */
  dropWatches(): void
  /** every request served so far: method, path with query, user */
  requests: {method: string; url: string; user: string}[]
  stop(): Promise<void>
}

interface Route {
  resource: ResourceType
  namespace?: string
  name?: string
  subresource?: string
}

function send(res: ServerResponse, code: number, body: Json): void {
  const text = JSON.stringify(body)
  res.writeHead(code, {'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'Content-Length': Buffer.byteLength(text)})
  res.end(text)
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of req) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

function parseJson(buf: Buffer): Json {
  try {
    return JSON.parse(buf.toString('utf8')) as Json
  } catch (e) {
    try {
      return YAML.parse(buf.toString('utf8')) as Json
    } catch {
      throw badRequest(`the body of the request could not be decoded: ${(e as Error).message}`)
    }
  }
}

/** A minimal OpenAPI v2 document in protobuf (gnostic openapi_v2.Document: swagger=1, info=2{title=1, version=2}). */
function openApiProtobuf(): Buffer {
  const field = (no: number, payload: Buffer): Buffer => Buffer.concat([Buffer.from([(no << 3) | 2, payload.length]), payload])
  const info = Buffer.concat([field(1, Buffer.from('Kubernetes')), field(2, Buffer.from(SERVER_VERSION.gitVersion))])
  return Buffer.concat([field(1, Buffer.from('2.0')), field(2, info)])
}

interface TableWanted {
  version: 'v1' | 'v1beta1'
  include: 'None' | 'Metadata' | 'Object'
}

function tableWanted(req: IncomingMessage, query: URLSearchParams): TableWanted | undefined {
  const accept = req.headers.accept ?? ''
  for (const part of accept.split(',')) {
    const params = part.split(';').map(s => s.trim())
    if (params.includes('as=Table') && params.includes('g=meta.k8s.io')) {
      const include = (query.get('includeObject') ?? 'Metadata') as TableWanted['include']
      return {version: params.includes('v=v1beta1') ? 'v1beta1' : 'v1', include}
    }
    if (params[0] === 'application/json' && params.length === 1) return undefined
  }
  return undefined
}

function managerOf(req: IncomingMessage, query: URLSearchParams): string {
  const fm = query.get('fieldManager')
  if (fm) return fm
  const ua = req.headers['user-agent'] ?? 'unknown'
  return ua.split('/')[0].slice(0, 128)
}

export async function startApiServer(opts: ApiServerOptions = {}): Promise<ApiServer> {
  const ownDir = opts.dir === undefined
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'sideload-apiserver-'))
  fs.mkdirSync(dir, {recursive: true})
  const pki: TestPki = createPki(path.join(dir, 'pki'))
  const store = new Store({watchWindow: opts.watchWindow})
  const bookmarkMs = opts.bookmarkIntervalMs ?? 60_000
  const users = new Map<string, UserSpec>()
  const tokens = new Map<string, string>()
  const requests: ApiServer['requests'] = []
  const openWatches = new Set<() => void>()

  const addUserSpec = (name: string, spec: UserSpec): string => {
    const token = spec.token ?? crypto.randomBytes(24).toString('hex')
    for (const [t, u] of tokens) if (u === name) tokens.delete(t)
    tokens.set(token, name)
    users.set(name, {...spec, token})
    return token
  }
  const adminToken = addUserSpec('admin', {rules: 'all'})

  const authenticate = (req: IncomingMessage): string => {
    const auth = req.headers.authorization
    if (auth?.startsWith('Bearer ')) {
      const user = tokens.get(auth.slice('Bearer '.length).trim())
      if (user === undefined) throw unauthorized()
      return user
    }
    const sock = req.socket as TLSSocket
    if (sock.authorized) {
      const cert = sock.getPeerCertificate()
      const cn = cert?.subject?.CN
      const user = Array.isArray(cn) ? cn[0] : cn
      if (user && users.has(user)) return user
    }
    throw unauthorized()
  }

  /** what the user's rules allow; the one decision behind every request and every SelfSubjectAccessReview */
  const allows = (user: string, verb: string, a: {group: string; resource: string; subresource?: string; name?: string; namespace?: string}): boolean => {
    const spec = users.get(user)
    if (spec?.rules === 'all') return true
    const res = a.subresource ? `${a.resource}/${a.subresource}` : a.resource
    if (spec?.rules === 'rbac') {
      const groups = [...(spec.groups ?? []), 'system:authenticated']
      const sa = /^system:serviceaccount:([^:]+):/.exec(user)
      if (sa) groups.push('system:serviceaccounts', `system:serviceaccounts:${sa[1]}`)
      return rbacAllows(store, {user, groups}, {verb, group: a.group, resource: a.resource, subresource: a.subresource,
        name: a.name, namespace: a.namespace})
    }
    return (spec?.rules ?? []).some(r =>
      (r.verbs.includes('*') || r.verbs.includes(verb)) &&
      (r.resources.includes('*') || r.resources.includes(res)) &&
      ((r.apiGroups ?? ['']).includes('*') || (r.apiGroups ?? ['']).includes(a.group)) &&
      (r.namespaces === undefined || a.namespace === undefined || r.namespaces.includes(a.namespace)))
  }

  const authorize = (user: string, verb: string, route: Route): void => {
    const group = route.resource.group
    if (!allows(user, verb, {group, resource: route.resource.name, subresource: route.subresource, name: route.name, namespace: route.namespace})) {
      throw forbidden(user, verb, route.resource.name, route.subresource ?? '', route.name ?? '', route.namespace ?? '', group)
    }
  }

  /**
   * POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews (what `kubectl auth can-i` sends):
   * every authenticated user may ask (system:basic-user); the answer comes from the same rules.
   */
  const selfSubjectAccessReview = async (req: IncomingMessage, res: ServerResponse, user: string): Promise<void> => {
    const body = parseJson(await readBody(req))
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw badRequest('the body must be an object')
    const spec = body.spec
    const ra = spec !== null && typeof spec === 'object' && !Array.isArray(spec) ? spec.resourceAttributes : undefined
    let allowed: boolean
    if (ra !== null && typeof ra === 'object' && !Array.isArray(ra)) {
      const str = (k: string): string | undefined => (typeof ra[k] === 'string' && ra[k] !== '' ? ra[k] as string : undefined)
      allowed = allows(user, str('verb') ?? '', {group: str('group') ?? '', resource: str('resource') ?? '', subresource: str('subresource'),
        name: str('name'), namespace: str('namespace')})
    } else {
      allowed = users.get(user)?.rules === 'all' // nonResourceAttributes: only cluster-admin here
    }
    const status: JsonObject = allowed ? {allowed: true, reason: 'allowed by the test server\'s rules'} : {allowed: false}
    send(res, 201, {kind: 'SelfSubjectAccessReview', apiVersion: 'authorization.k8s.io/v1', metadata: {creationTimestamp: null},
      spec: spec ?? {}, status})
  }

  let url = ''
  const discovery = (p: string): Json | undefined => {
    if (p === '/version' || p === '/version/') return SERVER_VERSION
    if (p === '/api' || p === '/api/') {
      return {kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{clientCIDR: '0.0.0.0/0', serverAddress: url.replace(/^https:\/\//, '')}]}
    }
    const groups = [...new Set([...store.types.values()].map(t => t.group).filter(g => g !== ''))]
    const groupEntry = (g: string): JsonObject => ({name: g, versions: [{groupVersion: `${g}/v1`, version: 'v1'}],
      preferredVersion: {groupVersion: `${g}/v1`, version: 'v1'}})
    if (p === '/apis' || p === '/apis/') return {kind: 'APIGroupList', apiVersion: 'v1', groups: groups.map(groupEntry)}
    const gm = /^\/apis\/([^/]+)\/?$/.exec(p)
    if (gm && groups.includes(gm[1])) return {kind: 'APIGroup', apiVersion: 'v1', ...groupEntry(gm[1])}
    const vm = /^\/api\/v1\/?$/.test(p) ? '' : /^\/apis\/([^/]+)\/v1\/?$/.exec(p)?.[1]
    if (vm !== undefined && (vm === '' || groups.includes(vm))) {
      const resources: Json[] = []
      for (const t of store.types.values()) {
        if (t.group !== vm) continue
        const entry: JsonObject = {name: t.name, singularName: '', namespaced: t.namespaced, kind: t.kind, verbs: t.verbs}
        if (t.shortNames.length) entry.shortNames = t.shortNames
        if (t.categories.length) entry.categories = t.categories
        resources.push(entry)
        for (const sub of t.subresources) {
          resources.push({name: `${t.name}/${sub}`, singularName: '', namespaced: t.namespaced, kind: t.kind, verbs: ['get', 'patch', 'update']})
        }
      }
      return {kind: 'APIResourceList', groupVersion: vm === '' ? 'v1' : `${vm}/v1`, resources}
    }
    return undefined
  }

  const route = (p: string): Route => {
    const gm = /^\/apis\/([^/]+)\/v1\//.exec(p)
    const group = gm ? gm[1] : ''
    const parts = p.replace(/^\/api\/v1\/?/, '').replace(/^\/apis\/[^/]+\/v1\//, '').split('/').filter(s => s !== '').map(decodeURIComponent)
    let namespace: string | undefined
    if (parts[0] === 'namespaces' && parts.length >= 3 && !['status', 'finalize'].includes(parts[2])) {
      namespace = parts[1]
      parts.splice(0, 2)
    }
    const resource = store.types.get(parts[0] ?? '')
    if (!resource || resource.group !== group || parts.length > 3) throw pathNotFound()
    if (resource.namespaced === false && namespace !== undefined) throw pathNotFound()
    const r: Route = {resource, namespace, name: parts[1], subresource: parts[2]}
    if (r.subresource !== undefined && !resource.subresources.includes(r.subresource)) throw pathNotFound()
    return r
  }

  const asTable = (t: ResourceType, items: JsonObject[], rv: string, want: TableWanted, withColumns = true): JsonObject => {
    const now = Date.now()
    return {
      kind: 'Table', apiVersion: `meta.k8s.io/${want.version}`, metadata: {resourceVersion: rv},
      columnDefinitions: withColumns ? t.columns : [],
      rows: items.map(o => {
        const row: JsonObject = {cells: t.row(o, now)}
        if (want.include === 'Object') row.object = o
        else if (want.include === 'Metadata') {
          row.object = {kind: 'PartialObjectMetadata', apiVersion: `meta.k8s.io/${want.version}`, metadata: o.metadata ?? {}}
        }
        return row
      }),
    }
  }

  const filterOf = (r: Route, q: URLSearchParams): Filter => {
    try {
      const fields = parseFieldSelector(q.get('fieldSelector') ?? undefined)
      store.checkFieldSelector(r.resource.name, fields)
      return {namespace: r.namespace, labels: parseLabelSelector(q.get('labelSelector') ?? undefined), fields}
    } catch (e) {
      if (e instanceof SelectorError) throw badRequest(e.message)
      throw e
    }
  }

  const serveWatch = (req: IncomingMessage, res: ServerResponse, r: Route, q: URLSearchParams, table?: TableWanted): void => {
    const filter = filterOf(r, q)
    const rvParam = q.get('resourceVersion')
    const fromRv = rvParam === null || rvParam === '' ? undefined : Number(rvParam)
    if (fromRv !== undefined && !Number.isFinite(fromRv)) throw badRequest(`invalid resource version: ${rvParam}`)
    let headersSent = false
    let first = true
    const buffered: WatchEvent[] = []
    const write = (e: WatchEvent): void => {
      if (!headersSent) {
        buffered.push(e)
        return
      }
      let object: JsonObject = e.object
      if (table && (e.type === 'ADDED' || e.type === 'MODIFIED' || e.type === 'DELETED')) {
        object = asTable(r.resource, [e.object], String((e.object.metadata as JsonObject | undefined)?.resourceVersion ?? ''), table, first)
        first = false
      }
      res.write(`${JSON.stringify({type: e.type, object})}\n`)
    }
    let cancel: () => void
    try {
      cancel = store.watch(r.resource.name, filter, fromRv, write)
    } catch (e) {
      if (e instanceof ApiError && e.code === 410) {
        // the real server answers 200 and sends the 410 Status as an ERROR event
        res.writeHead(200, {'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked'})
        res.end(`${JSON.stringify({type: 'ERROR', object: e.status})}\n`)
        return
      }
      throw e
    }
    res.writeHead(200, {'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked'})
    res.flushHeaders()
    headersSent = true
    for (const e of buffered.splice(0)) write(e)
    const timers: NodeJS.Timeout[] = []
    if (q.get('allowWatchBookmarks') === 'true' || q.get('allowWatchBookmarks') === '1') {
      timers.push(setInterval(() => write({type: 'BOOKMARK', object: {
        kind: r.resource.kind, apiVersion: apiVersionOf(r.resource), metadata: {resourceVersion: String(store.resourceVersion)},
      }}), bookmarkMs))
    }
    const stop = (): void => {
      cancel()
      for (const t of timers) clearInterval(t)
      openWatches.delete(stop)
      if (!res.writableEnded) res.end()
    }
    const timeout = Number(q.get('timeoutSeconds') ?? '0')
    if (timeout > 0) timers.push(setTimeout(stop, timeout * 1000))
    openWatches.add(stop)
    req.on('close', stop)
    res.on('close', stop)
  }

  const handleResource = async (req: IncomingMessage, res: ServerResponse, user: string, p: string, q: URLSearchParams): Promise<void> => {
    const r = route(p)
    const t = r.resource
    const method = req.method ?? 'GET'
    const manager = managerOf(req, q)
    const table = method === 'GET' ? tableWanted(req, q) : undefined
    const isWatch = q.get('watch') === 'true' || q.get('watch') === '1'
    const nsForStore = t.namespaced ? r.namespace : undefined
    const subresource = r.subresource === 'status' ? 'status' as const : undefined

    if (method === 'GET' && r.name === undefined) {
      authorize(user, isWatch ? 'watch' : 'list', r)
      if (isWatch) return serveWatch(req, res, r, q, table)
      const filter = filterOf(r, q)
      const rv = q.get('resourceVersion')
      if (rv !== null && rv !== '' && rv !== '0' && (q.get('resourceVersionMatch') === 'Exact' || q.get('limit') !== null)) {
        store.checkListResourceVersion(Number(rv))
      }
      const list = store.list(t.name, filter)
      if (table) return send(res, 200, asTable(t, list.items, list.resourceVersion, table))
      for (const o of list.items) {
        delete o.kind
        delete o.apiVersion
      }
      return send(res, 200, {kind: `${t.kind}List`, apiVersion: apiVersionOf(t), metadata: {resourceVersion: list.resourceVersion}, items: list.items})
    }
    if (method === 'GET') {
      authorize(user, isWatch ? 'watch' : 'get', r)
      if (isWatch) {
        q.set('fieldSelector', `metadata.name=${r.name}`)
        return serveWatch(req, res, {...r, name: undefined}, q, table)
      }
      const o = store.get(t.name, nsForStore, r.name ?? '')
      if (table) return send(res, 200, asTable(t, [o], String((o.metadata as JsonObject).resourceVersion), table))
      return send(res, 200, o)
    }
    if (method === 'POST' && r.name === undefined) {
      authorize(user, 'create', r)
      const body = parseJson(await readBody(req))
      if (body === null || typeof body !== 'object' || Array.isArray(body)) throw badRequest('the body must be an object')
      if (body.kind !== undefined && body.kind !== t.kind) {
        throw badRequest(`the API version in the data (${String(body.apiVersion)}) does not match the expected API version (${apiVersionOf(t)})`)
      }
      if (q.get('dryRun') === 'All') return send(res, 201, body)
      return send(res, 201, store.create(t.name, nsForStore, body, {manager}))
    }
    if (r.name === undefined) throw methodNotAllowed()
    if (method === 'PUT') {
      authorize(user, 'update', r)
      const body = parseJson(await readBody(req))
      if (body === null || typeof body !== 'object' || Array.isArray(body)) throw badRequest('the body must be an object')
      return send(res, 200, store.update(t.name, nsForStore, r.name, body, {manager, subresource}))
    }
    if (method === 'PATCH') {
      authorize(user, 'patch', r)
      const type = patchTypeOf(req.headers['content-type'])
      const body = parseJson(await readBody(req))
      return send(res, 200, store.patch(t.name, nsForStore, r.name, type, body, {manager, subresource}))
    }
    if (method === 'DELETE') {
      authorize(user, 'delete', r)
      const raw = await readBody(req)
      if (raw.length > 0) {
        const opts = parseJson(raw)
        const pre = opts !== null && typeof opts === 'object' && !Array.isArray(opts) ? opts.preconditions : undefined
        if (pre !== null && typeof pre === 'object' && !Array.isArray(pre) && pre.resourceVersion !== undefined) {
          const cur = store.get(t.name, nsForStore, r.name)
          if ((cur.metadata as JsonObject).resourceVersion !== pre.resourceVersion) {
            throw new ApiError({...conflict(t.name, r.name).status,
              message: `Operation cannot be fulfilled on ${t.name} "${r.name}": Precondition failed: ResourceVersion in precondition: ${String(pre.resourceVersion)}, ResourceVersion in object meta: ${String((cur.metadata as JsonObject).resourceVersion)}`})
          }
        }
      }
      return send(res, 200, store.delete(t.name, nsForStore, r.name))
    }
    throw methodNotAllowed()
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const u = new URL(req.url ?? '/', 'https://localhost')
    const p = u.pathname
    let user = '-'
    try {
      if (p === '/healthz' || p === '/livez' || p === '/readyz') {
        res.writeHead(200, {'Content-Type': 'text/plain'})
        res.end('ok')
        return
      }
      user = authenticate(req)
      requests.push({method: req.method ?? 'GET', url: req.url ?? '', user})
      if (p === '/openapi/v2') {
        if ((req.headers.accept ?? '').includes('protobuf')) {
          const buf = openApiProtobuf()
          res.writeHead(200, {'Content-Type': 'application/octet-stream', 'Content-Length': buf.length})
          res.end(buf)
          return
        }
        return send(res, 200, {swagger: '2.0', info: {title: 'Kubernetes', version: SERVER_VERSION.gitVersion}, paths: {}, definitions: {}})
      }
      const d = discovery(p)
      if (d !== undefined) return send(res, 200, d)
      if (p === '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews') {
        if (req.method !== 'POST') throw methodNotAllowed()
        return await selfSubjectAccessReview(req, res, user)
      }
      if (!p.startsWith('/api/v1/') && !/^\/apis\/[^/]+\/v1\//.test(p)) throw pathNotFound()
      await handleResource(req, res, user, p, u.searchParams)
    } catch (e) {
      if (res.headersSent) {
        res.destroy()
        return
      }
      if (e instanceof ApiError) return send(res, e.code, e.status)
      send(res, 500, {kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `Internal error occurred: ${(e as Error).message}`, reason: 'InternalError', code: 500})
    }
  }

  const server = https.createServer({
    cert: fs.readFileSync(pki.serverCertPath), key: fs.readFileSync(pki.serverKeyPath),
    ca: fs.readFileSync(pki.caCertPath), requestCert: true, rejectUnauthorized: false,
  }, (req, res) => {
    void handle(req, res)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve())
  })
  const addr = server.address()
  if (addr === null || typeof addr === 'string') throw new Error('test API server did not get a TCP address')
  url = `https://127.0.0.1:${addr.port}`
  const caData = fs.readFileSync(pki.caCertPath).toString('base64')
  const namespace = opts.namespace ?? 'default'

  const writeKubeconfig = (file: string, userName: string, user: JsonObject): string => {
    const cfg = {
      apiVersion: 'v1', kind: 'Config', preferences: {},
      clusters: [{name: 'sideload-test', cluster: {server: url, 'certificate-authority-data': caData}}],
      users: [{name: userName, user}],
      contexts: [{name: `${userName}@sideload-test`, context: {cluster: 'sideload-test', user: userName, namespace}}],
      'current-context': `${userName}@sideload-test`,
    }
    const full = path.join(dir, file)
    fs.writeFileSync(full, YAML.stringify(cfg), {mode: 0o600})
    return full
  }
  const kubeconfigPath = writeKubeconfig('kubeconfig', 'admin', {token: adminToken})

  return {
    url, kubeconfigPath, caPath: pki.caCertPath, token: adminToken, dir, store, requests,
    addUser(name, spec) {
      const token = addUserSpec(name, spec)
      return {token, kubeconfigPath: writeKubeconfig(`kubeconfig-${name}`, name, {token})}
    },
    addCertUser(name, spec) {
      addUserSpec(name, spec)
      const cert = createClientCert(pki, name)
      return {cert, kubeconfigPath: writeKubeconfig(`kubeconfig-${name}-cert`, name, {
        'client-certificate-data': fs.readFileSync(cert.certPath).toString('base64'),
        'client-key-data': fs.readFileSync(cert.keyPath).toString('base64'),
      })}
    },
    dropWatches() {
      for (const stop of [...openWatches]) stop()
    },
    serviceAccountKubeconfig(namespace, name) {
      const user = `system:serviceaccount:${namespace}:${name}`
      const token = addUserSpec(user, {rules: 'rbac'})
      return {token, kubeconfigPath: writeKubeconfig(`kubeconfig-sa-${namespace}-${name}`, `${namespace}-${name}`, {token})}
    },
    setRules(name, rules) {
      const u = users.get(name)
      if (!u) throw new Error(`no such user ${name}`)
      u.rules = rules
    },
    async stop() {
      for (const stop of [...openWatches]) stop()
      await new Promise<void>(resolve => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
      if (ownDir) fs.rmSync(dir, {recursive: true, force: true})
    },
  }
}
