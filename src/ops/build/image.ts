import * as fs from 'node:fs'
import * as path from 'node:path'
import type {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import type {BuilderEndpoint} from '../../buildkit/client.js'
import {DEFAULT_CONTAINERD_ADDRESS} from '../../containerd/index.js'
import {type DockerEndpoint, describeDockerEndpoint} from '../../docker/endpoint.js'
import {saveDockerImages} from '../../docker/images.js'
import {type ArchiveImage, readArchive} from '../../image/archive.js'
import {resolveImage} from '../../image/model.js'
import {writeOciArchive} from '../../image/oci-writer.js'
import {normalizeImageName} from '../../image/reference.js'
import type {BuildOptions, BuildOutput, ImageLocation} from './options.js'

/**
 * Where the built image is: dockerd's image store (saved to the archive asked for, which dockerd
 * cannot export itself), the archive the daemon streamed back, or the containerd it shares.
 */
export async function locateImage(endpoint: BuilderEndpoint, opts: BuildOptions, exporterResponse: Record<string, string>, streamed: BuildOutput['type'] | undefined, archivePath: string | undefined): Promise<ImageLocation> {
  const digest = exporterResponse['containerimage.digest']
  if (endpoint.kind === 'docker' && !streamed) {
    const imageId = exporterResponse['containerimage.config.digest'] ?? digest ?? ''
    let location: ImageLocation = {kind: 'dockerd', dockerHost: describeDockerEndpoint(endpoint.docker), names: opts.tags, imageId}
    if (opts.output?.type === 'docker' || opts.output?.type === 'oci') {
      const archive = path.resolve(opts.output.path)
      const saved = await saveDockerImages(endpoint.docker, opts.tags.length > 0 ? opts.tags : [imageId])
      if (opts.output.type === 'docker') await pipeline(saved, fs.createWriteStream(archive))
      else await writeOciFromDockerArchive(saved, archive, opts.tags[0], opts.workDir)
      location = {kind: 'archive', format: opts.output.type, path: archive, names: opts.tags}
    }
    return location
  }
  if (archivePath && streamed) return {kind: 'archive', format: streamed, path: archivePath, names: opts.tags}
  return {
    kind: 'containerd',
    buildkitAddress: endpoint.kind === 'buildkitd' ? endpoint.address : '',
    containerdAddress: opts.containerdAddress ?? DEFAULT_CONTAINERD_ADDRESS,
    namespace: opts.namespace ?? 'k8s.io',
    names: opts.tags.map(normalizeImageName),
  }
}

/** The image as a docker-archive stream (BuildResult.openImageStream). */
export async function openImageStream(location: ImageLocation, docker: DockerEndpoint | undefined): Promise<Readable> {
  if (location.kind === 'dockerd' && docker) {
    return saveDockerImages(docker, location.names.length > 0 ? location.names : [location.imageId])
  }
  if (location.kind === 'archive' && location.format === 'docker') return fs.createReadStream(location.path)
  if (location.kind === 'containerd') {
    throw new Error(`the image is in containerd namespace ${location.namespace} of the BuildKit host, not in an archive; read it from that containerd instead`)
  }
  throw new Error(`a ${location.kind === 'archive' ? location.format : location.kind} output is not a docker-archive; build with --output docker:FILE or without --output`)
}

/** The image as an image/ source (BuildResult.openImageSource). */
export async function openImageSource(location: ImageLocation, docker: DockerEndpoint | undefined, workDir: string | undefined): Promise<ArchiveImage> {
  const name = location.names[0]
  if (location.kind === 'archive' && (location.format === 'docker' || location.format === 'oci')) return readArchive(location.path, {name})
  if (location.kind === 'dockerd' && docker) {
    return readArchive(await saveDockerImages(docker, location.names.length > 0 ? location.names : [location.imageId]), {name, tmpDir: workDir})
  }
  return Promise.reject(
    new Error(
      location.kind === 'containerd'
        ? `the image is in containerd namespace ${location.namespace} of the BuildKit host; read it from that containerd instead`
        : 'a tar output is a root filesystem, not an image',
    ),
  )
}

/** Convert a docker-archive stream into an OCI layout tar at `out` (dockerd 20.10 cannot export OCI itself). */
async function writeOciFromDockerArchive(dockerArchive: Readable, out: string, name: string | undefined, workDir: string | undefined): Promise<void> {
  const source = await readArchive(dockerArchive, {name, tmpDir: workDir})
  try {
    const image = await resolveImage(source)
    const file = fs.createWriteStream(out)
    await writeOciArchive(file, source, image, {name})
  } finally {
    await source.close()
  }
}
