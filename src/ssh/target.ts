import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import SSHConfig from 'ssh-config'
import {SshError} from './errors.js'

/** A target as the user wrote it: `[user@]host[:port]`, `[user@][v6addr]:port` or `ssh://user@host:port`. */
export interface NodeTargetSpec {
  user?: string
  host: string
  port?: number
}

export type StrictHostKeyChecking = 'yes' | 'no' | 'accept-new' | 'ask'

/** A target after ~/.ssh/config: everything needed to open the connection. */
export interface ResolvedTarget {
  /** The host as the user named it (alias); used in messages. */
  alias: string
  /** The address to connect to (HostName, else the alias). */
  host: string
  port: number
  user: string
  /** Identity files from the config (absolute, ~ and %-tokens expanded), in config order. */
  identityFiles: string[]
  identitiesOnly: boolean
  /** IdentityAgent from the config (socket path), `none` disables the agent. */
  identityAgent?: string
  /** Reach this target through this jump host (ProxyJump; the last hop of the chain). */
  via?: ResolvedTarget
  /** ProxyCommand (run with /bin/sh, %h %p %r %n %% expanded at connect time), when no ProxyJump applies. */
  proxyCommand?: string
  /** UserKnownHostsFile from the config (absolute), if set. */
  knownHostsFiles?: string[]
  strictHostKeyChecking?: StrictHostKeyChecking
  hashKnownHosts: boolean
  /** HostKeyAlias: the name to look up in known_hosts instead of the host. */
  hostKeyAlias?: string
  connectTimeoutMs?: number
}

export interface ResolveOptions {
  /** ssh_config file; default ~/.ssh/config when it exists. `null` = no config file at all. */
  configPath?: string | null
  /** The local user (default: os.userInfo().username) and home (default: os.homedir()). */
  localUser?: string
  home?: string
}

const USER_RE = /^[A-Za-z0-9._][A-Za-z0-9._-]*$/
const HOST_RE = /^[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?$/
const IPV6_RE = /^[0-9A-Fa-f:.]+(?:%[A-Za-z0-9._-]+)?$/

function targetError(text: string, why: string): SshError {
  return new SshError('target', `invalid SSH target ${JSON.stringify(text)}: ${why}`, {
    hint: 'write it as [user@]host[:port], e.g. root@10.0.0.5 or admin@node-1:2222',
    target: text,
  })
}

function parsePort(text: string, raw: string): number {
  if (!/^[0-9]{1,5}$/.test(raw)) throw targetError(text, `port ${JSON.stringify(raw)} is not a number`)
  const port = Number(raw)
  if (port < 1 || port > 65535) throw targetError(text, `port ${port} is out of range`)
  return port
}

/** Parse `[user@]host[:port]` (also `[v6]:port`, bare IPv6, `ssh://…`). */
export function parseTarget(text: string): NodeTargetSpec {
  let rest = text.trim()
  if (rest === '') throw targetError(text, 'it is empty')
  if (/[\s\0]/.test(rest)) throw targetError(text, 'it contains whitespace')
  if (rest.startsWith('ssh://')) rest = rest.slice(6).replace(/\/$/, '')
  let user: string | undefined
  const at = rest.lastIndexOf('@')
  if (at >= 0) {
    user = rest.slice(0, at)
    rest = rest.slice(at + 1)
    if (!USER_RE.test(user)) throw targetError(text, `user ${JSON.stringify(user)} has unexpected characters`)
  }
  let host: string
  let port: number | undefined
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']')
    if (close < 0) throw targetError(text, 'missing ]')
    host = rest.slice(1, close)
    const after = rest.slice(close + 1)
    if (after !== '') {
      if (!after.startsWith(':')) throw targetError(text, `unexpected ${JSON.stringify(after)} after ]`)
      port = parsePort(text, after.slice(1))
    }
    if (!IPV6_RE.test(host) && !HOST_RE.test(host)) throw targetError(text, `host ${JSON.stringify(host)} is not valid`)
  } else if ((rest.match(/:/g) ?? []).length > 1) {
    host = rest // bare IPv6 address, no port possible
    if (!IPV6_RE.test(host)) throw targetError(text, `host ${JSON.stringify(host)} is not valid`)
  } else {
    const colon = rest.indexOf(':')
    host = colon >= 0 ? rest.slice(0, colon) : rest
    if (colon >= 0) port = parsePort(text, rest.slice(colon + 1))
    if (!HOST_RE.test(host)) throw targetError(text, `host ${JSON.stringify(host)} is not valid`)
  }
  return {user, host, port}
}

