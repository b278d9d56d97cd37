// The bench report: JSON shape and the markdown table.

export interface Row {
  scenario: string
  /** `cpu-s`: CPU seconds (user + sys); `ms/MB`: CPU milliseconds per MB sent. */
  unit: 's' | 'MB' | 'count' | 'cpu-s' | 'ms/MB'
  /** Median of the measured samples (undefined: not measured). */
  measured?: number
  /** The same-run baseline this row is compared to. */
  baseline?: number
  baselineLabel: string
  /** Goal as a ratio to the baseline: measured / baseline ≤ maxRatio. */
  maxRatio?: number
  /** Goal as an absolute bound in the row's unit. */
  maxAbsolute?: number
  goal: string
  notMeasured?: string
  /** A figure for context, with no goal. */
  context?: boolean
  /** Shown next to the result (e.g. what went wrong in a miss). */
  note?: string
  /** The block (ReportBlock.id) this row belongs to; rows without one are printed after the blocks. */
  block?: string
}

/**
 * A group of rows measured on one kind of node (e.g. every push row on containerd 2.x nodes, then
 * again on 1.6 nodes), printed as its own table under its title.
 */
export interface ReportBlock {
  id: string
  /** e.g. `containerd 2.3.7 nodes` */
  title: string
  /** Rounds measured for this block (a block may get fewer than the report's runs). */
  runs: number
  /** Why it differs from the others (fewer rounds, rows left out). */
  note?: string
}

export interface BenchReport {
  date: string
  machine: {cpus: number; cpuModel: string; memMb: number; kernel: string; node: string}
  /** Rounds of the main measurements (a block may have fewer: see blocks). */
  runs: number
  quick: boolean
  durationS: number
  snapshotter: string
  images: Record<string, {name: string; archiveMb: number; layers: number}>
  /** Sample keys of a block's own measurements start with `<block id>/`. */
  samples: Record<string, number[]>
  /** When present, rows are printed block by block (one table each). */
  blocks?: ReportBlock[]
  rows: Row[]
}

export interface Verdict {
  ratio?: number
  miss?: boolean
}

export function verdict(row: Row): Verdict {
  if (row.measured === undefined || Number.isNaN(row.measured)) return {}
  if (row.context) return row.baseline && row.baseline > 0 ? {ratio: row.measured / row.baseline} : {}
  if (row.maxRatio !== undefined) {
    if (row.baseline === undefined || !(row.baseline > 0)) return {}
    const ratio = row.measured / row.baseline
    return {ratio, miss: ratio > row.maxRatio}
  }
  if (row.maxAbsolute !== undefined) return {miss: row.measured > row.maxAbsolute}
  return {}
}

function fmt(v: number | undefined, unit: Row['unit']): string {
  if (v === undefined || Number.isNaN(v)) return '—'
  if (unit === 's') return `${v.toFixed(2)} s`
  if (unit === 'cpu-s') return `${v.toFixed(2)} CPU-s`
  if (unit === 'ms/MB') return `${v.toFixed(2)} CPU-ms/MB`
  if (unit === 'count') return String(Math.round(v))
  return `${v.toFixed(v < 10 ? 2 : 1)} MB`
}

function pushTable(lines: string[], rows: Row[]): void {
  lines.push('| scenario | measured | baseline (same run) | ratio | goal | result |')
  lines.push('|---|---|---|---|---|---|')
  for (const row of rows) {
    const v = verdict(row)
    const base = row.baseline !== undefined ? `${fmt(row.baseline, row.unit)} ${row.baselineLabel}` : row.baselineLabel || '—'
    const result = (row.notMeasured ?? (row.context ? 'context' : v.miss === undefined ? 'not measured' : v.miss ? '**MISS**' : 'ok')) + (row.note ? ` (${row.note})` : '')
    const ratio = v.ratio !== undefined ? `${v.ratio.toFixed(2)}×` : '—'
    lines.push(`| ${row.scenario} | ${fmt(row.measured, row.unit)} | ${base} | ${ratio} | ${row.goal} | ${result} |`)
  }
  lines.push('')
}

export function renderMarkdown(report: BenchReport): string {
  const lines: string[] = []
  const images = Object.values(report.images).map((i) => `${i.name} ${i.archiveMb.toFixed(0)} MB (${i.layers} layers)`).join('; ')
  lines.push(`sideload bench, ${report.date}: ${report.runs} run(s)${report.quick ? ' (--quick)' : ''}, medians; ${report.machine.cpus} CPU ${report.machine.cpuModel}, kernel ${report.machine.kernel}, node ${report.machine.node}; snapshotter ${report.snapshotter}; images: ${images}`)
  lines.push('')
  const blocks = report.blocks ?? []
  const known = new Set(blocks.map((b) => b.id))
  for (const block of blocks) {
    lines.push(`**${block.title}**: ${block.runs} run(s), medians${block.note ? `; ${block.note}` : ''}`)
    lines.push('')
    pushTable(lines, report.rows.filter((r) => r.block === block.id))
  }
  const rest = report.rows.filter((r) => r.block === undefined || !known.has(r.block))
  if (rest.length > 0) {
    if (blocks.length > 0) {
      lines.push('**other rows**')
      lines.push('')
    }
    pushTable(lines, rest)
  }
  lines.push('| baseline / sample | median | samples |')
  lines.push('|---|---|---|')
  for (const [key, values] of Object.entries(report.samples)) {
    const bytes = /bytes|rss/.test(key)
    const count = /transfers|fallbacks|retries/.test(key)
    const show = (x: number) => (count ? String(x) : bytes ? `${(x / (1024 * 1024)).toFixed(1)} MB` : `${(x / 1000).toFixed(3)} s`)
    const sorted = [...values].sort((a, b) => a - b)
    const mid = Math.floor(sorted.length / 2)
    const med = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
    lines.push(`| ${key} | ${show(med)} | ${values.map(show).join(', ')} |`)
  }
  lines.push('')
  return `${lines.join('\n')}\n`
}
