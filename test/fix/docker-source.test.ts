// `sideload fix --source docker`: the image comes out of a real dockerd (docker save stream) and goes to
// the node whose pod waits for it; an image dockerd lacks is named.
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {makeImage} from '../bed/images.js'
import {startDockerd, type TestDockerd} from '../build/dockerd.js'
import {cli, createNamespace, createPod, type FixBed, nodeImages, podStatus, startFixBed} from './fixture.js'

let fb: FixBed
let dockerd: TestDockerd

describe('sideload fix --source docker', () => {
  beforeAll(async () => {
    ;[fb, dockerd] = await Promise.all([startFixBed('slbt-fixdk', 2), startDockerd('slbt-fixdk')])
  })
  afterAll(async () => {
    await dockerd?.stop()
    await fb?.down()
  })

  it('sends the image from dockerd to the stuck pod\'s node only', async () => {
    const {bed, kubelet} = fb
    const [n1, n2] = bed.nodes
    const file = path.join(fb.tmp, 'dk.tar')
    await makeImage({name: 'docker.io/local/fix-docker:1.0', layers: [{busybox: true}, {sizeBytes: 128 << 10, seed: 'dk'}], format: 'docker', out: file})
    await dockerd.docker(['load', '-i', file])
    await createNamespace(fb, 'dk')
    await createPod(fb, 'dk', 'd2', n2.name, 'local/fix-docker:1.0')
    await createPod(fb, 'dk', 'gone', n2.name, 'local/not-in-docker:1.0')
    await kubelet.syncNow()
    process.env.DOCKER_HOST = dockerd.host
    const run = await cli(['fix', '--kubeconfig', fb.kubeconfig, '-n', 'dk', '--source', 'docker', '--timeout', '20s', '--json',
      '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath])
    expect(run.code, run.stderr).toBe(1) // one pod could not be fixed
    const result = JSON.parse(run.stdout) as {transfers: {node: string; push: {status: string}}[]; rows: {pod: string; action: string; result: string; hint?: string}[]
      diagnoses: {kind: string; image?: string; pods?: string[]; hint?: string}[]}
    expect(result.transfers.map(t => `${t.node}:${t.push.status}`)).toEqual([`${n2.name}:pushed`])
    expect(result.rows.find(r => r.pod === 'd2')).toMatchObject({action: 'pushed', result: 'Running'})
    expect(result.rows.find(r => r.pod === 'gone')).toMatchObject({action: 'not pushed', result: 'image not in the source'})
    // the hint once, on the diagnosis that names the pod (issue 28), not again on its row
    const lacking = result.diagnoses.find(d => d.kind === 'not-in-source')!
    expect(lacking).toMatchObject({image: 'docker.io/local/not-in-docker:1.0', pods: ['dk/gone']})
    expect(lacking.hint).toContain(`docker.io/local/not-in-docker:1.0 is not in the Docker daemon ${dockerd.host}`)
    expect(result.rows.find(r => r.pod === 'gone')?.hint).toBeUndefined()
    expect((await podStatus(fb, 'dk', 'd2')).phase).toBe('Running')
    expect(await nodeImages(bed, n1)).not.toContain('docker.io/local/fix-docker:1.0')
  })
})
