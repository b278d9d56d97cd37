import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import {type ChildProcess, spawn} from 'node:child_process'
import {Duplex, type Readable, type Writable} from 'node:stream'
import ssh2 from 'ssh2'
import type {AnyAuthMethod, AuthenticationType, AuthHandlerMiddleware, IdentityCallback, ClientChannel, ConnectConfig, NegotiatedAlgorithms, ParsedKey} from 'ssh2'
import {SshError} from './errors.js'
import {
  appendKnownHost,
  checkHostKey,
  type HostKey,
  type HostKeyCheck,
  hostKeyFromBlob,
  knownHostName,
  knownKeyTypes,
  loadKnownHosts,
} from './known-hosts.js'
import {commandLine, validateRemotePath} from './quote.js'
import {describeTarget, type ResolvedTarget, type ResolveOptions, resolveTarget} from './target.js'

const {Client} = ssh2

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
  /** Throw SshError('command') on a non-zero exit, with stderr in the message. */
  check?: boolean
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

const DEFAULT_READY_TIMEOUT_MS = 20_000
/** OpenSSH's MaxSessions defaults to 10 per connection; stay below it (port forwards are not sessions). */
const MAX_CONCURRENT_SESSIONS = 8
const DEFAULT_SERVER_HOST_KEYS = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  'ssh-rsa',
] as const
/** AES-GCM first: hardware AES makes it far faster than chacha20-poly1305 on x86 (minikube #23121). */
const CIPHERS = ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com', 'aes128-ctr', 'aes192-ctr', 'aes256-ctr', 'chacha20-poly1305@openssh.com'] as const
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET', 'EPIPE'])

type ConnectConfigAlgorithms = NonNullable<ConnectConfig['algorithms']>

function defaultIdentityFiles(home: string): string[] {
  return ['id_rsa', 'id_ecdsa', 'id_ecdsa_sk', 'id_ed25519', 'id_ed25519_sk', 'id_dsa'].map((n) => path.join(home, '.ssh', n))
}

/** A little counting semaphore for session channels. */
class Slots {
  private free: number
  private waiting: Array<() => void> = []
  constructor(n: number) {
    this.free = n
  }
  async acquire(): Promise<() => void> {
    if (this.free > 0) this.free--
    else await new Promise<void>((resolve) => this.waiting.push(resolve))
    let released = false
    return () => {
      if (released) return
      released = true
      const next = this.waiting.shift()
      if (next) next()
      else this.free++
    }
  }
}

interface AuthCandidate {
  method: AnyAuthMethod
  label: string
}

interface ProxyProcess {
  child: ChildProcess
  stream: Duplex
  /** Rewrite a handshake failure with what the proxy command said on stderr. */
  explain(err: SshError): SshError
}

/** Run ProxyCommand like ssh: `/bin/sh -c <command>` with %h %p %r %n %% expanded; its stdio carries the SSH stream. */
function startProxyCommand(target: ResolvedTarget): ProxyProcess {
  const tokens: Record<string, string> = {h: target.host, p: String(target.port), r: target.user, n: target.alias, '%': '%'}
  // host, user and alias passed parseTarget's character checks, so they are shell-safe words
  const command = (target.proxyCommand ?? '').replace(/%(.)/g, (whole, c: string) => tokens[c] ?? whole).replace(/^exec\s+/, '')
  const child = spawn('/bin/sh', ['-c', `exec ${command}`], {stdio: ['pipe', 'pipe', 'pipe']})
  let stderr = ''
  child.stderr.on('data', (b: Buffer) => {
    stderr = (stderr + b.toString('utf8')).slice(-2000)
  })
  child.on('error', () => undefined) // reported through the closed stream
  const stream = Duplex.from({readable: child.stdout, writable: child.stdin})
  return {
    child,
    stream,
    explain: (err) =>
      new SshError('unreachable', `ProxyCommand for ${describeTarget(target)} failed (${command}): ${stderr.trim() || err.message}`, {
        hint: 'run the ProxyCommand from your ssh config by hand to see why it fails',
        target: target.alias,
        cause: err,
      }),
  }
}

