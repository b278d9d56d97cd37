/** What kind of SSH failure happened; callers branch on this, users read `message` and `hint`. */
export type SshErrorCode =
  | 'target' // the target string or ssh_config could not be understood
  | 'unreachable' // TCP connect failed (refused, no route, DNS)
  | 'timeout' // connect or handshake took too long
  | 'auth' // every authentication method was rejected
  | 'host-key-unknown' // the host key is in no known_hosts file
  | 'host-key-changed' // known_hosts holds other keys for the host (of this type or not): refused, always
  | 'host-key-revoked' // the key is marked @revoked
  | 'channel' // opening a channel (exec, streamlocal, forward) failed
  | 'command' // a remote command failed (exit code != 0 where success was required)
  | 'invalid-argument' // an argument for a remote command failed validation
  | 'closed' // the connection was closed or lost

/** `message` says what failed, `hint` what to do; ui/errors.ts renders them (once each). */
export class SshError extends Error {
  readonly code: SshErrorCode
  /** What the user can do about it (one or two sentences), or undefined. */
  readonly hint?: string
  /** The node/target this error is about (as the user named it), when known. */
  readonly target?: string

  constructor(code: SshErrorCode, message: string, opts: {hint?: string; target?: string; cause?: unknown} = {}) {
    super(message, opts.cause === undefined ? undefined : {cause: opts.cause})
    this.name = 'SshError'
    this.code = code
    this.hint = opts.hint
    this.target = opts.target
  }

  /** the error's subject, as every error names it */
  get subject(): string | undefined {
    return this.target
  }

  /** for programs (--json): the code */
  get reason(): SshErrorCode {
    return this.code
  }
}

export function isSshError(err: unknown, code?: SshErrorCode): err is SshError {
  return err instanceof SshError && (code === undefined || err.code === code)
}
