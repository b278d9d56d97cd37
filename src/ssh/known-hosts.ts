import {createHash, createHmac, randomBytes, timingSafeEqual} from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'

/*
 * known_hosts as sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT" describes it: one key per line,
 * `[marker] hostpatterns keytype base64key [comment]`. Host patterns are comma lists with
 * `*`/`?` wildcards and `!` negation; a non-default port is written `[host]:port`; hashed
 * entries are `|1|base64(salt)|base64(HMAC-SHA1(salt, host))`. `@revoked` keys are refused;
 * `@cert-authority` lines concern host certificates, which we do not negotiate, so they are
 * kept out of matching.
 */

/** A public host key: its type name and the base64 of its SSH wire-format blob. */
export interface HostKey {
  type: string
  base64: string
}

export interface KnownHostEntry {
  file: string
  /** 1-based line number in `file`. */
  line: number
  marker?: '@revoked' | '@cert-authority'
  /** The host field as written (patterns or one hashed entry). */
  hosts: string
  key: HostKey
}

export type HostKeyCheck =
  | {status: 'match'; fingerprint: string; entry: KnownHostEntry}
  | {status: 'unknown'; fingerprint: string; key: HostKey; host: string; certAuthority?: KnownHostEntry}
  /** `sameType` false: known_hosts has keys for the host, none of the type it showed */
  | {status: 'changed'; fingerprint: string; key: HostKey; host: string; previous: KnownHostEntry; previousFingerprint: string; sameType: boolean}
  | {status: 'revoked'; fingerprint: string; key: HostKey; host: string; entry: KnownHostEntry}

/** The name a host is recorded under: `host` for port 22, `[host]:port` otherwise (as ssh does). */
export function knownHostName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`
}

/** Decode an SSH wire-format public key blob (string keytype, …) into a HostKey. */
export function hostKeyFromBlob(blob: Buffer): HostKey {
  if (blob.length < 4) throw new Error('host key blob too short')
  const len = blob.readUInt32BE(0)
  if (len > blob.length - 4 || len > 64) throw new Error('host key blob has an invalid type length')
  return {type: blob.subarray(4, 4 + len).toString('latin1'), base64: blob.toString('base64')}
}

/** `SHA256:<base64 without padding>` of the key blob, exactly as `ssh-keygen -l` prints it. */
export function fingerprint(key: HostKey | Buffer): string {
  const blob = Buffer.isBuffer(key) ? key : Buffer.from(key.base64, 'base64')
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`
}

/** RSA host keys are offered as rsa-sha2-256/512 but stored as ssh-rsa: compare families. */
function keyFamily(type: string): string {
  return type === 'rsa-sha2-256' || type === 'rsa-sha2-512' ? 'ssh-rsa' : type
}

function sameKey(a: HostKey, b: HostKey): boolean {
  return keyFamily(a.type) === keyFamily(b.type) && a.base64 === b.base64
}

/** Parse known_hosts text. Lines that are not well-formed are skipped, like ssh does. */
export function parseKnownHosts(text: string, file: string): KnownHostEntry[] {
  const entries: KnownHostEntry[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    let rest = lines[i].trim()
    if (rest === '' || rest.startsWith('#')) continue
    let marker: KnownHostEntry['marker']
    if (rest.startsWith('@')) {
      const [m, ...others] = rest.split(/\s+/)
      if (m !== '@revoked' && m !== '@cert-authority') continue
      marker = m
      rest = others.join(' ')
    }
    const fields = rest.split(/\s+/)
    if (fields.length < 3) continue
    const [hosts, type, base64] = fields
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) continue
    let key: HostKey
    try {
      key = hostKeyFromBlob(Buffer.from(base64, 'base64'))
    } catch {
      continue
    }
    if (key.type !== type) continue
    entries.push({file, line: i + 1, marker, hosts, key: {type, base64: Buffer.from(base64, 'base64').toString('base64')}})
  }
  return entries
}

/** Glob match with `*` and `?` (no other specials), case-insensitive like ssh's match_pattern. */
function globMatch(pattern: string, text: string): boolean {
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 'i')
  return re.test(text)
}

