import type * as grpc from '@grpc/grpc-js'
import {status as grpcStatus} from '@grpc/grpc-js'
import * as fs from 'node:fs'
import {firstEvent} from '../util/async.js'
import type {Packet} from './protos.js'
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
  const stats = statsFor(dirName)
  const queue: number[] = []
  let entries: WalkEntry[] = []
  let listed = false
  let finRequested = false
  let failed = false
  let active = 0
  let finished = false

  const send = async (packet: Partial<Packet>): Promise<void> => {
    if (failed) return
    try {
      // one set of listeners per wait, all removed when it ends (a large context waits thousands of times)
      if (!call.write(packet as Packet) && (await firstEvent(call, ['drain', 'close', 'cancelled', 'error'])) === 'error') failed = true
    } catch {
      // The daemon went away (cancelled build, dropped session): stop sending.
      failed = true
    }
  }

  const fail = (message: string): void => {
    if (failed) return
    failed = true
    call.emit('error', {code: grpcStatus.INTERNAL, details: `sending ${dirName} from ${dir}: ${message}`})
  }

  const finishIfDone = async (): Promise<void> => {
    if (finished || !finRequested || !listed || queue.length > 0 || active > 0 || failed) return
    finished = true
    await send({type: 'PACKET_FIN'})
    call.end()
  }

  const sendFile = async (id: number): Promise<void> => {
    const entry = entries[id]
    if (!entry || !entry.isRegular) throw new Error(`daemon requested entry ${id}, which is not a regular file`)
    const stream = fs.createReadStream(entry.absPath, {highWaterMark: CHUNK})
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      stats.dataPackets++
      stats.bytes += chunk.length
      await send({type: 'PACKET_DATA', ID: id, data: chunk})
    }
    await send({type: 'PACKET_DATA', ID: id, data: Buffer.alloc(0)})
  }

  const pump = (): void => {
    while (listed && active < READERS && queue.length > 0 && !failed) {
      const id = queue.shift() as number
      active++
      sendFile(id)
        .catch((err: Error) => fail(err.message))
        .finally(() => {
          active--
          pump()
          void finishIfDone()
        })
    }
  }

  call.on('data', (p: Packet) => {
    if (p.type === 'PACKET_REQ') {
      stats.requests++
      queue.push(p.ID)
      pump()
    } else if (p.type === 'PACKET_FIN') {
      finRequested = true
      void finishIfDone()
    } else if (p.type === 'PACKET_ERR') {
      failed = true
      call.end()
    }
  })
  call.on('error', () => {
    failed = true
  })
  call.on('cancelled', () => {
    failed = true
  })

  try {
    entries = await walkDir(dir, filterFromMetadata(call.metadata))
  } catch (err) {
    fail(`cannot read the directory: ${(err as Error).message}`)
    return
  }
  stats.entries += entries.length
  for (const e of entries) {
    if (failed) return
    await send({
      type: 'PACKET_STAT',
      stat: {
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
      },
    })
  }
  await send({type: 'PACKET_STAT'})
  listed = true
  pump()
  await finishIfDone()
}
