// Runs the test API server (and, with --node NAME=IP, a kubelet stand-in) until interrupted:
//   tsx test/kube/serve.ts [--dir DIR] [--port N]
// Prints the kubeconfig path; `KUBECONFIG=<path> kubectl get pods` then works.
import {startApiServer} from './apiserver.js'

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name)
  return i >= 0 ? process.argv[i + 1] : undefined
}

const port = arg('--port')
const server = await startApiServer({dir: arg('--dir'), port: port === undefined ? undefined : Number(port)})
process.stdout.write(`API server ${server.url}\nKUBECONFIG=${server.kubeconfigPath}\n`)
const shutdown = (): void => {
  void server.stop().then(() => process.exit(0))
}
process.on('SIGINT', shutdown)
process.on('SIGTERM', shutdown)
