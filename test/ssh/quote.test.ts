import {execFileSync} from 'node:child_process'
import {describe, expect, it} from 'vitest'
import {commandLine, shellQuote, validateDigest, validateImageReference, validateRemotePath} from '../../src/ssh/quote.js'
import {SshError} from '../../src/ssh/errors.js'

/** Run a command line through a real POSIX shell and get back the argv it produced. */
function shellArgv(line: string): string[] {
  const out = execFileSync('/bin/sh', ['-c', `${line}`], {encoding: 'buffer'})
  return out.toString('utf8').split('\0').slice(0, -1)
}

describe('shellQuote / commandLine', () => {
  const nasty = [
    'plain',
    '',
    "it's",
    '$(touch /tmp/pwned-quote-test); x',
    '`id`',
    'a b\tc',
    '"double" and \\backslash\\',
    "''''",
    '*',
    '~root',
    '-n',
    'ü ✓ 日本',
    '; rm -rf / #',
    '$HOME ${PATH}',
  ]

  it('round-trips every argument through /bin/sh unchanged', () => {
    const argv = shellArgv(`printf '%s\\0' ${nasty.map(shellQuote).join(' ')}`)
    expect(argv).toEqual(nasty)
  })

  it('leaves plain words unquoted and quotes the rest', () => {
    expect(shellQuote('ctr')).toBe('ctr')
    expect(shellQuote('docker.io/library/nginx:1.25')).toBe('docker.io/library/nginx:1.25')
    expect(shellQuote('')).toBe("''")
    expect(shellQuote("a'b")).toBe(`'a'\\''b'`)
    expect(commandLine(['echo', 'a b'])).toBe("echo 'a b'")
  })

  it('refuses NUL and newlines, and an empty command', () => {
    for (const bad of ['a\nb', 'a\0b', 'a\rb']) {
      expect(() => shellQuote(bad)).toThrow(SshError)
    }
    expect(() => commandLine([])).toThrow(/empty remote command/)
  })
})

describe('validators', () => {
  it('accepts real image references', () => {
    for (const ok of [
      'nginx',
      'docker.io/library/nginx:1.25',
      'localhost:5000/team/app:dev-1',
      'ghcr.io/o/r@sha256:' + 'a'.repeat(64),
      'registry.example.com/a/b/c:v1.2.3@sha256:' + 'b'.repeat(64),
    ]) {
      expect(validateImageReference(ok)).toBe(ok)
    }
  })

  it('rejects injections and malformed references', () => {
    for (const bad of ['$(id)', 'app;rm', 'App:1', '-rf', 'a b', 'nginx:', 'a\nb', 'x@sha256:zz', '../x']) {
      expect(() => validateImageReference(bad), bad).toThrow(SshError)
    }
  })

  it('checks digests and remote paths', () => {
    expect(validateDigest('sha256:' + 'c'.repeat(64))).toMatch(/^sha256:/)
    expect(() => validateDigest('sha256:abc')).toThrow(/not a valid digest/)
    expect(validateRemotePath('/run/containerd/containerd.sock')).toBe('/run/containerd/containerd.sock')
    for (const bad of ['relative/path', '/a/../etc/shadow', '/tmp/$(id)', '/tmp/a b', '/x\n']) {
      expect(() => validateRemotePath(bad), bad).toThrow(SshError)
    }
  })
})
