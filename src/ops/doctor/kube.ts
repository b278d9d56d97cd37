import {AuthorizationV1Api, VersionApi, type V1Node} from '@kubernetes/client-node'
import {API_ACCESS, RBAC_MANIFEST, RESTART_ACCESS, type ApiResource} from '../../kube/access.js'
import {KubeClient} from '../../kube/client.js'
import {type KubeTarget, loadKubeTarget} from '../../kube/config.js'
import {describeKubeError} from '../../kube/errors.js'
import {type AddCheck, CheckTimeout, message, withTimeout} from './check.js'
import type {DoctorOptions} from './options.js'

/** kubeconfig, API server, RBAC; returns the nodes to check (those named, or all). */
export async function checkKube(opts: DoctorOptions, hostsOnly: boolean, timeoutMs: number, add: AddCheck): Promise<V1Node[]> {
  const target = checkKubeconfig(opts, hostsOnly, add)
  if (!target) return []
  if (!(await checkApiServer(target, timeoutMs, add))) return []
  await checkRights(target, timeoutMs, add)
  if (hostsOnly) return []
  return nodesToCheck(new KubeClient(target), opts.nodes, timeoutMs, add)
}

/** The kubeconfig's context, server and namespace; undefined when there is none to load. */
function checkKubeconfig(opts: DoctorOptions, hostsOnly: boolean, add: AddCheck): KubeTarget | undefined {
  let target: KubeTarget
  try {
    target = loadKubeTarget(opts)
  } catch (err) {
    // push --host works without a cluster: then a missing kubeconfig is only a warning
    const explicit = opts.kubeconfig !== undefined || opts.context !== undefined
    add({check: 'kubeconfig', target: opts.kubeconfig ?? '-', status: hostsOnly && !explicit ? 'warn' : 'fail', detail: message(err),
      hint: hostsOnly && !explicit ? 'only needed for fix, expose and --node/--pod targets' : 'pass --kubeconfig FILE or --context NAME, or set KUBECONFIG'})
    return undefined
  }
  add({check: 'kubeconfig', target: target.context || '(in-cluster)', status: 'ok',
    detail: `${target.files.join(', ') || 'service account'}; server ${target.server}, namespace ${target.namespace}`})
  return target
}

/** Whether the API server answers (its version). */
async function checkApiServer(target: KubeTarget, timeoutMs: number, add: AddCheck): Promise<boolean> {
  try {
    const v = await withTimeout(target.config.makeApiClient(VersionApi).getCode(), timeoutMs, `API server ${target.server}`)
    add({check: 'api-server', target: target.server, status: 'ok', detail: `Kubernetes ${v.gitVersion}`})
    return true
  } catch (err) {
    const e = err instanceof CheckTimeout ? err : describeKubeError(err, {verb: 'get', resource: 'version'}, target.server)
    add({check: 'api-server', target: target.server, status: 'fail', detail: message(e),
      hint: 'check the server address and that it is reachable from here (VPN, firewall); kubectl version shows the same'})
    return false
  }
}

/** A right sideload uses: the verbs on one resource; `onlyFor` names the flag that alone needs it. */
interface Right {
  group: string
  resource: string
  verbs: readonly string[]
  onlyFor: string | undefined
}

/** Every right sideload uses; those only --restart needs are a warning when missing, not a failure. */
function rightsToCheck(): Right[] {
  return [
    ...(Object.keys(API_ACCESS) as ApiResource[]).map((resource) => ({group: '', resource, verbs: API_ACCESS[resource] as readonly string[], onlyFor: undefined})),
    ...Object.entries(RESTART_ACCESS).flatMap(([group, resources]) => Object.entries(resources as Record<string, readonly string[]>)
      .map(([resource, verbs]) => ({group, resource, verbs, onlyFor: '--restart'}))),
  ]
}

/** One rbac row per right; when the API server cannot be asked, one warning and no more. */
async function checkRights(target: KubeTarget, timeoutMs: number, add: AddCheck): Promise<void> {
  const auth = target.config.makeApiClient(AuthorizationV1Api)
  for (const right of rightsToCheck()) {
    const namespace = right.resource === 'nodes' ? undefined : target.namespace
    const name = right.group ? `${right.resource}.${right.group}` : right.resource
    const label = right.onlyFor ? `${name} (${right.onlyFor})` : name
    let missing: string[]
    try {
      missing = await missingVerbs(auth, right, namespace, timeoutMs)
    } catch (err) {
      add({check: 'rbac', target: label, status: 'warn', detail: `cannot ask the API server what this user may do: ${message(err)}`,
        hint: 'kubectl auth can-i --list shows the rights; sideload needs those in ' + RBAC_MANIFEST})
      break
    }
    const where = namespace ? ` in namespace ${namespace}` : ''
    if (missing.length === 0) {
      add({check: 'rbac', target: label, status: 'ok', detail: `${right.verbs.join(', ')}${where}`})
    } else {
      add({check: 'rbac', target: label, status: right.onlyFor ? 'warn' : 'fail',
        detail: `not allowed: ${missing.join(', ')} ${name}${where}${right.onlyFor ? ` (needed only for ${right.onlyFor})` : ''}`,
        hint: `kubectl apply -f ${RBAC_MANIFEST}, then bind the ClusterRole "sideload" to this user (kubectl create clusterrolebinding sideload --clusterrole=sideload --user=USER)`})
    }
  }
}

/** The verbs of `right` this user may not use, as SelfSubjectAccessReviews answer (kubectl auth can-i). */
async function missingVerbs(auth: AuthorizationV1Api, right: Right, namespace: string | undefined, timeoutMs: number): Promise<string[]> {
  const missing: string[] = []
  // a subresource (pods/eviction) is asked about apart, as kubectl auth can-i does
  const [resource, subresource] = right.resource.split('/')
  for (const verb of right.verbs) {
    const review = await withTimeout(auth.createSelfSubjectAccessReview({body: {
      apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview',
      spec: {resourceAttributes: {verb, resource, subresource, group: right.group, namespace}},
    }}), timeoutMs, 'SelfSubjectAccessReview')
    if (!review.status?.allowed) missing.push(verb)
  }
  return missing
}

/** The nodes named (a row for each the cluster does not have), else every node of the cluster. */
async function nodesToCheck(client: KubeClient, names: string[] | undefined, timeoutMs: number, add: AddCheck): Promise<V1Node[]> {
  try {
    if (names?.length) {
      const found: V1Node[] = []
      for (const name of names) {
        try {
          found.push(await withTimeout(client.getNode(name), timeoutMs, `get node ${name}`))
        } catch (err) {
          add({check: 'node', target: name, status: 'fail', detail: message(err), hint: 'kubectl get nodes lists the names'})
        }
      }
      return found
    }
    const all = await withTimeout(client.listNodes(), timeoutMs, 'list nodes')
    if (all.length === 0) add({check: 'node', target: '-', status: 'warn', detail: 'the cluster has no nodes'})
    return all
  } catch (err) {
    add({check: 'node', target: '-', status: 'fail', detail: message(err)})
    return []
  }
}
