import * as grpc from '@grpc/grpc-js'

/** A failed containerd call, with the gRPC status and a message that says what to do. */
export class ContainerdError extends Error {
  constructor(
    message: string,
    readonly code: grpc.status,
    readonly method: string,
    readonly details: string,
  ) {
    super(message)
    this.name = 'ContainerdError'
  }
}

function isServiceError(err: unknown): err is grpc.ServiceError {
  return !!err && typeof err === 'object' && typeof (err as {code?: unknown}).code === 'number' && 'details' in err
}

/** A readable name for where the call went: the node name when known, else the address. */
export function describeError(err: unknown, method: string, where: string): Error {
  if (err instanceof ContainerdError) return err
  if (!isServiceError(err)) return err instanceof Error ? err : new Error(String(err))
  const details = err.details || err.message
  const codeName = grpc.status[err.code] ?? String(err.code)
  let hint = ''
  if (/no space left on device/i.test(details)) {
    return new ContainerdError(`no space left on node ${where} (containerd ${method}: ${details}). Free disk space on the node (e.g. prune unused images) and retry.`, err.code, method, details)
  }
  if (err.code === grpc.status.UNAVAILABLE) {
    if (/EACCES|permission denied/i.test(details)) hint = ' Hint: the containerd socket needs root; connect as root or use the sudo ctr fallback.'
    else if (/ENOENT|ECONNREFUSED|No connection established/i.test(details)) hint = ' Hint: is containerd running on the node, and is the socket path right?'
    else if (/ECONNRESET|EPIPE|dropped|closed|GOAWAY/i.test(details)) hint = ' The connection to the node was lost.'
  } else if (err.code === grpc.status.FAILED_PRECONDITION && /namespace is required/.test(details)) {
    hint = ' (this is a bug in sideload: no namespace header was sent)'
  } else if (err.code === grpc.status.UNIMPLEMENTED) {
    hint = method.startsWith('cri.')
      ? ' Hint: the CRI plugin is not running in this containerd (disabled_plugins?), so no kubelet uses it; is this the right socket?'
      : ' Hint: this containerd does not offer that service; is it containerd ≥ 1.6?'
  }
  return new ContainerdError(`containerd ${method} on ${where} failed: ${details} (${codeName}).${hint}`, err.code, method, details)
}

export function grpcCode(err: unknown): grpc.status | undefined {
  if (err instanceof ContainerdError) return err.code
  if (isServiceError(err)) return err.code
  return undefined
}

export const isNotFound = (err: unknown): boolean => grpcCode(err) === grpc.status.NOT_FOUND
export const isAlreadyExists = (err: unknown): boolean => grpcCode(err) === grpc.status.ALREADY_EXISTS
