// The seed's build machine, for real: containerd 2.x (a bed node) with a standalone buildkitd
// whose containerd worker writes into namespace k8s.io, and nerdctl beside them — the versions
// built by scripts/build-daemons.sh. sideload runs on the host and reaches both sockets.
import * as fs from 'node:fs'
import * as path from 'node:path'
import {type Bed, type BedNode, type ExecResult, startBed} from '../bed/bed.js'
import {makeImage} from '../bed/images.js'
import {daemonBinary} from '../daemons/daemons.js'

export interface BuildMachine {
  bed: Bed
  node: BedNode
  /** The machine's containerd, as sideload on the host reaches it. */
  containerdAddress: string
  /** buildkitd (`--builder buildkit`, BUILDKIT_HOST). */
  buildkitAddress: string
  /** `nerdctl --namespace k8s.io ARGS` on the build machine (buildctl on its PATH, as nerdctl build needs). */
  nerdctl(args: string[], opts?: {input?: Buffer | string; timeoutMs?: number}): Promise<ExecResult>
  /** `ctr -n k8s.io ARGS` on the build machine. */
  ctr(args: string[]): Promise<string>
  /** A busybox image in the machine's k8s.io store, pinned by digest so `FROM` needs no registry. */
  busybox: string
  down(): Promise<void>
}

/**
 * Starts a standalone buildkitd inside a bed node, its containerd worker on the node's containerd
 * (namespace k8s.io), listening on `address` (unix://…); resolves once it lists its workers.
 */
export async function startBuildkitd(bed: Bed, node: BedNode, address: string): Promise<void> {
  const dir = bed.nodeDir(node)
  const buildctl = daemonBinary('buildkit', 'buildctl')
  await bed.startDaemon(node, 'buildkitd', [
    daemonBinary('buildkit', 'buildkitd'),
    '--root', path.join(dir, 'buildkit'),
    '--addr', address,
    // its trace socket defaults to /run/buildkit/ on the host: the bed leaves nothing outside its own dirs
    '--otel-socket-path', path.join(dir, 'buildkit-otel.sock'),
    '--oci-worker=false',
    '--containerd-worker=true',
    '--containerd-worker-addr=/run/containerd/containerd.sock',
    '--containerd-worker-namespace=k8s.io',
    '--containerd-worker-net=host',
    `--containerd-worker-snapshotter=${node.snapshotter}`,
  ], async () => fs.existsSync(address.slice('unix://'.length)) && (await bed.exec(node, [buildctl, '--addr', address, 'debug', 'workers'], {timeoutMs: 5000})).code === 0)
}

/**
 * Cuts the build machine off (no default route: BuildKit must never reach for a registry) and
 * puts busybox into its k8s.io store as `name`, as if pulled long ago. Returns its manifest digest.
 */
export async function prepareOfflineBase(bed: Bed, node: BedNode, name: string, workDir: string): Promise<string> {
  const route = await bed.exec(node, ['ip', 'route', 'del', 'default'])
  if (route.code !== 0) throw new Error(`removing the build machine's default route failed: ${route.stderr.trim()}`)
  const archive = path.join(workDir, `${bed.name}-base.tar`)
  const info = await makeImage({name, format: 'oci', out: archive, layers: [{busybox: true}]})
  const imported = await bed.exec(node, ['ctr', '-n', 'k8s.io', 'images', 'import', '--local', '-'], {input: fs.readFileSync(archive), timeoutMs: 120_000})
  fs.rmSync(archive, {force: true})
  if (imported.code !== 0) throw new Error(`importing ${name} into the build machine failed: ${(imported.stderr || imported.stdout).trim()}`)
  return info.targetDigest ?? info.manifestDigests[0]
}

export async function startBuildMachine(name: string, workDir: string): Promise<BuildMachine> {
  const bed = await startBed({name, nodes: 1, containerd: '2'})
  try {
    const node = bed.nodes[0]
    const dir = bed.nodeDir(node)
    const buildkitAddress = `unix://${path.join(dir, 'buildkitd.sock')}`
    await startBuildkitd(bed, node, buildkitAddress)
    const binDir = path.dirname(daemonBinary('buildkit', 'buildctl'))
    const nerdctlBin = daemonBinary('nerdctl', 'nerdctl')
    const nerdctl = (args: string[], opts: {input?: Buffer | string; timeoutMs?: number} = {}) =>
      bed.exec(node, [nerdctlBin, '--data-root', path.join(dir, 'nerdctl'), '--namespace', 'k8s.io', ...args], {
        ...opts,
        timeoutMs: opts.timeoutMs ?? 300_000,
        env: {PATH: `${binDir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`, BUILDKIT_HOST: buildkitAddress},
      })
    // base images come from the local store, by tag with `--pull missing`, or pinned by digest
    const digest = await prepareOfflineBase(bed, node, 'docker.io/library/busybox:sideload-test', workDir)
    return {
      bed,
      node,
      containerdAddress: `unix://${node.hostSocketPath}`,
      buildkitAddress,
      nerdctl,
      ctr: (args) => bed.ctr(node, args),
      busybox: `docker.io/library/busybox@${digest}`,
      down: () => bed.down(),
    }
  } catch (err) {
    await bed.down().catch(() => undefined)
    throw err
  }
}
