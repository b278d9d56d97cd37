// The scaling block's rows: goals at 3 and 6 nodes against kind-style, the client's CPU per MB,
// what one more node costs, and a plain note when kind-style itself slowed with the node count.
import {describe, expect, it} from 'vitest'
import type {CachedImage} from './images.js'
import {renderMarkdown, verdict} from './report.js'
import {cpuMsPerMb, scalingReportBlock, scalingRows} from './scaling.js'
import {MB, Samples} from './steps.js'

const image = {name: 'docker.io/slbench/app:dev', archiveBytes: 100 * MB} as CachedImage

function samples(values: Record<string, number>): Samples {
  const s = new Samples()
  for (const [k, v] of Object.entries(values)) s.add(k, v)
  return s
}

describe('bench scaling rows', () => {
  const s = samples({
    'push-1': 8000, 'push-1-cpu': 1500, 'push-1-bytes': 100 * MB, 'kind-1': 8000, 'kind-1-cpu': 200,
    'push-3': 8500, 'push-3-cpu': 3500, 'push-3-bytes': 300 * MB, 'kind-3': 9000, 'kind-3-cpu': 600,
    'push-6': 20000, 'push-6-cpu': 6500, 'push-6-bytes': 600 * MB, 'kind-6': 16000, 'kind-6-cpu': 1200,
  })
  const rows = scalingRows(s, image, {quick: false})
  const row = (start: string) => {
    const r = rows.find((x) => x.scenario.startsWith(start))
    expect(r, start).toBeDefined()
    return r!
  }

  it('judges 3 and 6 nodes against kind-style in parallel (≤ 0.9×); 1 node is context', () => {
    expect(row('first push, 1 node, each link').context).toBe(true)
    expect(verdict(row('first push, 3 nodes, each link 200 Mbit/s: time'))).toEqual({ratio: 8500 / 9000, miss: true})
    expect(verdict(row('first push, 6 nodes, each link 200 Mbit/s: time')).miss).toBe(true)
    expect(row('first push, 6 nodes, each link 200 Mbit/s: time').maxRatio).toBe(0.9)
  })

  it('says when kind-style itself slowed with the node count (the machine, not the links)', () => {
    expect(row('first push, 3 nodes, each link 200 Mbit/s: time').note).toBeUndefined()
    expect(row('first push, 6 nodes, each link 200 Mbit/s: time').note).toContain('kind-style 2.0× its 1-node time')
  })

  it('gives the client CPU per MB sent, and per added MB without the start-up', () => {
    expect(row('first push, 6 nodes, each link 200 Mbit/s: client CPU per MB').measured).toBeCloseTo(6500 / 600)
    expect(row('first push, 6 nodes, each link 200 Mbit/s: client CPU per MB').baseline).toBeCloseTo(1200 / 600)
    expect(row('client CPU per MB sent, marginal').measured).toBeCloseTo((6500 - 1500) / 500)
    expect(row('client CPU per MB sent, marginal').baseline).toBeCloseTo((1200 - 200) / 500)
    expect(cpuMsPerMb(Number.NaN, MB)).toBeUndefined()
    expect(cpuMsPerMb(100, 0)).toBeUndefined()
  })

  it('prints CPU units and marks the counts --quick left out', () => {
    const quick = scalingRows(samples({'push-1': 8000, 'push-1-cpu': 1500, 'push-1-bytes': 100 * MB, 'kind-1': 8000, 'kind-1-cpu': 200}), image, {quick: true})
    const md = renderMarkdown({
      date: 'd', machine: {cpus: 2, cpuModel: 'x', memMb: 1, kernel: 'k', node: 'v20'}, runs: 1, quick: true, durationS: 1, snapshotter: 'overlayfs',
      images: {}, samples: {}, blocks: [scalingReportBlock('2.3.7', 1, [1, 6])], rows: quick,
    })
    expect(md).toContain('| 1.50 CPU-s | 0.20 CPU-s kind-style\'s 1 OpenSSH client |')
    expect(md).toContain('| 15.00 CPU-ms/MB | 2.00 CPU-ms/MB kind-style\'s OpenSSH clients |')
    expect(md).toContain('--quick: not at 3 nodes')
    expect(md).toMatch(/first push, 6 nodes, each link 200 Mbit\/s: time \| — .*not measured \(--quick\)/)
  })
})
