/**
 * Image references normalised the way the CRI plugin does before it looks an image up
 * (docker/distribution's ParseNormalizedNamed + TagNameOnly): `nginx` →
 * `docker.io/library/nginx:latest`, `foo/bar:1` → `docker.io/foo/bar:1`.
 */
export interface ImageReference {
  /** registry host[:port], e.g. docker.io, localhost:5000 */
  domain: string
  /** repository path inside the registry, e.g. library/nginx */
  path: string
  tag?: string
  digest?: string
  /** domain/path[:tag][@digest] with :latest added when neither tag nor digest was given */
  normalized: string
  /** domain/path */
  repository: string
}

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/
const TAG = /^[\w][\w.-]{0,127}$/
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/
const DOMAIN = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?$|^\[[a-fA-F0-9:]+\](?::[0-9]+)?$/

export function parseReference(input: string): ImageReference {
  const ref = input.trim()
  const bad = (why: string): Error => new Error(`invalid image reference "${input}": ${why}`)
  if (!ref) throw bad('empty')
  let rest = ref
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at >= 0) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
    if (!DIGEST.test(digest)) throw bad(`"${digest}" is not a digest`)
  }
  let tag: string | undefined
  const lastSlash = rest.lastIndexOf('/')
  const colon = rest.lastIndexOf(':')
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
    if (!TAG.test(tag)) throw bad(`"${tag}" is not a valid tag`)
  }
  let domain = 'docker.io'
  let path = rest
  const slash = rest.indexOf('/')
  if (slash >= 0) {
    const first = rest.slice(0, slash)
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase()) {
      domain = first
      path = rest.slice(slash + 1)
    }
  }
  if (!DOMAIN.test(domain)) throw bad(`"${domain}" is not a valid registry host`)
  if (domain === 'index.docker.io') domain = 'docker.io'
  if (path !== path.toLowerCase()) throw bad('repository name must be lowercase')
  if (domain === 'docker.io' && !path.includes('/')) path = `library/${path}`
  for (const component of path.split('/')) {
    if (!PATH_COMPONENT.test(component)) throw bad(`"${component}" is not a valid repository path component`)
  }
  if (!tag && !digest) tag = 'latest'
  const repository = `${domain}/${path}`
  const normalized = repository + (tag ? `:${tag}` : '') + (digest ? `@${digest}` : '')
  return {domain, path, tag, digest, normalized, repository}
}

/** The fully-qualified name CRI will look the image up by. */
export function normalizeImageName(input: string): string {
  return parseReference(input).normalized
}

/** The short form people type (`nginx:latest`, `foo/bar:1`), for display. */
export function familiarName(input: string): string {
  const r = parseReference(input)
  let name = r.domain === 'docker.io' ? r.path.replace(/^library\//, '') : r.repository
  if (r.tag) name += `:${r.tag}`
  if (r.digest) name += `@${r.digest}`
  return name
}
