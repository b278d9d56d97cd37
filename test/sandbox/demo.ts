// The field log, replayed in the sandbox: an image built for Kubernetes with `nerdctl build` (BuildKit
// into containerd namespace k8s.io on the build machine), a pod with imagePullPolicy Never stuck in ErrImageNeverPull
// because its node does not have the image and there is no registry, sideload putting the image
// on that node, the pod Running, and the pod exposed on a NodePort that answers from outside; then a
// changed page rebuilt and the pod restarted onto it (build-and-push --restart), images and prune --dry-run.
// Every command is echoed as a user would type it, then run exactly so, in the environment the
// sandbox's env file sets (kubectl, nerdctl and sideload from its bin dir on PATH; CONTAINERD_ADDRESS
// and BUILDKIT_HOST: the build machine).
import * as fs from 'node:fs'
import * as path from 'node:path'
import {buildCtr} from './buildmachine.js'
import {DEMO_IMAGE, DEMO_PAGE, DEMO_PORT, type RunResult, REPO, SIDELOAD_BIN, type SandboxInfo, run, sandboxEnv} from './sandbox.js'

const POD = 'centos-stream-8'
const MANIFEST = 'manifests/example-pod.yaml'
/** As the field tagged it (manifests/example-pod.yaml); containerd names it DEMO_IMAGE. */
const TAG = 'local/centos-stream-8-systemd:latest'
const STEPS = 7
/** The page after the last step's rebuild (`build-and-push --restart`). */
export const DEMO_PAGE_REBUILT = 'centos-stream-8: rebuilt, pushed and restarted by sideload'

export class DemoError extends Error {
  constructor(readonly step: string, message: string) {
    super(`${step}: ${message}`)
    this.name = 'DemoError'
  }
}

/** `sideload fix`, as in the README; 'push' (with --host) remains as a flag for comparison. */
export const DEFAULT_SIDELOAD_STEP: 'fix' | 'push' = 'fix'

export interface DemoResult {
  node: string
  nodeIp: string
  nodePort: number
  /** what the node port answered */
  answer: string
  /** what it answered after the rebuild and the restart */
  rebuiltAnswer: string
}

export interface DemoOptions {
  out?: (text: string) => void
  /** 'fix', or 'push' with --host (the stand-in used before `sideload fix` existed); default DEFAULT_SIDELOAD_STEP */
  sideloadStep?: 'fix' | 'push'
}

