// The bench's verdicts and table: a miss is marked plainly, ratios use the same-run baseline.
import {describe, expect, it} from 'vitest'
import {renderMarkdown, verdict, type BenchReport, type Row} from './report.js'

const row = (r: Partial<Row>): Row => ({scenario: 's', unit: 's', baselineLabel: 'b', goal: 'g', ...r})

describe('bench report', () => {
  it('judges ratio goals against the baseline and absolute goals against the bound', () => {
    expect(verdict(row({measured: 2.1, baseline: 2, maxRatio: 1.05}))).toEqual({ratio: 1.05, miss: false})
    expect(verdict(row({measured: 2.2, baseline: 2, maxRatio: 1.05})).miss).toBe(true)
    expect(verdict(row({measured: 151, unit: 'MB', maxAbsolute: 150})).miss).toBe(true)
    expect(verdict(row({measured: 0, unit: 'MB', maxAbsolute: 0})).miss).toBe(false)
    expect(verdict(row({measured: undefined, baseline: 2, maxRatio: 1}))).toEqual({})
    expect(verdict(row({measured: 1, baseline: 0, maxRatio: 1}))).toEqual({})
  })

  it('prints every row with measured, baseline, ratio, goal and a plain MISS', () => {
    const report: BenchReport = {
      date: '2026-01-01T00:00:00Z', machine: {cpus: 2, cpuModel: 'x', memMb: 1, kernel: 'k', node: 'v20'}, runs: 3, quick: false, durationS: 1,
      snapshotter: 'overlayfs', images: {base: {name: 'img', archiveMb: 170, layers: 6}},
      samples: {'push-1': [4000, 3000, 5000], 'delta-bytes': [5 * 1024 * 1024]},
      rows: [
        row({scenario: 'first push', measured: 4, baseline: 2, maxRatio: 1.05, baselineLabel: 'import', goal: '≤ 1.05 × import'}),
        row({scenario: 'help', measured: 0.2, baseline: 0.1, maxRatio: 4, baselineLabel: 'node', goal: '≤ 4 × node'}),
        row({scenario: 'fix', notMeasured: 'not measured (fix not landed)'}),
      ],
    }
    const md = renderMarkdown(report)
    expect(md).toContain('| first push | 4.00 s | 2.00 s import | 2.00× | ≤ 1.05 × import | **MISS** |')
    expect(md).toContain('| help | 0.20 s | 0.10 s node | 2.00× | ≤ 4 × node | ok |')
    expect(md).toContain('not measured (fix not landed)')
    expect(md).toContain('| push-1 | 4.000 s | 4.000 s, 3.000 s, 5.000 s |')
    expect(md).toContain('| delta-bytes | 5.0 MB |')
  })
})
