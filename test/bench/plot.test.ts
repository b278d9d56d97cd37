// The bench's SVG: every series asked for is drawn, with a dot per measured point at its values.
import {describe, expect, it} from 'vitest'
import {renderSvg, ticks, type Chart} from './plot.js'

function points(svg: string, series: string): Array<{x: number; y: number}> {
  return [...svg.matchAll(/<circle class="point" data-series="([^"]*)" data-x="([^"]*)" data-y="([^"]*)"/g)]
    .filter((m) => m[1] === series)
    .map((m) => ({x: Number(m[2]), y: Number(m[3])}))
}

const scaling: Chart = {
  title: 'time against node count', xLabel: 'nodes', yLabel: 's',
  series: [
    {name: 'sideload', points: [{x: 1, y: 7.4}, {x: 3, y: 7.9}, {x: 6, y: 12.1}]},
    {name: 'kind-style', points: [{x: 1, y: 8}, {x: 3, y: 8.2}, {x: 6, y: 9}]},
  ],
}
const repush: Chart = {
  title: 're-push time against changed bytes', xLabel: 'MB changed', yLabel: 's',
  series: [
    {name: 'sideload re-push', points: [{x: 1, y: 0.6}, {x: 5, y: 0.7}, {x: 25, y: undefined}]},
    {name: "kind's re-push", points: [{x: 1, y: 1.4}, {x: 5, y: 1.5}, {x: 25, y: 1.9}]},
  ],
}

describe('bench plot', () => {
  it('draws both charts, each series as a line with a dot per measured point', () => {
    const svg = renderSvg([scaling, repush], 'quick run')
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true)
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true)
    expect(svg.match(/<g class="chart"/g)).toHaveLength(2)
    expect(svg).toContain('time against node count')
    expect(svg).toContain('re-push time against changed bytes')
    expect(points(svg, 'sideload')).toEqual([{x: 1, y: 7.4}, {x: 3, y: 7.9}, {x: 6, y: 12.1}])
    expect(points(svg, 'kind-style')).toEqual([{x: 1, y: 8}, {x: 3, y: 8.2}, {x: 6, y: 9}])
    expect(points(svg, "kind's re-push")).toHaveLength(3)
    // a point not measured is left out, not drawn at 0
    expect(points(svg, 'sideload re-push')).toEqual([{x: 1, y: 0.6}, {x: 5, y: 0.7}])
    for (const name of ['sideload', 'kind-style', 'sideload re-push']) expect(svg).toContain(`<polyline class="series" data-series="${name}"`)
    expect(svg).toContain('<text class="legend"')
    expect(svg).toContain('quick run')
  })

  it('puts a larger value higher on the chart (SVG y grows downwards)', () => {
    const svg = renderSvg([scaling])
    const cy = (series: string, x: number) => {
      const m = new RegExp(`data-series="${series}" data-x="${x}" data-y="[^"]*" cx="[^"]*" cy="([^"]*)"`).exec(svg)
      expect(m, `${series} at ${x}`).not.toBeNull()
      return Number(m![1])
    }
    expect(cy('sideload', 6)).toBeLessThan(cy('sideload', 1))
    expect(cy('kind-style', 6)).toBeGreaterThan(cy('sideload', 6))
  })

  it('escapes names and picks round ticks that cover the largest value', () => {
    const svg = renderSvg([{title: 'a < b & c', xLabel: 'x', yLabel: 'y', series: [{name: '"q"', points: [{x: 1, y: 1}]}]}])
    expect(svg).toContain('a &lt; b &amp; c')
    expect(svg).toContain('data-series="&quot;q&quot;"')
    expect(ticks(12.1)).toEqual([0, 5, 10, 15])
    expect(ticks(0.7)).toEqual([0, 0.2, 0.4, 0.6, 0.8])
    expect(ticks(0)).toEqual([0, 1])
  })
})
