// A small JSON client of the real API server for the test's own actors (the kubelet, scheduler and
// kube-proxy stand-ins, the admin who sets a scene), each with its own identity: a client
// certificate (CN = user, O = groups) the server maps as it maps a real kubelet's. Not sideload's
// code path (that is src/kube/, on @kubernetes/client-node): the actors must not share its bugs.
import * as fs from 'node:fs'
import * as https from 'node:https'

export type JsonObject = {[k: string]: Json}
export type Json = string | number | boolean | null | Json[] | JsonObject

export interface RestIdentity {
  url: string
  caPath: string
  certPath?: string
  keyPath?: string
  token?: string
}

export class RestError extends Error {
  constructor(readonly status: number, readonly verb: string, readonly path: string, readonly body: JsonObject | undefined, text: string) {
    super(`${verb} ${path}: ${status} ${typeof body?.message === 'string' ? body.message : text.slice(0, 300)}`)
  }
}

export interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR'
  object: JsonObject
}

export type PatchType = 'merge' | 'strategic' | 'json'
const PATCH_CONTENT: Record<PatchType, string> = {
  merge: 'application/merge-patch+json',
  strategic: 'application/strategic-merge-patch+json',
  json: 'application/json-patch+json',
}

export function obj(v: Json | undefined): JsonObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? v : {}
}
export function arr(v: Json | undefined): JsonObject[] {
  return Array.isArray(v) ? v.map(obj) : []
}
export function str(v: Json | undefined): string {
  return typeof v === 'string' ? v : ''
}

/** `/api/v1/namespaces/NS/pods/NAME` and friends (core group only, which is all the actors touch). */
export function corePath(resource: string, namespace?: string, name?: string, subresource?: string): string {
  return `/api/v1${namespace ? `/namespaces/${encodeURIComponent(namespace)}` : ''}/${resource}` +
    `${name ? `/${encodeURIComponent(name)}` : ''}${subresource ? `/${subresource}` : ''}`
}

function query(q: Record<string, string | number | boolean | undefined>): string {
  const parts = Object.entries(q).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${encodeURIComponent(String(v))}`)
  return parts.length > 0 ? `?${parts.join('&')}` : ''
}

export class Rest {
  private readonly agent: https.Agent
  private readonly base: URL

  constructor(readonly identity: RestIdentity) {
    this.base = new URL(identity.url)
    this.agent = new https.Agent({
      keepAlive: true,
      ca: fs.readFileSync(identity.caPath),
      ...(identity.certPath && identity.keyPath ? {cert: fs.readFileSync(identity.certPath), key: fs.readFileSync(identity.keyPath)} : {}),
    })
  }

  private request(verb: string, path: string, body?: unknown, contentType = 'application/json'): Promise<JsonObject> {
    return new Promise((resolve, reject) => {
      const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
      const req = https.request({
        host: this.base.hostname, port: this.base.port, path, method: verb, agent: this.agent, timeout: 30_000,
        headers: {
          accept: 'application/json',
          ...(this.identity.token ? {authorization: `Bearer ${this.identity.token}`} : {}),
          ...(data ? {'content-type': contentType, 'content-length': data.length} : {}),
        },
      }, res => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString()
          let parsed: JsonObject | undefined
          try {
            parsed = text ? JSON.parse(text) as JsonObject : {}
          } catch {
            parsed = undefined
          }
          if ((res.statusCode ?? 0) >= 300 || parsed === undefined) reject(new RestError(res.statusCode ?? 0, verb, path, parsed, text))
          else resolve(parsed)
        })
        res.on('error', reject)
      })
      req.on('timeout', () => req.destroy(new Error(`${verb} ${path}: no answer within 30 s`)))
      req.on('error', reject)
      req.end(data)
    })
  }

  get(path: string): Promise<JsonObject> {
    return this.request('GET', path)
  }
  /** undefined on 404 */
  async tryGet(path: string): Promise<JsonObject | undefined> {
    try {
      return await this.get(path)
    } catch (err) {
      if (err instanceof RestError && err.status === 404) return undefined
      throw err
    }
  }
  list(path: string, q: {labelSelector?: string; fieldSelector?: string} = {}): Promise<{items: JsonObject[]; resourceVersion: string}> {
    return this.get(path + query(q)).then(l => ({items: arr(l.items), resourceVersion: str(obj(l.metadata).resourceVersion)}))
  }
  create(path: string, body: JsonObject): Promise<JsonObject> {
    return this.request('POST', path, body)
  }
  put(path: string, body: JsonObject): Promise<JsonObject> {
    return this.request('PUT', path, body)
  }
  patch(path: string, body: unknown, type: PatchType = 'strategic'): Promise<JsonObject> {
    return this.request('PATCH', path, body, PATCH_CONTENT[type])
  }
  delete(path: string, options: JsonObject = {}): Promise<JsonObject> {
    return this.request('DELETE', path, {apiVersion: 'v1', kind: 'DeleteOptions', ...options})
  }

  /**
   * Watches `path` from `resourceVersion` (bookmarks asked for); `onEvent` gets each event, `onEnd`
   * the reason the stream ended (undefined: the server closed it, e.g. its timeout or a restart).
   */
  watch(path: string, q: {resourceVersion: string; labelSelector?: string; fieldSelector?: string; timeoutSeconds?: number},
    onEvent: (e: WatchEvent) => void, onEnd: (err?: Error) => void): () => void {
    let ended = false
    const end = (err?: Error): void => {
      if (ended) return
      ended = true
      onEnd(err)
    }
    const req = https.request({
      host: this.base.hostname, port: this.base.port, method: 'GET', agent: this.agent,
      path: path + query({watch: 1, allowWatchBookmarks: true, ...q}),
      headers: {accept: 'application/json', ...(this.identity.token ? {authorization: `Bearer ${this.identity.token}`} : {})},
    }, res => {
      if ((res.statusCode ?? 0) !== 200) {
        let text = ''
        res.on('data', (c: Buffer) => (text += c.toString()))
        res.on('end', () => end(new RestError(res.statusCode ?? 0, 'WATCH', path, undefined, text)))
        return
      }
      let buf = ''
      res.on('data', (c: Buffer) => {
        buf += c.toString()
        let nl: number
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim()
          buf = buf.slice(nl + 1)
          if (!line) continue
          try {
            onEvent(JSON.parse(line) as WatchEvent)
          } catch (err) {
            end(err as Error)
            req.destroy()
            return
          }
        }
      })
      res.on('end', () => end())
      res.on('error', err => end(err))
      res.on('close', () => end())
    })
    req.on('error', err => end(err))
    req.end()
    return () => {
      ended = true
      req.destroy()
    }
  }

  close(): void {
    this.agent.destroy()
  }
}
