// What a source holds, without opening any image: whether it has an image, and what it has to
// tell the user when it does not.
import {ContainerdClient, localContainerdUnavailable} from '../containerd/index.js'
import {dockerHost, parseDockerHost} from '../docker/endpoint.js'
import {inspectDockerImage} from '../docker/images.js'
import {listArchive, normalizeImageName} from '../image/index.js'
import {archivesIn, DEFAULT_SOURCE_NAMESPACE, describeSource, SourceError, type SourceSpec} from './spec.js'

/** Which images a source holds: `has` for the check, `names` to tell the user what is there. */
export interface SourceInventory {
  description: string
  has(image: string): Promise<boolean>
  /** every image name the source has (fully qualified); undefined when it cannot list them */
  names(): Promise<string[] | undefined>
}

/** Every valid image name in an archive (one image or several). */
async function archiveNames(file: string): Promise<string[]> {
  const archive = await listArchive(file)
  try {
    return archive.names
  } finally {
    await archive.close()
  }
}

async function containerdNames(address: string, namespace: string): Promise<string[]> {
  const client = new ContainerdClient(address, {namespace})
  try {
    return (await client.imageList()).map((r) => r.name).filter((n) => !n.startsWith('sha256:')).sort()
  } catch (err) {
    throw localContainerdUnavailable(err, address, 'cannot list the images', 'start containerd here, point --containerd-address at its socket, ' +
      'or take the images from elsewhere with --source docker|DIR or --archive FILE') ?? err
  } finally {
    client.close()
  }
}

/** The inventory of a source; an archive on stdin has none (it can be read only once). */
export function sourceInventory(source: SourceSpec): SourceInventory {
  const description = describeSource(source)
  const listedBy = (names: () => Promise<string[]>): SourceInventory =>
    ({description, names, has: async (image) => (await names()).includes(normalizeImageName(image))})
  switch (source.kind) {
    case 'archive':
      if (source.path === '-') throw new SourceError('fix cannot read an archive from stdin (it may need it several times); save it to a file and pass --archive FILE')
      return listedBy(() => archiveNames(source.path))
    case 'archive-dir':
      return listedBy(async () => {
        const all: string[] = []
        for (const file of archivesIn(source.dir)) all.push(...(await archiveNames(file).catch(() => [])))
        return [...new Set(all)]
      })
    case 'containerd':
      return listedBy(() => containerdNames(source.address, source.namespace ?? DEFAULT_SOURCE_NAMESPACE))
    case 'docker': {
      const endpoint = parseDockerHost(dockerHost(source.endpoint))
      return {description, names: async () => undefined, has: async (image) => (await inspectDockerImage(endpoint, image)) !== undefined}
    }
  }
}

/** Why an image cannot be sent: the source lacks it; what it has instead (up to 20 names). */
export function notInSourceHint(image: string, inventory: SourceInventory, names: string[] | undefined): string {
  const list = names === undefined ? '' : names.length === 0 ? ' It has no images at all.' :
    ` It has: ${names.slice(0, 20).join(', ')}${names.length > 20 ? `, … (${names.length} in all)` : ''}.`
  return `image ${image} is not in the ${inventory.description}, so it cannot be sent.${list} ` +
    'Build or load it there first (or pass --source/--archive with the place that has it).'
}
