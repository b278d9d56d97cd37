// The rows of the containerd blocks and of the client alone (goals as issue 17's table; a miss is
// marked by report.ts), and the picture of the run: time against node count, re-push time against
// changed bytes.
import {FIX_PODS, GOAL_REPUSH_MB, REPUSH_MB, SHAPED_MBIT, type Block, type Images} from './block.js'
import type {Chart} from './plot.js'
import type {Row} from './report.js'
import {cpuMsPerMb, SCALE_COUNTS, SCALE_MBIT} from './scaling.js'
import {MB, type Samples} from './steps.js'

export const COMMON_BLOCK = 'client'

/** Rows that do not depend on the nodes' containerd: the client's start-up and memory, the SSH library. */
export function commonRows(common: Samples): Row[] {
  const m = (k: string) => common.median(k)
  const sec = (k: string) => {
    const v = m(k)
    return v === undefined ? undefined : v / 1000
  }
  return [
    {
      block: COMMON_BLOCK, scenario: 'raw copy through ssh2 (the SSH library sideload uses), 1 node (context)', unit: 's', measured: sec('raw-1-ssh2'), baseline: sec('raw-1'),
      baselineLabel: 'raw copy, OpenSSH', goal: '—', context: true,
    },
    {block: COMMON_BLOCK, scenario: 'peak RSS of `sideload --help` (context: the CLI before any work)', unit: 'MB', measured: toMb(m('rss-help')), baselineLabel: '', goal: '—', context: true},
    {block: COMMON_BLOCK, scenario: '`sideload --help` start-up', unit: 's', measured: sec('help'), baseline: sec('node-e'), baselineLabel: '`node -e ""`', maxRatio: 2, goal: '≤ 2 × `node -e ""`'},
  ]
}

