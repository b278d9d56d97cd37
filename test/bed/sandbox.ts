// The local sandbox (see test/sandbox/):
//   npm run sandbox                     = demo
//   npm run sandbox -- up               3 nodes, the Kubernetes API (kubeconfig printed), a build machine
//                                       (containerd 2.x + buildkitd + nerdctl)
//   npm run sandbox -- demo             up if needed, then the field's story, step by step
//   npm run sandbox -- status
//   npm run sandbox -- down             removes every trace
// --name NAME (or SIDELOAD_SANDBOX=NAME) picks another sandbox than 'sandbox' (tests use their own).
import {DemoError, runDemo} from '../sandbox/demo.js'
import {DEFAULT_SANDBOX, sandboxDown, sandboxStatus, sandboxUp, validateSandboxName} from '../sandbox/sandbox.js'

function usage(): never {
  process.stderr.write('usage: npm run sandbox -- [up|demo|status|down] [--name NAME]   (default: demo; NAME also from $SIDELOAD_SANDBOX)\n')
  process.exit(2)
}

function parse(argv: string[]): {verb: string; name: string; step?: 'fix' | 'push'} {
  let verb: string | undefined
  let name = process.env.SIDELOAD_SANDBOX || DEFAULT_SANDBOX
  let step: 'fix' | 'push' | undefined // --sideload-step push: `sideload push --host` instead of `sideload fix`
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--name') name = argv[++i] ?? usage()
    else if (a === '--sideload-step') {
      const v = argv[++i]
      if (v !== 'fix' && v !== 'push') usage()
      step = v
    } else if (a === '-h' || a === '--help') usage()
    else if (!a.startsWith('-') && verb === undefined) verb = a
    else usage()
  }
  return {verb: verb ?? 'demo', name, step}
}

async function main(): Promise<number> {
  const args = parse(process.argv.slice(2))
  validateSandboxName(args.name)
  if (process.getuid?.() !== 0) throw new Error('the sandbox needs root (network namespaces, containerd, sshd): run it as root')
  const log = (line: string) => process.stdout.write(`sandbox: ${line}\n`)
  const downHint = `npm run sandbox -- down${args.name === DEFAULT_SANDBOX ? '' : ` --name ${args.name}`}`
  switch (args.verb) {
    case 'up': {
      const t0 = Date.now()
      const sb = await sandboxUp(args.name, log)
      log(`up in ${((Date.now() - t0) / 1000).toFixed(1)} s: nodes ${sb.bed.nodes.map((n) => `${n.name} ${n.ip}`).join(', ')}`)
      log(`build machine: containerd 2.x at ${sb.paths.buildAddress}, buildkitd at ${sb.paths.buildkitAddress} (containerd worker, namespace k8s.io), nerdctl on the PATH below`)
      process.stdout.write(`\n${sb.exports.join('\n')}\n\n`)
      log(`(or: source ${sb.paths.envFile}); then kubectl, nerdctl and sideload work on the sandbox`)
      log(`stop it with: ${downHint}`)
      return 0
    }
    case 'demo': {
      const sb = await sandboxUp(args.name, log)
      try {
        await runDemo(sb, {sideloadStep: args.step})
      } catch (e) {
        if (e instanceof DemoError) {
          process.stderr.write(`\ndemo failed at ${e.message}\n(the sandbox is still up for a look: logs in ${sb.paths.dir}; remove it with: ${downHint})\n`)
          return 1
        }
        throw e
      }
      return 0
    }
    case 'status': {
      const s = await sandboxStatus(args.name)
      const running = (b: boolean) => (b ? 'running' : 'not running')
      log(`'${s.name}' is ${s.up ? 'up' : 'not up'} (background process ${running(s.parts.daemon)}, build machine: containerd ${running(s.parts.buildMachine)}, buildkitd ${running(s.parts.buildkitd)}; bed ${s.parts.bed ? 'present' : 'absent'})`)
      return s.up ? 0 : 3
    }
    case 'down': {
      await sandboxDown(args.name)
      log(`'${args.name}' is down: processes, nodes and files removed`)
      return 0
    }
    default:
      usage()
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`sandbox: ${e instanceof Error ? e.message : String(e)}\n`)
    process.exit(1)
  },
)
