// vitest globalSetup: remove test beds left behind by earlier killed runs, once before the run and
// once after it. Only beds whose owning process is dead are touched (other test runs on this machine
// keep theirs), and never the persistent beds that `npm run bed -- up` starts (e.g. 'sandbox').
import {cleanAll} from './bed.js'

async function sweep(when: string): Promise<void> {
  if (process.getuid?.() !== 0) return // beds need root; tests that need them fail with their own message
  try {
    const removed = await cleanAll({keep: ['sandbox'], onlyDead: true})
    if (removed.length > 0) process.stderr.write(`test bed cleanup (${when}): removed ${removed.join(', ')}\n`)
  } catch (e) {
    process.stderr.write(`test bed cleanup (${when}) failed: ${e instanceof Error ? e.message : String(e)}\n`)
  }
}

export async function setup(): Promise<void> {
  await sweep('before the run')
}

export async function teardown(): Promise<void> {
  await sweep('after the run')
}