export function blockRows(block: Block, common: Samples, img: Images, opts: {quick: boolean; fix: boolean}): Row[] {
  const s = block.s
  const m = (k: string) => s.median(k)
  const sec = (k: string) => {
    const v = m(k)
    return v === undefined ? undefined : v / 1000
  }
  const csec = (k: string) => {
    const v = common.median(k)
    return v === undefined ? undefined : v / 1000
  }
  const rows: Row[] = []
  const add = (row: Row): void => {
    const notMeasured = row.measured === undefined && !row.notMeasured && opts.quick ? {notMeasured: 'not measured (--quick)'} : {}
    rows.push({...row, ...notMeasured, block: block.id})
  }
  const ratioRow = (scenario: string, measuredKey: string, baselineLabel: string, baseline: number | undefined, maxRatio: number, unit: Row['unit'] = 's'): void => {
    add({scenario, unit, measured: unit === 's' ? sec(measuredKey) : m(measuredKey), baseline, baselineLabel, maxRatio, goal: `≤ ${maxRatio} × ${baselineLabel}`})
  }
  const contextRow = (scenario: string, measuredKey: string, baselineLabel: string, baseline: number | undefined): void => {
    add({scenario: `${scenario} (context)`, unit: 's', measured: sec(measuredKey), baseline, baselineLabel, goal: '—', context: true})
  }
  const importDisk = sec('import-disk')
  ratioRow('first push, ~170 MB, 1 node', 'push-1', 'node-side import from disk', importDisk, 1.0)
  ratioRow('first push, ~170 MB, 1 node', 'push-1', 'kind-style, 1 node', sec('kind-1'), 0.95)
  add({
    scenario: 'client CPU per MB sent, first push, 1 node (user + sys of the sideload process ÷ bytes it sent)', unit: 'ms/MB',
    measured: cpuMsPerMb(m('push-1-cpu'), m('push-1-bytes')), baseline: cpuMsPerMb(common.median('raw-1-cpu'), img.base.archiveBytes),
    baselineLabel: 'the OpenSSH client of the raw copy (÷ the archive)', maxRatio: 1.5, goal: '≤ 1.5 × OpenSSH\'s',
  })
  const loadStep = block.n.nerdctl ? `nerdctl ${block.n.nerdctlVersion} load` : 'ctr import'
  add({
    scenario: 'first push from the build machine\'s containerd, 1 node, against the manual workflow', unit: 's', measured: sec('push-1-local'), baseline: sec('manual'),
    baselineLabel: `manual: nerdctl save, scp, ${loadStep}`, maxRatio: 1, goal: '≤ 1 × manual',
    ...(block.manualNote ? {note: block.manualNote} : {}),
  })
  contextRow('first push from the build machine\'s containerd, 1 node', 'push-1-local', 'first push from the archive', sec('push-1'))
  const rawShaped = csec('raw-1-shaped')
  const maxShaped = rawShaped !== undefined && importDisk !== undefined ? Math.max(rawShaped, importDisk) : undefined
  ratioRow(`first push, 1 node, ${SHAPED_MBIT} Mbit/s link`, 'push-1-shaped', 'max(raw copy @1G, node-side import)', maxShaped, 1.1)
  ratioRow(`first push, 1 node, ${SHAPED_MBIT} Mbit/s link`, 'push-1-shaped', 'kind-style @1G, 1 node', sec('kind-1-shaped'), 0.95)
  ratioRow('first push --no-unpack, 1 node', 'push-1-nounpack', 'copy to the node\'s disk (`ssh node \'cat > f\'`)', csec('raw-1-disk'), 1.15)
  contextRow('first push --no-unpack, 1 node', 'push-1-nounpack', 'raw copy to /dev/null (the old baseline: no node-side work)', csec('raw-1'))
  add({
    scenario: 'first push: time in the transfer phase (first to last byte event) (context)', unit: 's', measured: sec('push-1-phase-transfer'), baseline: csec('raw-1-ssh2-transfer'),
    baselineLabel: 'ssh2 raw copy, transfer only', goal: '—', context: true,
  })
  ratioRow('first push, 3 nodes (links unshaped: the 2 cores decide)', 'push-3', 'kind-style, 3 nodes in parallel', sec('kind-3'), 0.9)
  const goal = img.repush.get(GOAL_REPUSH_MB)!
  const lastLayer = goal.platforms[0].layerSizes.at(-1) ?? 0
  const otherLayers = goal.platforms[0].layerSizes.slice(0, -1).reduce((a, b) => a + b, 0)
  const deltaExpected = goal.totalBytes - otherLayers // last layer + config + manifest
  add({
    scenario: `re-push, last ${GOAL_REPUSH_MB} MB layer changed: bytes sent`, unit: 'MB', measured: toMb(m(`repush-${GOAL_REPUSH_MB}mb-bytes`)), baseline: toMb(deltaExpected),
    baselineLabel: `layer ${(lastLayer / MB).toFixed(2)} MB + manifest + config`, maxRatio: 1.05, goal: '≤ 1.05 × (layer + manifest + config)',
  })
  ratioRow(`re-push, last ${GOAL_REPUSH_MB} MB layer changed: time`, `repush-${GOAL_REPUSH_MB}mb`, 'kind\'s re-push (old image on the node, new archive streamed in)', sec(`kind-repush-${GOAL_REPUSH_MB}mb`), 0.25)
  contextRow(`re-push, last ${GOAL_REPUSH_MB} MB layer changed: time`, `repush-${GOAL_REPUSH_MB}mb`, 'kind-style first push, 1 node', sec('kind-1'))
  contextRow(`re-push, last layer changed, ${SHAPED_MBIT} Mbit/s link: time`, 'repush-shaped', 'kind-style first push @1G, 1 node', sec('kind-1-shaped'))
  if (block.plot) {
    for (const mb of REPUSH_MB.filter((x) => x !== GOAL_REPUSH_MB)) {
      contextRow(`re-push, last layer changed to a new ${mb} MB one: time`, `repush-${mb}mb`, 'kind\'s re-push of the same', sec(`kind-repush-${mb}mb`))
    }
  }
  add({scenario: 'identical re-push, 3 nodes: bytes sent', unit: 'MB', measured: toMb(m('identical-3-bytes')), baselineLabel: 'no blob sent', goal: '0 bytes', maxAbsolute: 0})
  const nodeE = csec('node-e')
  const sshTrue = csec('ssh-true')
  ratioRow('identical re-push, 3 nodes: time', 'identical-3', '(`node -e ""` + one `ssh node true`)', nodeE !== undefined && sshTrue !== undefined ? nodeE + sshTrue : undefined, 1.2)
  const rss170 = toMb(m('rss-170'))
  add({scenario: 'peak RSS, ~170 MB image to 3 nodes', unit: 'MB', measured: rss170, baselineLabel: '', goal: '≤ 100 MB', maxAbsolute: 100})
  if (block.big) {
    const rss1g = toMb(m('rss-1g'))
    add({scenario: 'peak RSS, ~1 GB image to 3 nodes', unit: 'MB', measured: rss1g, baselineLabel: '', goal: '≤ 100 MB', maxAbsolute: 100})
    add({scenario: 'peak RSS, 1 GB vs 170 MB image (context)', unit: 'MB', measured: rss1g, baseline: rss170, baselineLabel: 'peak RSS with the 170 MB image', goal: '—', context: true})
  }
  if (opts.fix && !block.skip.fix) {
    const transfers = m('fix-transfers')
    const repeated = m('fix-repeated-transfers')
    add({
      scenario: `${FIX_PODS} pods stuck on one image across 3 nodes, \`fix\`: transfers`, unit: 'count', measured: transfers, baseline: 3,
      baselineLabel: '(image, node) pairs', maxRatio: 1, goal: 'one transfer per (image, node)',
      ...(repeated !== undefined && repeated > 0 ? {note: `${repeated} pair(s) sent twice`} : {}),
    })
    ratioRow(`${FIX_PODS} pods stuck on one image across 3 nodes, \`fix\`: time`, 'fix-20', '3-node first push', sec('push-3'), 1.2)
  } else {
    add({
      scenario: `${FIX_PODS} pods stuck on one image across 3 nodes, \`fix\``, unit: 's', baselineLabel: '3-node first push', goal: 'one transfer per (image, node); ≤ 1.2 × 3-node first push',
      notMeasured: opts.fix ? 'not measured (--quick)' : 'not measured (fix not landed)',
    })
  }
  return rows
}

