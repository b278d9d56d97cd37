// `doctor --p2p spegel`: whether a node can pull from its peers as `push --p2p spegel` asks it to.
// Its containerd must ask a registry mirror (the CRI's registry config_path, a hosts.toml there
// naming a mirror that may pull and resolve), that mirror (Spegel) must answer on the node, and
// the node must keep layers after unpacking, or it has nothing to serve its peers.
import type {NodeTarget} from '../../nodes/index.js'
import type {SshConnection} from '../../ssh/index.js'
import {type AddCheck, type CheckStatus, hintOf, message, withTimeout} from './check.js'
import {criConfig} from '../../containerd/index.js'
import {cannotRead, mirrorConfigPath, mirrorsOf, nodeFileText, statusFromNode} from '../../nodes/mirror.js'

export {mirrorsOf}

export const CONTAINERD_CONFIG = '/etc/containerd/config.toml'
const DEFAULT_CONFIG_PATH = '/etc/containerd/certs.d'

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
  try {
    mirrorConfigPath(conn, configPath)
  } catch (err) {
    return {status: 'fail', detail: message(err), hint: hintOf(err)}
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
  try {
    return {text: await nodeFileText(conn, file)}
  } catch (err) {
    return {unreadable: {status: 'fail', detail: message(err), hint: hintOf(err)}}
  }
}

/** Every `<configPath>/<registry>/hosts.toml`, by registry directory. */
async function readHostsFiles(conn: SshConnection, configPath: string, timeoutMs: number): Promise<{files: Map<string, string>} | {unreadable: Finding}> {
  const list = await withTimeout(conn.execCapture(['find', '--', configPath, '-mindepth', '2', '-maxdepth', '2', '-name', 'hosts.toml']), timeoutMs, `find ${configPath}`)
  if (list.code !== 0 && !list.stdout.trim()) {
    if (/no such file/i.test(list.stderr)) {
      return {unreadable: {status: 'fail', detail: `the registry config_path ${configPath} does not exist: pulls never ask a mirror`,
        hint: `run \`spegel configuration\` on the node, or write ${configPath}/_default/hosts.toml naming the node's Spegel`}}
    }
    const err = cannotRead(conn, configPath, list.stderr)
    return {unreadable: {status: 'fail', detail: message(err), hint: hintOf(err)}}
  }
  const files = new Map<string, string>()
  for (const file of list.stdout.split('\n').filter(Boolean).sort()) {
    const read = await readNodeFile(conn, file)
    if (read.unreadable) return {unreadable: read.unreadable}
    files.set(file.split('/').slice(-2)[0], read.text ?? '')
  }
  return {files}
}

/** GET /readyz at the mirror, from the node: the HTTP status, or why there is none. */
async function readyz(conn: SshConnection, url: string, timeoutMs: number): Promise<number | string> {
  return statusFromNode(conn, url, 'GET', '/readyz', timeoutMs).catch((err: Error) => /does not answer \((.*)\)$/.exec(err.message)?.[1] ?? err.message.replace(/^the mirror (at )?\S+ /, ''))
}
