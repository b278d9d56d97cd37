// A source description turned into ImageSources: each requested image opened once, from whichever
// kind of source holds it, and one close() for all of them.
import {openContainerdSource} from '../containerd/index.js'
import {dockerHost, parseDockerHost} from '../docker/endpoint.js'
import {saveDockerImages} from '../docker/images.js'
import {type ArchiveContents, imageRecordName, type ImageSource, listArchive, readArchive, selectImage} from '../image/index.js'
import {archivesIn, DEFAULT_SOURCE_NAMESPACE, type SourceSpec} from './spec.js'
import {refuseUnnamed} from './unnamed.js'

/** One image of the source, under the name its record gets. */
export interface NamedImageSource {
  name: string
  source: ImageSource
}

/** Every requested image, opened from the source, and how to release them all. */
export interface OpenedSources {
  images: NamedImageSource[]
  close(): Promise<void>
}

/**
 * Open every named image from the source; `names` [] with an archive means every image in it
 * (refused when one has no valid name), and one name for an archive whose only image has none
 * names it. An archive is listed once (an archive given as '-', stdin, is spooled then) and each
 * image is read from it.
 */
export async function openSources(source: SourceSpec, names: string[]): Promise<OpenedSources> {
  const opened: NamedImageSource[] = []
  const closers: (() => Promise<void>)[] = []
  const close = async (): Promise<void> => {
    for (const image of [...opened].reverse()) await image.source.close().catch(() => undefined)
    for (const fn of [...closers].reverse()) await fn().catch(() => undefined)
    opened.length = 0
    closers.length = 0
  }
  const listed = async (input: Parameters<typeof listArchive>[0]): Promise<ArchiveContents> => {
    const contents = await listArchive(input)
    closers.push(() => contents.close())
    return contents
  }
  try {
    switch (source.kind) {
      case 'archive':
        await fromArchive(await listed(source.path === '-' ? process.stdin : source.path), source.path, names, opened)
        break
      case 'archive-dir':
        await fromArchiveDir(source.dir, names, opened)
        break
      case 'containerd':
        if (names.length === 0) throw new Error('name the images to push (from the local containerd)')
        for (const name of names) {
          opened.push({name: imageRecordName(name), source: await openContainerdSource({address: source.address, namespace: source.namespace ?? DEFAULT_SOURCE_NAMESPACE, name})})
        }
        break
      case 'docker': {
        if (names.length === 0) throw new Error('name the images to push (from the Docker daemon)')
        const contents = await listed(await saveDockerImages(parseDockerHost(dockerHost(source.endpoint)), names))
        for (const wanted of names) {
          const {entry, name} = selectImage(contents, wanted, false)
          opened.push({name: name!, source: await contents.open(entry, name)})
        }
        break
      }
    }
  } catch (err) {
    await close()
    throw err
  }
  return {images: opened, close}
}

/** The images of an archive, added to `opened` one by one (so that a failure half-way closes those already open). */
async function fromArchive(contents: ArchiveContents, archiveArg: string, names: string[], opened: NamedImageSource[]): Promise<void> {
  if (names.length === 0) {
    // every image in the archive, under each of its names; an unnamed one stops it all
    await refuseUnnamed(contents, archiveArg)
    if (contents.entries.length === 0) throw new Error(`${contents.label} contains no image`)
    for (const entry of contents.entries) {
      for (const name of entry.names) {
        if (!opened.some((o) => o.name === name)) opened.push({name, source: await contents.open(entry, name)})
      }
    }
    return
  }
  // one name for an archive whose only image has none names it (`sideload push --archive A NAME`)
  for (const wanted of names) {
    const {entry, name} = selectImage(contents, wanted, names.length === 1)
    opened.push({name: name!, source: await contents.open(entry, name)})
  }
}

/** Each name from the first archive of the folder that has it, added to `opened`. */
async function fromArchiveDir(dir: string, names: string[], opened: NamedImageSource[]): Promise<void> {
  const files = archivesIn(dir)
  if (names.length === 0) throw new Error(`name the images to push from ${dir}`)
  for (const name of names) {
    let found: ImageSource | undefined
    for (const file of files) {
      found = await readArchive(file, {name}).catch(() => undefined)
      if (found) break
    }
    if (!found) throw new Error(`image "${name}" is in none of the ${files.length} archive(s) in ${dir}. Hint: save it there with \`nerdctl save -o ${dir}/NAME.tar ${name}\``)
    opened.push({name: imageRecordName(name), source: found})
  }
}
