// `sideload images` for people: an image named only by its digest fits a terminal (issue 28); -o wide
// shows every digest whole and the image's other records.
import {describe, expect, it} from 'vitest'
import {renderImagesTable} from '../../src/commands/images.js'
import type {ImagesResult} from '../../src/ops/images.js'
import type {NodeImage} from '../../src/nodes/index.js'

const HEX = 'ab12'.repeat(16)
const image = (name: string, more: Partial<NodeImage> = {}): NodeImage => ({
  name, aliases: [], digest: `sha256:${HEX}`, mediaType: 'application/vnd.oci.image.manifest.v1+json', blobs: [], sizeBytes: 5 << 20, ids: [], pinned: true, ours: true,
  pushedAt: new Date('2026-12-07T10:00:00Z'), ...more,
})
const result: ImagesResult = {ok: true, nodes: [{node: 'worker-1', images: [
  {image: image(`docker.io/library/nginx@sha256:${HEX}`, {ours: false, pushedAt: undefined, pinned: false}), pods: []},
  {image: image('docker.io/acme/app:1', {aliases: [`docker.io/acme/app@sha256:${HEX}`, `sha256:${'cd'.repeat(32)}`]}), pods: ['demo/web']},
]}]}

describe('images table', () => {
  it('shortens a digest-only name as the digest column is, so no line is wider than a terminal', () => {
    const out = renderImagesTable(result)
    expect(out).toContain(`docker.io/library/nginx@sha256:${HEX.slice(0, 12)} `)
    expect(out).not.toContain(HEX.slice(0, 13))
    for (const line of out.trimEnd().split('\n')) expect(line.length).toBeLessThanOrEqual(130) // the whole digest alone was 71 more
    // another's image: not pushed by sideload
    expect(out).toMatch(/nginx@sha256:\w+\s+sha256:\w+\s+5\.0 MiB\s+no\s+-\s+-/)
  })

  it('-o wide: whole names and digests, and the other records', () => {
    const out = renderImagesTable(result, true)
    expect(out.split('\n')[0]).toMatch(/OTHER RECORDS$/)
    expect(out).toContain(`docker.io/library/nginx@sha256:${HEX}`)
    expect(out).toContain(`docker.io/acme/app@sha256:${HEX},sha256:${'cd'.repeat(32)}`)
  })
})
