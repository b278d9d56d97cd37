// The command's small pure parts: durations, --source, the result table.
import * as os from 'node:os'
import {describe, expect, it} from 'vitest'
import {describeFix, fixJson, parseDuration} from '../../src/commands/fix.js'
import {sourceFromFlags} from '../../src/sources/index.js'
import {containerState} from '../../src/ops/fix/index.js'

describe('fix command parts', () => {
  it('parses --timeout durations and refuses nonsense', () => {
    expect(parseDuration('90')).toBe(90_000)
    expect(parseDuration('90s')).toBe(90_000)
    expect(parseDuration('5m')).toBe(300_000)
    expect(parseDuration('1.5h')).toBe(5_400_000)
    expect(parseDuration('250ms')).toBe(250)
    expect(() => parseDuration('soon')).toThrow(/--timeout soon: expected a duration/)
  })

  it('--source: containerd by default, docker, a directory, an archive file, --archive', () => {
    const addr = 'unix:///run/containerd/containerd.sock'
    expect(sourceFromFlags({containerdAddress: addr, containerdNamespace: 'k8s.io'})).toEqual({kind: 'containerd', address: addr, namespace: 'k8s.io'})
    expect(sourceFromFlags({source: 'docker', containerdAddress: addr, containerdNamespace: 'k8s.io'})).toEqual({kind: 'docker'})
    expect(sourceFromFlags({source: os.tmpdir(), containerdAddress: addr, containerdNamespace: 'k8s.io'})).toEqual({kind: 'archive-dir', dir: os.tmpdir()})
    expect(sourceFromFlags({source: '/etc/hostname', containerdAddress: addr, containerdNamespace: 'k8s.io'})).toEqual({kind: 'archive', path: '/etc/hostname'})
    expect(sourceFromFlags({archive: 'a.tar', containerdAddress: addr, containerdNamespace: 'k8s.io'})).toEqual({kind: 'archive', path: 'a.tar'})
    expect(() => sourceFromFlags({source: '/no/such/dir', containerdAddress: addr, containerdNamespace: 'k8s.io'})).toThrow(/--source \/no\/such\/dir: no such file/)
  })

  it('prints POD NODE IMAGE ACTION RESULT, hints once, and the transfers', () => {
    const hint = 'image x is not in the archive a.tar'
    const text = describeFix({
      ok: false,
      diagnoses: [],
      rows: [
        {namespace: 'ns', pod: 'a', container: 'c', node: 'n1', image: 'app:1', action: 'pushed', result: 'Running', ok: true},
        {namespace: 'ns', pod: 'b', container: 'c', node: 'n2', image: 'x:1', action: 'not pushed', result: 'image not in the source', ok: false, hint},
        {namespace: 'ns', pod: 'c', container: 'c', node: 'n2', image: 'x:1', action: 'not pushed', result: 'image not in the source', ok: false, hint},
      ],
      transfers: [{image: 'docker.io/library/app:1', node: 'n1', pods: ['ns/a'],
        push: {node: 'n1', image: 'docker.io/library/app:1', status: 'pushed', sentBytes: 2048, skippedBytes: 0, durationMs: 5, attempts: 1}}],
    }, false)
    const lines = text.split('\n')
    expect(lines[0]).toMatch(/^POD\s+NODE\s+IMAGE\s+ACTION\s+RESULT$/)
    expect(lines[1]).toMatch(/^ns\/a\s+n1\s+app:1\s+pushed\s+Running$/)
    expect(text.split(`hint: ${hint}`)).toHaveLength(2)
    expect(text).toContain('1 transfer(s): docker.io/library/app:1 → n1 (2.0 KiB)')
    expect(describeFix({ok: true, diagnoses: [], rows: [], transfers: []}, false)).toBe('no pod waits for an image')
  })

  it('--json says an image the source lacks once, on its diagnosis (which names the pods), not again on each pod row', () => {
    const hint = 'image x:1 is not in the archive a.tar; it holds app:1'
    const row = {namespace: 'ns', container: 'c', node: 'n2', image: 'x:1', action: 'not pushed' as const, result: 'image not in the source', ok: false, hint}
    const json = JSON.stringify(fixJson({ok: false, diagnoses: [{kind: 'not-in-source', image: 'x:1', pods: ['ns/b', 'ns/c'], hint}],
      rows: [{...row, pod: 'b'}, {...row, pod: 'c'}, {...row, pod: 'd', image: 'y:1', hint: 'the push failed: disk full'}], transfers: []}, undefined))
    expect(json.split(hint)).toHaveLength(2)
    expect(json).toContain('the push failed: disk full')
  })

  it('container state: image waits are stuck; a finished init container reports the pod', () => {
    const pod = {status: {phase: 'Running',
      initContainerStatuses: [{name: 'init', image: 'i', imageID: '', ready: true, restartCount: 0, state: {terminated: {exitCode: 0, reason: 'Completed'}}}],
      containerStatuses: [{name: 'app', image: 'a', imageID: '', ready: false, restartCount: 0, state: {waiting: {reason: 'ImagePullBackOff'}}},
        {name: 'crash', image: 'a', imageID: '', ready: false, restartCount: 3, state: {waiting: {reason: 'CrashLoopBackOff'}}}]}}
    expect(containerState(pod, 'init')).toEqual({state: 'Running', stuck: false})
    expect(containerState(pod, 'app')).toEqual({state: 'ImagePullBackOff', stuck: true})
    expect(containerState(pod, 'crash')).toEqual({state: 'CrashLoopBackOff', stuck: false})
    expect(containerState(undefined, 'app')).toEqual({state: 'pod deleted', stuck: false})
  })
})
