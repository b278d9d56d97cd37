// Which lease a failed `sudo ctr` import or pull left is ours to delete (CtrLeaseWatch): only the
// one new lease of ctr's kind seen right after ctr started — never a CRI pull's of the same kind.
import {describe, expect, it} from 'vitest'
import {type CtrLease, CtrLeaseWatch} from '../../src/nodes/ctr-lease.js'

const ctrKind = (id: string): CtrLease => ({id, labels: {'containerd.io/gc.expire': '2026-11-30T08:00:00Z'}})
const ours = (id: string): CtrLease => ({id, labels: {'containerd.io/gc.expire': '2026-11-29T09:00:00Z', 'sideload.dev/image': 'x'}})

/** A node whose lease list is the next entry of `lists` on each call (the last one repeats). */
function node(lists: Array<CtrLease[] | Error>): {list: () => Promise<CtrLease[]>; calls: () => number} {
  let calls = 0
  return {
    list: async () => {
      const next = lists[Math.min(calls++, lists.length - 1)]
      if (next instanceof Error) throw next
      return next
    },
    calls: () => calls,
  }
}

describe('CtrLeaseWatch', () => {
  it('finds the one new lease of ctr\'s kind, skipping leases there before and leases of other kinds', async () => {
    const n = node([[ctrKind('old')], [ctrKind('old'), ours('sl')], [ctrKind('old'), ours('sl'), ctrKind('new')]])
    const watch = new CtrLeaseWatch(n.list, new Set(['old']), {intervalMs: 1})
    await new Promise((r) => setTimeout(r, 50))
    expect(await watch.settle()).toBe('new')
    expect(n.calls(), 'it stopped looking once it had decided').toBe(3)
  })

  it('a lease that appears later (a CRI pull during the import) is not taken for ctr\'s', async () => {
    const n = node([[ctrKind('ctr')], [ctrKind('ctr'), ctrKind('cri')]])
    const watch = new CtrLeaseWatch(n.list, new Set(), {intervalMs: 1})
    await new Promise((r) => setTimeout(r, 50))
    expect(await watch.settle()).toBe('ctr')
  })

  it('two new leases of that kind at once: none is ours', async () => {
    const watch = new CtrLeaseWatch(node([[ctrKind('a'), ctrKind('b')]]).list, new Set(), {intervalMs: 1})
    expect(await watch.settle()).toBeUndefined()
  })

  it('keeps looking while containerd does not answer', async () => {
    const n = node([new Error('connection refused'), new Error('connection refused'), [ctrKind('ctr')]])
    const watch = new CtrLeaseWatch(n.list, new Set(), {intervalMs: 1})
    await new Promise((r) => setTimeout(r, 50))
    expect(await watch.settle()).toBe('ctr')
  })

  it('settled before it saw one: looks once more; stop() never looks again', async () => {
    const later = node([[], [], [ctrKind('ctr')]])
    const watch = new CtrLeaseWatch(later.list, new Set(), {intervalMs: 10_000})
    await new Promise((r) => setTimeout(r, 20))
    expect(await watch.settle()).toBeUndefined() // first look empty, second (the settling one) too
    const n = node([[], [ctrKind('ctr')]])
    const stopped = new CtrLeaseWatch(n.list, new Set(), {intervalMs: 10_000})
    await new Promise((r) => setTimeout(r, 20))
    await stopped.stop()
    expect(n.calls()).toBe(1)
    const w = node([[], [ctrKind('ctr')]])
    const settling = new CtrLeaseWatch(w.list, new Set(), {intervalMs: 10_000})
    await new Promise((r) => setTimeout(r, 20))
    expect(await settling.settle()).toBe('ctr')
  })
})
