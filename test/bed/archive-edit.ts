// Editing small image archives for tests: read a tar whole, write one, rewrite a JSON document
// in it, merge docker-archives (as `docker save a b` writes them), spoil a blob.
import * as fs from 'node:fs'
import {pipeline} from 'node:stream/promises'
import * as tar from 'tar-stream'

export type Entry = {header: Partial<tar.Header> & {name: string}; data: Buffer}

/** Every entry of a (small) tar, in order, read whole. */
export async function readTar(file: string): Promise<Entry[]> {
  const entries: Entry[] = []
  const extract = tar.extract()
  extract.on('entry', (header, stream, next) => {
    const chunks: Buffer[] = []
    stream.on('data', (c: unknown) => chunks.push(c as Buffer))
    stream.on('end', () => {
      entries.push({header, data: Buffer.concat(chunks)})
      next()
    })
  })
  await pipeline(fs.createReadStream(file), extract)
  return entries
}

export async function writeTar(file: string, entries: Entry[]): Promise<void> {
  const pack = tar.pack()
  const done = pipeline(pack, fs.createWriteStream(file))
  for (const e of entries) {
    await new Promise<void>((resolve, reject) => pack.entry({...e.header, size: e.data.length}, e.data, (err) => (err ? reject(err) : resolve())))
  }
  pack.finalize()
  await done
}

/** A copy of an archive with one JSON document (index.json, manifest.json) rewritten; `repositories` dropped (docker save <id> writes none). */
export async function rewriteJson(from: string, to: string, doc: string, edit: (json: any) => unknown): Promise<void> {
  const entries = (await readTar(from)).filter((e) => e.header.name !== 'repositories')
  const target = entries.find((e) => e.header.name === doc)
  if (!target) throw new Error(`${from} has no ${doc}`)
  target.data = Buffer.from(JSON.stringify(edit(JSON.parse(target.data.toString('utf8')))))
  await writeTar(to, entries)
}

/** One docker-archive holding the images of several (as `docker save a b` writes), RepoTags as given. */
export async function mergeDocker(to: string, parts: {file: string; repoTags: string[] | null}[]): Promise<void> {
  const out: Entry[] = []
  const manifest: unknown[] = []
  const seen = new Set<string>()
  for (const part of parts) {
    const entries = await readTar(part.file)
    for (const e of entries) {
      if (e.header.name === 'manifest.json') {
        const [m] = JSON.parse(e.data.toString('utf8')) as {RepoTags: string[] | null}[]
        manifest.push({...m, RepoTags: part.repoTags})
      } else if (e.header.name !== 'repositories' && !seen.has(e.header.name)) {
        seen.add(e.header.name)
        out.push(e)
      }
    }
  }
  out.push({header: {name: 'manifest.json', type: 'file', mode: 0o644, mtime: new Date('2024-01-01T00:00:00Z')}, data: Buffer.from(JSON.stringify(manifest))})
  await writeTar(to, out)
}

/** A copy of an archive with one blob left out (`drop`), or with one of its bytes changed (`flip`, same size). */
export async function spoilBlob(from: string, to: string, digest: string, how: 'drop' | 'flip'): Promise<void> {
  const name = `blobs/sha256/${digest.replace(/^sha256:/, '')}`
  const entries: Entry[] = []
  for (const e of await readTar(from)) {
    if (e.header.name !== name) entries.push(e)
    else if (how === 'flip') {
      const data = Buffer.from(e.data)
      data[data.length >> 1] ^= 0xff
      entries.push({header: e.header, data})
    }
  }
  await writeTar(to, entries)
}
