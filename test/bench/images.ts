// Benchmark images, generated once and kept in .cache/bench/ (git-ignored): makeImage is
// deterministic (same options → same bytes), so a cached archive is the same image. The options
// (without the output path) name the file; a sidecar JSON keeps the digests and sizes.
import {createHash} from 'node:crypto'
import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import * as path from 'node:path'
import {makeImage, type ImageInfo, type MakeImageOptions} from '../bed/images.js'

export type CachedImage = ImageInfo & {path: string}

export async function cachedImage(cacheDir: string, opts: MakeImageOptions, log: (msg: string) => void): Promise<CachedImage> {
  const {out: _out, ...spec} = opts
  const key = createHash('sha256').update(JSON.stringify(spec)).digest('hex').slice(0, 16)
  const file = path.join(cacheDir, `${key}.tar`)
  const infoFile = path.join(cacheDir, `${key}.json`)
  if (fs.existsSync(file) && fs.existsSync(infoFile)) {
    const info = JSON.parse(await fsp.readFile(infoFile, 'utf8')) as ImageInfo
    if ((await fsp.stat(file)).size === info.archiveBytes) return {...info, path: file}
  }
  await fsp.mkdir(cacheDir, {recursive: true})
  log(`generating ${opts.name} (${opts.layers.length} layers) into ${file}`)
  const tmp = `${file}.${process.pid}.tmp`
  const info = await makeImage({...opts, out: tmp})
  await fsp.rename(tmp, file)
  await fsp.writeFile(infoFile, JSON.stringify(info))
  return {...info, path: file}
}
