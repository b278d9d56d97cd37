import {PassThrough} from 'node:stream'
import {describe, expect, it} from 'vitest'
import {formatBytes, renderTable} from '../../src/ui/format.js'
import {createReporter} from '../../src/ui/progress.js'

describe('output formatting', () => {
  it('formats bytes with binary units', () => {
    expect(formatBytes(512)).toBe('512 B')
    expect(formatBytes(5 * 1024 * 1024)).toBe('5.0 MiB')
    expect(formatBytes(1536)).toBe('1.5 KiB')
  })

  it('renders a kubectl-style table with aligned columns', () => {
    const out = renderTable(['node', 'result'], [['node-a', 'pushed'], ['b', 'up to date']])
    expect(out).toBe('NODE     RESULT\nnode-a   pushed\nb        up to date\n')
  })

  it('writes NDJSON events to stdout in json mode', () => {
    const out = new PassThrough()
    const err = new PassThrough()
    const reporter = createReporter('json', {out: out as unknown as NodeJS.WriteStream, err: err as unknown as NodeJS.WriteStream})
    reporter.event({type: 'done', target: 'node-a', message: 'up to date'})
    const line = JSON.parse(String(out.read()))
    expect(line).toMatchObject({type: 'done', target: 'node-a', message: 'up to date'})
    expect(err.read()).toBeNull()
  })

  it('writes plain lines to stderr when not on a terminal', () => {
    const out = new PassThrough()
    const err = new PassThrough()
    const reporter = createReporter('auto', {out: out as unknown as NodeJS.WriteStream, err: err as unknown as NodeJS.WriteStream})
    reporter.event({type: 'failed', target: 'node-b', error: 'unreachable'})
    expect(String(err.read())).toBe('node-b: FAILED: unreachable\n')
    expect(out.read()).toBeNull()
  })
})
