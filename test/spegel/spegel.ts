// Spegel (built from its Go module by scripts/build-daemons.sh spegel) on bed nodes: one
// `spegel registry` per node on the node's IP, static bootstrap with the other nodes' router
// addresses, and the registry host config that sends a node's pulls to its own Spegel.
import {generateKeyPairSync} from 'node:crypto'
import * as fsp from 'node:fs/promises'
import * as path from 'node:path'
import type {Bed, BedNode} from '../bed/bed.js'
import {nodePaths} from '../bed/layout.js'
import {daemonBinary} from '../daemons/daemons.js'

export const REGISTRY_PORT = 5000
export const ROUTER_PORT = 5001
export const METRICS_PORT = 9090

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'

function base58(bytes: Buffer): string {
  let n = BigInt(`0x${bytes.toString('hex') || '0'}`)
  let out = ''
  while (n > 0n) {
    out = B58[Number(n % 58n)] + out
    n /= 58n
  }
  for (const b of bytes) {
    if (b !== 0) break
    out = `1${out}`
  }
  return out
}

/**
 * A node's libp2p identity: an Ed25519 key as Spegel keeps it in its data dir (`private.key`,
 * PKCS #8 PEM), and its peer ID (an identity multihash of the protobuf public key, base58), which
 * a static bootstrap address must name (`/ip4/…/tcp/…/p2p/<id>`).
 */
export function spegelIdentity(): {pem: string; peerId: string} {
  const {privateKey, publicKey} = generateKeyPairSync('ed25519')
  const raw = publicKey.export({type: 'spki', format: 'der'}).subarray(-32)
  // libp2p PublicKey {Type: Ed25519 (1), Data: raw} → identity multihash (0x00, length)
  const proto = Buffer.concat([Buffer.from([0x08, 0x01, 0x12, 0x20]), raw])
  const peerId = base58(Buffer.concat([Buffer.from([0x00, proto.length]), proto]))
  return {pem: privateKey.export({type: 'pkcs8', format: 'pem'}).toString(), peerId}
}

export async function httpGet(url: string, timeoutMs = 2000): Promise<{status: number; text: string}> {
  try {
    const res = await fetch(url, {signal: AbortSignal.timeout(timeoutMs)})
    return {status: res.status, text: await res.text()}
  } catch {
    return {status: 0, text: ''}
  }
}

/**
 * Starts Spegel on every node (each bootstrapped with the others' router addresses), resolves
 * once every one is ready (its routing table has a peer). It runs in the node's namespaces and
 * goes with the bed.
 */
export async function startSpegel(bed: Bed, nodes: BedNode[]): Promise<void> {
  const bin = daemonBinary('spegel', 'spegel')
  const ids = new Map<BedNode, string>()
  for (const node of nodes) {
    const id = spegelIdentity()
    const dataDir = path.join(bed.nodeDir(node), 'spegel')
    await fsp.mkdir(dataDir, {recursive: true})
    await fsp.writeFile(path.join(dataDir, 'private.key'), id.pem, {mode: 0o600})
    ids.set(node, id.peerId)
  }
  await Promise.all(nodes.map((node) => {
    const peers = nodes.filter((n) => n !== node).map((n) => `/ip4/${n.ip}/tcp/${ROUTER_PORT}/p2p/${ids.get(n)}`)
    return bed.startDaemon(node, 'spegel', [
      bin, 'registry',
      '--containerd-sock', node.containerdSocket,
      '--containerd-namespace', 'k8s.io',
      '--registry-addr', `${node.ip}:${REGISTRY_PORT}`,
      '--router-addr', `${node.ip}:${ROUTER_PORT}`,
      '--metrics-addr', `${node.ip}:${METRICS_PORT}`,
      '--data-dir', path.join(bed.nodeDir(node), 'spegel'),
      '--bootstrap-kind', 'static',
      ...peers.flatMap((p) => ['--static-bootstrap-peers', p]),
      // the default 20 ms to find a peer is tight on 2 busy cores
      '--mirror-resolve-timeout', '2s',
    ], async () => (await httpGet(`http://${node.ip}:${REGISTRY_PORT}/readyz`)).status === 200)
  }))
}

/**
 * The registry host config of `registry` on the node: its own Spegel first (pull and resolve, as
 * `spegel configuration` writes it), then `server` — here an address where nothing listens, so a
 * pull can only succeed through the mirror.
 */
export async function mirrorToOwnSpegel(bed: Bed, node: BedNode, registry: string, server: string): Promise<void> {
  // the node's /etc/containerd (NODE_REGISTRY_CONFIG_PATH = /etc/containerd/certs.d inside it)
  const dir = path.join(nodePaths(bed.name, node.index).etcContainerd, 'certs.d', registry)
  await fsp.mkdir(dir, {recursive: true})
  await fsp.writeFile(path.join(dir, 'hosts.toml'), [
    `server = "${server}"`,
    '',
    `[host."http://${node.ip}:${REGISTRY_PORT}"]`,
    '  capabilities = ["pull", "resolve"]',
    '',
  ].join('\n'))
}

/** The node's Spegel's metrics: `name{labels} value` lines → value by `name{labels}`. */
export async function spegelMetrics(node: BedNode): Promise<Map<string, number>> {
  const {text} = await httpGet(`http://${node.ip}:${METRICS_PORT}/metrics`)
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    out.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return out
}

/**
 * Waits until the node's Spegel finds a peer for `digest` (HEAD of the manifest by digest through
 * its mirror answers 200). Returns the milliseconds it took.
 */
export async function waitFindable(node: BedNode, repository: string, digest: string, timeoutMs = 60_000): Promise<number> {
  const url = `http://${node.ip}:${REGISTRY_PORT}/v2/${repository}/manifests/${digest}?ns=docker.io`
  const start = Date.now()
  for (;;) {
    try {
      const res = await fetch(url, {method: 'HEAD', signal: AbortSignal.timeout(5000)})
      if (res.status === 200) return Date.now() - start
    } catch {
      // not answering yet
    }
    if (Date.now() - start > timeoutMs) throw new Error(`${node.name}'s Spegel found no peer with ${repository}@${digest} within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 250))
  }
}
