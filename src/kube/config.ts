import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {KubeConfig, type Cluster, type Context, type User} from '@kubernetes/client-node'

export interface KubeTargetOptions {
  /** --kubeconfig: this file only (like kubectl, it wins over $KUBECONFIG) */
  kubeconfig?: string
  /** --context: a context of the kubeconfig instead of its current-context */
  context?: string
  /** -n/--namespace: overrides the context's namespace */
  namespace?: string
  /** environment to read KUBECONFIG, HOME and KUBERNETES_SERVICE_HOST from (default process.env) */
  env?: NodeJS.ProcessEnv
}

/** A resolved Kubernetes target: which server, as which context, in which namespace. */
export interface KubeTarget {
  config: KubeConfig
  context: string
  namespace: string
  server: string
  /** the kubeconfig files it came from (empty in-cluster) */
  files: string[]
}

export class KubeConfigError extends Error {
  override name = 'KubeConfigError'
}

function kubeconfigFiles(opts: KubeTargetOptions, env: NodeJS.ProcessEnv): string[] {
  if (opts.kubeconfig) {
    if (!fs.existsSync(opts.kubeconfig)) throw new KubeConfigError(`kubeconfig ${opts.kubeconfig} (--kubeconfig) does not exist`)
    return [path.resolve(opts.kubeconfig)]
  }
  if (env.KUBECONFIG) {
    // like kubectl: a path list; missing files are skipped; the first file to define a name wins
    const files = env.KUBECONFIG.split(path.delimiter).filter(f => f !== '').map(f => path.resolve(f))
    const existing = files.filter(f => fs.existsSync(f))
    if (existing.length === 0) throw new KubeConfigError(`none of the files in KUBECONFIG exists: ${files.join(', ')}`)
    return existing
  }
  const home = env.HOME ?? os.homedir()
  const def = path.join(home, '.kube', 'config')
  return fs.existsSync(def) ? [def] : []
}

/**
 * Loads the kubeconfig the way kubectl does: --kubeconfig, else $KUBECONFIG (merged, first wins),
 * else ~/.kube/config, else the in-cluster service account. Then --context and --namespace.
 */
export function loadKubeTarget(opts: KubeTargetOptions = {}): KubeTarget {
  const env = opts.env ?? process.env
  const files = kubeconfigFiles(opts, env)
  const config = new KubeConfig()
  if (files.length === 0) {
    if (env.KUBERNETES_SERVICE_HOST) {
      config.loadFromCluster()
    } else {
      throw new KubeConfigError('no kubeconfig found: pass --kubeconfig FILE, set KUBECONFIG, or create ~/.kube/config')
    }
  } else {
    const clusters: Cluster[] = []
    const users: User[] = []
    const contexts: Context[] = []
    let currentContext = ''
    for (const file of files) {
      const one = new KubeConfig()
      try {
        one.loadFromFile(file)
      } catch (err) {
        throw new KubeConfigError(`cannot read kubeconfig ${file}: ${(err as Error).message}`)
      }
      for (const c of one.getClusters()) if (!clusters.some(x => x.name === c.name)) clusters.push(c)
      for (const u of one.getUsers()) if (!users.some(x => x.name === u.name)) users.push(u)
      for (const c of one.getContexts()) if (!contexts.some(x => x.name === c.name)) contexts.push(c)
      if (currentContext === '' && one.getCurrentContext()) currentContext = one.getCurrentContext()
    }
    config.loadFromOptions({clusters, users, contexts, currentContext})
  }
  if (opts.context) {
    if (!config.getContextObject(opts.context)) {
      const known = config.getContexts().map(c => c.name)
      throw new KubeConfigError(`context "${opts.context}" is not in ${files.join(', ') || 'the kubeconfig'} (contexts: ${known.join(', ') || 'none'})`)
    }
    config.setCurrentContext(opts.context)
  }
  const context = config.getCurrentContext()
  const ctx = config.getContextObject(context)
  if (!ctx && files.length > 0) {
    throw new KubeConfigError(`${files.join(', ')} has no current context: pass --context NAME or run kubectl config use-context NAME`)
  }
  const cluster = config.getCurrentCluster()
  if (!cluster) throw new KubeConfigError(`context "${context}" names cluster "${ctx?.cluster ?? ''}", which is not in ${files.join(', ')}`)
  const namespace = opts.namespace || ctx?.namespace || inClusterNamespace(files) || 'default'
  return {config, context, namespace, server: cluster.server, files}
}

function inClusterNamespace(files: string[]): string | undefined {
  if (files.length > 0) return undefined
  try {
    return fs.readFileSync('/var/run/secrets/kubernetes.io/serviceaccount/namespace', 'utf8').trim() || undefined
  } catch {
    return undefined
  }
}
