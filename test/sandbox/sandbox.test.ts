// `npm run sandbox -- demo` end to end, under a sandbox name of its own: the field's story on real
// nodes (sshd + containerd 2.x), a real build machine (containerd 2.x + buildkitd + nerdctl), real
// kubectl, the built sideload CLI; the env file a user sources; then `up` again (nothing to do),
// `up` after the background process and buildkitd were killed, and after `up` itself was killed
// half-way (it recovers), and `down` leaving no trace.
import {spawn} from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {BED_ROOT, openBed} from '../bed/bed.js'
import {BASE_IMAGE, buildctl, buildCtr} from './buildmachine.js'
import {DEMO_PAGE_REBUILT, listsImage} from './demo.js'
import {REAL_KUBE_ROOT} from '../kube-real/apiserver.js'
import {DEMO_IMAGE, DEMO_PAGE, REPO, sandboxPaths, sandboxServerName, validateSandboxName} from './sandbox.js'

const NAME = 'slsbx-test'
const CLI = path.join(REPO, 'test', 'bed', 'sandbox.ts')
const p = sandboxPaths(NAME)
const BEDS = [NAME, p.buildBed]
/** host files newer than this were made by this run */
const STARTED = Date.now()

function sandbox(args: string[]): Promise<{code: number; out: string}> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args, '--name', NAME], {cwd: REPO, stdio: ['ignore', 'pipe', 'pipe']})
    let out = ''
    child.stdout.on('data', (b: Buffer) => (out += b.toString()))
    child.stderr.on('data', (b: Buffer) => (out += b.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), 150_000)
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

/** `up`, SIGKILLed as soon as `when()` holds (checked every 20 ms). */
function upKilledWhen(when: () => boolean): Promise<{out: string}> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'up', '--name', NAME], {cwd: REPO, stdio: ['ignore', 'pipe', 'pipe']})
    let out = ''
    child.stdout.on('data', (b: Buffer) => (out += b.toString()))
    child.stderr.on('data', (b: Buffer) => (out += b.toString()))
    const poll = setInterval(() => {
      if (when()) child.kill('SIGKILL')
    }, 20)
    child.on('error', reject)
    child.on('close', () => {
      clearInterval(poll)
      resolve({out})
    })
  })
}

