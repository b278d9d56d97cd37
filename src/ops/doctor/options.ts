import type {BuilderChoice} from '../build/index.js'
import type {NodeAccess, SideloadConfig} from '../../config/config.js'
import type {KubeTargetOptions} from '../../kube/config.js'
import type {PoolOptions} from '../../ssh/index.js'
import type {P2pOptions} from '../p2p.js'
import type {DoctorCheck} from './check.js'

export interface DoctorOptions extends KubeTargetOptions {
  /** Kubernetes nodes to check (--node); default: every node, unless only --host was given. */
  nodes?: string[]
  /** Nodes named by SSH target (--host), no cluster needed. */
  hosts?: string[]
  config?: SideloadConfig
  /** Node settings from flags (socket, snapshotter, import mode). */
  nodeFlags?: NodeAccess
  ssh?: PoolOptions
  /** Which builder to look for (default auto: BuildKit daemon, else dockerd). */
  builder?: BuilderChoice
  /** Also check each node can pull from its peers through this node-to-node layer (push --p2p). */
  p2p?: P2pOptions['via']
  /** Limit for each network check (default 15 s). */
  timeoutMs?: number
  /** Called for each check as soon as it is known (live output). */
  onCheck?: (check: DoctorCheck) => void
}

export interface DoctorResult {
  checks: DoctorCheck[]
  /** No check failed (warnings allowed). */
  ok: boolean
}
