import {createHash, type Hash} from 'node:crypto'
import {Transform, type TransformCallback} from 'node:stream'

/** A content digest, `sha256:<64 hex>`. Only sha256 is used by the images sideload handles. */
export type Digest = string

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/

export function isDigest(value: string): boolean {
  return DIGEST_RE.test(value)
}

/** Throws a readable error when `value` is not a sha256 digest; `what` names where it came from. */
export function assertDigest(value: unknown, what: string): Digest {
  if (typeof value !== 'string' || !DIGEST_RE.test(value)) {
    throw new Error(`${what}: "${String(value)}" is not a sha256 digest (expected sha256:<64 hex digits>)`)
  }
  return value
}

/** `sha256:` and the first 12 hex digits, as docker, nerdctl and `sideload images` show a digest. */
export function shortDigest(digest: Digest): string {
  return digest.slice(0, 'sha256:'.length + 12)
}

export function digestHex(digest: Digest): string {
  return digest.slice('sha256:'.length)
}

export function sha256Digest(data: Buffer | string): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`
}

/** Incremental sha256 for streams: feed with update(), read with digest() once at the end. */
export class DigestHasher {
  private readonly hash: Hash = createHash('sha256')
  private bytes = 0
  update(chunk: Buffer): void {
    this.hash.update(chunk)
    this.bytes += chunk.length
  }
  get size(): number {
    return this.bytes
  }
  digest(): Digest {
    return `sha256:${this.hash.digest('hex')}`
  }
}

/**
 * A pass-through stream that hashes what flows through it and, at the end, fails the
 * stream if the size or digest differ from what was expected (`what` names the blob's origin).
 */
export class VerifyingStream extends Transform {
  private readonly hasher = new DigestHasher()
  constructor(
    private readonly expected: {digest: Digest; size: number},
    private readonly what: string,
  ) {
    super()
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.hasher.update(chunk)
    done(null, chunk)
  }
  override _flush(done: TransformCallback): void {
    const size = this.hasher.size
    if (size !== this.expected.size) {
      done(corruptSource(`${this.what} is corrupt: blob ${this.expected.digest} has ${size} bytes, expected ${this.expected.size}`))
      return
    }
    const actual = this.hasher.digest()
    if (actual !== this.expected.digest) {
      done(corruptSource(`${this.what} is corrupt: blob ${this.expected.digest} has digest ${actual}`))
      return
    }
    done()
  }
}

/** What to do about a source whose blob is not what its digest says (the one hint for it). */
export const CORRUPT_SOURCE_HINT = 'the image there is damaged: save, build or pull it again (e.g. `nerdctl -n k8s.io save -o FILE IMAGE`), then push again'

/** The error for a source whose blob is not what its digest says. */
export function corruptSource(message: string): Error & {hint: string} {
  return Object.assign(new Error(message), {hint: CORRUPT_SOURCE_HINT})
}
