// One authenticated SSH connection to a node and its lifecycle: commands (sessions), unix socket
// streams (direct-streamlocal, or socat where sshd forbids it), local bridges to them, close.
// How it is made lives beside it: handshake.ts (transport, host key, authentication, errors),
// auth.ts, host-key-verifier.ts, proxy-command.ts; remote-process.ts runs a command on a channel.
import * as os from 'node:os'
import type {Duplex, Readable, Writable} from 'node:stream'
import type {ClientChannel, NegotiatedAlgorithms} from 'ssh2'
import {SshError} from './errors.js'
import {type SshClient, handshake} from './handshake.js'
import {knownHostName} from './known-hosts.js'
import {commandLine, validateRemotePath} from './quote.js'
import {remoteProcess, Slots} from './remote-process.js'
import {describeTarget, type ResolvedTarget, resolveTarget} from './target.js'
import type {CaptureOptions, CapturedOutput, ConnectOptions, ExecOptions, HostKeyInfo, RemoteExit, RemoteProcess} from './types.js'
import {UnixSocketBridges} from './unix-socket-bridge.js'

export type {CaptureOptions, CapturedOutput, ConnectOptions, ExecOptions, HostKeyInfo, RemoteExit, RemoteProcess} from './types.js'

/** OpenSSH's MaxSessions defaults to 10 per connection; stay below it (port forwards are not sessions). */
const MAX_CONCURRENT_SESSIONS = 8

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

  private readonly client: SshClient
  private readonly jump?: SshConnection
  private readonly sessions = new Slots(MAX_CONCURRENT_SESSIONS)
  private sessionStarted = false
  private readonly bridges = new UnixSocketBridges((remotePath) => this.openUnixSocket(remotePath))
  private open = true
  private streamLocalProhibited = false
  private lastError?: Error
  private markClosed!: () => void
  private options!: ConnectOptions

  /** Use connectNode(); the constructor only wires an already connected client. */
  private constructor(target: ResolvedTarget, client: SshClient, jump: SshConnection | undefined) {
    this.target = target
    this.client = client
    this.jump = jump
    this.closed = new Promise((resolve) => (this.markClosed = resolve))
    client.on('error', (err: Error) => (this.lastError = err))
    client.on('handshake', (n: NegotiatedAlgorithms) => (this.negotiated = n)) // rekeys
    client.on('close', () => {
      this.open = false
      this.bridges.closeAll()
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
      const channel = jump ? await jump.forwardTcp(target) : undefined
      const {client, hostKey, negotiated} = await handshake(target, opts, home, channel)
      const conn = new SshConnection(target, client, jump)
      conn.hostKey = hostKey
      conn.negotiated = negotiated
      conn.options = {...opts, target}
      return conn
    } catch (err) {
      await jump?.close()
      throw err
    }
  }

  /** A new connection to the same node, made as this one was (after this one was lost). */
  reconnect(): Promise<SshConnection> {
    return SshConnection.connect(this.options)
  }

  /** A TCP stream from the node to `host:port` (direct-tcpip): what the node itself reaches there. */
  openTcp(host: string, port: number): Promise<Duplex> {
    this.assertOpen(`a TCP stream to ${host}:${port}`)
    return new Promise<Duplex>((resolve, reject) => {
      this.client.forwardOut('127.0.0.1', 0, host, port, (err, ch) => {
        if (err) {
          reject(new SshError('unreachable', `${describeTarget(this.target)} cannot open a TCP stream to ${host}:${port}: ${err.message}`, {
            hint: 'is something listening there, and does the node\'s sshd allow TCP forwarding (AllowTcpForwarding)?',
            target: this.target.alias,
            cause: err,
          }))
        } else resolve(ch)
      })
    })
  }

  /** A TCP stream from this (jump) host to the next hop `to`. */
  private forwardTcp(to: ResolvedTarget): Promise<Duplex> {
    return new Promise<Duplex>((resolve, reject) => {
      this.client.forwardOut('127.0.0.1', 0, to.host, to.port, (err, ch) => {
        if (err) {
          reject(
            new SshError('unreachable', `cannot reach ${describeTarget(to)} through jump host ${describeTarget(this.target)}: ${err.message}`, {
              hint: `check that ${this.target.alias} can connect to ${to.host}:${to.port} and that its sshd allows TCP forwarding`,
              target: to.alias,
              cause: err,
            }),
          )
        } else resolve(ch)
      })
    })
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
    return remoteProcess(channel, argv, this.target, opts, () => exit, release)
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
      // what failed in words and what it said — never our command line (a script, for `sh -c`)
      const what = opts.what ?? (argv[0] === 'sh' && argv[1] === '-c' ? (argv[3] ?? 'a shell command') : argv[0])
      const status = exit.code === null ? `was killed by SIG${exit.signal ?? '?'}` : exit.code === 127 ? 'found no such command (exit code 127)' : `exited with code ${exit.code}`
      const said = (stderr.trim() || stdout.trim()).split('\n').slice(-3).join('; ')
      throw new SshError('command', `${what} on ${describeTarget(this.target)} ${status}${said ? `: ${said}` : ''}`, {
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
    const existing = this.bridges.existing(remotePath)
    if (existing) return existing
    // Probe once so a missing socket or a permission problem is reported here, clearly,
    // instead of as an anonymous UNAVAILABLE in the gRPC client later.
    ;(await this.openUnixSocket(remotePath)).destroy()
    return this.bridges.bridge(remotePath)
  }

  /** Tear down at once, synchronously (process exit): bridges and their directories go, sockets are destroyed. */
  destroy(): void {
    this.bridges.closeAll()
    this.client.destroy()
    this.jump?.destroy()
  }

  /** Close the connection (and its jump hosts and local bridges). */
  async close(): Promise<void> {
    this.bridges.closeAll()
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
