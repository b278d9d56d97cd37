// `doctor --p2p spegel`: whether a node can pull from its peers as `push --p2p spegel` asks it to.
// Its containerd must ask a registry mirror (the CRI's registry config_path, a hosts.toml there
// naming a mirror that may pull and resolve), that mirror (Spegel) must answer on the node, and
// the node must keep layers after unpacking, or it has nothing to serve its peers.
import type {Duplex} from 'node:stream'
import type {NodeTarget} from '../../nodes/index.js'
import type {SshConnection} from '../../ssh/index.js'
import {type AddCheck, type CheckStatus, message, withTimeout} from './check.js'
import {criConfig} from '../../containerd/index.js'
import {readToml} from '../../util/toml.js'

export const CONTAINERD_CONFIG = '/etc/containerd/config.toml'
const DEFAULT_CONFIG_PATH = '/etc/containerd/certs.d'

/** A mirror a node's containerd pulls through: its address, and the registries (hosts.toml dirs) it serves. */
export interface Mirror {
  url: string
  registries: string[]
}

/** What the check found wrong: one row's worth. */
interface Finding {
  status: CheckStatus
  detail: string
  hint?: string
}

export async function checkP2p(t: NodeTarget, conn: SshConnection, timeoutMs: number, add: AddCheck): Promise<void> {
  let found: Finding
  try {
    found = await withTimeout(inspect(conn, timeoutMs), timeoutMs * 2, `the registry mirror setup of ${t.name}`)
  } catch (err) {
    found = {status: 'fail', detail: `cannot check the registry mirror setup: ${message(err)}`}
  }
  add({check: 'p2p', target: t.name, ...found})
}

async function inspect(conn: SshConnection, timeoutMs: number): Promise<Finding> {
  const config = await readNodeFile(conn, CONTAINERD_CONFIG)
  if (config.unreadable) return config.unreadable
  const cri = criConfig(config.text ?? '')
  const configPath = cri.registryConfigPath
  if (!configPath) {
    return {status: 'fail',
      detail: `containerd has no registry config_path${config.text === undefined ? ` (no ${CONTAINERD_CONFIG})` : ''}: pulls never ask a mirror`,
      hint: `set config_path = "${DEFAULT_CONFIG_PATH}" under the CRI registry section ([plugins.'io.containerd.cri.v1.images'.registry] on containerd 2.x, [plugins."io.containerd.grpc.v1.cri".registry] on 1.6/1.7) of ${CONTAINERD_CONFIG} and restart containerd (or run \`spegel configuration\`)`}
  }
  if (cri.discardUnpackedLayers) {
    return {status: 'fail', detail: 'containerd discards layers after unpacking (discard_unpacked_layers = true): this node cannot serve an image to its peers',
      hint: `set discard_unpacked_layers = false in ${CONTAINERD_CONFIG} ([plugins.'io.containerd.cri.v1.images'] on containerd 2.x, [plugins."io.containerd.grpc.v1.cri".containerd] on 1.6/1.7) and restart containerd`}
  }
  const hosts = await readHostsFiles(conn, configPath, timeoutMs)
  if ('unreadable' in hosts) return hosts.unreadable
  const mirrors = mirrorsOf(hosts.files)
  if (!mirrors.length) {
    return {status: 'fail', detail: `no hosts.toml in ${configPath} names a mirror that may pull and resolve: pulls go to the registries themselves`,
      hint: `run \`spegel configuration\` on the node, or write ${configPath}/_default/hosts.toml with [host."http://<node-ip>:5000"] and capabilities = ["pull", "resolve"]`}
  }
  const answers = await Promise.all(mirrors.map(async (m) => ({m, answer: await readyz(conn, m.url, timeoutMs)})))
  const down = answers.find((a) => a.answer !== 200)
  if (down) {
    const why = typeof down.answer === 'number' ? `answers ${down.answer} to GET /readyz` : `does not answer (${down.answer})`
    return {status: 'fail', detail: `the mirror at ${down.m.url} (${registriesText(down.m.registries)}) ${why}: peers' images cannot be pulled through it`,
      hint: `start Spegel on the node (it must listen on ${down.m.url}; a Spegel just started is ready once it has found a peer), or fix the address in ${configPath}`}
  }
  return {status: 'ok', detail: mirrors.map((m) => `Spegel at ${m.url} ready; mirrors ${registriesText(m.registries)}`).join('; ')}
}

