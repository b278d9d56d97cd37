// The exact SolveRequest the client sends, checked on the wire against BuildKit's field numbers
// (docs/protocols.md §A.1): what only a standalone buildkitd does (image/oci/docker exporters,
// Exporters field 13) is pinned here, since no buildkitd binary is available to test against.
import type * as grpc from '@grpc/grpc-js'
import {describe, expect, it} from 'vitest'
import {buildkitDefinitions} from '../../src/buildkit/protos.js'
import type {SolveRequest, WorkerRecord} from '../../src/buildkit/protos.js'
import {chooseExporter, frontendAttrs, resolveBuilder, solveRequest, workerSharesContainerd} from '../../src/ops/build/index.js'

function serialize(req: SolveRequest): Buffer {
  const method = (buildkitDefinitions()['moby.buildkit.v1.Control'] as grpc.ServiceDefinition).Solve
  return method.requestSerialize(req)
}

/** Top-level (field number → raw values) of a protobuf message. */
function topFields(buf: Buffer): Map<number, Buffer[]> {
  const out = new Map<number, Buffer[]>()
  let pos = 0
  const varint = (): number => {
    let r = 0
    let s = 0
    for (;;) {
      const b = buf[pos++]
      r += (b & 0x7f) * 2 ** s
      if (!(b & 0x80)) return r
      s += 7
    }
  }
  while (pos < buf.length) {
    const key = varint()
    expect(key & 7).toBe(2) // every top-level field here is length-delimited
    const len = varint()
    const field = Math.floor(key / 8)
    out.set(field, [...(out.get(field) ?? []), buf.subarray(pos, pos + len)])
    pos += len
  }
  return out
}

const containerdWorker: WorkerRecord = {
  ID: 'w1',
  Labels: {
    'org.mobyproject.buildkit.worker.executor': 'containerd',
    'org.mobyproject.buildkit.worker.containerd.namespace': 'k8s.io',
    'org.mobyproject.buildkit.worker.snapshotter': 'overlayfs',
    'org.mobyproject.buildkit.worker.containerd.uuid': 'uuid-here',
  },
  platforms: [],
  BuildkitVersion: null,
}
const ociWorker: WorkerRecord = {...containerdWorker, Labels: {'org.mobyproject.buildkit.worker.executor': 'oci'}}
const buildkitd = {kind: 'buildkitd', address: 'unix:///run/buildkit/buildkitd.sock'} as const
const docker = {kind: 'docker', docker: {kind: 'unix', socketPath: '/var/run/docker.sock'}} as const

describe('exporter choice', () => {
  it('a containerd worker on this very containerd, in k8s.io, gets the image exporter, with the names the kubelet looks up', () => {
    const here = {uuid: 'uuid-here', snapshotter: 'overlayfs'}
    expect(workerSharesContainerd(containerdWorker, 'k8s.io', here)).toBe(true)
    expect(workerSharesContainerd(containerdWorker, 'k8s.io', {uuid: 'uuid-here'})).toBe(true) // no CRI here: no snapshotter to match
    expect(workerSharesContainerd(containerdWorker, 'default', here)).toBe(false)
    // nerdctl's other checks: the same daemon (UUID), the CRI's snapshotter; no local containerd at all
    expect(workerSharesContainerd(containerdWorker, 'k8s.io', {uuid: 'uuid-elsewhere', snapshotter: 'overlayfs'})).toBe(false)
    expect(workerSharesContainerd(containerdWorker, 'k8s.io', {uuid: 'uuid-here', snapshotter: 'native'})).toBe(false)
    expect(workerSharesContainerd(containerdWorker, 'k8s.io', undefined)).toBe(false)
    expect(chooseExporter(buildkitd, {tags: ['app:1', 'registry.local:5000/team/app:latest']}, containerdWorker, here)).toEqual({
      exporter: {Type: 'image', Attrs: {name: 'docker.io/library/app:1,registry.local:5000/team/app:latest', unpack: 'true'}},
    })
    expect(chooseExporter(buildkitd, {tags: ['app:1']}, containerdWorker, {uuid: 'uuid-elsewhere'})).toEqual({exporter: {Type: 'docker', Attrs: {name: 'app:1'}}, streamed: 'docker'})
  })

  it('other BuildKit workers stream an archive back: docker for one platform, oci for several', () => {
    expect(chooseExporter(buildkitd, {tags: ['app:1']}, ociWorker)).toEqual({exporter: {Type: 'docker', Attrs: {name: 'app:1'}}, streamed: 'docker'})
    expect(chooseExporter(buildkitd, {tags: ['app:1'], platforms: ['linux/amd64', 'linux/arm64']}, containerdWorker, {uuid: 'uuid-here'})).toMatchObject({
      exporter: {Type: 'image'},
    })
    expect(chooseExporter(buildkitd, {tags: ['app:1'], platforms: ['linux/amd64', 'linux/arm64']}, ociWorker)).toEqual({
      exporter: {Type: 'oci', Attrs: {name: 'app:1'}},
      streamed: 'oci',
    })
    expect(chooseExporter(buildkitd, {tags: ['app:1'], output: {type: 'oci', path: '/tmp/x.tar'}}, containerdWorker)).toEqual({
      exporter: {Type: 'oci', Attrs: {name: 'app:1'}},
      streamed: 'oci',
    })
  })

  it('dockerd exports moby (archives are made from docker save), tar over FileSend; one platform only', () => {
    expect(chooseExporter(docker, {tags: ['app:1']}, undefined)).toEqual({exporter: {Type: 'moby', Attrs: {name: 'app:1'}}})
    expect(chooseExporter(docker, {tags: ['app:1'], output: {type: 'oci', path: 'x'}}, undefined)).toEqual({exporter: {Type: 'moby', Attrs: {name: 'app:1'}}})
    expect(chooseExporter(docker, {tags: [], output: {type: 'tar', path: 'x'}}, undefined)).toEqual({exporter: {Type: 'tar', Attrs: {}}, streamed: 'tar'})
    expect(() => chooseExporter(docker, {tags: ['app:1'], platforms: ['linux/amd64', 'linux/arm64']}, undefined)).toThrow(/--builder buildkit/)
  })
})

