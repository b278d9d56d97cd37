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
import {prepareOfflineBase, startBuildkitd} from '../build/buildkitd.js'
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
  await startBuildkitd(bed, node, p.buildkitAddress)
  // no way out, and the base image in k8s.io as if pulled long ago
  await prepareOfflineBase(bed, node, BASE_IMAGE, p.buildDir)

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
