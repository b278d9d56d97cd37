// The sandbox's build machine, as in the field: containerd 2.x (a one-node bed of its own,
// `<sandbox>-build`) with a standalone buildkitd whose containerd worker writes into namespace
// k8s.io, and nerdctl for the user (a wrapper on the sandbox's PATH that reaches this containerd
// and buildkitd from the host). It has no route out: base images come from its own store, where
// busybox sits as docker.io/library/busybox:sideload-test (`nerdctl build --pull=false` resolves
// FROM there). Unlike test/build/buildkitd.ts (a bed owned by the test process), its bed is
// persistent: it outlives `npm run sandbox -- up`, until `down`.
//
// Host-side names (stable, in the sandbox dir): build/containerd.sock (a link to the node's
// socket), build/buildkitd.sock, build/log (a link to the node's logs), build/nerdctl (nerdctl's
// data root).
import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import * as path from 'node:path'
import {type Bed, type BedNode, openBed, startBed} from '../bed/bed.js'
import {makeImage} from '../bed/images.js'
import {daemonBinary} from '../daemons/daemons.js'
import {DEMO_PAGE, DEMO_PORT, type RunResult, type SandboxPaths, run} from './sandbox.js'

/** The base image of the demo's Dockerfile, in the build machine's k8s.io store (no registry). */
export const BASE_IMAGE = 'docker.io/library/busybox:sideload-test'

export interface BuildMachine {
  bed: Bed
  node: BedNode
}

/** The build machine's ctr (containerd 2.x's own), run on the host against its socket. */
export function buildCtr(p: SandboxPaths, args: string[], timeoutMs = 30_000): Promise<RunResult> {
  return run(daemonBinary('containerd', 'ctr'), ['--address', p.buildSocket, ...args], {timeoutMs})
}

export function buildctl(p: SandboxPaths, args: string[], timeoutMs = 30_000): Promise<RunResult> {
  return run(daemonBinary('buildkit', 'buildctl'), ['--addr', p.buildkitAddress, ...args], {timeoutMs})
}

/** What the field's Dockerfile did, with busybox standing in for CentOS Stream 8 + systemd. */
function dockerfile(): string {
  return [
    '# The field\'s image: CentOS Stream 8 with systemd. busybox stands in for it, and it serves',
    `# HTTP on ${DEMO_PORT} instead of sshd on 22 (the sandbox's pods share their node's network,`,
    '# where the node\'s own sshd holds 22). There is no registry: FROM comes from the build',
    '# machine\'s own containerd (k8s.io), as `nerdctl build --pull=false` resolves it.',
    `FROM ${BASE_IMAGE.replace(/^docker\.io\/library\//, '')}`,
    '# ~24 MB standing in for systemd and friends, so the transfer is visible',
    'RUN mkdir -p /usr/lib/systemd && head -c 25165824 /dev/urandom > /usr/lib/systemd/stand-in.bin',
    'COPY index.html /www/index.html',
    `EXPOSE ${DEMO_PORT}`,
    `CMD ["httpd", "-f", "-p", "${DEMO_PORT}", "-h", "/www"]`,
    '',
  ].join('\n')
}

/** The nerdctl on the sandbox's PATH: the build machine's containerd and buildkitd, its own data root. */
function nerdctlWrapper(p: SandboxPaths, snapshotter: string): string {
  const buildkitBin = path.dirname(daemonBinary('buildkit', 'buildctl'))
  return [
    '#!/bin/sh',
    `# nerdctl on the sandbox '${p.name}' build machine (containerd ${p.buildAddress}, buildkitd ${p.buildkitAddress})`,
    `PATH="${buildkitBin}:$PATH"`,
    `BUILDKIT_HOST="\${BUILDKIT_HOST:-${p.buildkitAddress}}"`,
    'export PATH BUILDKIT_HOST',
    `exec "${daemonBinary('nerdctl', 'nerdctl')}" --address "${p.buildAddress}" --data-root "${p.nerdctlRoot}" --snapshotter ${snapshotter} "$@"`,
    '',
  ].join('\n')
}

/**
 * Brings up the build machine (bed `p.buildBed`, persistent), its buildkitd, busybox in its
 * k8s.io store, the demo's build context, and the nerdctl / buildctl commands in the sandbox's bin dir.
 */
