// What --restart creates again for a bare pod, and how it names the pods it leaves on the old image.
import {describe, expect, it} from 'vitest'
import type {V1Pod} from '@kubernetes/client-node'
import {imageIdDigest, recreatableManifest, rerunWithRestart, staleWarning} from '../../src/ops/restart/index.js'

describe('restart helpers', () => {
  it('a bare pod is created again from its own spec: nodeName kept, server-set fields and the token volume left out', () => {
    const pod: V1Pod = {
      apiVersion: 'v1', kind: 'Pod',
      metadata: {name: 'solo', namespace: 'shop', uid: 'u-1', resourceVersion: '42', creationTimestamp: new Date(), labels: {app: 'solo'},
        annotations: {'sideload.dev/pushed-at': 'x'}, managedFields: [{manager: 'kubectl'}]},
      spec: {nodeName: 'node-1', priority: 0, serviceAccountName: 'default',
        containers: [{name: 'main', image: 'app:1', volumeMounts: [{name: 'kube-api-access-abcde', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount'}, {name: 'data', mountPath: '/data'}]}],
        volumes: [{name: 'kube-api-access-abcde', projected: {sources: []}}, {name: 'data', emptyDir: {}}]},
      status: {phase: 'Running'},
    }
    const m = recreatableManifest(pod)
    expect(m.metadata).toEqual({name: 'solo', namespace: 'shop', labels: {app: 'solo'}, annotations: {'sideload.dev/pushed-at': 'x'}})
    expect(m.status).toBeUndefined()
    expect(m.spec?.nodeName).toBe('node-1')
    expect(m.spec?.priority).toBeUndefined()
    expect(m.spec?.volumes).toEqual([{name: 'data', emptyDir: {}}])
    expect(m.spec?.containers[0].volumeMounts).toEqual([{name: 'data', mountPath: '/data'}])
    // the pod it came from is untouched
    expect(pod.spec?.volumes).toHaveLength(2)
  })

  it('a pod that was debugged is created again without its ephemeral containers, and without what admission sets again', () => {
    const pod: V1Pod = {
      apiVersion: 'v1', kind: 'Pod', metadata: {name: 'solo', namespace: 'shop', uid: 'u-1'},
      spec: {nodeName: 'node-1', runtimeClassName: 'kata', overhead: {cpu: '250m'}, priority: 1000, priorityClassName: 'high',
        containers: [{name: 'main', image: 'app:1'}],
        ephemeralContainers: [{name: 'debugger-x7k2', image: 'busybox', targetContainerName: 'main'}]},
      status: {phase: 'Running', ephemeralContainerStatuses: [{name: 'debugger-x7k2', image: 'busybox', imageID: '', ready: false, restartCount: 0}]},
    }
    const m = recreatableManifest(pod)
    expect(m.spec).toEqual({nodeName: 'node-1', runtimeClassName: 'kata', priorityClassName: 'high', containers: [{name: 'main', image: 'app:1'}]})
    expect(pod.spec?.ephemeralContainers).toHaveLength(1)
  })

  it('the digest of a status imageID, the warning and the command that restarts', () => {
    expect(imageIdDigest('docker.io/library/app@sha256:abc')).toBe('sha256:abc')
    expect(imageIdDigest('sha256:def')).toBe('sha256:def')
    const rerun = rerunWithRestart('push', ['app:1', '--node', 'n 1'])
    expect(rerun).toBe("sideload push app:1 --node 'n 1' --restart")
    const w = staleWarning([
      {namespace: 'shop', pod: 'web-1', uid: '1', node: 'n1', image: 'docker.io/library/app:1', containers: ['main'], running: 'sha256:a', pushed: 'sha256:b', owner: {kind: 'Deployment', name: 'web'}},
      {namespace: 'shop', pod: 'solo', uid: '2', node: 'n1', image: 'docker.io/library/app:1', containers: ['main'], running: 'sha256:a', pushed: 'sha256:b'},
    ], rerun)
    expect(w).toBe("pods shop/web-1 on n1 (deployment/web), shop/solo on n1 still run the old image of docker.io/library/app:1; restart them with: sideload push app:1 --node 'n 1' --restart (or kubectl rollout restart deployment/web -n shop)")
    expect(staleWarning([], rerun)).toBeUndefined()
  })

  it('a Job\'s pod is not among those --restart restarts: the warning says it is left alone, and what runs it again', () => {
    const old = {node: 'n1', image: 'docker.io/library/app:1', containers: ['main'], running: 'sha256:a', pushed: 'sha256:b'}
    const w = staleWarning([
      {...old, namespace: 'shop', pod: 'solo', uid: '1'},
      {...old, namespace: 'shop', pod: 'batch-x2', uid: '2', owner: {kind: 'Job', name: 'batch'}},
      {...old, namespace: 'shop', pod: 'nightly-1-q9', uid: '3', owner: {kind: 'Job', name: 'nightly-1', cronJob: 'nightly'}},
    ], 'sideload push app:1 --restart')
    expect(w).toBe('pod shop/solo on n1 still runs the old image of docker.io/library/app:1; restart it with: sideload push app:1 --restart; ' +
      'shop/batch-x2 on n1 still runs the old image of docker.io/library/app:1: pod of Job batch: not restarted; jobs run to completion — ' +
      're-run the job: delete it and create it again from its manifest (kubectl get job batch -n shop -o yaml); ' +
      'shop/nightly-1-q9 on n1 still runs the old image of docker.io/library/app:1: pod of Job nightly-1 (CronJob nightly): not restarted; jobs run to completion — ' +
      'the CronJob\'s next run starts new pods; to run it now: kubectl create job --from=cronjob/nightly nightly-rerun -n shop')
    // only Job pods: no command that would restart nothing
    expect(staleWarning([{...old, namespace: 'shop', pod: 'batch-x2', uid: '2', owner: {kind: 'Job', name: 'batch'}}], 'sideload push app:1 --restart')).not.toContain('--restart')
    // a static pod (its mirror owned by the Node): deleting the mirror would not restart it
    expect(staleWarning([{...old, namespace: 'kube-system', pod: 'etcd-n1', uid: '4', owner: {kind: 'Node', name: 'n1'}}], 'sideload push app:1 --restart'))
      .toBe('kube-system/etcd-n1 on n1 still runs the old image of docker.io/library/app:1: static pod of node n1: not restarted; the kubelet runs it from a manifest file on the node, ' +
        'and deleting its mirror pod in the API does not restart it — restart it on n1: move its manifest out of the kubelet\'s staticPodPath (e.g. /etc/kubernetes/manifests) and back')
  })
})
