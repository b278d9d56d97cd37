// One SSH handshake: transport (TCP, a jump host's channel, or ProxyCommand), host key check,
// authentication; a failure becomes an SshError that says which of them failed and what to do.
import type {Duplex} from 'node:stream'
import ssh2 from 'ssh2'
import type {AuthenticationType, AuthHandlerMiddleware, ConnectConfig, NegotiatedAlgorithms} from 'ssh2'
import {type AuthCandidate, buildAuthCandidates} from './auth.js'
import {SshError} from './errors.js'
import {hostKeyVerifier} from './host-key-verifier.js'
import {type ProxyProcess, startProxyCommand} from './proxy-command.js'
import {describeTarget, type ResolvedTarget} from './target.js'
import type {ConnectOptions, HostKeyInfo} from './types.js'

const {Client} = ssh2
export type SshClient = InstanceType<typeof Client>

const DEFAULT_READY_TIMEOUT_MS = 20_000
/** AES-GCM first: hardware AES makes it far faster than chacha20-poly1305 on x86 (minikube #23121). */
const CIPHERS = ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com', 'aes128-ctr', 'aes192-ctr', 'aes256-ctr', 'chacha20-poly1305@openssh.com'] as const
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET', 'EPIPE'])

export interface Handshaken {
  client: SshClient
  hostKey?: HostKeyInfo
  negotiated?: NegotiatedAlgorithms
}

/** ssh2's auth handler over the candidates, in order, skipping kinds the server no longer takes; records what was tried. */
function authHandler(candidates: AuthCandidate[], tried: string[]): AuthHandlerMiddleware {
  return (methodsLeft, _partial, next): void => {
    for (;;) {
      const c = candidates.shift()
      // ssh2 takes `false` for "no more methods" (its typings omit it)
      if (!c) return next(false as unknown as AuthenticationType)
      const kind: AuthenticationType = c.method.type === 'agent' ? 'publickey' : c.method.type
      if (methodsLeft && !methodsLeft.includes(kind)) continue
      tried.push(c.label)
      return next(c.method)
    }
  }
}

/** What an ssh2 client error during the handshake means for the user. */
function handshakeError(err: Error & {level?: string; code?: string}, target: ResolvedTarget, tried: string[], skipped: string[]): SshError {
  const who = describeTarget(target)
  if (err.level === 'client-authentication') {
    const triedText = tried.length ? tried.join(', ') : 'nothing (no key file, no ssh-agent)'
    const skippedText = skipped.length ? `; skipped ${skipped.join(', ')}` : ''
    return new SshError('auth', `authentication as ${target.user} on ${who} failed; tried ${triedText}${skippedText}`, {
      hint: `pass --ssh-key <file> with a key ${target.user}@${target.alias} accepts, load the key into ssh-agent (SSH_AUTH_SOCK), or set User/IdentityFile for this host in ~/.ssh/config`,
      target: target.alias,
      cause: err,
    })
  }
  if (err.level === 'client-timeout') {
    return new SshError('timeout', `SSH handshake with ${who} timed out`, {
      hint: 'check the address and port, that sshd is running and not firewalled; raise the timeout on slow links',
      target: target.alias,
      cause: err,
    })
  }
  if ((err.code && UNREACHABLE_CODES.has(err.code)) || err.level === 'client-dns' || err.level === 'client-socket') {
    return new SshError('unreachable', `cannot connect to ${who}: ${err.code ?? err.message}`, {
      hint: `check that the node is up, that sshd listens on port ${target.port}, and that this machine can reach ${target.host}`,
      target: target.alias,
      cause: err,
    })
  }
  return new SshError('closed', `SSH connection to ${who} failed: ${err.message}`, {target: target.alias, cause: err})
}

/**
 * Connects and authenticates a client to `target`. `jumpChannel`: the stream a jump host opened to
 * it (else ProxyCommand when configured, else TCP). Resolves once the client is ready.
 */
export async function handshake(target: ResolvedTarget, opts: ConnectOptions, home: string, jumpChannel?: Duplex): Promise<Handshaken> {
  const who = describeTarget(target)
  const hostKeys = hostKeyVerifier(target, opts, home)
  const {candidates, skipped} = buildAuthCandidates(target, opts, home)
  const tried: string[] = []
  let proxy: ProxyProcess | undefined
  let sock = jumpChannel
  if (!jumpChannel && target.proxyCommand) {
    proxy = startProxyCommand(target)
    sock = proxy.stream
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
    algorithms: {cipher: [...CIPHERS], serverHostKey: hostKeys.serverHostKey},
    hostVerifier: (blob: Buffer): boolean => hostKeys.verify(blob),
    authHandler: authHandler(candidates, tried),
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
    client.on('error', (err: Error & {level?: string; code?: string}) => fail(hostKeys.failure ?? handshakeError(err, target, tried, skipped)))
    client.on('close', () => {
      fail(hostKeys.failure ?? new SshError('closed', `SSH connection to ${who} closed during the handshake`, {
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
  return {client, hostKey: hostKeys.verified, negotiated}
}
