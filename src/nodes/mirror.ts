// A node's registry mirrors as its containerd finds them, asked from the node itself.
// containerd reads `<config_path>/<registry host>/hosts.toml`, else `<config_path>/_default/hosts.toml`,
// and tries each `[host."…"]` that may pull (and resolve, for manifests) before the registry.
// `--p2p spegel` asks the node's mirror (Spegel) with a HEAD request whether its peers serve an
// image before asking containerd to pull it; doctor reads the same files.
import type {Duplex} from 'node:stream'
import {parseReference} from '../image/index.js'
import {describeTarget, SshError, type SshConnection, validateRemotePath} from '../ssh/index.js'
import {readToml} from '../util/toml.js'

/** A mirror a node's containerd pulls through: its address, and the registries (hosts.toml dirs) it serves. */
export interface Mirror {
  url: string
  registries: string[]
}

/** The mirrors (`[host."…"]` that may pull and resolve; no capabilities means all) over every registry, in file order. */
export function mirrorsOf(files: Map<string, string>): Mirror[] {
  const byUrl = new Map<string, Mirror>()
  for (const [registry, text] of files) {
    const toml = readToml(text)
    for (const table of toml.tables) {
      if (table.length !== 2 || table[0] !== 'host') continue
      const caps = toml.get([...table, 'capabilities'])
      if (Array.isArray(caps) && !(caps.includes('pull') && caps.includes('resolve'))) continue
      const url = table[1].replace(/\/+$/, '')
      const m = byUrl.get(url) ?? {url, registries: []}
      if (!m.registries.includes(registry)) m.registries.push(registry)
      byUrl.set(url, m)
    }
  }
  return [...byUrl.values()]
}

/** A file's text as the SSH user reads it: undefined when it does not exist; throws when it cannot be read. */
export async function nodeFileText(conn: SshConnection, file: string): Promise<string | undefined> {
  const out = await conn.execCapture(['cat', '--', file])
  if (out.code === 0) return out.stdout
  if (/no such file/i.test(out.stderr)) return undefined
  throw cannotRead(conn, file, out.stderr)
}

/** The SSH user could not read a file or folder on the node (`stderr`: what cat or find said). */
export function cannotRead(conn: SshConnection, file: string, stderr: string): SshError {
  const user = conn.target.user
  const denied = /permission denied/i.test(stderr)
  return new SshError('command', `${user} cannot read ${file}: ${denied ? 'permission denied' : stderr.trim().split('\n').pop() || 'reading it failed'}`,
    {hint: denied ? `connect as root, or let ${user} read ${file}` : undefined})
}

/**
 * containerd's registry config_path, as the node's config gives it, made a path for the node's
 * `find`/`cat`: absolute, of plain characters (never taken for an option). Throws, naming the node
 * and the value, when it is not: its mirror config is then not read.
 */
export function mirrorConfigPath(conn: SshConnection, configPath: string): string {
  try {
    return validateRemotePath(configPath)
  } catch {
    throw new SshError('invalid-argument', `the registry config_path of containerd on ${describeTarget(conn.target)} is ${JSON.stringify(configPath)}, not an absolute path of plain characters: its mirror config is not read`, {
      hint: 'set config_path to an absolute path (e.g. "/etc/containerd/certs.d") in the CRI registry section of the node\'s containerd config',
      target: conn.target.alias,
    })
  }
}

/**
 * The mirrors containerd asks for `registry` (its own hosts.toml, else `_default`'s). Throws when
 * there are none: its pulls would go to the registry itself.
 */
export async function registryMirrors(conn: SshConnection, configPath: string, registry: string): Promise<Mirror[]> {
  mirrorConfigPath(conn, configPath)
  for (const dir of [registry, '_default']) {
    const text = await nodeFileText(conn, `${configPath}/${dir}/hosts.toml`)
    if (text === undefined) continue
    const mirrors = mirrorsOf(new Map([[dir, text]]))
    if (mirrors.length) return mirrors
    break // containerd reads one file: a registry's own file without mirrors does not fall back to _default
  }
  throw new SshError('command', `no hosts.toml in ${configPath} names a mirror for ${registry} that may pull and resolve: its pulls go to the registry itself`, {
    hint: `run \`spegel configuration\` on the node, or write ${configPath}/${registry}/hosts.toml with [host."http://<node-ip>:5000"] and capabilities = ["pull", "resolve"]`,
  })
}

/** How long one question to a mirror may take (Spegel gives a manifest or HEAD lookup 3 s). */
const ASK_TIMEOUT_MS = 5000

/**
 * `method path` at the mirror, asked from the node (a TCP stream the node opens): the HTTP status.
 * Throws, naming the mirror, when it cannot be reached or gives no HTTP answer.
 */
export async function statusFromNode(conn: SshConnection, url: string, method: 'GET' | 'HEAD', path: string, timeoutMs = ASK_TIMEOUT_MS): Promise<number> {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new SshError('command', `the mirror address ${url} is not a URL`)
  }
  if (u.protocol !== 'http:') throw new SshError('command', `the mirror ${url} is not asked: ${u.protocol.replace(':', '')} is not probed (Spegel serves http)`)
  const port = Number(u.port || 80)
  let stream: Duplex | undefined
  let t: ReturnType<typeof setTimeout> | undefined
  const timer = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new SshError('timeout', `the mirror at ${url} did not answer ${method} ${path} within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs)
  })
  try {
    stream = await Promise.race([conn.openTcp(u.hostname, port), timer]).catch((err) => {
      // the SSH channel's refusal is what the node's TCP connect met
      const cause = (err as {cause?: unknown}).cause
      const why = (cause instanceof Error ? cause.message : (err as Error).message).replace(/^\(SSH\) Channel open failure: /, '')
      throw new SshError('unreachable', `the mirror at ${url} does not answer (${why})`, {
        hint: `start the node's mirror (Spegel) so that it listens on ${u.host}, or fix the address in the node's hosts.toml`,
      })
    })
    return await Promise.race([statusOf(stream, method, `${u.pathname.replace(/\/+$/, '')}${path}`, u.host), timer])
  } finally {
    clearTimeout(t)
    stream?.destroy()
  }
}

/** The status line's code of a request sent on the stream (HTTP/1.0: the server closes after its answer). */
function statusOf(stream: Duplex, method: string, path: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    let head = ''
    stream.on('data', (b: Buffer) => {
      head += b.toString('latin1')
      const line = /^HTTP\/\d(?:\.\d)? (\d{3})/.exec(head)
      if (line) resolve(Number(line[1]))
      else if (head.includes('\n') || head.length > 1024) reject(new Error(`not an HTTP answer: ${head.split('\n')[0].slice(0, 80)}`))
    })
    stream.on('error', reject)
    stream.on('close', () => reject(new Error('connection closed without an answer')))
    stream.write(`${method} ${path} HTTP/1.0\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)
  })
}

/**
 * Whether one of the node's mirrors (in the order containerd tries them) finds a peer that serves
 * `reference` (`repo:tag` or `repo@digest`) now: `HEAD /v2/<repository>/manifests/<tag|digest>?ns=<registry>`,
 * as containerd asks it. Only a 200 counts.
 */
export async function mirrorsServe(conn: SshConnection, mirrors: Mirror[], reference: string): Promise<boolean> {
  const ref = parseReference(reference)
  const path = `/v2/${ref.path}/manifests/${ref.digest ?? ref.tag}?ns=${encodeURIComponent(ref.domain)}`
  for (const mirror of mirrors) {
    if ((await statusFromNode(conn, mirror.url, 'HEAD', path)) === 200) return true
  }
  return false
}
