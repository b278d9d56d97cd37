import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import type {Duplex} from 'node:stream'
import {type DockerEndpoint, describeDockerEndpoint, dockerRequestOptions} from '../docker/endpoint.js'

/**
 * `POST <path>` with `Upgrade: h2c` on the Docker API and, after `101 Switching Protocols`, hand
 * back the raw socket: what dockerd's `/grpc` (BuildKit Control API) and `/session` (BuildKit
 * session attach) endpoints speak. Header values given as arrays become repeated header lines.
 */
export function dialUpgrade(
  endpoint: DockerEndpoint,
  urlPath: string,
  headers: Record<string, string | string[]> = {},
): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      ...dockerRequestOptions(endpoint),
      method: 'POST',
      path: urlPath,
      headers: {...headers, Connection: 'Upgrade', Upgrade: 'h2c'},
    })
    req.on('upgrade', (_res, socket, head) => {
      if (head.length > 0) socket.unshift(head)
      resolve(socket)
    })
    req.on('response', (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8').trim()
        reject(new Error(`Docker API at ${describeDockerEndpoint(endpoint)} refused the upgrade of POST ${urlPath}: HTTP ${res.statusCode} ${body}`))
      })
    })
    req.on('error', (err) =>
      reject(new Error(`cannot reach the Docker API at ${describeDockerEndpoint(endpoint)} (POST ${urlPath}): ${err.message}. Is dockerd running? Set DOCKER_HOST or --docker-host.`)),
    )
    req.end()
  })
}

/** A local unix socket whose every connection is an upgraded dockerd stream. */
export interface UpgradeBridge {
  /** A grpc-js target for the bridge (`unix:///tmp/…/grpc.sock`). */
  target: string
  close(): Promise<void>
}

/**
 * grpc-js clients can only dial sockets themselves, so dockerd's `/grpc` is exposed as a private
 * unix socket: each connection grpc-js opens becomes one `POST /grpc` upgrade, piped both ways.
 */
export async function startUpgradeBridge(endpoint: DockerEndpoint, urlPath = '/grpc'): Promise<UpgradeBridge> {
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'sideload-bridge-'))
  const socketPath = path.join(dir, `${crypto.randomBytes(4).toString('hex')}.sock`)
  const open = new Set<net.Socket>()
  const server = net.createServer((local) => {
    open.add(local)
    local.on('close', () => open.delete(local))
    local.pause()
    dialUpgrade(endpoint, urlPath).then(
      (remote) => {
        open.add(remote as net.Socket)
        remote.on('close', () => open.delete(remote as net.Socket))
        local.pipe(remote).pipe(local)
        local.on('error', () => remote.destroy())
        remote.on('error', () => local.destroy())
        local.on('close', () => remote.destroy())
        remote.on('close', () => local.destroy())
        local.resume()
      },
      () => local.destroy(),
    )
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(socketPath, () => resolve())
  })
  return {
    target: `unix://${socketPath}`,
    close: async () => {
      for (const s of open) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await fs.promises.rm(dir, {recursive: true, force: true})
    },
  }
}
