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

/** `sha256:<hex>` (containerd's and the CRI's image ID), or the 64 hex digits alone. */
const IMAGE_ID = /^(?:(?:sha256|sha384|sha512):[a-f0-9]{32,}|[a-f0-9]{64})$/

export function parseReference(input: string): ImageReference {
  const ref = input.trim()
  // JSON-quoted: a name read from an archive may hold control characters
  const bad = (why: string): Error => new Error(`invalid image reference ${JSON.stringify(input)}: ${why}`)
  if (!ref) throw bad('empty')
  let rest = ref
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at >= 0) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
    if (!DIGEST.test(digest)) throw bad(`${JSON.stringify(digest)} is not a digest`)
  }
  let tag: string | undefined
  const lastSlash = rest.lastIndexOf('/')
  const colon = rest.lastIndexOf(':')
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
    if (!TAG.test(tag)) throw bad(`${JSON.stringify(tag)} is not a valid tag`)
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
  if (!DOMAIN.test(domain)) throw bad(`${JSON.stringify(domain)} is not a valid registry host`)
  if (domain === 'index.docker.io') domain = 'docker.io'
  if (path !== path.toLowerCase()) throw bad('repository name must be lowercase')
  if (domain === 'docker.io' && !path.includes('/')) path = `library/${path}`
  for (const component of path.split('/')) {
    if (!PATH_COMPONENT.test(component)) throw bad(`${JSON.stringify(component)} is not a valid repository path component`)
  }
  if (!tag && !digest) tag = 'latest'
  const repository = `${domain}/${path}`
  const normalized = repository + (tag ? `:${tag}` : '') + (digest ? `@${digest}` : '')
  return {domain, path, tag, digest, normalized, repository}
}

/**
 * The fully-qualified name to record an image under on a node: as normalizeImageName, but an
 * image ID is refused. `sha256:<hex>` parses as repository "sha256" with the hex as its tag, and
 * recorded it would be docker.io/library/sha256:<hex> (and …/sha256@sha256:<hex>): pinned junk
 * that no pod names and the kubelet's image GC never removes.
 */
export function imageRecordName(input: string): string {
  const ref = parseReference(input)
  const last = ref.path.slice(ref.path.lastIndexOf('/') + 1)
  const id = IMAGE_ID.test(input.trim()) || (/^sha(?:256|384|512)$/.test(last) && ref.tag !== undefined && /^[a-f0-9]{32,}$/.test(ref.tag))
  if (id) {
    throw new Error(`invalid image name ${JSON.stringify(input)}: it is an image ID, not a name; give the name the pod's image: field uses (e.g. myapp:1.0)`)
  }
  return ref.normalized
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
