// `npm run sandbox -- demo` end to end, under a sandbox name of its own: the field's story on real
// nodes (sshd + containerd), real kubectl, the built sideload CLI; then `up` again (nothing to do),
// `up` after the background process was killed (it recovers), and `down` leaving no trace.
import {spawn} from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {BED_ROOT} from '../bed/bed.js'
import {DEMO_PAGE, REPO, sandboxPaths} from './sandbox.js'

const NAME = 'slsbx-test'
const CLI = path.join(REPO, 'test', 'bed', 'sandbox.ts')
const p = sandboxPaths(NAME)

function sandbox(args: string[]): Promise<{code: number; out: string}> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args, '--name', NAME], {cwd: REPO, stdio: ['ignore', 'pipe', 'pipe']})
    let out = ''
    child.stdout.on('data', (b: Buffer) => (out += b.toString()))
    child.stderr.on('data', (b: Buffer) => (out += b.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), 80_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({code: code ?? 1, out})
    })
  })
}

function kubectl(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(REPO, '.cache', 'kubectl', 'usr', 'bin', 'kubectl'), args, {env: {...process.env, KUBECONFIG: p.kubeconfig}})
    let out = ''
    let err = ''
    child.stdout.on('data', (b: Buffer) => (out += b.toString()))
    child.stderr.on('data', (b: Buffer) => (err += b.toString()))
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`kubectl ${args.join(' ')}: ${err}`))))
  })
}

/** Every trace the sandbox could leave: dirs, bed, netns, index claims, processes, mounts. */
function traces(): string[] {
  const found: string[] = []
  for (const d of [p.dir, path.join(BED_ROOT, 'beds', NAME)]) if (fs.existsSync(d)) found.push(d)
  if (fs.existsSync('/run/netns')) for (const ns of fs.readdirSync('/run/netns')) if (ns.startsWith(`slbed-${NAME}-`)) found.push(`netns ${ns}`)
  const index = path.join(BED_ROOT, 'index')
  if (fs.existsSync(index)) {
    for (const k of fs.readdirSync(index)) {
      try {
        if (fs.readFileSync(path.join(index, k, 'name'), 'utf8').trim() === NAME) found.push(`index claim ${k}`)
      } catch {
        // a claim being written by another bed
      }
    }
  }
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue
    try {
      const cmd = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8')
      if (cmd.includes(`${p.dir}/`) || cmd.includes(`/beds/${NAME}/`)) found.push(`process ${e}: ${cmd.replace(/\0/g, ' ').trim()}`)
    } catch {
      // gone
    }
  }
  for (const line of fs.readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const m = line.split(' ')[1]
    if (m?.startsWith(`${p.dir}/`) || m?.startsWith(`${path.join(BED_ROOT, 'beds', NAME)}/`)) found.push(`mount ${m}`)
  }
  return found
}

describe('npm run sandbox', () => {
  afterAll(async () => {
    await sandbox(['down'])
  })

  it('demo replays the field story: ErrImageNeverPull, sideload, Running, a NodePort that answers; down leaves nothing', async () => {
    const demo = await sandbox(['demo'])
    expect(demo.out).not.toContain('demo failed')
    expect(demo.code, demo.out).toBe(0)
    // the story in order, each command echoed as typed
    const order = ['$ kubectl apply -f manifests/example-pod.yaml', 'ErrImageNeverPull', '$ sideload fix ', 'Running', '$ sideload expose centos-stream-8', '$ curl ', DEMO_PAGE]
    const at = order.map((s) => demo.out.indexOf(s))
    expect(at.every((i) => i >= 0), demo.out).toBe(true)
    expect([...at].sort((a, b) => a - b)).toEqual(at)

    // checked again from outside the demo: the pod Running, its node port answering
    expect((await kubectl(['get', 'pod', 'centos-stream-8', '-o', 'jsonpath={.status.phase}'])).trim()).toBe('Running')
    const [, ip, port] = /reachable at (\d+\.\d+\.\d+\.\d+):(\d+)/.exec(demo.out) ?? []
    expect(port, demo.out).toBeDefined()
    const res = await fetch(`http://${ip}:${port}/`, {signal: AbortSignal.timeout(5000)})
    expect(await res.text()).toBe(`${DEMO_PAGE}\n`)

    // up again: nothing to do, same API server
    const server = fs.readFileSync(p.ready, 'utf8')
    const again = await sandbox(['up'])
    expect(again.code, again.out).toBe(0)
    expect(again.out).toContain('already up')
    expect(again.out).toContain(`export KUBECONFIG=${p.kubeconfig}`)
    expect(fs.readFileSync(p.ready, 'utf8')).toBe(server)

    // a killed background process: up clears what is left and starts afresh
    process.kill(Number(fs.readFileSync(p.daemonPid, 'utf8')), 'SIGKILL')
    const status = await sandbox(['status'])
    expect(status.code).toBe(3)
    const recovered = await sandbox(['up'])
    expect(recovered.code, recovered.out).toBe(0)
    expect(recovered.out).toContain('clearing what an earlier sandbox')
    expect((await kubectl(['get', 'nodes', '-o', 'name'])).trim().split('\n')).toEqual([`node/${NAME}-1`, `node/${NAME}-2`, `node/${NAME}-3`])

    const down = await sandbox(['down'])
    expect(down.code, down.out).toBe(0)
    expect(traces()).toEqual([])
    // down twice is fine
    expect((await sandbox(['down'])).code).toBe(0)
  }, 90_000)
})
