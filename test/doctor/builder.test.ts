// doctor's builder check against a real dockerd (embedded BuildKit v0.8): ok with its platforms;
// a dead socket only warns.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {type TestDockerd, startDockerd} from '../build/dockerd.js'
import {doctor} from '../../src/ops/doctor/index.js'

describe('doctor: the builder', () => {
  let dockerd: TestDockerd
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'slbt-doctor-builder-'))
  // no kubeconfig here (private HOME): the cluster rows fail, only the builder row is looked at
  const noKube = {hosts: [] as string[], env: {HOME: tmp}}

  beforeAll(async () => {
    dockerd = await startDockerd('sldoctorb')
  }, 120_000)
  afterAll(async () => {
    await dockerd?.stop()
    fs.rmSync(tmp, {recursive: true, force: true})
  })

  it('a running dockerd: ok, with its BuildKit worker platforms', async () => {
    const r = await doctor({...noKube, builder: {kind: 'docker', dockerHost: dockerd.host}})
    const b = r.checks.find((c) => c.check === 'builder')
    expect(b?.status, JSON.stringify(b)).toBe('ok')
    expect(b?.detail).toContain(dockerd.host.replace(/^unix:\/\//, ''))
    expect(b?.detail).toMatch(/^Docker's BuildKit at .*\(linux\/amd64/)
  })

  it('a socket nobody answers: warn with the way out, never FAIL', async () => {
    const r = await doctor({...noKube, builder: {kind: 'docker', dockerHost: `unix://${tmp}/gone.sock`}, timeoutMs: 5000})
    const b = r.checks.find((c) => c.check === 'builder')
    expect(b?.status).toBe('warn')
    expect(b?.hint).toContain('start buildkitd or dockerd')
  })
})