/** base64 public key blob of an identity file: from `<file>.pub`, else from the (unencrypted) key itself. */
function publicBlobOf(file: string): string | undefined {
  try {
    const pub = fs.readFileSync(`${file}.pub`, 'utf8').trim().split(/\s+/)[1]
    if (pub) return Buffer.from(pub, 'base64').toString('base64')
  } catch {
    // no .pub file: try the private key
  }
  try {
    const parsed = ssh2.utils.parseKey(fs.readFileSync(file))
    if (parsed instanceof Error) return undefined
    const key = (Array.isArray(parsed) ? parsed[0] : parsed) as ParsedKey
    return key.getPublicSSH().toString('base64')
  } catch {
    return undefined
  }
}

/** An ssh-agent client that only lists the identities whose public key is in `allowed`. */
class IdentitiesOnlyAgent extends ssh2.OpenSSHAgent {
  constructor(
    socketPath: string,
    private readonly allowed: ReadonlySet<string>,
  ) {
    super(socketPath)
  }

  override getIdentities(cb: IdentityCallback<ParsedKey>): void {
    super.getIdentities((err, keys) =>
      cb(
        err,
        // OpenSSHAgent lists ParsedKeys (the union in the typings also covers custom agents)
        keys?.filter((k) => 'getPublicSSH' in k && this.allowed.has(k.getPublicSSH().toString('base64'))),
      ),
    )
  }
}