/** A shell that sourced the sandbox's env file (as the README says), with none of its variables set before. */
function sourced(command: string): Promise<{code: number; out: string}> {
  const env = {...process.env}
  for (const k of ['KUBECONFIG', 'SIDELOAD_CONFIG', 'CONTAINERD_ADDRESS', 'BUILDKIT_HOST']) delete env[k]
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', `. ${p.envFile} && ${command}`], {cwd: '/', env, stdio: ['ignore', 'pipe', 'pipe']})
    let out = ''
    child.stdout.on('data', (b: Buffer) => (out += b.toString()))
    child.stderr.on('data', (b: Buffer) => (out += b.toString()))
    child.on('error', reject)
    child.on('close', (code) => resolve({code: code ?? 1, out}))
  })
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs / 1000} s`)
    await new Promise((r) => setTimeout(r, 250))
  }
}

/** Every trace the sandbox could leave: dirs, beds (nodes and build machine), netns, index claims, processes, mounts. */
function traces(): string[] {
  const found: string[] = []
  const bedDirs = BEDS.map((b) => path.join(BED_ROOT, 'beds', b))
  for (const d of [p.dir, ...bedDirs]) if (fs.existsSync(d)) found.push(d)
  // the real API server's folder (etcd data, PKI) and its daemons
  const serverPrefix = path.join(REAL_KUBE_ROOT, sandboxServerName(NAME, 0).replace(/0$/, ''))
  if (fs.existsSync(REAL_KUBE_ROOT)) for (const d of fs.readdirSync(REAL_KUBE_ROOT)) if (path.join(REAL_KUBE_ROOT, d).startsWith(serverPrefix)) found.push(path.join(REAL_KUBE_ROOT, d))
  if (fs.existsSync('/run/netns')) for (const ns of fs.readdirSync('/run/netns')) if (ns.startsWith(`slbed-${NAME}-`)) found.push(`netns ${ns}`)
  const index = path.join(BED_ROOT, 'index')
  if (fs.existsSync(index)) {
    for (const k of fs.readdirSync(index)) {
      try {
        if (BEDS.includes(fs.readFileSync(path.join(index, k, 'name'), 'utf8').trim())) found.push(`index claim ${k}`)
      } catch {
        // a claim being written by another bed
      }
    }
  }
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue
    try {
      const cmd = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8')
      if (cmd.includes(`${p.dir}/`) || cmd.includes(serverPrefix) || BEDS.some((b) => cmd.includes(`/beds/${b}/`))) found.push(`process ${e}: ${cmd.replace(/\0/g, ' ').trim()}`)
    } catch {
      // gone
    }
  }
  // what the build machine's daemons would create on the host by default (e.g. buildkitd's trace socket)
  for (const f of ['/run/buildkit/otel-grpc.sock', '/etc/cni/net.d', '/var/run/nri/nri.sock']) {
    try {
      if (fs.lstatSync(f).mtimeMs >= STARTED) found.push(`host file ${f}`)
    } catch {
      // absent
    }
  }
  for (const line of fs.readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const m = line.split(' ')[1]
    if (m?.startsWith(`${p.dir}/`) || bedDirs.some((d) => m?.startsWith(`${d}/`))) found.push(`mount ${m}`)
  }
  return found
}

const SERVER_V2 = /Server:[\s\S]*Version:\s+v?2\.\d+\.\d+/

describe('npm run sandbox', () => {
  it('refuses a sandbox name that is another sandbox\'s build machine bed', () => {
    expect(() => validateSandboxName('foo-build')).toThrow(/not ending in '-build'/)
    expect(sandboxPaths('foo').buildBed).toBe('foo-build')
  })

  afterAll(async () => {
    await sandbox(['down'])
  })

  it('demo replays the field story: nerdctl build, ErrImageNeverPull, sideload, Running, a NodePort that answers; down leaves nothing', async () => {
    const demo = await sandbox(['demo'])
    expect(demo.out).not.toContain('demo failed')
    expect(demo.code, demo.out).toBe(0)
    // the story in order, each command echoed as typed
    const order = [
      '$ nerdctl -n k8s.io build --pull=false -t local/centos-stream-8-systemd:latest ', 'naming to docker.io/local/centos-stream-8-systemd:latest',
      '$ nerdctl -n k8s.io images', '$ kubectl apply -f manifests/example-pod.yaml', 'ErrImageNeverPull', '$ sideload fix\n', 'Running',
      '$ sideload expose centos-stream-8', '$ curl ', DEMO_PAGE,
      // the last step: a changed page, rebuilt, pushed, the pod restarted onto it on the same node
      `$ sh -c 'echo '\\''${DEMO_PAGE_REBUILT}'\\''`, '$ sideload build-and-push ', ' --pod centos-stream-8 --pull missing --restart',
      'restart default/pod/centos-stream-8: re-created: centos-stream-8 on ', '$ curl ', DEMO_PAGE_REBUILT,
      '$ sideload images --pod centos-stream-8', 'default/centos-stream-8', '$ sideload prune --pod centos-stream-8 --keep 0 --dry-run',
    ]
    // each after the one before
    const at: number[] = []
    for (const s of order) at.push(demo.out.indexOf(s, at.length ? at[at.length - 1] + 1 : 0))
    expect(at.every((i) => i >= 0), `${JSON.stringify(order.filter((_, i) => at[i] < 0))} missing (in this order) in:\n${demo.out}`).toBe(true)

    // checked again from outside the demo: the pod Running, its node port answering
    expect((await kubectl(['get', 'pod', 'centos-stream-8', '-o', 'jsonpath={.status.phase}'])).trim()).toBe('Running')
    // the API is the real kube-apiserver, and the real kube-scheduler placed the pod
    expect(await kubectl(['version', '-o', 'json'])).toMatch(/"serverVersion"[\s\S]*"gitVersion": "v1\.36\.\d+"/)
    expect((await kubectl(['get', 'events', '--field-selector', 'involvedObject.name=centos-stream-8,reason=Scheduled',
      '-o', 'jsonpath={.items[0].reportingComponent}'])).trim()).toBe('default-scheduler')
    const [, ip, port] = /reachable at (\d+\.\d+\.\d+\.\d+):(\d+)/.exec(demo.out) ?? []
    expect(port, demo.out).toBeDefined()
    const res = await fetch(`http://${ip}:${port}/`, {signal: AbortSignal.timeout(5000)})
    expect(await res.text()).toBe(`${DEMO_PAGE_REBUILT}\n`)

    // the build machine: containerd 2.x, buildkitd with a containerd worker in k8s.io; the nodes: containerd 2.x
    expect((await buildCtr(p, ['version'])).stdout).toMatch(SERVER_V2)
    const workers = await buildctl(p, ['debug', 'workers', '-v'])
    expect(workers.stdout).toMatch(/org\.mobyproject\.buildkit\.worker\.executor:\s*containerd/)
    expect(workers.stdout).toMatch(/org\.mobyproject\.buildkit\.worker\.containerd\.namespace:\s*k8s\.io/)
    const bed = await openBed(NAME)
    for (const n of bed.nodes) expect((await bed.exec(n, ['ctr', 'version'])).stdout, n.name).toMatch(SERVER_V2)

    // the demo image came out of that buildkitd: its build record (FROM resolved locally, no registry)
    // exported exactly the manifest containerd's k8s.io now names, and nerdctl lists it
    const records = (await buildctl(p, ['debug', 'histories', '--format', '{{json .}}'])).stdout.trim().split('\n').map((l) => JSON.parse(l) as {
      record: {FrontendAttrs?: Record<string, string>; Exporters?: {Type: string; Attrs?: Record<string, string>}[]; Result?: {ResultDeprecated?: {digest: string}}}
    })
    const built = records.map((r) => r.record).filter((r) => r.Exporters?.some((e) => e.Type === 'image' && e.Attrs?.name === DEMO_IMAGE))
    expect(built.length, JSON.stringify(records)).toBeGreaterThan(0)
    // (the story's last step rebuilt it: nerdctl build, then sideload build-and-push --pull missing; both resolved FROM locally)
    expect(built.length, JSON.stringify(records)).toBeGreaterThanOrEqual(2)
    for (const r of built) expect(r.FrontendAttrs?.['image-resolve-mode']).toBe('local')
    const stored = (await buildCtr(p, ['-n', 'k8s.io', 'images', 'ls'])).stdout.split('\n').find((l) => l.startsWith(`${DEMO_IMAGE} `))
    expect(built.map((r) => r.Result?.ResultDeprecated?.digest)).toContain(stored?.split(/\s+/)[2])
    const history = await sourced('nerdctl -n k8s.io history --no-trunc --format "{{.CreatedBy}}" local/centos-stream-8-systemd:latest')
    expect(history.code, history.out).toBe(0)
    expect(history.out).toMatch(/RUN \/bin\/sh -c mkdir -p \/usr\/lib\/systemd/)
    const listed = await sourced('nerdctl -n k8s.io images')
    expect(listed.code, listed.out).toBe(0)
    expect(listsImage(listed.out, 'local/centos-stream-8-systemd:latest'), listed.out).toBe(true)
    expect(listsImage(listed.out, BASE_IMAGE.replace('docker.io/library/', '')), listed.out).toBe(true)

    // the README flow after `source …/env`: no --containerd-address, no --buildkit-host
    const env = fs.readFileSync(p.envFile, 'utf8')
    expect(env).toContain(`export CONTAINERD_ADDRESS=${p.buildSocket}\n`)
    expect(env).toContain(`export BUILDKIT_HOST=${p.buildkitAddress}\n`)
    await kubectl(['run', 'second', '--image=local/centos-stream-8-systemd:latest', '--image-pull-policy=Never', '--restart=Never'])
    await waitUntil('pod second in ErrImageNeverPull', async () =>
      (await kubectl(['get', 'pod', 'second', '-o', 'jsonpath={.status.containerStatuses[0].state.waiting.reason}'])).trim() === 'ErrImageNeverPull')
    const dryRun = await sourced('sideload fix --dry-run')
    expect(dryRun.code, dryRun.out).toBe(0)
    expect(dryRun.out).toMatch(/default\/second\s+\S+\s+local\/centos-stream-8-systemd:latest\s+would push/)
    const built2 = await sourced(`sideload build ${p.demoContext} -t sandbox-env-check:1 --pull missing --progress plain`)
    expect(built2.code, built2.out).toBe(0)
    expect(built2.out).toContain('containerd namespace k8s.io')
    expect((await buildCtr(p, ['-n', 'k8s.io', 'images', 'ls', '-q'])).stdout).toContain('docker.io/library/sandbox-env-check:1')

    // up again: nothing to do, same API server
    const server = fs.readFileSync(p.ready, 'utf8')
    const again = await sandbox(['up'])
    expect(again.code, again.out).toBe(0)
    expect(again.out).toContain('already up')
    expect(again.out).toContain(`export KUBECONFIG=${p.kubeconfig}`)
    expect(fs.readFileSync(p.ready, 'utf8')).toBe(server)

    // a killed background process and buildkitd: up clears what is left and starts afresh
    process.kill(Number(fs.readFileSync(p.daemonPid, 'utf8')), 'SIGKILL')
    const buildBed = await openBed(p.buildBed)
    process.kill(Number(fs.readFileSync(path.join(buildBed.nodeDir(buildBed.nodes[0]), 'buildkitd.pid'), 'utf8')), 'SIGKILL')
    const status = await sandbox(['status'])
    expect(status.code, status.out).toBe(3)
    expect(status.out).toContain('buildkitd not running')
    const recovered = await sandbox(['up'])
    expect(recovered.code, recovered.out).toBe(0)
    expect(recovered.out).toContain('clearing what an earlier sandbox')
    expect((await kubectl(['get', 'nodes', '-o', 'name'])).trim().split('\n')).toEqual([`node/${NAME}-1`, `node/${NAME}-2`, `node/${NAME}-3`])
    expect((await buildctl(p, ['debug', 'workers'])).code).toBe(0)

    // `up` itself killed half-way (beds and build machine partly there): the next up recovers
    expect((await sandbox(['down'])).code).toBe(0)
    const killed = await upKilledWhen(() => fs.existsSync(path.join(BED_ROOT, 'beds', p.buildBed, 'n1', 'log', 'containerd.log')))
    expect(killed.out).not.toContain('up in')
    expect(fs.existsSync(path.join(BED_ROOT, 'beds', p.buildBed)), 'the killed up left its build machine behind').toBe(true)
    const afterKill = await sandbox(['up'])
    expect(afterKill.code, afterKill.out).toBe(0)
    expect(afterKill.out).toContain('clearing what an earlier sandbox')
    expect((await sandbox(['status'])).code).toBe(0)

    const down = await sandbox(['down'])
    expect(down.code, down.out).toBe(0)
    expect(traces()).toEqual([])
    // down twice is fine
    expect((await sandbox(['down'])).code).toBe(0)
  }, 300_000)
})