describe('builder choice', () => {
  it('auto prefers BUILDKIT_HOST, then DOCKER_HOST; explicit kinds use their defaults', () => {
    expect(resolveBuilder({kind: 'auto'}, {BUILDKIT_HOST: 'tcp://bk:1234', DOCKER_HOST: 'unix:///d.sock'})).toEqual({kind: 'buildkitd', address: 'tcp://bk:1234'})
    expect(resolveBuilder({kind: 'auto'}, {DOCKER_HOST: 'unix:///d.sock'})).toMatchObject({kind: 'docker', docker: {kind: 'unix', socketPath: '/d.sock'}})
    expect(resolveBuilder({kind: 'buildkitd'}, {})).toEqual({kind: 'buildkitd', address: 'unix:///run/buildkit/buildkitd.sock'})
    expect(resolveBuilder({kind: 'docker'}, {})).toMatchObject({docker: {socketPath: '/var/run/docker.sock'}})
    expect(() => resolveBuilder({kind: 'docker', dockerHost: 'ssh://x'}, {})).toThrow(/unsupported Docker host/)
  })

  it('finds a BuildKit daemon where nerdctl looks: /run/buildkit-<namespace>/, /run/buildkit-default/, /run/buildkit/', () => {
    const present = (...files: string[]) => (f: string) => files.includes(f)
    const nsSock = '/run/buildkit-k8s.io/buildkitd.sock'
    expect(resolveBuilder({kind: 'buildkitd'}, {}, 'k8s.io', present(nsSock, '/run/buildkit/buildkitd.sock'))).toEqual({kind: 'buildkitd', address: `unix://${nsSock}`})
    expect(resolveBuilder({kind: 'auto'}, {}, 'k8s.io', present('/run/buildkit-default/buildkitd.sock'))).toEqual({kind: 'buildkitd', address: 'unix:///run/buildkit-default/buildkitd.sock'})
    expect(resolveBuilder({kind: 'auto'}, {}, 'default', present('/run/buildkit-k8s.io/buildkitd.sock', '/var/run/docker.sock'))).toMatchObject({kind: 'docker'})
    expect(resolveBuilder({kind: 'auto'}, {BUILDKIT_HOST: 'tcp://bk:1'}, 'k8s.io', present(nsSock))).toEqual({kind: 'buildkitd', address: 'tcp://bk:1'})
    expect(() => resolveBuilder({kind: 'auto'}, {}, 'k8s.io', present())).toThrow(/no BuildKit daemon at \/run\/buildkit-k8s\.io\/buildkitd\.sock, \/run\/buildkit-default\/buildkitd\.sock, \/run\/buildkit\/buildkitd\.sock/)
  })

  it('--pull: always pulls base images, missing prefers the builder\'s local copy', () => {
    expect(frontendAttrs({context: '.', tags: [], pull: 'missing'}, 'Dockerfile')).toMatchObject({'image-resolve-mode': 'local'})
    expect(frontendAttrs({context: '.', tags: [], pull: 'always'}, 'Dockerfile')).toMatchObject({'image-resolve-mode': 'pull'})
    expect(frontendAttrs({context: '.', tags: []}, 'Dockerfile')).not.toHaveProperty('image-resolve-mode')
  })
})

describe('SolveRequest on the wire', () => {
  it('sets the exporter in Exporters (13) and in the deprecated fields 3/4, the frontend in 6/7, the session in 5', () => {
    const attrs = frontendAttrs(
      {context: '.', tags: ['app:1'], target: 'final', buildArgs: {A: '1'}, labels: {team: 'x'}, platforms: ['linux/amd64', 'linux/arm64'], noCache: true},
      'Dockerfile.dev',
    )
    expect(attrs).toEqual({
      filename: 'Dockerfile.dev',
      target: 'final',
      platform: 'linux/amd64,linux/arm64',
      'no-cache': '',
      'build-arg:A': '1',
      'label:team': 'x',
    })
    const {exporter} = chooseExporter(buildkitd, {tags: ['app:1']}, ociWorker)
    const req = solveRequest('ref1', 'sess1', attrs, exporter)
    const fields = topFields(serialize(req))
    expect(fields.get(1)?.[0].toString()).toBe('ref1')
    expect(fields.get(3)?.[0].toString()).toBe('docker')
    expect(fields.get(5)?.[0].toString()).toBe('sess1')
    expect(fields.get(6)?.[0].toString()).toBe('dockerfile.v0')
    expect(fields.get(7)).toHaveLength(6)
    expect(fields.has(2)).toBe(false) // no LLB definition when a frontend is set
    // field 4: map entry {1: key, 2: value}
    expect(fields.get(4)?.[0]).toEqual(Buffer.from([0x0a, 4, ...Buffer.from('name'), 0x12, 5, ...Buffer.from('app:1')]))
    // field 13: Exporter{Type=1, Attrs=2}
    const exp = topFields(fields.get(13)?.[0] as Buffer)
    expect(exp.get(1)?.[0].toString()).toBe('docker')
    expect(exp.get(2)?.[0]).toEqual(fields.get(4)?.[0])
    // and the tag byte for field 13, wire type 2, is 0x6a
    expect(serialize(req).includes(Buffer.from([0x6a]))).toBe(true)
  })
})