/** Format a spec back into `[user@]host[:port]` (brackets for IPv6 with a port). */
export function formatTarget(t: {user?: string; host: string; port?: number}): string {
  const host = t.port !== undefined && t.port !== 22 && t.host.includes(':') ? `[${t.host}]` : t.host
  return `${t.user ? `${t.user}@` : ''}${host}${t.port !== undefined && t.port !== 22 ? `:${t.port}` : ''}`
}

function localUserName(): string {
  try {
    return os.userInfo().username
  } catch {
    return process.env.USER ?? 'root'
  }
}

/** Expand `~` and ssh_config %-tokens (%d %u %h %r %p %n %%) in a path. */
function expandPath(value: string, tokens: Record<string, string>, home: string): string {
  let out = value.replace(/%(.)/g, (whole, c: string) => (c === '%' ? '%' : (tokens[c] ?? whole)))
  if (out === '~') out = home
  else if (out.startsWith('~/')) out = path.join(home, out.slice(2))
  // like ssh, a relative path stays relative to the working directory
  return path.resolve(out)
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v
}

function list(v: string | string[] | undefined): string[] {
  if (v === undefined) return []
  return Array.isArray(v) ? v : v.split(/\s+/).filter(Boolean)
}

function yes(v: string | undefined): boolean {
  return v !== undefined && /^(yes|true)$/i.test(v)
}

/** Read and parse the ssh_config file, or undefined when there is none. */
export function loadSshConfig(opts: ResolveOptions = {}): SSHConfig | undefined {
  const home = opts.home ?? os.homedir()
  const file = opts.configPath === undefined ? path.join(home, '.ssh', 'config') : opts.configPath
  if (file === null) return undefined
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && opts.configPath === undefined) return undefined
    throw new SshError('target', `cannot read ssh config ${file}: ${(err as Error).message}`, {
      hint: 'check the --ssh-config path',
      cause: err,
    })
  }
  try {
    return SSHConfig.parse(expandIncludes(text, file, home, 0))
  } catch (err) {
    if (err instanceof SshError) throw err
    throw new SshError('target', `cannot parse ssh config ${file}: ${(err as Error).message}`, {cause: err})
  }
}

const MAX_INCLUDE_DEPTH = 16

/** Glob (`*`, `?`) over path components, sorted like glob(3). */
function globFiles(pattern: string): string[] {
  const parts = pattern.split('/').filter(Boolean)
  let current = ['/']
  for (const [i, part] of parts.entries()) {
    const last = i === parts.length - 1
    const next: string[] = []
    for (const dir of current) {
      if (!/[*?]/.test(part)) {
        next.push(path.join(dir, part))
        continue
      }
      let names: string[]
      try {
        names = fs.readdirSync(dir)
      } catch {
        continue
      }
      const re = new RegExp(`^${part.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`)
      for (const n of names.sort()) if (re.test(n) && !(n.startsWith('.') && !part.startsWith('.'))) next.push(path.join(dir, n))
    }
    current = last ? next : next.filter((d) => fs.statSync(d, {throwIfNoEntry: false})?.isDirectory())
  }
  return current.filter((f) => fs.statSync(f, {throwIfNoEntry: false})?.isFile())
}

/**
 * Inline `Include` files (the parser has no Include support). Relative paths are taken from
 * ~/.ssh, as ssh does for the user config. Included Host/Match blocks must not swallow the
 * lines after the Include, so the enclosing block header (or `Host *` at top level) is
 * repeated after included text that opened blocks of its own.
 */
