import type {ErrorInfo} from '../../ui/errors.js'

/** A running pod whose container runs `image` with another digest than the one its node now holds. */
export interface StalePod {
  namespace: string
  pod: string
  uid: string
  node: string
  image: string
  containers: string[]
  /** the digest the containers run (from status imageID) */
  running: string
  /** the digest the node holds now */
  pushed: string
  /** the controller that owns the pod (a ReplicaSet's Deployment already resolved), when it has one */
  owner?: PodOwner
}

/** A pod's controller: `kind` and `name`; a Job run by a CronJob names that CronJob too. */
export interface PodOwner {
  kind: string
  name: string
  cronJob?: string
}

/** What happened to one owner, or to one bare pod. */
export interface RestartRow {
  namespace: string
  /** `deployment/web`, `statefulset/db`, `pod/centos-stream-8` */
  target: string
  /** the stale pods it had */
  pods: string[]
  image: string
  action: 'rolled out' | 're-created' | 'evicted for its owner to re-create' | 'left alone' | 'not restarted' | 'failed'
  /** the pods now running it: `name on node` */
  result: string
  ok: boolean
  error?: ErrorInfo
  /** a bare pod's manifest, kept when it could not be created again */
  manifest?: string
}

/** What every row of one owner or bare pod starts with: which, its stale pods, the image. */
export type RestartRowBase = Pick<RestartRow, 'namespace' | 'target' | 'pods' | 'image'>

export interface RestartReport {
  stale: StalePod[]
  rows: RestartRow[]
  ok: boolean
}
