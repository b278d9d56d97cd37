import type * as grpc from '@grpc/grpc-js'
import type {BuildStep} from './progress.js'

/** Where in a build file (the Dockerfile) a failing step came from. */
export interface SourceLocation {
  filename: string
  /** 1-based line numbers of the failing instruction. */
  lines: number[]
  /** The text of those lines. */
  text: string[]
}

/** A failed Solve: BuildKit's message, plus the Dockerfile location when the daemon sent one. */
export class BuildFailedError extends Error {
  /** The step that failed, with its log, when the progress stream told us. */
  step: BuildStep | undefined

  constructor(
    message: string,
    readonly grpcCode: number | undefined,
    public source: SourceLocation | undefined,
  ) {
    super(message)
    this.name = 'BuildFailedError'
  }
}

/** The build was stopped on request (Ctrl-C, an AbortSignal). */
export class BuildCancelledError extends Error {
  constructor() {
    super('build cancelled')
    this.name = 'BuildCancelledError'
  }
}

/**
 * Turn a failed Solve call into a BuildFailedError. BuildKit (since v0.8) attaches an
 * `errdefs.Source` (the Dockerfile's name, its text and the line ranges of the failing
 * instruction) to the gRPC status details (`grpc-status-details-bin` = google.rpc.Status).
 */
export function describeSolveError(err: grpc.ServiceError): BuildFailedError {
  const message = (err.details || err.message || 'build failed').trim()
  let source: SourceLocation | undefined
  const raw = err.metadata?.get('grpc-status-details-bin')[0]
  if (Buffer.isBuffer(raw)) {
    try {
      source = sourceFromStatusDetails(raw)
    } catch {
      source = undefined
    }
  }
  return new BuildFailedError(message, err.code, source)
}

/** Decode google.rpc.Status{details: Any[]} and return the first errdefs.Source found. */
export function sourceFromStatusDetails(status: Buffer): SourceLocation | undefined {
  for (const [field, any] of fields(status)) {
    if (field !== 3 || !Buffer.isBuffer(any)) continue
    let typeUrl = ''
    let value: Buffer | undefined
    for (const [f, v] of fields(any)) {
      if (f === 1 && Buffer.isBuffer(v)) typeUrl = v.toString('utf8')
      if (f === 2 && Buffer.isBuffer(v)) value = v
    }
    if (value && /errdefs\.Source$/.test(typeUrl)) return decodeSource(value)
  }
  return undefined
}

function decodeSource(buf: Buffer): SourceLocation {
  let filename = ''
  let data: Buffer = Buffer.alloc(0)
  const lines = new Set<number>()
  for (const [f, v] of fields(buf)) {
    if (f === 1 && Buffer.isBuffer(v)) {
      for (const [sf, sv] of fields(v)) {
        if (sf === 1 && Buffer.isBuffer(sv)) filename = sv.toString('utf8')
        if (sf === 2 && Buffer.isBuffer(sv)) data = sv
      }
    }
    if (f === 2 && Buffer.isBuffer(v)) {
      // Range{start: Position{Line}, end: Position{Line}}
      const ends: number[] = []
      for (const [rf, rv] of fields(v)) {
        if ((rf === 1 || rf === 2) && Buffer.isBuffer(rv)) {
          for (const [pf, pv] of fields(rv)) if (pf === 1 && typeof pv === 'number') ends.push(pv)
        }
      }
      if (ends.length > 0) for (let l = Math.min(...ends); l <= Math.max(...ends); l++) lines.add(l)
    }
  }
  const all = data.toString('utf8').split('\n')
  const sorted = [...lines].sort((a, b) => a - b)
  return {filename, lines: sorted, text: sorted.map((l) => all[l - 1] ?? '')}
}

/**
 * Find the Dockerfile instruction a step came from by its vertex name (`[stage 2/3] RUN …`):
 * for daemons that send no source location with the error (dockerd 20.10 does not).
 */
export function locateStep(dockerfile: string, filename: string, stepName: string): SourceLocation | undefined {
  const wanted = normalizeInstruction(stepName.replace(/^\[[^\]]*\]\s*/, ''))
  if (!wanted) return undefined
  const lines = dockerfile.split('\n')
  for (let i = 0; i < lines.length; i++) {
    if (/^\s*(#|$)/.test(lines[i])) continue
    // One logical instruction: a line plus its backslash continuations.
    let end = i
    let text = lines[i]
    while (/\\\s*$/.test(lines[end]) && end + 1 < lines.length) {
      end++
      text = `${text.replace(/\\\s*$/, '')} ${lines[end]}`
    }
    if (normalizeInstruction(text) === wanted) {
      const numbers = Array.from({length: end - i + 1}, (_, k) => i + 1 + k)
      return {filename, lines: numbers, text: lines.slice(i, end + 1)}
    }
    i = end
  }
  return undefined
}

function normalizeInstruction(text: string): string {
  const collapsed = text.trim().replace(/\s+/g, ' ')
  const space = collapsed.indexOf(' ')
  return space === -1 ? collapsed.toUpperCase() : `${collapsed.slice(0, space).toUpperCase()}${collapsed.slice(space)}`
}

/** Minimal protobuf wire reader: yields (field number, varint value or length-delimited bytes). */
function* fields(buf: Buffer): Generator<[number, number | Buffer]> {
  let pos = 0
  const varint = (): number => {
    let result = 0
    let shift = 0
    for (;;) {
      if (pos >= buf.length) throw new Error('truncated protobuf varint')
      const b = buf[pos++]
      result += (b & 0x7f) * 2 ** shift
      if ((b & 0x80) === 0) return result
      shift += 7
    }
  }
  while (pos < buf.length) {
    const key = varint()
    const field = Math.floor(key / 8)
    switch (key & 7) {
      case 0:
        yield [field, varint()]
        break
      case 1:
        pos += 8
        break
      case 2: {
        const len = varint()
        yield [field, buf.subarray(pos, pos + len)]
        pos += len
        break
      }
      case 5:
        pos += 4
        break
      default:
        throw new Error('unsupported protobuf wire type')
    }
  }
}

/** The failing step's log and its Dockerfile line(s), like buildx prints them. */
export function describeFailure(err: BuildFailedError): string {
  const parts: string[] = []
  if (err.step) {
    parts.push('------', ` > ${err.step.name}:`)
    for (const line of err.step.logs.slice(-20)) parts.push(`${line}`)
    parts.push('------')
  }
  if (err.source && err.source.lines.length > 0) {
    parts.push(`${err.source.filename}:${err.source.lines[0]}`, '--------------------')
    err.source.lines.forEach((n, i) => parts.push(` ${String(n).padStart(3)} | >>> ${err.source?.text[i] ?? ''}`))
    parts.push('--------------------')
  }
  parts.push(`build failed: ${err.message}`)
  return parts.join('\n')
}
