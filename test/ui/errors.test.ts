// The one error renderer (src/ui/errors.ts) and the progress bar's "only what it knows".
import {PassThrough} from 'node:stream'
import {describe, expect, it} from 'vitest'
import {ContainerdError} from '../../src/containerd/errors.js'
import {SshError} from '../../src/ssh/errors.js'
import {errorInfo, errorJson, renderError} from '../../src/ui/errors.js'
import {BarReporter} from '../../src/ui/progress.js'

describe('errorInfo and renderError', () => {
  it('keeps message, subject, hint and reason apart', () => {
    const err = new SshError('host-key-unknown', 'host key of root@10.0.0.5 is not known: ssh-ed25519 SHA256:x', {hint: 'check it, then --trust-new-host-keys', target: 'root@10.0.0.5'})
    expect(err.message).toBe('host key of root@10.0.0.5 is not known: ssh-ed25519 SHA256:x')
    const info = errorInfo(err)
    expect(info).toEqual({message: err.message, subject: 'root@10.0.0.5', hint: 'check it, then --trust-new-host-keys', reason: 'host-key-unknown'})
    expect(errorJson(info)).toEqual({error: err.message, subject: 'root@10.0.0.5', hint: 'check it, then --trust-new-host-keys', reason: 'host-key-unknown'})
    // the message names the node already: not again in front of it
    expect(renderError(info)).toBe('error: host key of root@10.0.0.5 is not known: ssh-ed25519 SHA256:x; hint: check it, then --trust-new-host-keys')
  })

  it('names the subject once: the callee\'s "node X: " prefix goes, the caller\'s subject stays', () => {
    const err = new SshError('command', 'node n1: no containerd socket found (looked at /run/containerd/containerd.sock)', {hint: 'is containerd running on the node?'})
    const info = errorInfo(err, 'n1')
    expect(info.message).toBe('no containerd socket found (looked at /run/containerd/containerd.sock)')
    expect(renderError(info)).toBe('n1: error: no containerd socket found (looked at /run/containerd/containerd.sock); hint: is containerd running on the node?')
    expect(renderError({subject: 'n1', message: 'connection lost'}, 'FAILED')).toBe('n1: FAILED: connection lost')
    // a name inside a longer one is not the subject
    expect(renderError({subject: 'n1', message: 'node n10 is down'})).toBe('n1: error: node n10 is down')
  })

  it('splits hints written into the message the old way, once each', () => {
    expect(errorInfo(new Error('no nodes to push to. Hint: name them with --host'))).toEqual({message: 'no nodes to push to', hint: 'name them with --host'})
    const both = Object.assign(new Error('image x has no name\n  hint: name it'), {hint: 'name it'})
    expect(errorInfo(both)).toEqual({message: 'image x has no name', hint: 'name it'})
    expect(errorInfo('plain text')).toEqual({message: 'plain text'})
  })

  it('a multi-line message gets its hint on a line of its own; doctor\'s table cells always', () => {
    expect(renderError({message: 'a\n  b', hint: 'h'})).toBe('error: a\n  b\nhint: h')
    expect(renderError({message: 'socket missing', hint: 'start it'}, '', 'block')).toBe('socket missing\n  hint: start it')
  })

  it('containerd errors carry the hint apart and a reason code', () => {
    const full = new ContainerdError('no space left on node n1 (containerd content.Write: write: no space left on device)', 2, 'content.Write',
      'write: no space left on device', {hint: 'free disk space on the node'})
    expect(errorInfo(full, 'n1')).toMatchObject({message: full.message, hint: 'free disk space on the node', reason: 'no-space'})
    expect(renderError(errorInfo(full, 'n1'))).toBe(`error: ${full.message}; hint: free disk space on the node`)
  })
})

describe('progress bar', () => {
  it('shows no size, rate or ETA before it knows them, and no ETA once failed', async () => {
    const stream = Object.assign(new PassThrough(), {isTTY: true, columns: 200})
    let out = ''
    stream.on('data', (b: Buffer) => (out += b.toString()))
    const bars = new BarReporter(stream as unknown as NodeJS.WritableStream)
    const frames = (): string[] => out.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '\n').split('\n').map((l) => l.trim()).filter(Boolean)
    bars.event({type: 'start', target: 'node-a', message: 'connecting to root@10.0.0.5'})
    await new Promise((r) => setTimeout(r, 120))
    expect(frames()).toContain('node-a | connecting to root@10.0.0.5')
    bars.event({type: 'start', target: 'node-a', totalBytes: 2 << 20, message: '3 of 3 blobs missing'})
    bars.event({type: 'bytes', target: 'node-a', doneBytes: 0, totalBytes: 2 << 20})
    await new Promise((r) => setTimeout(r, 250))
    bars.event({type: 'bytes', target: 'node-a', doneBytes: 1 << 20, totalBytes: 2 << 20})
    await new Promise((r) => setTimeout(r, 250))
    bars.event({type: 'failed', target: 'node-a', error: 'connection lost'})
    bars.close()
    const all = frames()
    expect(all.join('\n')).not.toMatch(/\b1 B\b|NaN|Infinity|ETA N/)
    expect(all.some((l) => /^node-a \[.*\] 1\.0 MiB \/ 2\.0 MiB \| [\d.]+ \w+\/s \| ETA \d+s \| sending$/.test(l)), all.join('\n')).toBe(true)
    expect(all.at(-1)).toMatch(/^node-a \[.*\] 1\.0 MiB \/ 2\.0 MiB \| FAILED: connection lost$/)
  })
})
