#!/usr/bin/env node
import fs from 'node:fs'
import module from 'node:module'
import os from 'node:os'
import path from 'node:path'
import {PerformanceObserver} from 'node:perf_hooks'
import v8 from 'node:v8'

capYoungGeneration(4)
enableCompileCache()
// The bundle is what runs, always: oclif would otherwise look for TypeScript sources to run instead
// when NODE_ENV is test or development (and warn on stderr that dist/bundle/ has none).
globalThis.oclif = {...globalThis.oclif, enableAutoTranspile: false}
// the bundle (scripts/bundle.mjs), after the cap: loading the modules is what grows it
const {execute} = await import('../dist/bundle/index.js')

/**
 * Node >= 22.1: V8's compiled code for the bundle and ssh2 kept on disk between runs (as tsc does),
 * in $XDG_CACHE_HOME/sideload/compile-cache (else ~/.cache/…), made 0700. Not Node's default,
 * <tmpdir>/node-compile-cache: every user of the machine may create that, and Node checks neither
 * who owns its directory nor who may write there; an entry is taken when it matches the source's
 * size and CRC32, which whoever plants code for our bundle can make it do. So the cache is not
 * used when its directory (or sideload/ above it) belongs to someone else or others may write to
 * it. $NODE_COMPILE_CACHE (Node enables that one itself, before this runs) and
 * NODE_DISABLE_COMPILE_CACHE=1 are left to Node. Node 20 has no compile cache: nothing to do.
 */
function enableCompileCache() {
  if (!module.enableCompileCache || 'NODE_DISABLE_COMPILE_CACHE' in process.env || process.env.NODE_COMPILE_CACHE) return
  const xdg = process.env.XDG_CACHE_HOME
  const parent = path.join(xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), '.cache'), 'sideload')
  const dir = path.join(parent, 'compile-cache')
  try {
    fs.mkdirSync(dir, {recursive: true, mode: 0o700})
    if (ownPrivateDir(parent) && ownPrivateDir(dir)) module.enableCompileCache(dir)
  } catch {
    // no home, or a read-only one: run without the cache
  }
}

/** A directory (not a link) of this user's that no one else may write to. */
function ownPrivateDir(dir) {
  const st = fs.lstatSync(dir)
  const uid = process.geteuid?.()
  return st.isDirectory() && (uid === undefined || (st.uid === uid && (st.mode & 0o022) === 0))
}

/**
 * V8 grows its young generation to 2 × 16 MiB while the modules load and keeps it: ~30 MB of a
 * push's peak RSS that the push itself does not need (its garbage is buffers, outside the heap).
 * `--max-semi-space-size` would cap it but is read only at start-up; `semi_space_growth_factor`
 * is read whenever V8 grows the space, so growth stops once the space has reached `mib` (a
 * semi-space of mib/2). Measured on the bed (170 MB image, Node 20): peak RSS -33 MB to one node,
 * -36 MB to three, CPU within the noise (+0-3 %); stopping at the initial 1 MiB cost +35 % CPU
 * to one node. A V8 that does not allow the factor below 2 just grows as before.
 */
function capYoungGeneration(mib) {
  const gcs = new PerformanceObserver(() => {
    const young = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')
    if (young && young.space_size >= mib * 1024 * 1024) {
      v8.setFlagsFromString('--semi-space-growth-factor=1')
      gcs.disconnect()
    }
  })
  gcs.observe({entryTypes: ['gc']})
}

// `npm run build` writes oclif.manifest.json so oclif lists and describes the commands without
// importing them (start-up). A manifest older than the compiled commands (a bare `tsc` since)
// would hide new commands and flags: drop it, and oclif reads the commands themselves.
const root = new URL('../', import.meta.url)
const manifest = new URL('oclif.manifest.json', root)
try {
  const builtAt = fs.statSync(manifest).mtimeMs
  const commands = new URL('dist/bundle/commands/', root)
  const stale = fs.readdirSync(commands).some((f) => f.endsWith('.js') && fs.statSync(new URL(f, commands)).mtimeMs > builtAt)
  if (stale) fs.rmSync(manifest, {force: true})
} catch {
  // no manifest (a fresh clone before `npm run build`) or a read-only install: nothing to do
}

await execute({dir: import.meta.url})
