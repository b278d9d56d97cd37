import type {NodeAccess, SideloadConfig} from '../../config/config.js'
import type {KubeClient} from '../../kube/client.js'
import type {KubeTargetOptions} from '../../kube/config.js'
import type {SourceSpec} from '../../sources/index.js'
import type {PoolOptions, SshPool} from '../../ssh/index.js'
import type {Reporter} from '../../ui/progress.js'
import type {P2pOptions} from '../p2p.js'

export interface FixOptions extends KubeTargetOptions {
  /** an already loaded client (tests, the watch); otherwise one is made from the kubeconfig options */
  client?: KubeClient
  /** -A: every namespace (otherwise the client's namespace) */
  allNamespaces?: boolean
  /** --pod NAME: only this pod */
  pod?: string
  /** print the plan only */
  dryRun?: boolean
  /** how long to wait for the pods to run after the push (default 5 min) */
  timeoutMs?: number
  /** wait for unscheduled pods to be scheduled (and stuck) instead of reporting them */
  waitScheduled?: boolean
  source: SourceSpec
  config?: SideloadConfig
  /** SSH settings given as flags, over the config's (user, port, key, socket…) */
  access?: NodeAccess
  ssh?: PoolOptions
  pool?: SshPool
  jobs?: number
  pin?: boolean
  /** overwrite (or adopt) a node's record of the same name that sideload did not write */
  replace?: boolean
  unpack?: boolean
  retries?: number
  /** --p2p spegel: seeds get the push, the other nodes pull from them (ops/p2p.ts) */
  p2p?: P2pOptions
  platform?: string
  /** patch PUSHED_AT_ANNOTATION on the repaired pods (default true) */
  annotate?: boolean
  /** --restart: restart the running pods on the nodes pushed to that run an older digest (ops/restart/) */
  restart?: boolean
  reporter?: Reporter
  signal?: AbortSignal
}
