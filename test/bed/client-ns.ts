// A client machine on a bed: its own network namespace with one link into the bed bridge, so what
// runs there (sideload, ssh) reaches the nodes only through that link, which can be shaped and
// whose bytes can be counted. Named like a node's (netns slbed-<bed>-240, host veth slb<k>n240),
// so the bed's teardown — also `npm run bed -- down` after a killed run — removes it with the bed:
// processes in it, the veth pair, the namespace. Its address 198.18.<k>.250 is past every node's
// (nodes are 198.18.<k>.11–.210: at most 200) and is not the host's (.1).
import {bridgeName, hostIpOf, netnsName, vethName} from './layout.js'
import type {Bed} from './bed.js'
import {runCommand, type ExecOptions, type ExecResult} from './processes.js'

/** The client's slot in the bed's names: past the 200 nodes a bed may have. */
export const CLIENT_SLOT = 240

export interface ClientNs {
  /** netns name (`ip netns exec <ns> …`) */
  ns: string
  /** The client's address on the bed bridge. */
  ip: string
  /** The host end of the client's veth (on the bridge). */
  hostDev: string
  /** The client's own end, inside the namespace. */
  dev: string
  /** argv prefix that runs a command inside the client namespace. */
  prefix(): string[]
  /** Runs argv inside the client namespace. */
  exec(argv: string[], opts?: ExecOptions): Promise<ExecResult>
  /** Bytes the client has sent through its link (its veth end's tx_bytes). */
  txBytes(): Promise<number>
  /** Shapes both ends of the client's link with a token bucket (the burst rule of bed.shape). */
  shape(rateMbit: number): Promise<void>
  unshape(): Promise<void>
  /** Removes the namespace and its link (the bed's teardown does it too). */
  down(): Promise<void>
}

async function must(what: string, cmd: string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const r = await runCommand(cmd, args, opts)
  if (r.code !== 0) throw new Error(`client namespace: ${what} failed (${cmd} ${args.join(' ')}): ${(r.stderr || r.stdout).trim()}`)
  return r
}

/** Token bucket burst: at least one timer tick's bytes at the rate, and one 64 KiB GSO segment (as bed.shape). */
export function tbfBurst(rateMbit: number): number {
  return Math.max(65_536 + 1514, Math.ceil((rateMbit * 1e6) / 8 / 250))
}

/** Creates the bed's client namespace (replacing a stale one of the same name), linked to the bed bridge. */
export async function startClientNs(bed: Bed, opts: {rateMbit?: number} = {}): Promise<ClientNs> {
  const k = bed.index
  const ns = netnsName(bed.name, CLIENT_SLOT)
  const hostDev = vethName(k, CLIENT_SLOT)
  const ip = `198.18.${k}.250`
  const dev = 'eth0'
  await runCommand('ip', ['link', 'del', hostDev])
  await runCommand('ip', ['netns', 'del', ns])
  await must('creating the netns', 'ip', ['netns', 'add', ns])
  const client: ClientNs = {
    ns,
    ip,
    hostDev,
    dev,
    prefix: () => ['ip', 'netns', 'exec', ns],
    exec: (argv, o) => runCommand('ip', ['netns', 'exec', ns, ...argv], o),
    async txBytes() {
      // /sys inside `ip netns exec` is the namespace's own
      const r = await must('reading tx_bytes', 'ip', ['netns', 'exec', ns, 'cat', `/sys/class/net/${dev}/statistics/tx_bytes`])
      return Number(r.stdout.trim())
    },
    async shape(rateMbit) {
      const args = (d: string) => ['qdisc', 'replace', 'dev', d, 'root', 'tbf', 'rate', `${rateMbit}mbit`, 'burst', String(tbfBurst(rateMbit)), 'latency', '200ms']
      await must(`shaping ${hostDev}`, 'tc', args(hostDev))
      await must(`shaping ${dev} in ${ns}`, 'ip', ['netns', 'exec', ns, 'tc', ...args(dev)])
    },
    async unshape() {
      await runCommand('tc', ['qdisc', 'del', 'dev', hostDev, 'root'])
      await runCommand('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'del', 'dev', dev, 'root'])
    },
    async down() {
      await runCommand('ip', ['link', 'del', hostDev])
      await runCommand('ip', ['netns', 'del', ns])
    },
  }
  try {
    await must('creating the veth', 'ip', ['link', 'add', hostDev, 'type', 'veth', 'peer', 'name', dev, 'netns', ns])
    await must('attaching it to the bed bridge', 'ip', ['link', 'set', hostDev, 'master', bridgeName(k), 'up'])
    await must('configuring its network', 'ip', ['-n', ns, '-batch', '-'], {
      input: [`addr add ${ip}/24 dev ${dev}`, `link set ${dev} up`, 'link set lo up', `route add default via ${hostIpOf(k)}`, ''].join('\n'),
    })
    if (opts.rateMbit) await client.shape(opts.rateMbit)
  } catch (err) {
    await client.down()
    throw err
  }
  return client
}
