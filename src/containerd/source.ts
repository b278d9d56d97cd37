import {localContainerdUnavailable} from './errors.js'
import {MAX_DOCUMENT_SIZE, normalizeImageName, sha256Digest, type Descriptor, type ImageSource} from '../image/index.js'
import {ContainerdClient} from './client.js'

export interface ContainerdSourceOptions {
  /** containerd socket, e.g. unix:///run/containerd/containerd.sock */
  address: string
  namespace?: string
  /** Image name in that containerd (normalised like CRI: `app:1` → docker.io/library/app:1). */
  name: string
}

/**
 * An image in a containerd reachable from here (the build machine's own containerd, e.g.
 * after `nerdctl build`), read through the Images and Content APIs.
 */
export async function openContainerdSource(options: ContainerdSourceOptions): Promise<ImageSource> {
  const client = new ContainerdClient(options.address, {namespace: options.namespace ?? 'k8s.io', displayName: `local ${options.address}`})
  try {
    const source = await sourceFromClient(client, options.name)
    return {
      ...source,
      async close() {
        client.close()
      },
    }
  } catch (err) {
    client.close()
    throw localContainerdUnavailable(err, options.address, `cannot read ${options.name}`,
      'start containerd here, point --containerd-address at its socket, or push a saved archive: nerdctl save -o app.tar IMAGE && sideload push --archive app.tar …') ?? err
  }
}

/**
 * The same over a client you already have (e.g. a node's containerd reached over SSH);
 * close() leaves the client open. Throws, listing what is there, when `name` is absent.
 */
export async function sourceFromClient(client: ContainerdClient, imageName: string): Promise<ImageSource> {
  const description = `containerd ${client.displayName} (namespace ${client.namespace})`
  const name = normalizeImageName(imageName)
  const record = (await client.imageGet(name)) ?? (name !== imageName ? await client.imageGet(imageName) : undefined)
  if (!record) {
    const names = (await client.imageList()).map((i) => i.name)
    throw new Error(`image "${imageName}" is not in ${description}; it has: ${names.length ? names.slice(0, 20).join(', ') : 'no images'}`)
  }
  const target: Descriptor = {mediaType: record.target.mediaType, digest: record.target.digest, size: record.target.size}
  return {
    description: `${description} image ${record.name}`,
    name: record.name,
    target,
    async readBlob(desc) {
      if (desc.size > MAX_DOCUMENT_SIZE) throw new Error(`${description}: blob ${desc.digest} is too large to read whole`)
      const chunks: Buffer[] = []
      for await (const chunk of client.contentRead(desc.digest)) chunks.push(chunk as Buffer)
      const data = Buffer.concat(chunks)
      if (sha256Digest(data) !== desc.digest) throw new Error(`${description}: blob ${desc.digest} does not match its digest`)
      return data
    },
    async openBlob(desc) {
      return client.contentRead(desc.digest)
    },
    async close() {
      // the caller owns the client
    },
  }
}