function expandIncludes(text: string, file: string, home: string, depth: number): string {
  if (depth > MAX_INCLUDE_DEPTH) {
    throw new SshError('target', `ssh config Include nesting deeper than ${MAX_INCLUDE_DEPTH} at ${file} (a loop?)`)
  }
  const out: string[] = []
  let header: string | undefined
  for (const line of text.split(/\r?\n/)) {
    const inc = /^\s*include(?:\s*=\s*|\s+)(.*?)\s*$/i.exec(line)
    if (!inc) {
      if (/^\s*(host|match)(\s|=)/i.test(line)) header = line
      out.push(line)
      continue
    }
    for (const raw of inc[1].match(/"[^"]*"|\S+/g) ?? []) {
      const word = raw.replace(/^"(.*)"$/, '$1')
      const abs = word.startsWith('~/') ? path.join(home, word.slice(2)) : path.isAbsolute(word) ? word : path.join(home, '.ssh', word)
      for (const f of globFiles(abs)) {
        const inner = expandIncludes(fs.readFileSync(f, 'utf8'), f, home, depth + 1)
        out.push(`# include ${f}`, inner)
        if (/^\s*(host|match)(\s|=)/im.test(inner)) out.push(header ?? 'Host *')
      }
    }
  }
  return out.join('\n')
}

/** Split a ProxyJump value into hop specs (`none` = no jump). */
export function parseProxyJump(value: string): NodeTargetSpec[] {
  if (value.trim().toLowerCase() === 'none') return []
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map(parseTarget)
}

const MAX_JUMP_DEPTH = 8

/**
 * Resolve a target through ssh_config like ssh(1): explicit user/port win over the config,
 * the config wins over defaults (port 22, the local user). ProxyJump hops are resolved
 * through the config too; `ProxyJump a,b` reaches b through a and the target through b.
 */
export function resolveTarget(target: string | NodeTargetSpec, opts: ResolveOptions = {}): ResolvedTarget {
  const spec = typeof target === 'string' ? parseTarget(target) : target
  const config = loadSshConfig(opts)
  return resolveWith(spec, config, opts, 0, undefined)
}

/** The options ssh_config gives one host (keys lower-cased). */
type HostOptions = Record<string, string | string[]>

function resolveWith(
  spec: NodeTargetSpec,
  config: SSHConfig | undefined,
  opts: ResolveOptions,
  depth: number,
  explicitVia: ResolvedTarget | null | undefined,
): ResolvedTarget {
  checkJumpDepth(spec, depth)
  const home = opts.home ?? os.homedir()
  const localUser = opts.localUser ?? localUserName()
  const c = hostOptions(config, spec)
  const host = hostNameOf(spec, c)
  const port = portOf(spec, c)
  const user = spec.user ?? first(c.user) ?? localUser
  const tokens: Record<string, string> = {d: home, u: localUser, h: host, r: user, p: String(port), n: spec.host}
  const identityFiles = list(c.identityfile)
    .filter((f) => f.toLowerCase() !== 'none')
    .map((f) => expandPath(f, tokens, home))
  const identityAgent = identityAgentOf(first(c.identityagent), tokens, home)
  const knownHostsFiles = c.userknownhostsfile ? list(c.userknownhostsfile).map((f) => expandPath(f, tokens, home)) : undefined
  const via = explicitVia !== undefined ? (explicitVia ?? undefined) : jumpHostOf(spec, c, config, opts, depth)
  const timeout = first(c.connecttimeout)
  return {
    alias: spec.host,
    host,
    proxyCommand: proxyCommandOf(c, via),
    port,
    user,
    identityFiles,
    identitiesOnly: yes(first(c.identitiesonly)),
    identityAgent,
    via,
    knownHostsFiles,
    strictHostKeyChecking: strictHostKeyCheckingOf(first(c.stricthostkeychecking)),
    hashKnownHosts: yes(first(c.hashknownhosts)),
    hostKeyAlias: first(c.hostkeyalias),
    connectTimeoutMs: timeout && /^[0-9]+$/.test(timeout) ? Number(timeout) * 1000 : undefined,
  }
}

function checkJumpDepth(spec: NodeTargetSpec, depth: number): void {
  if (depth > MAX_JUMP_DEPTH) {
    throw new SshError('target', `ProxyJump chain for ${spec.host} is longer than ${MAX_JUMP_DEPTH} hops (a loop?)`, {
      hint: 'check the ProxyJump lines of your ssh config',
      target: spec.host,
    })
  }
}

/** What the config says for this host (and user); nothing without a config. */
function hostOptions(config: SSHConfig | undefined, spec: NodeTargetSpec): HostOptions {
  // matchExec: false — we never run shell commands from a config file (Match exec is skipped).
  return config
    ? config.compute(spec.user ? {Host: spec.host, User: spec.user} : {Host: spec.host}, {ignoreCase: true, matchExec: false})
    : {}
}

