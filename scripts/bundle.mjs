// The built CLI as a few ES modules (dist/bundle/), what bin/run.js and oclif load: one file per
// command and hook, the push's worker thread, and shared chunks, made by esbuild from tsc's output (dist/). Start-up was
// mostly Node resolving and reading ~330 CommonJS and ~150 ES module files one by one: importing
// the push command took a median 416 ms, 226 ms bundled (12 runs each, interleaved, same machine).
// Left outside (loaded from node_modules as before): ssh2 (its optional native parts, and
// src/ssh/channel-writes.ts asks for its Channel class by path, which must be the same module),
// the Kubernetes client (a push loads it only with a cluster: test/push/push.test.ts checks that
// by its path), and what oclif only ever loads for TypeScript sources.
// Run by `npm run build` after tsc, before `oclif manifest` (which reads the bundled commands).
import * as esbuild from 'esbuild'
import * as fs from 'node:fs'
import * as path from 'node:path'

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')
const dist = path.join(root, 'dist')
const out = path.join(dist, 'bundle')
const scripts = (dir) => fs.readdirSync(path.join(dist, dir)).filter((f) => f.endsWith('.js')).map((f) => path.join(dist, dir, f))

fs.rmSync(out, {recursive: true, force: true})
await esbuild.build({
  // and a push's worker thread (src/ops/push-workers.ts starts dist/bundle/ops/push-worker.js)
  entryPoints: [path.join(dist, 'index.js'), ...scripts('commands'), ...scripts('hooks'), path.join(dist, 'ops', 'push-worker.js')],
  outdir: out,
  outbase: dist,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['ssh2', 'cpu-features', '@kubernetes/client-node', 'typescript', 'ts-node'],
  // CommonJS modules inside an ES module bundle still call require() (some lazily, by name)
  banner: {js: "import {createRequire as __sideloadRequire} from 'node:module'; const require = __sideloadRequire(import.meta.url);"},
  logLevel: 'warning',
})
