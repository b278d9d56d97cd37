// The bench's pictures: small line charts written as SVG by hand (no plotting dependency), one
// panel per chart side by side in one file. Every point carries its series and values as data-
// attributes, so a test (and a curious reader) can check what was drawn.

export interface Point {
  x: number
  y: number
}

export interface Series {
  name: string
  /** Points without a measured value are left out (a series may then be shorter than the axis). */
  points: Array<{x: number; y: number | undefined}>
}

export interface Chart {
  title: string
  xLabel: string
  yLabel: string
  series: Series[]
}

const PANEL_W = 460
const PANEL_H = 320
const MARGIN = {left: 56, right: 16, top: 40, bottom: 72}
const COLORS = ['#d6452b', '#2b6cd6', '#2b9d4a', '#8a4bd6']

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}

/** Round tick steps (1, 2, 5 × 10^n) from 0 to at least max. */
export function ticks(max: number, count = 5): number[] {
  if (!(max > 0)) return [0, 1]
  const raw = max / count
  const mag = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag
  const out: number[] = []
  for (let v = 0; v < max + step / 2; v += step) out.push(Number(v.toPrecision(12)))
  if (out[out.length - 1] < max) out.push(Number((out[out.length - 1] + step).toPrecision(12)))
  return out
}

function fmtTick(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(Math.min(3, Math.max(1, -Math.floor(Math.log10(Math.abs(v) || 1)) + 1)))
}

/** One chart as an SVG group at (ox, oy). */
function panel(chart: Chart, ox: number, oy: number): string {
  const measured = chart.series.map((s) => ({name: s.name, points: s.points.filter((p): p is Point => p.y !== undefined && Number.isFinite(p.y))}))
  const all = measured.flatMap((s) => s.points)
  const xs = chart.series.flatMap((s) => s.points.map((p) => p.x))
  const xTicks = [...new Set(xs)].sort((a, b) => a - b)
  const xMax = Math.max(1, ...xs)
  const yTicks = ticks(Math.max(0, ...all.map((p) => p.y)))
  const yMax = yTicks[yTicks.length - 1]
  const w = PANEL_W - MARGIN.left - MARGIN.right
  const h = PANEL_H - MARGIN.top - MARGIN.bottom
  const px = (x: number) => ox + MARGIN.left + (x / xMax) * w
  const py = (y: number) => oy + MARGIN.top + h - (y / yMax) * h
  const out: string[] = []
  out.push(`<g class="chart" data-title="${escapeXml(chart.title)}">`)
  out.push(`<text x="${ox + PANEL_W / 2}" y="${oy + 22}" text-anchor="middle" font-size="14" font-weight="bold">${escapeXml(chart.title)}</text>`)
  // axes, grid and ticks
  out.push(`<line x1="${px(0)}" y1="${py(0)}" x2="${px(xMax)}" y2="${py(0)}" stroke="#333"/>`)
  out.push(`<line x1="${px(0)}" y1="${py(0)}" x2="${px(0)}" y2="${py(yMax)}" stroke="#333"/>`)
  for (const t of yTicks) {
    out.push(`<line x1="${px(0)}" y1="${py(t)}" x2="${px(xMax)}" y2="${py(t)}" stroke="#ddd"/>`)
    out.push(`<text x="${px(0) - 6}" y="${py(t) + 4}" text-anchor="end" font-size="11">${fmtTick(t)}</text>`)
  }
  for (const t of xTicks) out.push(`<text x="${px(t)}" y="${py(0) + 16}" text-anchor="middle" font-size="11">${fmtTick(t)}</text>`)
  out.push(`<text x="${px(xMax / 2)}" y="${py(0) + 34}" text-anchor="middle" font-size="12">${escapeXml(chart.xLabel)}</text>`)
  out.push(`<text transform="translate(${ox + 14} ${py(yMax / 2)}) rotate(-90)" text-anchor="middle" font-size="12">${escapeXml(chart.yLabel)}</text>`)
  // series: a line through the measured points, a dot on each, the legend under the axis
  measured.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]
    const name = escapeXml(s.name)
    if (s.points.length > 1) {
      out.push(`<polyline class="series" data-series="${name}" fill="none" stroke="${color}" stroke-width="2" points="${s.points.map((p) => `${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`).join(' ')}"/>`)
    }
    for (const p of s.points) {
      out.push(`<circle class="point" data-series="${name}" data-x="${p.x}" data-y="${p.y.toFixed(3)}" cx="${px(p.x).toFixed(1)}" cy="${py(p.y).toFixed(1)}" r="3.5" fill="${color}"><title>${name}: ${p.x} → ${p.y.toFixed(2)}</title></circle>`)
    }
    const ly = oy + PANEL_H - 22 + Math.floor(i / 2) * 16
    const lx = ox + MARGIN.left + (i % 2) * 190
    out.push(`<line x1="${lx}" y1="${ly - 4}" x2="${lx + 18}" y2="${ly - 4}" stroke="${color}" stroke-width="2"/>`)
    out.push(`<text class="legend" x="${lx + 24}" y="${ly}" font-size="12">${name}</text>`)
  })
  out.push('</g>')
  return out.join('\n')
}

/** The charts side by side in one SVG document (a caption line under them when given). */
export function renderSvg(charts: Chart[], caption?: string): string {
  const width = PANEL_W * Math.max(1, charts.length)
  const height = PANEL_H + (caption ? 24 : 0)
  const body = charts.map((c, i) => panel(c, i * PANEL_W, 0))
  if (caption) body.push(`<text x="8" y="${PANEL_H + 14}" font-size="11" fill="#555">${escapeXml(caption)}</text>`)
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    ...body,
    '</svg>',
    '',
  ].join('\n')
}
