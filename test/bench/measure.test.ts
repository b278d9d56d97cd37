// The bench's per-thread CPU sampling (measure.ts, ThreadCpu): the busiest thread of a process, as
// the scaling block's --workers rows report it.
import {describe, expect, it} from 'vitest'
import {run} from './measure.js'

/** A node process whose `threads` worker threads each spin for `ms` (wall clock: on a busy machine they get less CPU, alike). */
function spinning(threads: number, ms: number): string[] {
  const worker = `const t0 = process.hrtime.bigint(); let x = 0; while (Number(process.hrtime.bigint() - t0) / 1e6 < ${ms}) x++`
  const main = `const {Worker} = require('node:worker_threads'); for (let i = 0; i < ${threads}; i++) new Worker(${JSON.stringify(worker)}, {eval: true})`
  return [process.execPath, '-e', main]
}

describe('run(…, {threads: true})', () => {
  it('one busy thread: it is the busiest, and holds most of the process\'s CPU', async () => {
    const r = await run(spinning(1, 600), {usage: true, threads: true})
    expect(r.busiestThreadCpuMs).toBeGreaterThan(0)
    expect(r.busiestThreadCpuMs!).toBeLessThanOrEqual(r.cpuMs! + 20)
    expect(r.busiestThreadCpuMs! / r.cpuMs!).toBeGreaterThan(0.6)
  })
  it('two busy threads: the busiest holds about half', async () => {
    const r = await run(spinning(2, 600), {usage: true, threads: true})
    expect(r.busiestThreadCpuMs! / r.cpuMs!).toBeLessThan(0.65)
    expect(r.busiestThreadCpuMs! / r.cpuMs!).toBeGreaterThan(0.25)
  })
})
