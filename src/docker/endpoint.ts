import type * as http from 'node:http'

/**
 * Where a Docker Engine API listens: a unix socket (`unix:///var/run/docker.sock`) or plain TCP
 * (`tcp://host:2375`). TLS endpoints are not supported yet.
 */
export type DockerEndpoint = {kind: 'unix'; socketPath: string} | {kind: 'tcp'; host: string; port: number}

export const DEFAULT_DOCKER_HOST = 'unix:///var/run/docker.sock'

/** The Docker host as the docker CLI picks it: the one given, else $DOCKER_HOST, else the default socket. */
export function dockerHost(given: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return given ?? env.DOCKER_HOST ?? DEFAULT_DOCKER_HOST
}

/** Parse a DOCKER_HOST-style address. */
export function parseDockerHost(address: string): DockerEndpoint {
  if (address.startsWith('unix://')) return {kind: 'unix', socketPath: address.slice('unix://'.length)}
  if (address.startsWith('/')) return {kind: 'unix', socketPath: address}
  const tcp = /^(?:tcp|http):\/\/([^:/]+|\[[^\]]+\]):(\d+)\/?$/.exec(address)
  if (tcp) return {kind: 'tcp', host: tcp[1].replace(/^\[|\]$/g, ''), port: Number(tcp[2])}
  throw new Error(`unsupported Docker host "${address}": use unix:///path/to/docker.sock or tcp://host:port (TLS is not supported)`)
}

export function describeDockerEndpoint(endpoint: DockerEndpoint): string {
  return endpoint.kind === 'unix' ? `unix://${endpoint.socketPath}` : `tcp://${endpoint.host}:${endpoint.port}`
}

/** Options for node:http requests to this endpoint. */
export function dockerRequestOptions(endpoint: DockerEndpoint): http.RequestOptions {
  return endpoint.kind === 'unix' ? {socketPath: endpoint.socketPath} : {host: endpoint.host, port: endpoint.port}
}
