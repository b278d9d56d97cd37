// What a push may do with an image record the node already has under the name it pushes: a record
// is sideload's only while it points at what sideload wrote (labels.ts, isOurs). Another's record
// is never relabelled, and never pointed at other content unless the user says `--replace`.
import {shortDigest} from '../image/index.js'
import {isOurs, originOf, type OwnedRecord} from './labels.js'

/**
 * `create`: no record yet. `write`: sideload's own record, or another's the user asked to replace
 * (or adopt: same content, our labels): point it at the image and label it. `keep`: another's
 * record that holds this very image: left exactly as it is (no labels of ours, no pin).
 */
export type RecordDecision = 'create' | 'write' | 'keep'

/** A push would point a record that is not sideload's at other content. */
export class RecordNotOursError extends Error {
  readonly reason = 'not-ours'
  readonly hint = 'push it under another name, or pass --replace to overwrite the node\'s record (pods that use it get the new content when they start)'

  constructor(
    readonly record: OwnedRecord,
    readonly pushedDigest: string,
  ) {
    super(`image ${record.name} on the node is not sideload's: it holds ${shortDigest(record.target.digest)}, ${originOf(record)}; the push would replace it with ${shortDigest(pushedDigest)}`)
    this.name = 'RecordNotOursError'
  }
}

/** What to do with `existing` when pushing `digest` under its name; throws RecordNotOursError when the push must not touch it. */
export function decideRecord(existing: OwnedRecord | undefined, digest: string, replace: boolean): RecordDecision {
  if (!existing) return 'create'
  if (isOurs(existing) || replace) return 'write'
  if (existing.target.digest === digest) return 'keep'
  throw new RecordNotOursError(existing, digest)
}
