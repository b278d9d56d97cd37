import {execFileSync} from 'node:child_process'
import * as path from 'node:path'
import {describe, expect, it} from 'vitest'

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'run.js')

describe('sideload CLI', () => {
  it('prints its help with the version and a command list', () => {
    const out = execFileSync(process.execPath, [BIN, '--help'], {encoding: 'utf8'})
    expect(out).toContain('sideload/')
    expect(out).toMatch(/COMMANDS/)
  })

  it('exits non-zero on an unknown command', () => {
    expect(() => execFileSync(process.execPath, [BIN, 'no-such-command'], {stdio: 'pipe'})).toThrow()
  })
})
