// Whether a stream from this layer lets its writer reuse a buffer once a write has called back.
import {createRequire} from 'node:module'
import type {Duplex} from 'node:stream'

// ssh2 exports its Channel class only from lib/Channel.js, not from the package root.
const {Channel} = createRequire(import.meta.url)('ssh2/lib/Channel.js') as {Channel: abstract new (...args: never[]) => Duplex}

/**
 * An ssh2 channel calls a write back only after it copied every byte into SSH packets (at once,
 * or when the peer's window opened for the rest), so the writer may reuse the buffer then. Other
 * streams may still hold it (a PassThrough pushes the very buffer to its reader).
 */
export function copiesBeforeCallback(stream: Duplex): boolean {
  return stream instanceof Channel
}
