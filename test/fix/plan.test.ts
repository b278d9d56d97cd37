import type {V1Pod} from '@kubernetes/client-node'
import {describe, expect, it} from 'vitest'
import {defaultPullPolicy, findStuckContainers, planFix} from '../../src/ops/fix/plan.js'

/** A pod the way the API server returns it for a container stuck on a missing image. */
function stuckPod(name: string, node: string | undefined, image: string, opts: {policy?: string; reason?: string; init?: boolean; owner?: string} = {}): V1Pod {
  const reason = opts.reason ?? 'ErrImageNeverPull'
  const container = {name: 'main', image, imagePullPolicy: opts.policy ?? 'Never', ports: [{containerPort: 22, protocol: 'TCP'}]}
  const status = {
    name: 'main',
    image,
    imageID: '',
    ready: false,
    restartCount: 0,
    started: false,
    state: {waiting: {reason, message: `Container image "${image}" is not present with pull policy of Never`}},
  }
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: 'default',
      uid: `uid-${name}`,
      resourceVersion: '101',
      creationTimestamp: new Date('2026-11-23T10:00:00Z'),
      ownerReferences: opts.owner ? [{apiVersion: 'apps/v1', kind: 'ReplicaSet', name: opts.owner, uid: 'rs', controller: true}] : undefined,
    },
    spec: {
      nodeName: node,
      containers: opts.init ? [{name: 'sidecar', image: 'busybox:1.36', imagePullPolicy: 'IfNotPresent'}] : [container],
      initContainers: opts.init ? [container] : undefined,
    },
    status: {
      phase: 'Pending',
      conditions: [{type: 'PodScheduled', status: node ? 'True' : 'False'}],
      containerStatuses: node && !opts.init ? [status] : undefined,
      initContainerStatuses: node && opts.init ? [status] : undefined,
    },
  } as V1Pod
}

const normalize = (image: string) => (image.includes('/') ? image : `docker.io/library/${image}`)

describe('fix planning', () => {
  it('defaults the pull policy as the API server does', () => {
    expect(defaultPullPolicy('nginx')).toBe('Always')
    expect(defaultPullPolicy('nginx:latest')).toBe('Always')
    expect(defaultPullPolicy('localhost:5000/app')).toBe('Always')
    expect(defaultPullPolicy('localhost:5000/app:v1')).toBe('IfNotPresent')
    expect(defaultPullPolicy('app@sha256:' + 'a'.repeat(64))).toBe('IfNotPresent')
  })

  it('finds stuck init containers too', () => {
    const stuck = findStuckContainers(stuckPod('p', 'node-a', 'local/app:v1', {init: true}))
    expect(stuck).toHaveLength(1)
    expect(stuck[0]).toMatchObject({kind: 'init', container: 'main', node: 'node-a', reason: 'ErrImageNeverPull'})
  })

  it('groups pods by (image, node): one transfer each, however many pods', () => {
    const pods = [
      stuckPod('a1', 'node-a', 'app:v1'),
      stuckPod('a2', 'node-a', 'docker.io/library/app:v1'),
      stuckPod('b1', 'node-b', 'app:v1'),
      stuckPod('b2', 'node-b', 'other:v2'),
    ]
    const plan = planFix(pods, normalize)
    expect(plan.diagnoses).toEqual([])
    const keys = plan.transfers.map((t) => `${t.image}@${t.node}:${t.containers.map((c) => c.pod).join(',')}`).sort()
    expect(keys).toEqual([
      'docker.io/library/app:v1@node-a:a1,a2',
      'docker.io/library/app:v1@node-b:b1',
      'docker.io/library/other:v2@node-b:b2',
    ])
  })

  it('pushes for IfNotPresent pods in pull back-off: the kubelet finds the image on its next try', () => {
    const plan = planFix([stuckPod('p', 'node-a', 'app:v1', {policy: 'IfNotPresent', reason: 'ImagePullBackOff'})], normalize)
    expect(plan.transfers).toHaveLength(1)
  })

  it('explains an Always policy instead of pushing in vain, naming the owner to change', () => {
    const plan = planFix([stuckPod('web-1', 'node-a', 'web:latest', {policy: 'Always', reason: 'ErrImagePull', owner: 'web-7d9'})], normalize)
    expect(plan.transfers).toEqual([])
    expect(plan.diagnoses).toHaveLength(1)
    const d = plan.diagnoses[0]
    expect(d.kind).toBe('pull-policy-always')
    expect(d.hint).toContain('default/web-1')
    expect(d.hint).toContain(':latest tag')
    expect(d.hint).toContain('ReplicaSet "web-7d9"')
  })

  it('reports unscheduled pods with the way out', () => {
    const plan = planFix([stuckPod('pending', undefined, 'app:v1')], normalize)
    expect(plan.transfers).toEqual([])
    expect(plan.diagnoses[0]).toMatchObject({kind: 'unscheduled', pod: 'pending', images: ['app:v1']})
    expect((plan.diagnoses[0] as {hint: string}).hint).toContain('--wait-scheduled')
  })
})
