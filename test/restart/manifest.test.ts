// What --restart creates again for a bare pod, and how it names the pods it leaves alone.
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
})
