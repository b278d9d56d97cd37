// A fault at a chosen byte of a chosen blob, for the import tests: the link is cut there (the blob's
// stream fails after exactly that many bytes), or something happens to the node there (containerd
// is killed) while the stream goes on.
import type {ImageSource} from '../../src/image/index.js'

/** What happens once `digest`'s stream passes `atByte`: 'cut' ends it there with an error; a function runs once, then the stream goes on. */
export type BlobFault = 'cut' | (() => Promise<void>)

export function faultyBlob(source: ImageSource, digest: string, atByte: number, fault: BlobFault): ImageSource {
  return {
    ...source,
    async openBlob(desc) {
      const stream = await source.openBlob(desc)
      if (desc.digest !== digest) return stream
      let seen = 0
      let happened = false
      return (async function* () {
        for await (const c of stream as AsyncIterable<Buffer>) {
          seen += c.length
          if (seen > atByte && fault === 'cut') {
            yield c.subarray(0, c.length - (seen - atByte))
            throw new Error('link cut')
          }
          if (seen > atByte && !happened && fault !== 'cut') {
            happened = true
            await fault()
          }
          yield c
        }
      })() as unknown as NodeJS.ReadableStream
    },
  }
}
