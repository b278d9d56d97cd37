import {ApiException} from '@kubernetes/client-node'
import {RBAC_MANIFEST} from './access.js'
import {KubeRequestTimeoutError, formatTimeout} from './config.js'

/** What sideload was doing when an API call failed. */
export interface KubeAction {
  verb: string
  resource: string
  name?: string
  namespace?: string
}

export type KubeErrorKind = 'forbidden' | 'unauthorized' | 'not-found' | 'conflict' | 'already-exists' | 'invalid' |
  'expired' | 'unreachable' | 'tls' | 'other'

export interface StatusCause {
  field?: string
  message?: string
  reason?: string
}

/** An API failure: a sentence naming the resource (`message`), and the way out (`hint`). */
export class KubeError extends Error {
  override name = 'KubeError'
  constructor(
    message: string,
    readonly kind: KubeErrorKind,
    readonly action: KubeAction,
    /** HTTP status (0 when the server was not reached) */
    readonly status: number,
    /** the API server's own message (Status.message) */
    readonly serverMessage: string,
    readonly causes: StatusCause[] = [],
    /** what the user can do about it */
    readonly hint?: string,
  ) {
    super(message)
  }

  /** for programs (--json): the kind */
  get reason(): KubeErrorKind {
    return this.kind
  }
}

export function isKubeError(err: unknown, kind?: KubeErrorKind): err is KubeError {
  return err instanceof KubeError && (kind === undefined || err.kind === kind)
}

interface StatusBody {
  message?: string
  reason?: string
  code?: number
  details?: {causes?: StatusCause[]}
}

function statusBody(err: ApiException<unknown>): StatusBody {
  const raw = err.body
  if (typeof raw === 'string') {
    try {
      return JSON.parse(raw) as StatusBody
    } catch {
      return {message: raw}
    }
  }
  return raw !== null && typeof raw === 'object' ? (raw as StatusBody) : {}
}

function what(a: KubeAction): string {
  const singular = a.resource.replace(/s$/, '')
  return a.name ? `${singular} "${a.name}"` : a.resource
}

function where(a: KubeAction): string {
  return a.namespace ? ` in namespace "${a.namespace}"` : ''
}

const CONNECT_CODES = ['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ECONNRESET', 'EAI_AGAIN']

function errnoCode(err: unknown): string | undefined {
  let cur: unknown = err
  for (let i = 0; i < 4 && cur !== null && typeof cur === 'object'; i++) {
    const c = cur as {code?: unknown; errno?: unknown; cause?: unknown}
    if (typeof c.code === 'string') return c.code
    cur = c.cause
  }
  const m = /\b(E[A-Z]{4,}|(?:UNABLE_TO|SELF_SIGNED|DEPTH_ZERO|CERT)_[A-Z_]+)\b/.exec(String((err as Error)?.message ?? err))
  return m?.[1]
}

/**
 * Turns a client-node failure into a KubeError whose message says what failed, on which
 * resource, and what to do about it. `server` is the API server URL (for connection errors).
 */
export function describeKubeError(err: unknown, action: KubeAction, server: string): KubeError {
  if (err instanceof KubeError) return err
  // client-node's Watch reports a non-200 answer as an Error with statusCode
  const watchStatus = (err as {statusCode?: unknown} | null)?.statusCode
  if (err instanceof ApiException || typeof watchStatus === 'number') {
    const code = err instanceof ApiException ? err.code : Number(watchStatus)
    const body = err instanceof ApiException ? statusBody(err) : {message: `${code} ${String((err as Error).message)}`}
    const serverMessage = body.message ?? String((err as Error).message)
    const causes = body.details?.causes ?? []
    const subject = `${what(action)}${where(action)}`
    switch (code) {
      case 401:
        return new KubeError(`the API server ${server} rejected the credentials (401 Unauthorized) while trying to ${action.verb} ${subject}`,
          'unauthorized', action, 401, serverMessage, [],
          'the token or client certificate of this kubeconfig user is invalid or expired; log in again or fix the user in the kubeconfig')
      case 403:
        return new KubeError(`not allowed to ${action.verb} ${subject}: ${serverMessage}`, 'forbidden', action, 403, serverMessage, [],
          `sideload needs the rights in ${RBAC_MANIFEST} (kubectl apply -f ${RBAC_MANIFEST}, then bind the ClusterRole "sideload" to this user)`)
      case 404:
        return new KubeError(`${subject} not found (${serverMessage})`, 'not-found', action, 404, serverMessage, [],
          action.namespace ? `check the name and the namespace (-n), e.g. kubectl get ${action.resource} -n ${action.namespace}` : undefined)
      case 409:
        return body.reason === 'AlreadyExists'
          ? new KubeError(`${subject} already exists: ${serverMessage}`, 'already-exists', action, 409, serverMessage)
          : new KubeError(`${subject} changed while sideload updated it (${serverMessage})`, 'conflict', action, 409, serverMessage, [], 'run the command again')
      case 410:
        return new KubeError(`the API server no longer has the requested history of ${action.resource} (${serverMessage}); listing again`, 'expired', action, 410, serverMessage)
      case 422:
        return new KubeError(`the API server refused to ${action.verb} ${subject}: ${serverMessage}`, 'invalid', action, 422, serverMessage, causes)
      default:
        return new KubeError(`${action.verb} ${subject} failed: HTTP ${code}: ${serverMessage}`, 'other', action, code, serverMessage, causes)
    }
  }
  const code = errnoCode(err)
  const message = String((err as Error)?.message ?? err)
  // --request-timeout: our own abort (API calls), node-fetch's timeout (watches: until the headers)
  const fetchType = (err as {type?: unknown} | null)?.type
  if (err instanceof KubeRequestTimeoutError || fetchType === 'request-timeout' || fetchType === 'body-timeout') {
    const within = err instanceof KubeRequestTimeoutError ? `within ${formatTimeout(err.timeoutMs)}` : 'in time'
    return new KubeError(`the Kubernetes API server ${server} did not answer ${within} (--request-timeout) to ${action.verb} ${what(action)}`, 'unreachable', action, 0, message, [],
      'is the cluster running and is this the right context? (check: kubectl cluster-info, or pass --context/--kubeconfig)')
  }
  if (code && CONNECT_CODES.includes(code)) {
    const why = code === 'ECONNREFUSED' ? 'connection refused' : code === 'ENOTFOUND' || code === 'EAI_AGAIN' ? 'host name not found'
      : code === 'ETIMEDOUT' ? 'timed out' : code
    return new KubeError(`cannot reach the Kubernetes API server ${server} (${why}) to ${action.verb} ${what(action)}`, 'unreachable', action, 0, message, [],
      'is the cluster running and is this the right context? (check: kubectl cluster-info, or pass --context/--kubeconfig)')
  }
  if (code && /CERT|SELF_SIGNED|UNABLE_TO|DEPTH_ZERO/.test(code)) {
    return new KubeError(`TLS verification of the API server ${server} failed (${code})`, 'tls', action, 0, message, [],
      'the kubeconfig\'s certificate-authority does not match this server')
  }
  return new KubeError(`${action.verb} ${what(action)}${where(action)} failed: ${message}`, 'other', action, 0, message)
}
