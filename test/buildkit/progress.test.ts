import {describe, expect, it} from 'vitest'
import {BuildProgressModel, JsonProgress, PlainProgress, TtyProgress, formatSize} from '../../src/buildkit/progress.js'
import type {StatusResponse, Timestamp} from '../../src/buildkit/protos.js'

const ts = (ms: number): Timestamp => ({seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6})

function update(partial: Partial<StatusResponse>): StatusResponse {
  return {vertexes: [], statuses: [], logs: [], warnings: [], ...partial}
}

const T0 = 1_700_000_000_000
const vertex = (digest: string, name: string, extra: object = {}) => ({digest, inputs: [], name, cached: false, started: null, completed: null, error: '', ...extra})

// What BuildKit streams for a two-step build: incremental vertex updates, logs split mid-line,
// a context-transfer status, and a failing step.
const stream: StatusResponse[] = [
  update({vertexes: [vertex('sha256:a', '[internal] load build context', {started: ts(T0)})]}),
  update({
    statuses: [{ID: 'transferring context:', vertex: 'sha256:a', name: 'transferring context:', current: '2048', total: '0', timestamp: ts(T0), started: ts(T0), completed: ts(T0 + 100)}],
  }),
  update({vertexes: [vertex('sha256:a', '[internal] load build context', {started: ts(T0), completed: ts(T0 + 120)})]}),
  update({vertexes: [vertex('sha256:b', '[1/2] FROM base', {cached: true, started: ts(T0), completed: ts(T0)})]}),
  update({vertexes: [vertex('sha256:c', '[2/2] RUN make', {started: ts(T0 + 200)})]}),
  update({logs: [{vertex: 'sha256:c', timestamp: ts(T0 + 450), stream: '1', msg: Buffer.from('compiling\nerror: bad th')}]}),
  update({logs: [{vertex: 'sha256:c', timestamp: ts(T0 + 460), stream: '2', msg: Buffer.from('ing\n')}]}),
  update({warnings: [{vertex: 'sha256:c', level: '1', short: Buffer.from('something odd'), detail: [], url: ''}]}),
  update({vertexes: [vertex('sha256:c', '[2/2] RUN make', {started: ts(T0 + 200), completed: ts(T0 + 700), error: 'exit code: 2'})]}),
]

describe('build progress', () => {
  it('merges incremental updates into steps, joins split log lines, finds the failed step', () => {
    const model = new BuildProgressModel()
    for (const u of stream) model.apply(u)
    const steps = [...model.steps.values()]
    expect(steps.map((s) => [s.index, s.name, s.cached])).toEqual([
      [1, '[internal] load build context', false],
      [2, '[1/2] FROM base', true],
      [3, '[2/2] RUN make', false],
    ])
    expect(steps[0].completedMs).toBe(T0 + 120)
    expect(steps[2].logs).toEqual(['compiling', 'error: bad thing'])
    expect(model.failedStep()?.name).toBe('[2/2] RUN make')
  })

  it('plain output reads like buildx --progress=plain', () => {
    let out = ''
    const p = new PlainProgress({write: (t: string) => (out += t)})
    for (const u of stream) p.update(u)
    p.end()
    expect(out).toBe(
      [
        '#1 [internal] load build context',
        '#1 transferring context: 2.05kB done',
        '#1 DONE 0.1s',
        '',
        '#2 [1/2] FROM base',
        '#2 CACHED',
        '',
        '#3 [2/2] RUN make',
        '#3 0.250 compiling',
        '#3 0.260 error: bad thing',
        '#3 WARNING: something odd',
        '#3 ERROR: exit code: 2',
        '',
        '',
      ].join('\n'),
    )
  })

  it('json output is one object per line; the tty view marks cached and failed steps', async () => {
    let json = ''
    const j = new JsonProgress({write: (t: string) => (json += t)})
    for (const u of stream) j.update(u)
    j.end()
    const events = json.trim().split('\n').map((l) => JSON.parse(l) as {event: string; step: number; cached?: boolean; line?: string; error?: string})
    expect(events.filter((e) => e.event === 'build.log').map((e) => e.line)).toEqual(['compiling', 'error: bad thing'])
    expect(events.find((e) => e.event === 'build.step' && e.step === 2)?.cached).toBe(true)
    expect(events.some((e) => e.event === 'build.step' && e.error === 'exit code: 2')).toBe(true)

    let screen = ''
    const t = new TtyProgress({write: (s: string) => (screen += s), isTTY: true, columns: 80})
    for (const u of stream) t.update(u)
    t.end()
    expect(screen).toMatch(/\[\+\] Building [\d.]+s \(3\/3\) FINISHED/)
    expect(screen).toContain(' => CACHED [1/2] FROM base')
    expect(screen).toMatch(/ => ERROR \[2\/2\] RUN make +0\.5s/)
    expect(screen).toContain(' => => transferring context: 2.05kB done')
    // On a short terminal only the newest rows are redrawn while running (the final view is complete).
    let small = ''
    const short = new TtyProgress({write: (x: string) => (small += x), isTTY: true, columns: 80, rows: 4})
    for (const u of stream) short.update(u)
    await new Promise((r) => setTimeout(r, 400))
    const live = small.split('\x1b[')[1] !== undefined ? small.slice(small.lastIndexOf('\x1b[J') + 3) : small
    expect(live.trimEnd().split('\n')).toHaveLength(3)
    expect(live).toMatch(/^\[\+\] Building/)
    short.end()
    expect(small.slice(small.lastIndexOf('\x1b[J') + 3)).toContain('[internal] load build context')
    expect(formatSize(999)).toBe('999B')
    expect(formatSize(25_170_000)).toBe('25.17MB')
  })
})