function registriesText(registries: string[]): string {
  return registries.map((r) => (r === '_default' ? 'every registry (_default)' : r)).join(', ')
}

/** A file's text as the SSH user reads it; undefined text when it does not exist. */
async function readNodeFile(conn: SshConnection, file: string): Promise<{text?: string; unreadable?: Finding}> {
  const out = await conn.execCapture(['cat', file])
  if (out.code === 0) return {text: out.stdout}
  if (/no such file/i.test(out.stderr)) return {}
  return {unreadable: cannotRead(conn, file, out.stderr)}
}

function cannotRead(conn: SshConnection, file: string, stderr: string): Finding {
  const user = conn.target.user
  const denied = /permission denied/i.test(stderr)
  return {status: 'fail', detail: `${user} cannot read ${file}: ${denied ? 'permission denied' : stderr.trim().split('\n').pop() || 'cat failed'}`,
    hint: denied ? `connect as root, or let ${user} read ${file}` : undefined}
}

/** Every `<configPath>/<registry>/hosts.toml`, by registry directory. */
async function readHostsFiles(conn: SshConnection, configPath: string, timeoutMs: number): Promise<{files: Map<string, string>} | {unreadable: Finding}> {
  const list = await withTimeout(conn.execCapture(['find', configPath, '-mindepth', '2', '-maxdepth', '2', '-name', 'hosts.toml']), timeoutMs, `find ${configPath}`)
  if (list.code !== 0 && !list.stdout.trim()) {
    if (/no such file/i.test(list.stderr)) {
      return {unreadable: {status: 'fail', detail: `the registry config_path ${configPath} does not exist: pulls never ask a mirror`,
        hint: `run \`spegel configuration\` on the node, or write ${configPath}/_default/hosts.toml naming the node's Spegel`}}
    }
    return {unreadable: cannotRead(conn, configPath, list.stderr)}
  }
  const files = new Map<string, string>()
  for (const file of list.stdout.split('\n').filter(Boolean).sort()) {
    const read = await readNodeFile(conn, file)
    if (read.unreadable) return {unreadable: read.unreadable}
    files.set(file.split('/').slice(-2)[0], read.text ?? '')
  }
  return {files}
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

/** GET /readyz at the mirror, from the node (a TCP stream the node opens): the HTTP status, or why there is none. */
async function readyz(conn: SshConnection, url: string, timeoutMs: number): Promise<number | string> {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    return 'not a URL'
  }
  if (u.protocol !== 'http:') return `${u.protocol.replace(':', '')} is not probed; Spegel serves http`
  const port = Number(u.port || 80)
  let stream: Duplex | undefined
  try {
    stream = await withTimeout(conn.openTcp(u.hostname, port), timeoutMs, `TCP to ${u.host} from the node`)
    return await withTimeout(statusOf(stream, u.host), timeoutMs, `GET ${url}/readyz`)
  } catch (err) {
    // the SSH channel's refusal is what the node's TCP connect met
    const cause = (err as {cause?: unknown}).cause
    return message(cause ?? err).replace(/^\(SSH\) Channel open failure: /, '')
  } finally {
    stream?.destroy()
  }
}

/** The status of `GET /readyz` sent on the stream (HTTP/1.0: the server closes after its answer). */
function statusOf(stream: Duplex, host: string): Promise<number> {
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
    stream.write(`GET /readyz HTTP/1.0\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)
  })
}
