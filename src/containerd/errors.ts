import * as grpc from '@grpc/grpc-js'

/** A failed containerd call: what failed (naming where it called), the gRPC status, and what to do. */
export class ContainerdError extends Error {
  /** what the user can do about it, when there is something */
  readonly hint?: string

  constructor(
    message: string,
    readonly code: grpc.status,
    readonly method: string,
    readonly details: string,
    opts: {hint?: string} = {},
  ) {
    super(message)
    this.name = 'ContainerdError'
    this.hint = opts.hint
  }

  /** for programs (--json): `no-space`, else the gRPC status (`unavailable`, `not-found`, …) */
  get reason(): string {
    if (/no space left on device/i.test(this.details)) return 'no-space'
    return (grpc.status[this.code] ?? String(this.code)).toLowerCase().replace(/_/g, '-')
  }
}

function isServiceError(err: unknown): err is grpc.ServiceError {
  return !!err && typeof err === 'object' && typeof (err as {code?: unknown}).code === 'number' && 'details' in err
}

/**
 * What a socket that does not answer said, without grpc-js's framing: `No connection established.
 * Last error: Error: connect ENOENT /x.sock. Resolution note: ` → `connect ENOENT /x.sock`.
 */
export function unavailableDetails(details: string): string {
  const last = /Last error: (?:Error: )?([\s\S]*?)\.?\s*(?:Resolution note:[\s\S]*)?$/.exec(details)
  return (last ? last[1] : details.replace(/\s*Resolution note:[\s\S]*$/, '')).replace(/\s+/g, ' ').trim()
}

/** Why nothing answered, in words: `no such socket`, `connection refused`, `permission denied`, or what grpc-js said. */
function whyUnavailable(details: string): string {
  if (/ENOENT/.test(details)) return 'no such socket'
  if (/ECONNREFUSED/.test(details)) return 'connection refused'
  if (/EACCES|permission denied/i.test(details)) return 'permission denied'
  return unavailableDetails(details)
}

/** A call to containerd failed; `where` names where it went (`node X`, or an address). */
export function describeError(err: unknown, method: string, where: string): Error {
  if (err instanceof ContainerdError) return err
  if (!isServiceError(err)) return err instanceof Error ? err : new Error(String(err))
  const details = err.details || err.message
  const codeName = grpc.status[err.code] ?? String(err.code)
  const make = (message: string, hint?: string): ContainerdError => new ContainerdError(message, err.code, method, details, {hint})
  if (/no space left on device/i.test(details)) {
    return make(`no space left on ${where} (containerd ${method}: ${details})`, 'free disk space on the node (e.g. prune unused images) and retry')
  }
  if (err.code === grpc.status.UNAVAILABLE) {
    const what = `containerd ${method} on ${where} failed`
    if (/EACCES|permission denied/i.test(details)) return make(`${what}: ${unavailableDetails(details)}`, 'the containerd socket needs root; connect as root or use the sudo ctr fallback')
    if (/ENOENT|ECONNREFUSED|No connection established/i.test(details)) return make(`${what}: ${unavailableDetails(details)}`, 'is containerd running on the node, and is the socket path right?')
    if (/ECONNRESET|EPIPE|dropped|closed|GOAWAY/i.test(details)) return make(`${what}: the connection was lost (${unavailableDetails(details)})`)
    return make(`${what}: ${unavailableDetails(details)}`)
  }
  if (err.code === grpc.status.FAILED_PRECONDITION && /namespace is required/.test(details)) {
    return make(`containerd ${method} on ${where} failed: ${details} (this is a bug in sideload: no namespace header was sent)`)
  }
  if (err.code === grpc.status.UNIMPLEMENTED) {
    return make(`containerd ${method} on ${where} failed: ${details} (${codeName})`, method.startsWith('cri.')
      ? 'the CRI plugin is not running in this containerd (disabled_plugins?), so no kubelet uses it; is this the right socket?'
      : 'this containerd does not offer that service; is it containerd ≥ 1.6?')
  }
  return make(`containerd ${method} on ${where} failed: ${details} (${codeName})`)
}

/**
 * This machine's containerd (an image source, --containerd-address) did not answer: names its socket,
 * not "the node". Undefined for other failures.
 */
export function localContainerdUnavailable(err: unknown, address: string, doing: string, hint: string): ContainerdError | undefined {
  if (grpcCode(err) !== grpc.status.UNAVAILABLE) return undefined
  const details = (err as {details?: string}).details ?? (err as Error).message ?? ''
  return new ContainerdError(`${doing} from the local containerd at ${address}: nothing answers there (${whyUnavailable(details)})`,
    grpc.status.UNAVAILABLE, (err as {method?: string}).method ?? '', details, {hint})
}

export function grpcCode(err: unknown): grpc.status | undefined {
  if (err instanceof ContainerdError) return err.code
  if (isServiceError(err)) return err.code
  return undefined
}

export const isNotFound = (err: unknown): boolean => grpcCode(err) === grpc.status.NOT_FOUND
export const isAlreadyExists = (err: unknown): boolean => grpcCode(err) === grpc.status.ALREADY_EXISTS
