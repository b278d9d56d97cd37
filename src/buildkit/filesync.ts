import type * as grpc from '@grpc/grpc-js'
import {status as grpcStatus} from '@grpc/grpc-js'
import * as fs from 'node:fs'
import {firstEvent} from '../util/async.js'
import type {FsStat, Packet} from './protos.js'
import {type WalkEntry, type WalkFilter, walkDir} from './fswalk.js'

/** What the daemon pulled through FileSync, per local directory name. */
export interface FileSyncStats {
  /** STAT entries listed. */
  entries: number
  /** PACKET_REQ received (files the daemon asked for). */
  requests: number
  /** PACKET_DATA sent carrying bytes (the empty end-of-file markers are not counted). */
  dataPackets: number
  bytes: number
}

export function emptyFileSyncStats(): FileSyncStats {
  return {entries: 0, requests: 0, dataPackets: 0, bytes: 0}
}

const CHUNK = 32 * 1024
const READERS = 4

/**
 * Read a metadata key the daemon may have sent as several header fields. Node's http2 server
 * (under grpc-js) joins repeated headers with ", ", so split them back; newer daemons URL-query
 * encode values and say so with `<key>-encoded: 1`, which makes the split unambiguous.
 */
export function metadataList(md: grpc.Metadata, key: string): string[] | undefined {
  const raw = md.get(key).map(String)
  if (raw.length === 0) return undefined
  const encoded = md.get(`${key}-encoded`).map(String)[0] === '1'
  const values = raw.flatMap((v) => v.split(', ')).filter((v) => v !== '')
  return encoded ? values.map((v) => decodeURIComponent(v.replace(/\+/g, ' '))) : values
}

function filterFromMetadata(md: grpc.Metadata): WalkFilter {
  return {
    includePatterns: metadataList(md, 'include-patterns'),
    excludePatterns: metadataList(md, 'exclude-patterns'),
    followPaths: metadataList(md, 'followpaths'),
  }
}

/**
 * Serve one `FileSync/DiffCopy` call as the sender: list the requested local directory (one
 * STAT per entry, then an empty STAT), answer each REQ with DATA chunks and an empty DATA,
 * and answer the daemon's FIN with ours.
 */
export async function serveDiffCopy(
  call: grpc.ServerDuplexStream<Packet, Packet>,
  dirs: Record<string, string>,
  statsFor: (dirName: string) => FileSyncStats,
): Promise<void> {
  const dirName = call.metadata.get('dir-name').map(String)[0] ?? ''
  const dir = dirs[dirName]
  if (dir === undefined) {
    call.emit('error', {code: grpcStatus.NOT_FOUND, details: `no access allowed to dir "${dirName}"`})
    return
  }
  const sender = new DiffCopySender(call, dirName, dir, statsFor(dirName))
  sender.listen()
  await sender.sendListing(filterFromMetadata(call.metadata))
}

/**
 * The sending side of one DiffCopy call: the listing first, then the files the daemon asks for,
 * READERS at a time, then FIN once the daemon sent its own and nothing is left to send.
 */
class DiffCopySender {
  private readonly queue: number[] = []
  private entries: WalkEntry[] = []
  private listed = false
  private finRequested = false
  private failed = false
  private active = 0
  private finished = false

  constructor(
    private readonly call: grpc.ServerDuplexStream<Packet, Packet>,
    private readonly dirName: string,
    private readonly dir: string,
    private readonly stats: FileSyncStats,
  ) {}

  /** Follow the daemon: a REQ queues a file, its FIN asks for ours, an ERR or a gone call stops sending. */
  listen(): void {
    this.call.on('data', (p: Packet) => this.receive(p))
    this.call.on('error', () => {
      this.failed = true
    })
    this.call.on('cancelled', () => {
      this.failed = true
    })
  }

  private receive(p: Packet): void {
    if (p.type === 'PACKET_REQ') {
      this.stats.requests++
      this.queue.push(p.ID)
      this.pump()
    } else if (p.type === 'PACKET_FIN') {
      this.finRequested = true
      void this.finishIfDone()
    } else if (p.type === 'PACKET_ERR') {
      this.failed = true
      this.call.end()
    }
  }

  /** Walk the directory and send one STAT per entry, then the empty STAT; then serve the requests. */
  async sendListing(filter: WalkFilter): Promise<void> {
    try {
      this.entries = await walkDir(this.dir, filter)
    } catch (err) {
      this.fail(`cannot read the directory: ${(err as Error).message}`)
      return
    }
    this.stats.entries += this.entries.length
    for (const e of this.entries) {
      if (this.failed) return
      await this.send({type: 'PACKET_STAT', stat: statOf(e)})
    }
    await this.send({type: 'PACKET_STAT'})
    this.listed = true
    this.pump()
    await this.finishIfDone()
  }

  private async send(packet: Partial<Packet>): Promise<void> {
    if (this.failed) return
    try {
      // one set of listeners per wait, all removed when it ends (a large context waits thousands of times)
      if (!this.call.write(packet as Packet) && (await firstEvent(this.call, ['drain', 'close', 'cancelled', 'error'])) === 'error') this.failed = true
    } catch {
      // The daemon went away (cancelled build, dropped session): stop sending.
      this.failed = true
    }
  }

  private fail(message: string): void {
    if (this.failed) return
    this.failed = true
    this.call.emit('error', {code: grpcStatus.INTERNAL, details: `sending ${this.dirName} from ${this.dir}: ${message}`})
  }

  private async finishIfDone(): Promise<void> {
    if (this.finished || !this.finRequested || !this.listed || this.queue.length > 0 || this.active > 0 || this.failed) return
    this.finished = true
    await this.send({type: 'PACKET_FIN'})
    this.call.end()
  }

  /** Start sending queued files, up to READERS at once, once the listing is out. */
  private pump(): void {
    while (this.listed && this.active < READERS && this.queue.length > 0 && !this.failed) {
      const id = this.queue.shift() as number
      this.active++
      this.sendFile(id)
        .catch((err: Error) => this.fail(err.message))
        .finally(() => {
          this.active--
          this.pump()
          void this.finishIfDone()
        })
    }
  }

  /** The file's bytes as DATA chunks, then an empty DATA. */
  private async sendFile(id: number): Promise<void> {
    const entry = this.entries[id]
    if (!entry || !entry.isRegular) throw new Error(`daemon requested entry ${id}, which is not a regular file`)
    const stream = fs.createReadStream(entry.absPath, {highWaterMark: CHUNK})
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      this.stats.dataPackets++
      this.stats.bytes += chunk.length
      await this.send({type: 'PACKET_DATA', ID: id, data: chunk})
    }
    await this.send({type: 'PACKET_DATA', ID: id, data: Buffer.alloc(0)})
  }
}

/** A listing entry as fsutil's Stat on the wire (no xattrs). */
function statOf(e: WalkEntry): FsStat {
  return {
    path: e.path,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    size: e.size,
    modTime: e.modTime,
    linkname: e.linkname,
    devmajor: e.devmajor,
    devminor: e.devminor,
    xattrs: {},
  }
}