function toMb(bytes: number | undefined): number | undefined {
  return bytes === undefined ? undefined : bytes / MB
}

export function blockNote(block: Block, args: {runs: number}): string | undefined {
  const notes: string[] = []
  if (block.runs < args.runs) notes.push(`fewer rounds (${block.runs} of ${args.runs}, --runs-1.6): the full run stays near 10 minutes`)
  if (block.runs > 1 && !block.skip.fix) notes.push('`fix` in the first round only')
  const skipped = [
    block.skip.manual ? 'manual-workflow' : '', block.skip.three ? '3-node' : '', block.skip.noUnpack ? '`--no-unpack`' : '', block.skip.shaped ? `${SHAPED_MBIT} Mbit/s` : '', block.skip.fix ? '`fix`' : '',
  ].filter(Boolean)
  if (skipped.length > 0) notes.push(`--quick: no ${skipped.join(', ')} rows here`)
  if (!block.plot) notes.push(`re-push of a ${GOAL_REPUSH_MB} MB layer only (the 1 and 25 MB ones of the plot on the first block's line)`)
  if (!block.big) notes.push('no 1 GB peak-RSS row (the client\'s memory: measured on the first block\'s line)')
  return notes.length > 0 ? notes.join('; ') : undefined
}

/** (a) time against node count, sideload and kind-style; (b) re-push time against the changed layer's size, sideload and kind's re-push. */
export function benchCharts(block: Block | undefined, scaling: Samples | undefined, archiveBytes: number): Chart[] {
  const sec = (s: Samples, key: string) => {
    const v = s.median(key)
    return v === undefined ? undefined : v / 1000
  }
  const charts: Chart[] = []
  if (scaling) {
    const counts = SCALE_COUNTS.filter((k) => scaling.median(`push-${k}`) !== undefined || scaling.median(`kind-${k}`) !== undefined)
    charts.push({
      title: `first push of ~170 MB, each node's link ${SCALE_MBIT} Mbit/s`, xLabel: 'nodes pushed to at once', yLabel: 'seconds',
      series: [
        {name: 'sideload push', points: counts.map((k) => ({x: k, y: sec(scaling, `push-${k}`)}))},
        {name: 'kind-style (ssh … ctr import -)', points: counts.map((k) => ({x: k, y: sec(scaling, `kind-${k}`)}))},
        // the least any tool can take: the archive through one node's shaped link
        {name: `the wire alone (archive ÷ ${SCALE_MBIT} Mbit/s)`, points: counts.map((k) => ({x: k, y: (archiveBytes * 8) / (SCALE_MBIT * 1e6)}))},
      ],
    })
  }
  if (block) {
    const sizes = [...REPUSH_MB].sort((a, b) => a - b).filter((mb) => block.s.median(`repush-${mb}mb`) !== undefined || block.s.median(`kind-repush-${mb}mb`) !== undefined)
    charts.push({
      title: `re-push, last layer changed (containerd ${block.version}, 1 node)`, xLabel: 'MB in the changed layer', yLabel: 'seconds',
      series: [
        {name: 'sideload re-push', points: sizes.map((mb) => ({x: mb, y: sec(block.s, `repush-${mb}mb`)}))},
        {name: 'kind\'s re-push (whole archive)', points: sizes.map((mb) => ({x: mb, y: sec(block.s, `kind-repush-${mb}mb`)}))},
      ],
    })
  }
  return charts
}
