// npm run bed -- up [N] [--name NAME] [--containerd 1.6|2|mixed] [--root-size-mb NODE=MB] [--no-containerd NODE]
// npm run bed -- down [--name NAME] [--all]
// npm run bed -- status
import {bedStatus, cleanAll, type ContainerdLine, destroyBed, removeEmptyBedDirs, startBed, type Bed, type NodeOptions} from './bed.js'

const DEFAULT_NAME = 'sandbox'

function usage(): never {
  process.stderr.write(
    [
      'usage: npm run bed -- up [N] [--name NAME] [--containerd 1.6|2|mixed] [--root-size-mb NODE=MB] [--no-containerd NODE]',
      '       npm run bed -- down [--name NAME] [--all]',
      '       npm run bed -- status',
      '',
    ].join('\n'),
  )
  process.exit(2)
}

interface Parsed {
  verb: string
  count: number
  name: string
  all: boolean
  nodeOptions: Record<number, NodeOptions>
  containerd?: ContainerdLine | 'mixed'
}

function parse(argv: string[]): Parsed {
  const [verb, ...rest] = argv
  if (!verb) usage()
  const parsed: Parsed = {verb, count: 3, name: DEFAULT_NAME, all: false, nodeOptions: {}}
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]
    const value = () => {
      const v = rest[++i]
      if (v === undefined) usage()
      return v
    }
    if (/^\d+$/.test(a)) parsed.count = Number(a)
    else if (a === '--name') parsed.name = value()
    else if (a === '--all') parsed.all = true
    else if (a === '--containerd') {
      const v = value()
      if (v !== '1.6' && v !== '2' && v !== 'mixed') usage()
      parsed.containerd = v
    }
    else if (a === '--root-size-mb') {
      const [node, mb] = value().split('=').map(Number)
      parsed.nodeOptions[node] = {...parsed.nodeOptions[node], rootSizeMb: mb}
    } else if (a === '--no-containerd') {
      const node = Number(value())
      parsed.nodeOptions[node] = {...parsed.nodeOptions[node], noContainerd: true}
    } else usage()
  }
  return parsed
}

function describe(bed: Bed): string {
  const lines = [`bed '${bed.name}' is up (${bed.nodes.length} nodes, host ${bed.hostIp}); key ${bed.keyPath}`]
  for (const n of bed.nodes) {
    lines.push(`  ${n.name}  ${n.ip}  containerd ${n.containerdLine}  snapshotter=${n.snapshotter}  containerd socket on the host: ${n.hostSocketPath}`)
    lines.push(`    ssh ${bed.sshArgs(n).join(' ')}`)
  }
  lines.push(`  or: ssh -F ${bed.sshConfigPath} ${bed.nodes[0]?.name ?? '<node>'}`)
  lines.push(`  non-root user: ${bed.nonRootUser} (sudo -n ctr only)`)
  return lines.join('\n')
}

async function main(): Promise<void> {
  const args = parse(process.argv.slice(2))
  switch (args.verb) {
    case 'up': {
      const t0 = Date.now()
      const bed = await startBed({name: args.name, nodes: args.count, nodeOptions: args.nodeOptions, containerd: args.containerd, persistent: true})
      process.stdout.write(`${describe(bed)}\n(started in ${Date.now() - t0} ms; stop with: npm run bed -- down${args.name === DEFAULT_NAME ? '' : ` --name ${args.name}`})\n`)
      break
    }
    case 'down': {
      if (args.all) {
        const removed = await cleanAll()
        process.stdout.write(removed.length ? `removed beds: ${removed.join(', ')}\n` : 'no beds to remove\n')
      } else {
        await destroyBed(args.name)
        process.stdout.write(`bed '${args.name}' is down\n`)
      }
      await removeEmptyBedDirs()
      break
    }
    case 'status': {
      const beds = await bedStatus()
      if (beds.length === 0) process.stdout.write('no test beds\n')
      for (const b of beds) {
        process.stdout.write(`${b.name}  index=${b.index ?? '?'}  owner=${b.ownerPid ?? '?'}${b.ownerAlive ? ' (running)' : ''}\n`)
        for (const n of b.nodes) {
          process.stdout.write(`  ${n.name}  ${n.ip}  sshd=${n.sshdUp ? 'up' : 'down'}  containerd=${n.containerdUp ? 'up' : 'down'}\n`)
        }
      }
      break
    }
    default:
      usage()
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bed: ${e instanceof Error ? e.message : String(e)}\n`)
  process.exit(1)
})