/** Parse key files up front so the auth error can say which keys were tried and why some were not. */
function buildAuthCandidates(
  target: ResolvedTarget,
  opts: ConnectOptions,
  home: string,
): {candidates: AuthCandidate[]; skipped: string[]} {
  const candidates: AuthCandidate[] = []
  const skipped: string[] = []
  const seen = new Set<string>()
  const addKeyFile = (file: string, explicit: boolean): void => {
    const abs = path.resolve(file)
    if (seen.has(abs)) return
    seen.add(abs)
    let data: Buffer
    try {
      data = fs.readFileSync(abs)
    } catch (err) {
      if (explicit) {
        throw new SshError('auth', `cannot read SSH key ${abs}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
          hint: 'check the --ssh-key path',
          target: target.alias,
        })
      }
      return // ssh silently skips default/config identity files that do not exist
    }
    const parsed = ssh2.utils.parseKey(data)
    if (parsed instanceof Error) {
      const why = /encrypted/i.test(parsed.message) ? 'encrypted, needs ssh-agent' : parsed.message
      skipped.push(`${abs} (${why})`)
      return
    }
    const key = (Array.isArray(parsed) ? parsed[0] : parsed) as ParsedKey
    candidates.push({method: {type: 'publickey', username: target.user, key}, label: `key ${abs}`})
  }

  for (const f of opts.identityFiles ?? []) addKeyFile(f, true)

  let agent: string | undefined
  if (opts.agent === false) agent = undefined
  else if (typeof opts.agent === 'string') agent = opts.agent
  else if (target.identityAgent?.toLowerCase() === 'none') agent = undefined
  else if (target.identityAgent && target.identityAgent !== 'SSH_AUTH_SOCK') agent = target.identityAgent
  else agent = process.env.SSH_AUTH_SOCK || undefined
  if (agent) {
    if (target.identitiesOnly && target.identityFiles.length > 0) {
      // IdentitiesOnly: offer only the agent keys that belong to the configured identity files,
      // so a full agent does not exhaust the server's MaxAuthTries.
      const allowed = new Set(target.identityFiles.map(publicBlobOf).filter((b): b is string => b !== undefined))
      candidates.push({
        method: {type: 'agent', username: target.user, agent: new IdentitiesOnlyAgent(agent, allowed)},
        label: `ssh-agent ${agent} (only keys of ${target.identityFiles.join(', ')})`,
      })
    } else {
      candidates.push({method: {type: 'agent', username: target.user, agent}, label: `ssh-agent ${agent}`})
    }
  }

  // like ssh: the default ~/.ssh/id_* files only when neither --ssh-key nor IdentityFile names a key
  const named = target.identityFiles.length > 0 || (opts.identityFiles?.length ?? 0) > 0
  const configured = named ? target.identityFiles : defaultIdentityFiles(home)
  for (const f of configured) addKeyFile(f, false)
  return {candidates, skipped}
}

function hostKeyError(check: Exclude<HostKeyCheck, {status: 'match'}>, target: ResolvedTarget, writeFile: string): SshError {
  const who = describeTarget(target)
  if (check.status === 'unknown') {
    const others = check.otherTypes.length
      ? ` (known_hosts has only ${check.otherTypes.join(', ')} keys for it)`
      : check.certAuthority
        ? ` (${check.certAuthority.file}:${check.certAuthority.line} trusts a @cert-authority for it; host certificates are not supported, list the host key itself)`
        : ''
    return new SshError(
      'host-key-unknown',
      `host key of ${who} is not known${others}: ${check.key.type} ${check.fingerprint}`,
      {
        hint:
          `if this fingerprint is the node's (check on the node: ssh-keygen -lf /etc/ssh/ssh_host_${check.key.type.replace(/^ssh-|-sha2-nistp\d+$/g, '').replace('rsa-sha2-256', 'rsa').replace('rsa-sha2-512', 'rsa')}_key.pub), ` +
          `re-run with --trust-new-host-keys to record it in ${writeFile}, or add it to known_hosts yourself`,
        target: target.alias,
      },
    )
  }
  if (check.status === 'revoked') {
    return new SshError('host-key-revoked', `host key of ${who} (${check.fingerprint}) is marked @revoked in ${check.entry.file}:${check.entry.line}; refusing to connect`, {
      hint: 'the node needs a new host key; ask whoever runs it',
      target: target.alias,
    })
  }
  return new SshError(
    'host-key-changed',
    `HOST KEY OF ${who} HAS CHANGED — refusing to connect. ${check.key.type} key now ${check.fingerprint}, ` +
      `known_hosts has ${check.previousFingerprint} (${check.previous.file}:${check.previous.line}). ` +
      'Someone could be intercepting the connection, or the node was reinstalled.',
    {
      hint: `only if you know the node's key changed: ssh-keygen -R '${check.host}' -f ${check.previous.file}, then connect again (with --trust-new-host-keys to record the new key)`,
      target: target.alias,
    },
  )
}

function channelError(what: string, target: ResolvedTarget, err: Error, hint?: string): SshError {
  return new SshError('channel', `${what} on ${describeTarget(target)} failed: ${err.message}`, {hint, target: target.alias, cause: err})
}

/** One authenticated SSH connection to a node (possibly through jump hosts). */
export class SshConnection {
  readonly target: ResolvedTarget
  /** The algorithms negotiated by the last handshake (cipher should be aes*-gcm). */
  negotiated?: NegotiatedAlgorithms
  hostKey?: HostKeyInfo
  /** Resolves when the connection is gone (closed by us or lost). */
  readonly closed: Promise<void>

  private readonly client: InstanceType<typeof Client>
  private readonly jump?: SshConnection
  private readonly sessions = new Slots(MAX_CONCURRENT_SESSIONS)
  private sessionStarted = false
  private readonly bridges = new Map<string, {server: net.Server; dir: string; path: string; sockets: Set<net.Socket>}>()
  private open = true
  private streamLocalProhibited = false
  private lastError?: Error
  private markClosed!: () => void

  /** Use connectNode(); the constructor only wires an already connected client. */
  private constructor(target: ResolvedTarget, client: InstanceType<typeof Client>, jump: SshConnection | undefined) {
    this.target = target
    this.client = client
    this.jump = jump
    this.closed = new Promise((resolve) => (this.markClosed = resolve))
    client.on('error', (err: Error) => (this.lastError = err))
    client.on('handshake', (n: NegotiatedAlgorithms) => (this.negotiated = n)) // rekeys
    client.on('close', () => {
      this.open = false
      this.cleanupBridges()
      this.jump?.client.end()
      this.markClosed()
    })
  }

  get isOpen(): boolean {
    return this.open
  }

  /** Open a connection: resolve the target, reach it (through ProxyJump hops), verify its host key, authenticate. */
  static async connect(opts: ConnectOptions): Promise<SshConnection> {
    const target = typeof opts.target === 'string' ? resolveTarget(opts.target, opts.resolve) : opts.target
    const home = opts.resolve?.home ?? os.homedir()
    const jump = target.via ? await SshConnection.connect({...opts, target: target.via}) : undefined
    try {
      return await SshConnection.handshake(target, opts, home, jump)
    } catch (err) {
      await jump?.close()
      throw err
    }
  }

  private static async handshake(target: ResolvedTarget, opts: ConnectOptions, home: string, jump: SshConnection | undefined): Promise<SshConnection> {
    const who = describeTarget(target)
    const userFiles = target.knownHostsFiles ?? [path.join(home, '.ssh', 'known_hosts'), path.join(home, '.ssh', 'known_hosts2')]
    const readFiles = opts.knownHostsPath ? [opts.knownHostsPath] : [...userFiles, '/etc/ssh/ssh_known_hosts', '/etc/ssh/ssh_known_hosts2']
    const writeFile = opts.knownHostsPath ?? userFiles[0]
    const tofu = opts.trustOnFirstUse ?? (target.strictHostKeyChecking === 'accept-new' || target.strictHostKeyChecking === 'no')
    const keyHost = target.hostKeyAlias ?? target.host
    const entries = loadKnownHosts(readFiles)

    // Prefer key types known_hosts already has for this host, as ssh does, so a host with
    // several keys is not reported unknown just because another type was negotiated.
    const known = knownKeyTypes(entries, keyHost, target.port).flatMap((t) => (t === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [t]))
    const serverHostKey = [...new Set([...known, ...DEFAULT_SERVER_HOST_KEYS])].filter((t) =>
      (DEFAULT_SERVER_HOST_KEYS as readonly string[]).includes(t),
    ) as ConnectConfigAlgorithms['serverHostKey']

    const {candidates, skipped} = buildAuthCandidates(target, opts, home)
    const tried: string[] = []
    let hostKeyFailure: SshError | undefined
    let hostKey: HostKeyInfo | undefined
    let sock: Duplex | undefined
    let proxy: ProxyProcess | undefined
    if (!jump && target.proxyCommand) {
      proxy = startProxyCommand(target)
      sock = proxy.stream
    }
    if (jump) {
      sock = await new Promise<Duplex>((resolve, reject) => {
        jump.client.forwardOut('127.0.0.1', 0, target.host, target.port, (err, ch) => {
          if (err) {
            reject(
              new SshError('unreachable', `cannot reach ${who} through jump host ${describeTarget(jump.target)}: ${err.message}`, {
                hint: `check that ${jump.target.alias} can connect to ${target.host}:${target.port} and that its sshd allows TCP forwarding`,
                target: target.alias,
                cause: err,
              }),
            )
          } else resolve(ch)
        })
      })
    }

    const client = new Client()
    let negotiated: NegotiatedAlgorithms | undefined
    client.on('handshake', (n: NegotiatedAlgorithms) => (negotiated = n))
    const config: ConnectConfig = {
      host: target.host,
      port: target.port,
      username: target.user,
      sock,
      readyTimeout: opts.readyTimeoutMs ?? target.connectTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS,
      keepaliveInterval: opts.keepaliveIntervalMs ?? 15_000,
      keepaliveCountMax: opts.keepaliveCountMax ?? 4,
      algorithms: {cipher: [...CIPHERS], serverHostKey},
      hostVerifier: (blob: Buffer): boolean => {
        let key: HostKey
        try {
          key = hostKeyFromBlob(blob)
        } catch (err) {
          hostKeyFailure = new SshError('host-key-unknown', `${who} presented an unreadable host key: ${(err as Error).message}`, {target: target.alias})
          return false
        }
        const check = checkHostKey(entries, keyHost, target.port, key)
        if (check.status === 'match') {
          hostKey = {type: key.type, fingerprint: check.fingerprint, recorded: false, file: check.entry.file}
          return true
        }
        if (check.status === 'unknown' && tofu) {
          try {
            appendKnownHost(writeFile, keyHost, target.port, key, {hashed: target.hashKnownHosts})
          } catch (err) {
            hostKeyFailure = new SshError('host-key-unknown', `cannot record the host key of ${who} in ${writeFile}: ${(err as Error).message}`, {
              target: target.alias,
              cause: err,
            })
            return false
          }
          hostKey = {type: key.type, fingerprint: check.fingerprint, recorded: true, file: writeFile}
          return true
        }
        hostKeyFailure = hostKeyError(check, target, writeFile)
        return false
      },
      authHandler: ((methodsLeft, _partial, next): void => {
        for (;;) {
          const c = candidates.shift()
          // ssh2 takes `false` for "no more methods" (its typings omit it)
          if (!c) return next(false as unknown as AuthenticationType)
          const kind: AuthenticationType = c.method.type === 'agent' ? 'publickey' : c.method.type
          if (methodsLeft && !methodsLeft.includes(kind)) continue
          tried.push(c.label)
          return next(c.method)
        }
      }) satisfies AuthHandlerMiddleware,
    }

    await new Promise<void>((resolve, reject) => {
      let settled = false
      const fail = (err: SshError): void => {
        if (settled) return
        settled = true
        client.end()
        proxy?.child.kill()
        reject(proxy && (err.code === 'closed' || err.code === 'unreachable') ? proxy.explain(err) : err)
      }
      client.once('ready', () => {
        settled = true
        resolve()
      })
      client.on('error', (err: Error & {level?: string; code?: string}) => {
        if (hostKeyFailure) return fail(hostKeyFailure)
        if (err.level === 'client-authentication') {
          const triedText = tried.length ? tried.join(', ') : 'nothing (no key file, no ssh-agent)'
          const skippedText = skipped.length ? `; skipped ${skipped.join(', ')}` : ''
          return fail(
            new SshError('auth', `authentication as ${target.user} on ${who} failed; tried ${triedText}${skippedText}`, {
              hint: `pass --ssh-key <file> with a key ${target.user}@${target.alias} accepts, load the key into ssh-agent (SSH_AUTH_SOCK), or set User/IdentityFile for this host in ~/.ssh/config`,
              target: target.alias,
              cause: err,
            }),
          )
        }
        if (err.level === 'client-timeout') {
          return fail(
            new SshError('timeout', `SSH handshake with ${who} timed out`, {
              hint: 'check the address and port, that sshd is running and not firewalled; raise the timeout on slow links',
              target: target.alias,
              cause: err,
            }),
          )
        }
        if ((err.code && UNREACHABLE_CODES.has(err.code)) || err.level === 'client-dns' || err.level === 'client-socket') {
          return fail(
            new SshError('unreachable', `cannot connect to ${who}: ${err.code ?? err.message}`, {
              hint: `check that the node is up, that sshd listens on port ${target.port}, and that this machine can reach ${target.host}`,
              target: target.alias,
              cause: err,
            }),
          )
        }
        fail(new SshError('closed', `SSH connection to ${who} failed: ${err.message}`, {target: target.alias, cause: err}))
      })
      client.on('close', () => {
        if (hostKeyFailure) return fail(hostKeyFailure)
        fail(new SshError('closed', `SSH connection to ${who} closed during the handshake`, {
          hint: 'the server may limit connections (MaxStartups) or reject this client; see its sshd log',
          target: target.alias,
        }))
      })
      try {
        client.connect(config)
      } catch (err) {
        fail(new SshError('target', `cannot start SSH connection to ${who}: ${(err as Error).message}`, {target: target.alias, cause: err}))
      }
    })

    if (proxy) {
      const child = proxy.child
      client.once('close', () => child.kill())
    }
    const conn = new SshConnection(target, client, jump)
    conn.hostKey = hostKey
    conn.negotiated = negotiated
    return conn
  }

  private assertOpen(what: string): void {
    if (!this.open) {
      throw new SshError('closed', `cannot ${what}: the SSH connection to ${describeTarget(this.target)} is closed${this.lastError ? ` (${this.lastError.message})` : ''}`, {
        hint: 'reconnect and retry',
        target: this.target.alias,
      })
    }
  }

  /** Run argv on the node (every argument shell-quoted). Streams stdout/stderr; see RemoteProcess. */
  /** The stream the SSH packets go out on (TCP socket, or the jump host's channel), to cork around bursts. */
  transportSocket(): Pick<Writable, 'cork' | 'uncork'> | undefined {
    return (this.client as unknown as {_sock?: Writable})._sock
  }

  /**
   * OpenSSH's sshd sets TCP_NODELAY on a connection only when a session (exec, shell) starts
   * (packet.c ssh_packet_set_interactive). A connection used only for forwarding keeps Nagle on,
   * so the node's small replies (HTTP/2 WINDOW_UPDATEs, Content.Write acks) wait for delayed
   * ACKs and a 170 MB push drops from ~100 to ~35 MB/s (measured on the bed). So the first
   * forwarded socket also starts `true` as a session, in parallel, not awaited.
   */
  private startSession(): void {
    if (this.sessionStarted) return
    this.sessionStarted = true
    void this.execCapture(['true']).catch(() => undefined)
  }

  async exec(argv: readonly string[], opts: ExecOptions = {}): Promise<RemoteProcess> {
    this.sessionStarted = true
    const line = commandLine(argv)
    this.assertOpen(`run ${argv[0]}`)
    const release = await this.sessions.acquire()
    let channel: ClientChannel
    let exit: RemoteExit | undefined
    try {
      this.assertOpen(`run ${argv[0]}`)
      channel = await new Promise<ClientChannel>((resolve, reject) => {
        this.client.exec(line, (err, ch) => {
          if (err) return reject(channelError(`starting ${argv[0]}`, this.target, err))
          // Listen here, not after the await: a quick command's exit-status can arrive in the same
          // read as the channel's confirmation, and ssh2 emits it before an awaiting caller resumes.
          ch.on('exit', (code: number | null, signal?: string) => {
            exit = typeof code === 'number' ? {code} : {code: null, signal: signal ?? undefined}
          })
          resolve(ch)
        })
      })
    } catch (err) {
      release()
      throw err
    }
    let stdinError: Error | undefined
    const done = new Promise<RemoteExit>((resolve, reject) => {
      channel.on('close', () => {
        release()
        if (stdinError) {
          reject(
            new SshError('channel', `sending stdin to ${argv[0]} on ${describeTarget(this.target)} failed: ${stdinError.message}`, {
              target: this.target.alias,
              cause: stdinError,
            }),
          )
        } else if (exit) resolve(exit)
        else {
          reject(
            new SshError('closed', `${argv[0]} on ${describeTarget(this.target)} ended without an exit status (connection lost?)`, {
              hint: 'retry; if it keeps happening, check the node',
              target: this.target.alias,
            }),
          )
        }
      })
    })
    done.catch(() => undefined) // observed via wait()
    channel.on('error', (err: Error) => (stdinError ??= err))

    const input = opts.stdin
    if (input === 'pipe') {
      // the caller writes and ends channel itself
    } else if (input === undefined) {
      channel.end()
    } else if (typeof input === 'string' || Buffer.isBuffer(input)) {
      channel.end(input)
    } else {
      input.on('error', (err: Error) => {
        stdinError ??= err
        channel.close()
      })
      input.pipe(channel)
      // the command may exit without reading everything: stop the source (as pipeline() would)
      channel.once('close', () => {
        input.unpipe(channel)
        if (!input.readableEnded) input.destroy()
      })
    }
    return {
      stdout: channel,
      stderr: channel.stderr,
      stdin: channel,
      wait: () => done,
      kill: (signal = 'TERM') => {
        try {
          channel.signal(signal)
        } finally {
          channel.close()
        }
      },
      stop: async (graceMs = 10_000) => {
        const ended = done.then(() => true, () => true)
        const within = (ms: number): Promise<boolean> => Promise.race([ended, new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())])
        if (!channel.writableEnded) channel.end()
        if (await within(graceMs)) return
        for (const signal of ['TERM', 'KILL'] as const) {
          try {
            channel.signal(signal)
          } catch {
            // the connection is gone: so is the command's session
          }
          if (await within(3000)) return
        }
        channel.close()
        await within(3000)
      },
    }
  }

  /** Run argv and collect its output as UTF-8 text. */
  async execCapture(argv: readonly string[], opts: CaptureOptions = {}): Promise<CapturedOutput> {
    const max = opts.maxBytes ?? 16 * 1024 * 1024
    const proc = await this.exec(argv, {stdin: opts.stdin})
    const collect = (stream: Readable, name: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const chunks: Buffer[] = []
        let size = 0
        stream.on('data', (c: Buffer) => {
          size += c.length
          if (size > max) {
            proc.kill('KILL')
            reject(new SshError('command', `${argv[0]} on ${describeTarget(this.target)} wrote more than ${max} bytes to ${name}`, {target: this.target.alias}))
            return
          }
          chunks.push(c)
        })
        stream.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
        stream.on('error', reject)
      })
    const [stdout, stderr, exit] = await Promise.all([collect(proc.stdout, 'stdout'), collect(proc.stderr, 'stderr'), proc.wait()])
    if (opts.check && exit.code !== 0) {
      const status = exit.code === null ? `was killed by SIG${exit.signal ?? '?'}` : `exited with code ${exit.code}`
      throw new SshError('command', `\`${commandLine(argv)}\` on ${describeTarget(this.target)} ${status}: ${stderr.trim() || stdout.trim() || '(no output)'}`, {
        target: this.target.alias,
      })
    }
    return {...exit, stdout, stderr}
  }

  /**
   * Open a byte stream to a unix socket on the node: OpenSSH direct-streamlocal, or, where
   * sshd prohibits stream-local forwarding, `socat - UNIX-CONNECT:<path>` run on the node.
   */
  async openUnixSocket(remotePath: string): Promise<Duplex> {
    validateRemotePath(remotePath)
    this.assertOpen(`open ${remotePath}`)
    this.startSession()
    if (this.streamLocalProhibited) return this.openUnixSocketViaSocat(remotePath)
    try {
      return await this.streamLocal(remotePath)
    } catch (err) {
      // sshd answers "open failed" both when stream-local forwarding is disabled and when the
      // socket cannot be opened; ask the node directly (socat) to tell the two apart.
      const probe = /[,:!]/.test(remotePath)
        ? undefined
        : await this.execCapture(['socat', '-u', 'OPEN:/dev/null', `UNIX-CONNECT:${remotePath}`]).catch(() => undefined)
      if (probe?.code === 0) {
        this.streamLocalProhibited = true
        return this.openUnixSocketViaSocat(remotePath)
      }
      const nodeSays = probe && probe.code !== 127 ? (probe.stderr.trim().split('\n').pop() ?? '').replace(/^.*: /, '') : ''
      const hint = /permission denied/i.test(nodeSays)
        ? `${this.target.user} may not open ${remotePath}: connect as root, or as a user in the socket's group`
        : /no such file/i.test(nodeSays)
          ? `check the socket path on the node (containerd: /run/containerd/containerd.sock; k3s/RKE2: /run/k3s/containerd/containerd.sock)`
          : `check that ${remotePath} exists on the node and that ${this.target.user} may open it; ` +
            'sshd must allow AllowStreamLocalForwarding, or the node needs socat for the fallback'
      throw channelError(`opening unix socket ${remotePath}${nodeSays ? ` (${nodeSays})` : ''}`, this.target, err as Error, hint)
    }
  }

  /**
   * Open a unix socket on the node by direct-streamlocal only, without diagnosis: undefined
   * when sshd refuses (no such socket, no permission, or forwarding disabled). No process
   * runs on the node, so this is the cheap first try before a probe.
   */
  async tryOpenUnixSocket(remotePath: string): Promise<Duplex | undefined> {
    validateRemotePath(remotePath)
    this.assertOpen(`open ${remotePath}`)
    if (this.streamLocalProhibited) return undefined
    this.startSession()
    try {
      return await this.streamLocal(remotePath)
    } catch {
      this.assertOpen(`open ${remotePath}`) // a lost connection is an error, not a missing socket
      return undefined
    }
  }

  /** One OpenSSH direct-streamlocal channel to `remotePath`. */
  private streamLocal(remotePath: string): Promise<Duplex> {
    return new Promise<Duplex>((resolve, reject) => {
      this.client.openssh_forwardOutStreamLocal(remotePath, (err, ch) => (err ? reject(err) : resolve(ch)))
    })
  }

  private async openUnixSocketViaSocat(remotePath: string): Promise<Duplex> {
    if (/[,:!]/.test(remotePath)) {
      throw new SshError('channel', `cannot reach ${remotePath} on ${describeTarget(this.target)}: sshd forbids stream-local forwarding and the path has characters socat cannot take`, {
        hint: 'set AllowStreamLocalForwarding yes in the node\'s sshd_config',
        target: this.target.alias,
      })
    }
    const proc = await this.exec(['socat', '-', `UNIX-CONNECT:${remotePath}`], {stdin: 'pipe'})
    let stderr = ''
    proc.stderr.on('data', (b: Buffer) => (stderr = (stderr + b.toString('utf8')).slice(-1000)))
    const channel = proc.stdout as Duplex
    proc.wait().then(
      (exit) => {
        if (exit.code !== 0 && !channel.destroyed) {
          const why = exit.code === 127 ? 'socat is not installed on the node' : stderr.trim() || `socat exited with ${exit.code}`
          channel.destroy(
            new SshError('channel', `cannot reach ${remotePath} on ${describeTarget(this.target)} (stream-local forwarding is prohibited, fallback failed: ${why})`, {
              hint: 'set AllowStreamLocalForwarding yes in the node\'s sshd_config, or install socat on the node',
              target: this.target.alias,
            }),
          )
        }
      },
      (err: unknown) => channel.destroy(err as Error),
    )
    return channel
  }

  /**
   * Make a remote unix socket reachable locally: returns the path of a local socket (in a
   * private 0700 directory) whose every connection is bridged to `remotePath` on the node.
   * Dial it as `unix://<path>` with grpc-js. Removed by close().
   */
  async forwardUnixSocket(remotePath: string): Promise<string> {
    validateRemotePath(remotePath)
    this.assertOpen(`forward ${remotePath}`)
    const existing = this.bridges.get(remotePath)
    if (existing) return existing.path
    // Probe once so a missing socket or a permission problem is reported here, clearly,
    // instead of as an anonymous UNAVAILABLE in the gRPC client later.
    ;(await this.openUnixSocket(remotePath)).destroy()
    // unix socket paths are limited to ~104 bytes; fall back to /tmp when TMPDIR is long
    const base = os.tmpdir().length + path.basename(remotePath).length > 80 ? '/tmp' : os.tmpdir()
    const dir = fs.mkdtempSync(path.join(base, 'sideload-ssh-'))
    fs.chmodSync(dir, 0o700)
    const localPath = path.join(dir, path.basename(remotePath) || 'remote.sock')
    const sockets = new Set<net.Socket>()
    const server = net.createServer((local) => {
      sockets.add(local)
      local.on('close', () => sockets.delete(local))
      local.pause()
      this.openUnixSocket(remotePath).then(
        (remote) => {
          const teardown = (): void => {
            local.destroy()
            remote.destroy()
          }
          local.on('error', teardown)
          remote.on('error', teardown)
          local.on('close', () => remote.destroy())
          remote.on('close', () => local.destroy())
          local.pipe(remote)
          remote.pipe(local)
          local.resume()
        },
        () => local.destroy(),
      )
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(localPath, () => {
        server.off('error', reject)
        resolve()
      })
    })
    fs.chmodSync(localPath, 0o600)
    this.bridges.set(remotePath, {server, dir, path: localPath, sockets})
    return localPath
  }

  private cleanupBridges(): void {
    for (const b of this.bridges.values()) {
      for (const s of b.sockets) s.destroy()
      b.server.close()
      fs.rmSync(b.dir, {recursive: true, force: true})
    }
    this.bridges.clear()
  }

  /** Tear down at once, synchronously (process exit): bridges and their directories go, sockets are destroyed. */
  destroy(): void {
    this.cleanupBridges()
    this.client.destroy()
    this.jump?.destroy()
  }

  /** Close the connection (and its jump hosts and local bridges). */
  async close(): Promise<void> {
    this.cleanupBridges()
    if (this.open) this.client.end()
    await this.closed
    await this.jump?.close()
  }
}

/** Open an SSH connection to a node. See ConnectOptions for defaults. */
export function connectNode(opts: ConnectOptions): Promise<SshConnection> {
  return SshConnection.connect(opts)
}

/** Host key lookup name for a resolved target (what known_hosts must list). */
export function knownHostsNameFor(target: ResolvedTarget): string {
  return knownHostName(target.hostKeyAlias ?? target.host, target.port)
}
