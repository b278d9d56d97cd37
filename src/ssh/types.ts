// What the SSH layer's callers see: connection options, remote commands and their results.
import type {Readable, Writable} from 'node:stream'
import type {ResolvedTarget, ResolveOptions} from './target.js'

export interface ConnectOptions {
  /** `[user@]host[:port]` (resolved through ssh_config) or an already resolved target. */
  target: string | ResolvedTarget
  /** How to resolve a string target (ssh_config path, home). */
  resolve?: ResolveOptions
  /** Private key files to try first (--ssh-key). Unencrypted, or held by the agent. */
  identityFiles?: string[]
  /** ssh-agent socket; default IdentityAgent from the config, else $SSH_AUTH_SOCK. `false` = no agent. */
  agent?: string | false
  /** The only known_hosts file to read and write (--known-hosts); default: UserKnownHostsFile or ~/.ssh/known_hosts. */
  knownHostsPath?: string
  /** Record unknown host keys (--trust-new-host-keys). Default: StrictHostKeyChecking accept-new/no in the config. */
  trustOnFirstUse?: boolean
  /** Handshake + authentication deadline. Default: ConnectTimeout from the config, else 20 s. */
  readyTimeoutMs?: number
  /** SSH keepalive interval (default 15 s) and how many may go unanswered (default 4). */
  keepaliveIntervalMs?: number
  keepaliveCountMax?: number
}

export interface RemoteExit {
  /** Exit status, or null when the command was killed by a signal or the connection dropped. */
  code: number | null
  signal?: string
}

/** A command running on a node. stdout/stderr must be consumed (or the remote side blocks). */
export interface RemoteProcess {
  stdout: Readable
  stderr: Readable
  /** Ended already, unless exec was called with `stdin: 'pipe'`. */
  stdin: Writable
  /** Resolves when the channel closes; rejects if the stdin source failed or the connection was lost before exit. */
  wait(): Promise<RemoteExit>
  /** Ask the remote to deliver a signal (OpenSSH ≥ 7.9), then close the channel. */
  kill(signal?: 'TERM' | 'KILL' | 'INT'): void
  /**
   * Give up on the command and wait until it has ended: its stdin gets EOF (so a program
   * reading it fails and cleans up after itself, as `ctr images import` does); only if it is
   * still running after `graceMs` is it sent TERM, then KILL, before the channel is closed.
   * Resolves when the remote command is gone — nothing of ours runs on after it.
   */
  stop(graceMs?: number): Promise<void>
}

export interface ExecOptions {
  /** Data for the command's stdin: a stream (piped with backpressure), bytes, or 'pipe' to write it yourself. */
  stdin?: Readable | Buffer | string | 'pipe'
}

export interface CaptureOptions {
  stdin?: Readable | Buffer | string
  /** Throw SshError('command') on a non-zero exit, with stderr in the message (never the command itself). */
  check?: boolean
  /** What the command does, in words, for that error (`probing the node`); default: the program's name. */
  what?: string
  /** Limit for each of stdout and stderr (default 16 MiB); exceeding it fails the call. */
  maxBytes?: number
}

export interface CapturedOutput {
  code: number | null
  signal?: string
  stdout: string
  stderr: string
}

/** What was verified about the server's host key. */
export interface HostKeyInfo {
  type: string
  fingerprint: string
  /** True when this connection recorded the key (trust on first use). */
  recorded: boolean
  /** The known_hosts file that vouched for (or now records) the key. */
  file?: string
}
