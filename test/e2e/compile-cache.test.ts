// bin/run.js keeps V8's compiled code on disk where Node can (>= 22.1: module.enableCompileCache),
// in a directory of the user's own: $XDG_CACHE_HOME/sideload/compile-cache, else
// ~/.cache/sideload/compile-cache, made 0700; never one that another user owns or may write to,
// and never Node's default <tmpdir>/node-compile-cache, which any user of the machine may create
// first. NODE_COMPILE_CACHE and NODE_DISABLE_COMPILE_CACHE=1 are Node's. On Node 20 it runs as before.
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
const isRoot = process.geteuid?.() === 0
/** a user that is not us (nobody) */
const OTHER_UID = 65534

/** A HOME and a TMPDIR of their own for the CLI, the cache variables unset unless given. */
function sandbox(env: NodeJS.ProcessEnv = {}): {home: string; tmpdir: string; cache: string; env: NodeJS.ProcessEnv} {
  const root = fs.mkdtempSync(path.join(tmp, 'run-'))
  const home = path.join(root, 'home')
  const tmpdir = path.join(root, 'tmp')
  fs.mkdirSync(home)
  fs.mkdirSync(tmpdir)
  return {
    home,
    tmpdir,
    cache: path.join(home, '.cache', 'sideload', 'compile-cache'),
    env: {...process.env, HOME: home, TMPDIR: tmpdir, XDG_CACHE_HOME: undefined, NODE_COMPILE_CACHE: undefined, NODE_DISABLE_COMPILE_CACHE: undefined, ...env},
  }
}

async function help(env: NodeJS.ProcessEnv): Promise<void> {
  const r = await runCli(['--help'], {env})
  expect(r.code, r.stderr).toBe(0)
  expect(r.stdout).toContain('push')
}

const entries = (dir: string): number => (fs.existsSync(dir) ? fs.readdirSync(dir, {recursive: true}).length : 0)
const modeOf = (p: string): string => (fs.statSync(p).mode & 0o777).toString(8)

describe(`the compile cache (Node ${process.versions.node})`, () => {
  it(supported ? 'is written to ~/.cache/sideload/compile-cache (0700), not to the tmpdir, and a second run still works' : 'is not there, and the CLI runs as before', async () => {
    const s = sandbox()
    for (let run = 0; run < 2; run++) await help(s.env)
    expect(fs.existsSync(path.join(s.tmpdir, 'node-compile-cache'))).toBe(false)
    if (supported) {
      expect(entries(s.cache)).toBeGreaterThan(0)
      expect(modeOf(s.cache)).toBe('700')
      expect(modeOf(path.dirname(s.cache))).toBe('700')
    } else {
      expect(fs.existsSync(s.cache)).toBe(false)
    }
  })

  it.runIf(supported)('goes under $XDG_CACHE_HOME when it is set', async () => {
    const xdg = path.join(tmp, 'xdg')
    const s = sandbox({XDG_CACHE_HOME: xdg})
    await help(s.env)
    expect(entries(path.join(xdg, 'sideload', 'compile-cache'))).toBeGreaterThan(0)
    expect(fs.existsSync(s.cache)).toBe(false)
  })

  it.runIf(supported)('is not used where others may write to its directory', async () => {
    for (const planted of ['compile-cache', 'sideload']) {
      const s = sandbox()
      fs.mkdirSync(s.cache, {recursive: true})
      fs.chmodSync(planted === 'sideload' ? path.dirname(s.cache) : s.cache, 0o777)
      await help(s.env)
      expect(entries(s.cache), planted).toBe(0)
    }
  })

  it.runIf(supported && isRoot)('is not used where its directory belongs to another user', async () => {
    for (const planted of ['compile-cache', 'sideload']) {
      const s = sandbox()
      fs.mkdirSync(s.cache, {recursive: true, mode: 0o700})
      fs.chownSync(planted === 'sideload' ? path.dirname(s.cache) : s.cache, OTHER_UID, OTHER_UID)
      await help(s.env)
      expect(entries(s.cache), planted).toBe(0)
    }
  })

  it.runIf(supported)('NODE_COMPILE_CACHE still says where', async () => {
    const chosen = path.join(tmp, 'chosen')
    const s = sandbox({NODE_COMPILE_CACHE: chosen})
    await help(s.env)
    expect(entries(chosen)).toBeGreaterThan(0)
    expect(fs.existsSync(s.cache)).toBe(false)
  })

  it('NODE_DISABLE_COMPILE_CACHE=1 writes none', async () => {
    const s = sandbox({NODE_DISABLE_COMPILE_CACHE: '1'})
    await help(s.env)
    expect(fs.existsSync(s.cache)).toBe(false)
    expect(fs.existsSync(path.join(s.tmpdir, 'node-compile-cache'))).toBe(false)
  })
})
