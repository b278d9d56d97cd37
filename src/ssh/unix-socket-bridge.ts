// Local unix sockets bridged to unix sockets on a node: each connection to the local one opens a
// stream to the remote one (for grpc-js, which dials a path). Each lives in a private 0700
// directory, removed with the bridge.
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import type {Duplex} from 'node:stream'

interface Bridge {
  server: net.Server
  dir: string
  path: string
  sockets: Set<net.Socket>
}

export class UnixSocketBridges {
  private readonly bridges = new Map<string, Bridge>()

  /** `open` makes one stream to the remote socket; a bridge per remote path, made once. */
  constructor(private readonly open: (remotePath: string) => Promise<Duplex>) {}

  existing(remotePath: string): string | undefined {
    return this.bridges.get(remotePath)?.path
  }

  async bridge(remotePath: string): Promise<string> {
    const known = this.existing(remotePath)
    if (known) return known
    // unix socket paths are limited to ~104 bytes; fall back to /tmp when TMPDIR is long
    const base = os.tmpdir().length + path.basename(remotePath).length > 80 ? '/tmp' : os.tmpdir()
    const dir = fs.mkdtempSync(path.join(base, 'sideload-ssh-'))
    fs.chmodSync(dir, 0o700)
    const localPath = path.join(dir, path.basename(remotePath) || 'remote.sock')
    const sockets = new Set<net.Socket>()
    const server = net.createServer((local) => {
      sockets.add(local)
      local.on('close', () => sockets.delete(local))
      local.pause()
      this.open(remotePath).then(
        (remote) => {
          const teardown = (): void => {
            local.destroy()
            remote.destroy()
          }
          local.on('error', teardown)
          remote.on('error', teardown)
          local.on('close', () => remote.destroy())
          remote.on('close', () => local.destroy())
          local.pipe(remote)
          remote.pipe(local)
          local.resume()
        },
        () => local.destroy(),
      )
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(localPath, () => {
        server.off('error', reject)
        resolve()
      })
    })
    fs.chmodSync(localPath, 0o600)
    this.bridges.set(remotePath, {server, dir, path: localPath, sockets})
    return localPath
  }

  /** Closes every bridge, destroys its connections and removes its directory (synchronously). */
  closeAll(): void {
    for (const b of this.bridges.values()) {
      for (const s of b.sockets) s.destroy()
      b.server.close()
      fs.rmSync(b.dir, {recursive: true, force: true})
    }
    this.bridges.clear()
  }
}
