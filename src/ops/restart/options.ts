import type {KubeClient} from '../../kube/client.js'
import type {ErrorInfo} from '../../ui/errors.js'

/** A node that now holds `digest` under `image` (a push that succeeded, or found it up to date). */
export interface PushedDigest {
  /** Kubernetes node name */
  node: string
  /** the record name (docker.io/library/app:1) */
  image: string
  digest: string
}

export interface RestartOptions {
  client: KubeClient
  pushed: PushedDigest[]
  /** the namespace whose pods are restarted (-n, else the context's); undefined: every namespace (-A) */
  namespace: string | undefined
  /**
   * Sends `image` to more nodes (an owner's other pods run there) and says what they hold now;
   * without it, an owner whose pods run on nodes not pushed to is not rolled out.
   */
  pushMore?: (image: string, nodes: string[]) => Promise<{pushed: PushedDigest[]; failed: {node: string; error: ErrorInfo}[]}>
  /** where a bare pod's manifest is written before it is deleted (default: restartStateDir()) */
  manifestDir?: string
  /** how long to wait for the restarted pods to run the new digest (default 120 s) */
  timeoutMs?: number
  signal?: AbortSignal
}