function quote(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`
}

/** Whether `nerdctl images` output has a REPOSITORY TAG row for `ref` (repo:tag). */
export function listsImage(output: string, ref: string): boolean {
  const at = ref.lastIndexOf(':')
  const esc = (t: string) => t.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
  return new RegExp(`^${esc(ref.slice(0, at))}\\s+${esc(ref.slice(at + 1))}\\s`, 'm').test(output)
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

export async function runDemo(sb: SandboxInfo, opts: DemoOptions = {}): Promise<DemoResult> {
  const out = opts.out ?? ((t: string) => process.stdout.write(t))
  const p = sb.paths
  const env = sandboxEnv(p)
  let stepNo = 0
  let stepName = 'setup'
  const say = (line: string) => out(`${line}\n`)
  const step = (title: string) => {
    stepNo += 1
    stepName = `step ${stepNo}/${STEPS} (${title.replace(/[:.]$/, '')})`
    say('')
    say(`[${stepNo}/${STEPS}] ${title}`)
  }
  /** Echoes the command, runs it with the sandbox's environment, shows its output. */
  const shell = async (argv: string[], opts: {allowFail?: boolean; timeoutMs?: number} = {}): Promise<RunResult> => {
    say(`$ ${argv.map(quote).join(' ')}`)
    let last = '\n'
    const r = await run(argv[0], argv.slice(1), {env, timeoutMs: opts.timeoutMs ?? 120_000, onOutput: (t) => {
      out(t)
      last = t
    }})
    if (!last.endsWith('\n')) out('\n')
    if (r.code !== 0 && !opts.allowFail) throw new DemoError(stepName, `\`${argv.join(' ')}\` exited with ${r.code}`)
    return r
  }
  /** Runs a command without showing it (waiting, reading values). */
  const quiet = (argv: string[]): Promise<RunResult> => run(argv[0], argv.slice(1), {env, timeoutMs: 30_000})
  const podField = async (jsonpath: string): Promise<string> =>
    (await quiet(['kubectl', 'get', 'pod', POD, '-o', `jsonpath={${jsonpath}}`])).stdout.trim()
  const waitFor = async (what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> => {
    const deadline = Date.now() + timeoutMs
    while (!(await check())) {
      if (Date.now() > deadline) throw new DemoError(stepName, `${what} did not happen within ${timeoutMs / 1000} s`)
      await sleep(250)
    }
  }

  if (!fs.existsSync(path.join(p.binDir, 'nerdctl')) || !fs.existsSync(path.join(p.demoContext, 'Dockerfile'))) {
    throw new DemoError(stepName, `the build machine is not set up (no ${path.join(p.binDir, 'nerdctl')} or ${p.demoContext}/Dockerfile): run \`npm run sandbox -- down\`, then \`up\``)
  }
  if (!fs.existsSync(path.join(p.binDir, 'kubectl'))) {
    throw new DemoError(stepName, `no kubectl in ${p.binDir}: run scripts/setup.sh (it unpacks Debian's kubectl into .cache/kubectl), then \`npm run sandbox -- up\` again`)
  }
  const mode = opts.sideloadStep ?? DEFAULT_SIDELOAD_STEP
  const command = mode === 'fix' ? 'fix' : 'push'
  if (!fs.existsSync(path.join(REPO, 'dist', 'commands', `${command}.js`))) {
    throw new DemoError(stepName, `the built CLI has no \`sideload ${command}\` (${path.relative(REPO, SIDELOAD_BIN)} loads dist/bundle/commands/): run \`npm run build\``)
  }

  // back to the start of the story, so the demo can be run again and again
  await quiet(['kubectl', 'delete', 'service', POD, '--ignore-not-found'])
  await quiet(['kubectl', 'delete', 'pod', POD, '--ignore-not-found', '--wait=false'])
  await waitFor(`deleting the pod ${POD} left by an earlier demo`, 20_000, async () =>
    (await quiet(['kubectl', 'get', 'pod', POD, '--ignore-not-found', '-o', 'name'])).stdout.trim() === '')
  const repo = DEMO_IMAGE.slice(0, DEMO_IMAGE.lastIndexOf(':'))
  for (const node of sb.bed.nodes) {
    // the tag and the digest reference push records, then their blobs (garbage collected at once)
    const refs = (await sb.bed.ctr(node, ['images', 'ls', '-q'])).split('\n').map((s) => s.trim()).filter((r) => r.startsWith(`${repo}:`) || r.startsWith(`${repo}@`))
    if (refs.length > 0) await sb.bed.ctr(node, ['images', 'rm', '--sync', ...refs])
  }
  // and on the build machine: the demo builds it (again; BuildKit's cache keeps a rebuild short),
  // from the page the story starts with (its last step changes it)
  await buildCtr(p, ['-n', 'k8s.io', 'images', 'rm', DEMO_IMAGE])
  fs.writeFileSync(path.join(p.demoContext, 'index.html'), `${DEMO_PAGE}\n`)

  say(`The field log, replayed in sandbox '${p.name}': ${sb.bed.nodes.length} nodes (${sb.bed.nodes.map((n) => `${n.name} ${n.ip}`).join(', ')}),`)
  const lines = [...new Set(sb.bed.nodes.map((n) => (n.containerdLine === '2' ? '2.x' : n.containerdLine)))].join(' / ')
  say(`each with its own sshd and containerd ${lines}, kube-apiserver and kube-scheduler with kubelet/kube-proxy stand-ins, and a build machine`)
  say('(containerd 2.x with a standalone buildkitd building into its k8s.io namespace, and nerdctl; no registry, no way out).')
  say('The commands below run with:')
  for (const line of sb.exports) say(`  ${line}`)

  step('On the build machine, `nerdctl build` builds the image with BuildKit straight into containerd\'s k8s.io namespace (no registry: `--pull=false` takes FROM from that containerd):')
  await shell(['cat', path.join(p.demoContext, 'Dockerfile')])
  await shell(['nerdctl', '-n', 'k8s.io', 'build', '--pull=false', '-t', TAG, p.demoContext], {timeoutMs: 300_000})
  const images = await shell(['nerdctl', '-n', 'k8s.io', 'images'])
  if (!listsImage(images.stdout, TAG)) throw new DemoError(stepName, `\`nerdctl -n k8s.io images\` does not list ${TAG}`)

  step('Create the pod from the field (imagePullPolicy: Never, no registry):')
  await shell(['kubectl', 'apply', '-f', MANIFEST])
  await waitFor(`pod ${POD} reporting ErrImageNeverPull`, 20_000, async () =>
    (await podField('.status.containerStatuses[0].state.waiting.reason')) === 'ErrImageNeverPull')
  say('Its node has never seen the image, and the pod may never pull it:')
  const stuck = await shell(['kubectl', 'get', 'pods', '-o', 'wide'])
  if (!/centos-stream-8\s.*ErrImageNeverPull/.test(stuck.stdout)) throw new DemoError(stepName, 'kubectl does not show the pod in ErrImageNeverPull')
  const node = await podField('.spec.nodeName')
  const bedNode = sb.bed.nodes.find((n) => n.name === node)
  if (!bedNode) throw new DemoError(stepName, `the pod is on '${node}', which is not a sandbox node`)

  // SSH user, key and known_hosts come from the sandbox's sideload config ($SIDELOAD_CONFIG), the
  // image from the build machine's containerd ($CONTAINERD_ADDRESS)
  if (mode === 'fix') {
    step(`Instead of \`nerdctl save\`, a copy to ${node} and \`nerdctl -n k8s.io load\` there: sideload finds the stuck pod and sends its image to its node:`)
    await shell(['sideload', 'fix'])
  } else {
    // --sideload-step push: the same transfer, with the node named by hand
    step(`Instead of \`nerdctl save\`, a copy and \`nerdctl -n k8s.io load\`: sideload sends the image to ${node}:`)
    await shell(['sideload', 'push', TAG, '--host', `root@${bedNode.ip}`])
  }
  await waitFor(`pod ${POD} Running`, 30_000, async () => (await podField('.status.phase')) === 'Running')
  const running = await shell(['kubectl', 'get', 'pods', '-o', 'wide'])
  if (!/centos-stream-8\s+1\/1\s+Running/.test(running.stdout)) throw new DemoError(stepName, 'kubectl does not show the pod Running')

  step('Expose it on a NodePort (`kubectl expose` refuses a pod without labels; sideload adds one just for it):')
  say(`(the demo image serves HTTP on ${DEMO_PORT}: its pods share the node's network, where the node's own sshd holds port 22)`)
  await shell(['sideload', 'expose', POD, '--port', String(DEMO_PORT), '--target-port', String(DEMO_PORT)])
  const svc = await shell(['kubectl', 'get', 'svc', POD])
  const nodePort = Number(new RegExp(`${DEMO_PORT}:(\\d+)/TCP`).exec(svc.stdout)?.[1])
  if (!nodePort) throw new DemoError(stepName, `no node port in \`kubectl get svc ${POD}\``)

  step(`Reach the pod from outside the cluster through the node port on ${node}:`)
  const url = `http://${bedNode.ip}:${nodePort}/`
  const fetchOk = async (): Promise<boolean> => {
    try {
      const res = await fetch(url, {signal: AbortSignal.timeout(2000)})
      return res.ok
    } catch {
      return false
    }
  }
  const deadline = Date.now() + 15_000
  while (!(await fetchOk()) && Date.now() < deadline) await sleep(250)
  const answer = await shell(['curl', '-sS', '--max-time', '5', url])
  if (!answer.stdout.includes(DEMO_PAGE)) throw new DemoError(stepName, `${url} did not answer with the demo page`)

  step('A new build of the same tag: change the page, rebuild, push it to the pod\'s node and restart the pod onto it (a bare pod: created again from its own spec, on the same node):')
  const page = path.join(p.demoContext, 'index.html')
  await shell(['sh', '-c', `echo ${quote(DEMO_PAGE_REBUILT)} > ${quote(page)}`])
  await shell(['sideload', 'build-and-push', p.demoContext, '--pod', POD, '--pull', 'missing', '--restart', '--progress', 'quiet'], {timeoutMs: 300_000})
  const answersNew = async (): Promise<boolean> => {
    try {
      return (await (await fetch(url, {signal: AbortSignal.timeout(2000)})).text()).includes(DEMO_PAGE_REBUILT)
    } catch {
      return false
    }
  }
  const rebuiltBy = Date.now() + 30_000
  while (!(await answersNew()) && Date.now() < rebuiltBy) await sleep(250)
  const rebuilt = await shell(['curl', '-sS', '--max-time', '5', url])
  if (!rebuilt.stdout.includes(DEMO_PAGE_REBUILT)) throw new DemoError(stepName, `${url} did not answer with the rebuilt page`)
  if ((await podField('.spec.nodeName')) !== node) throw new DemoError(stepName, `the restarted pod is not on ${node}`)

  step(`What is on ${node} now, and what a prune would free (the pod's image is in use, so it stays):`)
  await shell(['sideload', 'images', '--pod', POD])
  await shell(['sideload', 'prune', '--pod', POD, '--keep', '0', '--dry-run'])

  say('')
  say(`Done: the pod runs on ${node} from an image that never went through a registry, reachable at ${bedNode.ip}:${nodePort}.`)
  say('The sandbox keeps running; to use kubectl, nerdctl and sideload on it yourself:')
  say(`  source ${p.envFile}`)
  say(`Remove it with: npm run sandbox -- down${p.name === 'sandbox' ? '' : ` --name ${p.name}`}`)
  return {node, nodeIp: bedNode.ip, nodePort, answer: answer.stdout, rebuiltAnswer: rebuilt.stdout}
}
