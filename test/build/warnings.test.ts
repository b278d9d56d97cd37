// Issue 14, "no Node.js warnings reach users": `sideload build` of a large context against a real
// dockerd (its BuildKit pulls the files through our FileSync server with backpressure) prints no
// `MaxListenersExceededWarning … listeners added to [ServerDuplexStreamImpl]` on stderr: each wait
// for 'drain' used to leave its 'close'/'cancelled'/'error' listeners on the gRPC call.
import {spawn} from 'node:child_process'
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {writeContext} from './context.js'
import {startDockerd, type TestDockerd} from './dockerd.js'

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'run.js')

let dockerd: TestDockerd
let work: string

beforeAll(async () => {
  dockerd = await startDockerd('bkwarn')
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'sl-bkwarn-'))
}, 120_000)

afterAll(async () => {
  await dockerd?.stop()
  if (work) fs.rmSync(work, {recursive: true, force: true})
})

/** The built CLI as users run it: warnings printed as node prints them, with their stacks. */
function cli(args: string[]): Promise<{code: number | null; stdout: string; stderr: string}> {
  const env = {...process.env}
  delete env.NODE_OPTIONS
  delete env.NODE_NO_WARNINGS
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--trace-warnings', BIN, ...args], {env, stdio: ['ignore', 'pipe', 'pipe']})
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), 150_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({code, stdout, stderr})
    })
  })
}

describe('sideload build prints no Node.js warning', () => {
  it('a 24 MiB file and 1500 small ones in the context (backpressure on the FileSync stream)', async () => {
    const ctx = writeContext(work, 'big-ctx', {Dockerfile: 'FROM scratch\nCOPY . /ctx/\n'})
    fs.writeFileSync(path.join(ctx, 'big.bin'), crypto.randomBytes(24 << 20))
    for (let i = 0; i < 1500; i++) fs.writeFileSync(path.join(ctx, `f${String(i).padStart(4, '0')}.txt`), `file ${i}\n`)
    const r = await cli(['build', ctx, '-t', 'sltest/warn:1', '--builder', 'docker', '--docker-host', dockerd.host, '--progress', 'plain'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).not.toMatch(/Warning|MaxListenersExceeded|memory leak/)
    const {stdout} = await dockerd.docker(['image', 'inspect', '-f', '{{.Id}}', 'sltest/warn:1'])
    expect(stdout.trim()).toMatch(/^sha256:/)
  }, 180_000)
})
