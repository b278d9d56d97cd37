import * as http from 'node:http'
import type {Readable} from 'node:stream'
import {type DockerEndpoint, describeDockerEndpoint, dockerRequestOptions} from './endpoint.js'

/** The few Docker Engine API calls sideload needs: is an image there (docker inspect), read it as a docker-archive (docker save). */

function get(endpoint: DockerEndpoint, urlPath: string): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = http.request({...dockerRequestOptions(endpoint), method: 'GET', path: urlPath}, resolve)
    req.on('error', (err) =>
      reject(new Error(`cannot reach the Docker API at ${describeDockerEndpoint(endpoint)} (GET ${urlPath}): ${err.message}`)),
    )
    req.end()
  })
}

async function failure(res: http.IncomingMessage, what: string): Promise<Error> {
  const chunks: Buffer[] = []
  for await (const c of res) chunks.push(c as Buffer)
  let message = Buffer.concat(chunks).toString('utf8').trim()
  try {
    message = (JSON.parse(message) as {message?: string}).message ?? message
  } catch {
    // not JSON: keep the text
  }
  return new Error(`${what}: HTTP ${res.statusCode} ${message}`)
}

export interface DockerImageSummary {
  id: string
  repoTags: string[]
}

/** `GET /images/{name}/json`; undefined when dockerd has no such image. */
export async function inspectDockerImage(endpoint: DockerEndpoint, name: string): Promise<DockerImageSummary | undefined> {
  const res = await get(endpoint, `/images/${encodeURIComponent(name)}/json`)
  if (res.statusCode === 404) {
    res.resume()
    return undefined
  }
  if (res.statusCode !== 200) throw await failure(res, `cannot inspect image ${name} in dockerd at ${describeDockerEndpoint(endpoint)}`)
  const chunks: Buffer[] = []
  for await (const c of res) chunks.push(c as Buffer)
  const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {Id: string; RepoTags: string[] | null}
  return {id: body.Id, repoTags: body.RepoTags ?? []}
}

/**
 * `GET /images/get?names=…` (what `docker save` does): a docker-archive tar stream of the images
 * (names or IDs), with their tags recorded in manifest.json. Streamed, never buffered.
 */
export async function saveDockerImages(endpoint: DockerEndpoint, names: string[]): Promise<Readable> {
  const query = names.map((n) => `names=${encodeURIComponent(n)}`).join('&')
  const res = await get(endpoint, `/images/get?${query}`)
  if (res.statusCode !== 200) {
    throw await failure(res, `cannot export ${names.join(', ')} from dockerd at ${describeDockerEndpoint(endpoint)} (docker save)`)
  }
  return res
}