export async function startSandboxBuildMachine(p: SandboxPaths): Promise<BuildMachine> {
  const bed = await startBed({name: p.buildBed, nodes: 1, containerd: '2', persistent: true})
  const node = bed.nodes[0]
  await fsp.mkdir(p.buildDir, {recursive: true})
  await fsp.symlink(node.hostSocketPath, p.buildSocket)
  await fsp.symlink(path.join(bed.nodeDir(node), 'log'), path.join(p.buildDir, 'log'))
  const buildctlBin = daemonBinary('buildkit', 'buildctl')
  await bed.startDaemon(node, 'buildkitd', [
    daemonBinary('buildkit', 'buildkitd'),
    '--root', path.join(bed.nodeDir(node), 'buildkit'),
    '--addr', p.buildkitAddress,
    // its trace socket defaults to /run/buildkit/ on the host: keep it in the node's dir, gone with the bed
    '--otel-socket-path', path.join(bed.nodeDir(node), 'buildkit-otel.sock'),
    '--oci-worker=false',
    '--containerd-worker=true',
    '--containerd-worker-addr=/run/containerd/containerd.sock',
    '--containerd-worker-namespace=k8s.io',
    '--containerd-worker-net=host',
    `--containerd-worker-snapshotter=${node.snapshotter}`,
  ], async () => fs.existsSync(p.buildkitSocket) && (await bed.exec(node, [buildctlBin, '--addr', p.buildkitAddress, 'debug', 'workers'], {timeoutMs: 5000})).code === 0)

  // no way out: nothing on the build machine may reach for a registry
  const route = await bed.exec(node, ['ip', 'route', 'del', 'default'])
  if (route.code !== 0) throw new Error(`removing the build machine's default route failed: ${route.stderr.trim()}`)

  // the base image, in k8s.io as if pulled long ago
  const archive = path.join(p.buildDir, 'busybox.tar')
  await makeImage({name: BASE_IMAGE, format: 'oci', out: archive, layers: [{busybox: true}]})
  const imported = await bed.exec(node, ['ctr', '-n', 'k8s.io', 'images', 'import', '--local', '-'], {input: await fsp.readFile(archive), timeoutMs: 120_000})
  await fsp.rm(archive, {force: true})
  if (imported.code !== 0) throw new Error(`importing ${BASE_IMAGE} into the build machine failed: ${(imported.stderr || imported.stdout).trim()}`)

  // the demo's build context
  await fsp.mkdir(p.demoContext, {recursive: true})
  await fsp.writeFile(path.join(p.demoContext, 'Dockerfile'), dockerfile())
  await fsp.writeFile(path.join(p.demoContext, 'index.html'), `${DEMO_PAGE}\n`)

  // nerdctl and buildctl for the user (the env file puts binDir on PATH)
  await fsp.mkdir(p.nerdctlRoot, {recursive: true})
  await fsp.writeFile(path.join(p.binDir, 'nerdctl'), nerdctlWrapper(p, node.snapshotter), {mode: 0o755})
  await fsp.symlink(buildctlBin, path.join(p.binDir, 'buildctl'))
  return {bed, node}
}

export interface BuildMachineState {
  containerd: boolean
  buildkitd: boolean
  /** the base image of the demo's Dockerfile is in k8s.io */
  baseImage: boolean
}

/** Whether the build machine's daemons answer (from the host, as sideload and nerdctl reach them). */
export async function buildMachineState(p: SandboxPaths): Promise<BuildMachineState> {
  const containerd = fs.existsSync(p.buildSocket) && (await buildCtr(p, ['version'], 5000)).code === 0
  const buildkitd = fs.existsSync(p.buildkitSocket) && (await buildctl(p, ['debug', 'workers'], 5000)).code === 0
  const baseImage = containerd && (await buildCtr(p, ['-n', 'k8s.io', 'images', 'ls', '-q'], 5000)).stdout.split('\n').includes(BASE_IMAGE)
  return {containerd, buildkitd, baseImage}
}

export async function openBuildMachine(p: SandboxPaths): Promise<BuildMachine> {
  const bed = await openBed(p.buildBed)
  return {bed, node: bed.nodes[0]}
}
