// bin/run.js keeps V8's compiled code on disk where Node can (>= 22.1: module.enableCompileCache),
// in <tmpdir>/node-compile-cache unless NODE_COMPILE_CACHE says where; on Node 20 it runs as before.
// Runs in both passes: the machine's Node 20 and the node-lts one (Node 24).
import * as fs from 'node:fs'
import module from 'node:module'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {runCli} from '../push/cli.js'

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sideload-ccache-'))
afterAll(() => fs.rmSync(tmp, {recursive: true, force: true}))
const supported = typeof (module as {enableCompileCache?: unknown}).enableCompileCache === 'function'

describe(`the compile cache (Node ${process.versions.node})`, () => {
  it(supported ? 'is written under the temporary directory, and a second run still works' : 'is not there, and the CLI runs as before', async () => {
    const env = {...process.env, TMPDIR: tmp, NODE_COMPILE_CACHE: undefined, NODE_DISABLE_COMPILE_CACHE: undefined}
    for (let run = 0; run < 2; run++) {
      const r = await runCli(['--help'], {env})
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).toContain('push')
    }
    const dir = path.join(tmp, 'node-compile-cache')
    if (supported) expect(fs.readdirSync(dir, {recursive: true}).length).toBeGreaterThan(0)
    else expect(fs.existsSync(dir)).toBe(false)
  })

  it('NODE_DISABLE_COMPILE_CACHE=1 writes none', async () => {
    const other = fs.mkdtempSync(path.join(tmp, 'off-'))
    const r = await runCli(['--help'], {env: {...process.env, TMPDIR: other, NODE_COMPILE_CACHE: undefined, NODE_DISABLE_COMPILE_CACHE: '1'}})
    expect(r.code, r.stderr).toBe(0)
    expect(fs.existsSync(path.join(other, 'node-compile-cache'))).toBe(false)
  })
})
