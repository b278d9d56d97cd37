// The README's own commands, run as written and in order: the Sandbox section's block (under a
// sandbox name of its own, so a developer's `sandbox` is left alone — only the name in the env
// file's path differs), then the story's `sideload fix` and `sideload expose` in the same shell,
// then `down`: every line must succeed and say what the README says it does.
import {spawn} from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {describe, expect, it} from 'vitest'
import {readmeBlock} from './blocks.js'

const REPO = path.resolve(import.meta.dirname, '..', '..')
const NAME = 'slreadme'

function bash(script: string): Promise<{code: number | null; out: string}> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', script], {cwd: REPO, env: {...process.env, SIDELOAD_SANDBOX: NAME}, stdio: ['ignore', 'pipe', 'pipe']})
    let out = ''
    child.stdout.on('data', (b: Buffer) => (out += b.toString()))
    child.stderr.on('data', (b: Buffer) => (out += b.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), 280_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({code, out})
    })
  })
}

describe('the README, as written', () => {
  it('the Sandbox block, then the story\'s sideload commands, each line succeeding in order', async () => {
    const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8')
    const sandbox = readmeBlock(readme, '## Sandbox').map((l) => l.replace('/run/sideload-bed/sandbox/sandbox/', `/run/sideload-bed/sandbox/${NAME}/`))
    expect(sandbox[0]).toMatch(/^npm run sandbox -- up$/)
    expect(sandbox.at(-1)).toMatch(/^npm run sandbox -- down$/)
    const story = readmeBlock(readme, '## The story it replaces')
    expect(story).toEqual(['sideload fix', 'sideload expose centos-stream-8 --port 22 --ssh-user admin'])
    // the story's commands run after the demo (the pod exists and runs), before down
    const lines = [...sandbox.slice(0, -1), ...story, sandbox.at(-1)!]
    const script = ['set -e', ...lines.map((l) => `echo "+ ${l.replace(/"/g, '\\"')}"; ${l}`)].join('\n')
    const run = await bash(script)
    expect(run.code, run.out.slice(-3000)).toBe(0)
    const out = run.out
    expect(out).toMatch(/\+ kubectl get nodes -o wide\n(.*\n)*?slreadme-1\s+Ready/)
    expect(out).toContain('centos-stream-8: up and running, sideloaded without a registry')
    // the demo fixed the pod already: fix, run again as the story says, finds nothing to do
    expect(out).toMatch(/\+ sideload fix\nno pod waits for an image\n/)
    expect(out).toMatch(/\+ sideload expose centos-stream-8 --port 22 --ssh-user admin\n[\s\S]*ssh admin@\S+ -p \d+/)
    expect(fs.existsSync(`/run/sideload-bed/sandbox/${NAME}`)).toBe(false)
  }, 300_000)
})
