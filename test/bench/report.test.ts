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

  it('prints one table per block (same rows on each kind of node), its runs and note, then the rows of no block', () => {
    const report: BenchReport = {
      date: '2026-01-01T00:00:00Z', machine: {cpus: 2, cpuModel: 'x', memMb: 1, kernel: 'k', node: 'v20'}, runs: 3, quick: false, durationS: 1,
      snapshotter: 'overlayfs', images: {base: {name: 'img', archiveMb: 170, layers: 6}},
      samples: {'containerd-2.3.7/push-1': [3000], 'containerd-1.6.20/push-1': [2500], help: [200]},
      blocks: [
        {id: 'containerd-2.3.7', title: 'containerd 2.3.7 nodes', runs: 3},
        {id: 'containerd-1.6.20', title: 'containerd 1.6.20 nodes', runs: 1, note: 'fewer rounds (1 of 3)'},
      ],
      rows: [
        row({scenario: 'first push', block: 'containerd-2.3.7', measured: 3, baseline: 2, maxRatio: 1.05, baselineLabel: 'import', goal: '≤ 1.05 × import'}),
        row({scenario: 'first push', block: 'containerd-1.6.20', measured: 2.5, baseline: 2.5, maxRatio: 1.05, baselineLabel: 'import', goal: '≤ 1.05 × import'}),
        row({scenario: 'help', measured: 0.2, baseline: 0.1, maxRatio: 4, baselineLabel: 'node', goal: '≤ 4 × node'}),
      ],
    }
    const md = renderMarkdown(report)
    const at = (text: string) => {
      const i = md.indexOf(text)
      expect(i, text).toBeGreaterThanOrEqual(0)
      return i
    }
    const b2 = at('**containerd 2.3.7 nodes**: 3 run(s), medians\n')
    const row2 = at('| first push | 3.00 s | 2.00 s import | 1.50× | ≤ 1.05 × import | **MISS** |')
    const b16 = at('**containerd 1.6.20 nodes**: 1 run(s), medians; fewer rounds (1 of 3)\n')
    const row16 = at('| first push | 2.50 s | 2.50 s import | 1.00× | ≤ 1.05 × import | ok |')
    const other = at('**other rows**')
    const help = at('| help | 0.20 s | 0.10 s node | 2.00× | ≤ 4 × node | ok |')
    expect(b2 < row2 && row2 < b16 && b16 < row16 && row16 < other && other < help).toBe(true)
    // each block is a table of its own: a header right under each title
    expect(md.split('| scenario | measured | baseline (same run) | ratio | goal | result |').length - 1).toBe(3)
    expect(md).toContain('| containerd-1.6.20/push-1 | 2.500 s | 2.500 s |')
  })

  it('prints a report without blocks as one table, as before', () => {
    const md = renderMarkdown({
      date: 'd', machine: {cpus: 2, cpuModel: 'x', memMb: 1, kernel: 'k', node: 'v20'}, runs: 1, quick: true, durationS: 1, snapshotter: 'native',
      images: {}, samples: {}, rows: [row({scenario: 'a', measured: 1, baseline: 1, maxRatio: 1}), row({scenario: 'b', block: 'nowhere', measured: 1})],
    })
    expect(md).not.toContain('**other rows**')
    expect(md.split('| scenario |').length - 1).toBe(1)
    expect(md).toContain('| a | 1.00 s | 1.00 s b | 1.00× | g | ok |')
    expect(md).toContain('| b | 1.00 s |')
  })
})