/** Does the host field of an entry match `name` (already in `host` / `[host]:port` form)? */
export function hostFieldMatches(hosts: string, name: string): boolean {
  if (hosts.startsWith('|1|')) {
    const [, , salt64, hash64] = hosts.split('|')
    if (!salt64 || !hash64) return false
    const expected = Buffer.from(hash64, 'base64')
    const actual = createHmac('sha1', Buffer.from(salt64, 'base64')).update(name).digest()
    return expected.length === actual.length && timingSafeEqual(expected, actual)
  }
  let matched = false
  for (const pattern of hosts.split(',')) {
    if (pattern.startsWith('!')) {
      if (globMatch(pattern.slice(1), name)) return false
    } else if (globMatch(pattern, name)) {
      matched = true
    }
  }
  return matched
}

/** Read every existing file of the list; missing files count as empty. */
export function loadKnownHosts(files: readonly string[]): KnownHostEntry[] {
  const entries: KnownHostEntry[] = []
  for (const file of files) {
    let text: string
    try {
      text = fs.readFileSync(file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue
      throw err
    }
    entries.push(...parseKnownHosts(text, file))
  }
  return entries
}

/** Check the key a server presented for `host:port` against known_hosts entries. */
export function checkHostKey(entries: readonly KnownHostEntry[], host: string, port: number, key: HostKey): HostKeyCheck {
  const name = knownHostName(host, port)
  const fp = fingerprint(key)
  const forHost = entries.filter((e) => e.marker !== '@cert-authority' && hostFieldMatches(e.hosts, name))
  const revoked = entries.find((e) => e.marker === '@revoked' && sameKey(e.key, key))
  if (revoked) return {status: 'revoked', fingerprint: fp, key, host: name, entry: revoked}
  const match = forHost.find((e) => e.marker === undefined && sameKey(e.key, key))
  if (match) return {status: 'match', fingerprint: fp, entry: match}
  // A host known_hosts has any key for must show one of them: a key of another type is a changed
  // key too, never a new one to record (else whoever answers for the host picks a type we lack).
  const sameType = forHost.find((e) => e.marker === undefined && keyFamily(e.key.type) === keyFamily(key.type))
  const previous = sameType ?? forHost.find((e) => e.marker === undefined)
  if (previous) {
    return {status: 'changed', fingerprint: fp, key, host: name, previous, previousFingerprint: fingerprint(previous.key), sameType: sameType !== undefined}
  }
  const certAuthority = entries.find((e) => e.marker === '@cert-authority' && hostFieldMatches(e.hosts, name))
  return {status: 'unknown', fingerprint: fp, key, host: name, certAuthority}
}

/** Key types already recorded for a host, so the handshake can prefer them (as ssh does). */
export function knownKeyTypes(entries: readonly KnownHostEntry[], host: string, port: number): string[] {
  const name = knownHostName(host, port)
  return [
    ...new Set(
      entries.filter((e) => e.marker === undefined && hostFieldMatches(e.hosts, name)).map((e) => e.key.type),
    ),
  ]
}

/** The host field for a new entry: plain, or hashed like `ssh-keygen -H` / HashKnownHosts yes. */
export function hashHostName(name: string, salt: Buffer = randomBytes(20)): string {
  return `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(name).digest('base64')}`
}

/** Append a host key (trust on first use). Creates the file (0600) and its directory (0700). */
export function appendKnownHost(file: string, host: string, port: number, key: HostKey, opts: {hashed?: boolean} = {}): string {
  const name = knownHostName(host, port)
  const line = `${opts.hashed ? hashHostName(name) : name} ${key.type === 'rsa-sha2-256' || key.type === 'rsa-sha2-512' ? 'ssh-rsa' : key.type} ${key.base64}\n`
  fs.mkdirSync(path.dirname(file), {recursive: true, mode: 0o700})
  let prefix = ''
  try {
    const st = fs.statSync(file)
    if (st.size > 0) {
      const fd = fs.openSync(file, 'r')
      try {
        const last = Buffer.alloc(1)
        fs.readSync(fd, last, 0, 1, st.size - 1)
        if (last[0] !== 0x0a) prefix = '\n'
      } finally {
        fs.closeSync(fd)
      }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  fs.appendFileSync(file, prefix + line, {mode: 0o600})
  return line.trimEnd()
}
