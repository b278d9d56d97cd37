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

export async function startBuildMachine(name: string, workDir: string): Promise<BuildMachine> {
  const bed = await startBed({name, nodes: 1, containerd: '2'})
  try {
    const node = bed.nodes[0]
    const dir = bed.nodeDir(node)
    const socket = path.join(dir, 'buildkitd.sock')
    const buildctl = daemonBinary('buildkit', 'buildctl')
    await bed.startDaemon(node, 'buildkitd', [
      daemonBinary('buildkit', 'buildkitd'),
      '--root', path.join(dir, 'buildkit'),
      '--addr', `unix://${socket}`,
      // its trace socket defaults to /run/buildkit/: the bed leaves nothing outside its own dirs
      '--otel-socket-path', path.join(dir, 'buildkit-otel.sock'),
      '--oci-worker=false',
      '--containerd-worker=true',
      '--containerd-worker-addr=/run/containerd/containerd.sock',
      '--containerd-worker-namespace=k8s.io',
      '--containerd-worker-net=host',
      `--containerd-worker-snapshotter=${node.snapshotter}`,
    ], async () => fs.existsSync(socket) && (await bed.exec(node, [buildctl, '--addr', `unix://${socket}`, 'debug', 'workers'])).code === 0)

    const binDir = path.dirname(buildctl)
    const nerdctlBin = daemonBinary('nerdctl', 'nerdctl')
    const nerdctl = (args: string[], opts: {input?: Buffer | string; timeoutMs?: number} = {}) =>
      bed.exec(node, [nerdctlBin, '--data-root', path.join(dir, 'nerdctl'), '--namespace', 'k8s.io', ...args], {
        ...opts,
        timeoutMs: opts.timeoutMs ?? 300_000,
        env: {PATH: `${binDir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`, BUILDKIT_HOST: `unix://${socket}`},
      })

    // no way out: BuildKit must never reach for a registry from here (a test that tries fails at once)
    await bed.exec(node, ['ip', 'route', 'del', 'default'])
    // busybox for FROM: imported into k8s.io and referenced by digest (BuildKit reads a pinned
    // manifest from the worker's content store; there is no registry here)
    const archive = path.join(workDir, `${name}-busybox.tar`)
    const info = await makeImage({name: 'docker.io/library/busybox:sideload-test', format: 'oci', out: archive, layers: [{busybox: true}]})
    const imported = await bed.exec(node, ['ctr', '-n', 'k8s.io', 'images', 'import', '--local', '-'], {input: fs.readFileSync(archive), timeoutMs: 120_000})
    if (imported.code !== 0) throw new Error(`importing busybox into the build machine failed: ${imported.stderr}`)
    return {
      bed,
      node,
      containerdAddress: `unix://${node.hostSocketPath}`,
      buildkitAddress: `unix://${socket}`,
      nerdctl,
      ctr: (args) => bed.ctr(node, args),
      busybox: `docker.io/library/busybox@${info.targetDigest}`,
      down: () => bed.down(),
    }
  } catch (err) {
    await bed.down().catch(() => undefined)
    throw err
  }
}
