// The host key check of one handshake: which key types to ask for (those known_hosts already has
// for the host first, as ssh does), the verdict on the key the server shows (match; a host
// known_hosts has no key for → recorded only with trust on first use; a changed key, or one of
// another type than those known for the host, or a revoked one → refused), and the error that says so.
import * as path from 'node:path'
import type {ConnectConfig} from 'ssh2'
import {SshError} from './errors.js'
import {
  appendKnownHost,
  checkHostKey,
  type HostKey,
  type HostKeyCheck,
  hostKeyFromBlob,
  knownKeyTypes,
  loadKnownHosts,
} from './known-hosts.js'
import {describeTarget, type ResolvedTarget} from './target.js'
import type {ConnectOptions, HostKeyInfo} from './types.js'

const DEFAULT_SERVER_HOST_KEYS = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  'ssh-rsa',
] as const

type ServerHostKeyAlgorithms = NonNullable<ConnectConfig['algorithms']>['serverHostKey']

export interface HostKeyVerifier {
  /** the host key algorithms to offer, known types first */
  serverHostKey: ServerHostKeyAlgorithms
  /** ssh2's hostVerifier: true to go on */
  verify(blob: Buffer): boolean
  /** why verify() said no (undefined while it has not) */
  readonly failure: SshError | undefined
  /** what was verified, once verify() said yes */
  readonly verified: HostKeyInfo | undefined
}

export function hostKeyVerifier(target: ResolvedTarget, opts: ConnectOptions, home: string): HostKeyVerifier {
  const who = describeTarget(target)
  const userFiles = target.knownHostsFiles ?? [path.join(home, '.ssh', 'known_hosts'), path.join(home, '.ssh', 'known_hosts2')]
  const readFiles = opts.knownHostsPath ? [opts.knownHostsPath] : [...userFiles, '/etc/ssh/ssh_known_hosts', '/etc/ssh/ssh_known_hosts2']
  const writeFile = opts.knownHostsPath ?? userFiles[0]
  const tofu = opts.trustOnFirstUse ?? (target.strictHostKeyChecking === 'accept-new' || target.strictHostKeyChecking === 'no')
  const keyHost = target.hostKeyAlias ?? target.host
  const entries = loadKnownHosts(readFiles)

  // Ask first for the key types known_hosts already has for this host, as ssh does, so a host with
  // several keys shows one we know; a key of another type is then refused (checkHostKey).
  const known = knownKeyTypes(entries, keyHost, target.port).flatMap((t) => (t === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [t]))
  const serverHostKey = [...new Set([...known, ...DEFAULT_SERVER_HOST_KEYS])].filter((t) =>
    (DEFAULT_SERVER_HOST_KEYS as readonly string[]).includes(t),
  ) as ServerHostKeyAlgorithms

  let failure: SshError | undefined
  let verified: HostKeyInfo | undefined
  const verify = (blob: Buffer): boolean => {
    let key: HostKey
    try {
      key = hostKeyFromBlob(blob)
    } catch (err) {
      failure = new SshError('host-key-unknown', `${who} presented an unreadable host key: ${(err as Error).message}`, {target: target.alias})
      return false
    }
    const check = checkHostKey(entries, keyHost, target.port, key)
    if (check.status === 'match') {
      verified = {type: key.type, fingerprint: check.fingerprint, recorded: false, file: check.entry.file}
      return true
    }
    if (check.status === 'unknown' && tofu) {
      try {
        appendKnownHost(writeFile, keyHost, target.port, key, {hashed: target.hashKnownHosts})
      } catch (err) {
        failure = new SshError('host-key-unknown', `cannot record the host key of ${who} in ${writeFile}: ${(err as Error).message}`, {
          target: target.alias,
          cause: err,
        })
        return false
      }
      verified = {type: key.type, fingerprint: check.fingerprint, recorded: true, file: writeFile}
      return true
    }
    failure = hostKeyError(check, target, writeFile)
    return false
  }
  return {
    serverHostKey,
    verify,
    get failure() {
      return failure
    },
    get verified() {
      return verified
    },
  }
}

function hostKeyError(check: Exclude<HostKeyCheck, {status: 'match'}>, target: ResolvedTarget, writeFile: string): SshError {
  const who = describeTarget(target)
  if (check.status === 'unknown') {
    const others = check.certAuthority
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
      `known_hosts has ${check.sameType ? '' : `${check.previous.key.type} key `}${check.previousFingerprint} (${check.previous.file}:${check.previous.line})` +
      `${check.sameType ? '' : `, and no ${check.key.type} key for it: the node showed none of the key types known for it`}. ` +
      'Someone could be intercepting the connection, or the node was reinstalled.',
    {
      hint: `only if you know the node's key changed: ssh-keygen -R '${check.host}' -f ${check.previous.file}, then connect again (with --trust-new-host-keys to record the new key)`,
      target: target.alias,
    },
  )
}