/** HostName (%h: the alias), else the alias itself. */
function hostNameOf(spec: NodeTargetSpec, c: HostOptions): string {
  const raw = first(c.hostname)
  return raw ? raw.replace(/%(.)/g, (w, ch: string) => (ch === 'h' ? spec.host : ch === '%' ? '%' : w)) : spec.host
}

/** The explicit port, else the config's, else 22. */
function portOf(spec: NodeTargetSpec, c: HostOptions): number {
  const port = spec.port ?? (first(c.port) ? Number(first(c.port)) : 22)
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new SshError('target', `ssh config gives ${spec.host} an invalid Port ${first(c.port)}`, {target: spec.host})
  }
  return port
}

/** IdentityAgent as a socket path; `none` and `SSH_AUTH_SOCK` (also `$SSH_AUTH_SOCK`) stay words. */
function identityAgentOf(raw: string | undefined, tokens: Record<string, string>, home: string): string | undefined {
  if (raw === undefined) return undefined
  if (raw.toLowerCase() === 'none' || raw === 'SSH_AUTH_SOCK') return raw
  return expandPath(raw.replace(/^\$SSH_AUTH_SOCK$/, 'SSH_AUTH_SOCK'), tokens, home)
}

/** StrictHostKeyChecking as one of ssh's four answers (`off` is `no`, anything unknown `yes`). */
function strictHostKeyCheckingOf(value: string | undefined): StrictHostKeyChecking | undefined {
  const v = value?.toLowerCase()
  if (v === undefined) return undefined
  if (v === 'yes' || v === 'no' || v === 'accept-new' || v === 'ask') return v
  return v === 'off' ? 'no' : 'yes'
}

/** The last hop of the host's ProxyJump chain, resolved through the config; undefined without one. */
function jumpHostOf(spec: NodeTargetSpec, c: HostOptions, config: SSHConfig | undefined, opts: ResolveOptions, depth: number): ResolvedTarget | undefined {
  const jump = first(c.proxyjump)
  if (!jump) return undefined
  let hops: NodeTargetSpec[]
  try {
    hops = parseProxyJump(jump)
  } catch (err) {
    throw new SshError('target', `ProxyJump ${JSON.stringify(jump)} for ${spec.host} is not valid: ${(err as Error).message}`, {
      target: spec.host,
      cause: err,
    })
  }
  return resolveChain(hops, config, opts, depth + 1)
}

/** ProxyCommand as one line, unless a ProxyJump applies or it is `none`. */
function proxyCommandOf(c: HostOptions, via: ResolvedTarget | undefined): string | undefined {
  const raw = c.proxycommand
  const text = Array.isArray(raw) ? raw.map((w) => (/\s/.test(w) ? `"${w}"` : w)).join(' ') : raw
  return via || !text || text.toLowerCase() === 'none' ? undefined : text
}

/** Resolve `a,b,c`: a with its own config (incl. its ProxyJump), b via a, c via b. Returns c. */
function resolveChain(hops: NodeTargetSpec[], config: SSHConfig | undefined, opts: ResolveOptions, depth: number): ResolvedTarget | undefined {
  let prev: ResolvedTarget | undefined
  for (const [i, hop] of hops.entries()) {
    prev = resolveWith(hop, config, opts, depth + i, i === 0 ? undefined : (prev ?? null))
  }
  return prev
}

/** Resolve an explicit jump list (e.g. a --jump flag) and attach it to a resolved target. */
export function withProxyJump(target: ResolvedTarget, jump: string, opts: ResolveOptions = {}): ResolvedTarget {
  const config = loadSshConfig(opts)
  return {...target, via: resolveChain(parseProxyJump(jump), config, opts, 1)}
}

/** A stable key for pooling: user@host:port plus the jump chain. */
export function targetKey(t: ResolvedTarget): string {
  const self = `${t.user}@${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`
  return t.via ? `${targetKey(t.via)}>${self}` : self
}

/** The target as the user should read it in messages: alias (and address if different). */
export function describeTarget(t: ResolvedTarget): string {
  const addr = formatTarget({user: t.user, host: t.host, port: t.port})
  return t.alias === t.host ? addr : `${t.alias} (${addr})`
}
