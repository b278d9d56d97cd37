#!/usr/bin/env node
import fs from 'node:fs'
import {execute} from '@oclif/core'

// `npm run build` writes oclif.manifest.json so oclif lists and describes the commands without
// importing them (start-up). A manifest older than the compiled commands (a bare `tsc` since)
// would hide new commands and flags: drop it, and oclif reads the commands themselves.
const root = new URL('../', import.meta.url)
const manifest = new URL('oclif.manifest.json', root)
try {
  const builtAt = fs.statSync(manifest).mtimeMs
  const commands = new URL('dist/commands/', root)
  const stale = fs.readdirSync(commands).some((f) => f.endsWith('.js') && fs.statSync(new URL(f, commands)).mtimeMs > builtAt)
  if (stale) fs.rmSync(manifest, {force: true})
} catch {
  // no manifest (a fresh clone before `npm run build`) or a read-only install: nothing to do
}

await execute({dir: import.meta.url})
