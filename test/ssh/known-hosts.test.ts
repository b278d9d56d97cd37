import {execFileSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {
  appendKnownHost,
  checkHostKey,
  fingerprint,
  hashHostName,
  hostFieldMatches,
  type HostKey,
  knownKeyTypes,
  loadKnownHosts,
  parseKnownHosts,
} from '../../src/ssh/known-hosts.js'

let dir: string
let ed: HostKey
let ed2: HostKey
let rsa: HostKey

function keygen(name: string, type: string): HostKey {
  execFileSync('ssh-keygen', ['-q', '-t', type, ...(type === 'rsa' ? ['-b', '2048'] : []), '-N', '', '-f', path.join(dir, name)])
  const [t, b] = fs.readFileSync(path.join(dir, `${name}.pub`), 'utf8').trim().split(' ')
  return {type: t, base64: b}
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slb-ssh-known-hosts-'))
  ed = keygen('ed', 'ed25519')
  ed2 = keygen('ed2', 'ed25519')
  rsa = keygen('rsa', 'rsa')
})
afterAll(() => fs.rmSync(dir, {recursive: true, force: true}))

describe('fingerprint', () => {
  it('equals what ssh-keygen -lf prints', () => {
    for (const name of ['ed', 'rsa']) {
      const printed = execFileSync('ssh-keygen', ['-lf', path.join(dir, `${name}.pub`)], {encoding: 'utf8'}).split(' ')[1]
      const [type, base64] = fs.readFileSync(path.join(dir, `${name}.pub`), 'utf8').split(' ')
      expect(fingerprint({type, base64})).toBe(printed)
    }
  })
})

describe('known_hosts parsing and matching', () => {
  it('matches plain names, [host]:port, comma lists, wildcards and negation', () => {
    const text = [
      '# comment',
      '',
      `node-1,10.0.0.1 ${ed.type} ${ed.base64} root@node-1`,
      `[10.0.0.2]:2222 ${rsa.type} ${rsa.base64}`,
      `*.lab,!bad.lab ${ed2.type} ${ed2.base64}`,
      'garbage line',
      `@cert-authority * ${ed2.type} ${ed2.base64}`,
    ].join('\n')
    const entries = parseKnownHosts(text, '/kh')
    expect(entries.map((e) => e.line)).toEqual([3, 4, 5, 7])
    expect(checkHostKey(entries, '10.0.0.1', 22, ed)).toMatchObject({status: 'match', entry: {line: 3}})
    expect(checkHostKey(entries, 'NODE-1', 22, ed).status).toBe('match')
    expect(checkHostKey(entries, '10.0.0.2', 2222, rsa)).toMatchObject({status: 'match', entry: {line: 4}})
    // rsa keys negotiated as rsa-sha2-512 still match their ssh-rsa line
    expect(checkHostKey(entries, '10.0.0.2', 2222, {type: 'rsa-sha2-512', base64: rsa.base64}).status).toBe('match')
    // same address, default port: not recorded
    expect(checkHostKey(entries, '10.0.0.2', 22, rsa).status).toBe('unknown')
    expect(checkHostKey(entries, 'x.lab', 22, ed2).status).toBe('match')
    expect(checkHostKey(entries, 'bad.lab', 22, ed2).status).toBe('unknown')
    expect(hostFieldMatches('node-?', 'node-7')).toBe(true)
    // a host covered only by a @cert-authority line is unknown, and the check says why
    expect(checkHostKey(entries, 'other', 22, ed)).toMatchObject({status: 'unknown', certAuthority: {line: 7}})
  })

  it('reports a changed key with the old entry and both fingerprints', () => {
    const entries = parseKnownHosts(`10.0.0.1 ${ed.type} ${ed.base64}\n`, '/kh')
    const r = checkHostKey(entries, '10.0.0.1', 22, ed2)
    expect(r.status).toBe('changed')
    if (r.status !== 'changed') return
    expect(r.previous).toMatchObject({file: '/kh', line: 1})
    expect(r.previousFingerprint).toBe(fingerprint(ed))
    expect(r.fingerprint).toBe(fingerprint(ed2))
  })

  it('treats a key of another type for a known host as changed, naming the key it has', () => {
    const entries = parseKnownHosts(`10.0.0.1 ${rsa.type} ${rsa.base64}\n`, '/kh')
    const r = checkHostKey(entries, '10.0.0.1', 22, ed)
    expect(r).toMatchObject({status: 'changed', sameType: false, previous: {line: 1, key: {type: 'ssh-rsa'}}, previousFingerprint: fingerprint(rsa)})
    expect(knownKeyTypes(entries, '10.0.0.1', 22)).toEqual(['ssh-rsa'])
    // a key of the same type that differs is the changed one named, before a key of another type
    const both = parseKnownHosts(`10.0.0.1 ${rsa.type} ${rsa.base64}\n10.0.0.1 ${ed.type} ${ed.base64}\n`, '/kh')
    expect(checkHostKey(both, '10.0.0.1', 22, ed2)).toMatchObject({status: 'changed', sameType: true, previous: {line: 2}})
    // another host's keys do not count
    expect(checkHostKey(entries, '10.0.0.2', 22, ed).status).toBe('unknown')
  })

  it('refuses a @revoked key even when another line accepts it', () => {
    const entries = parseKnownHosts(`10.0.0.1 ${ed.type} ${ed.base64}\n@revoked * ${ed.type} ${ed.base64}\n`, '/kh')
    expect(checkHostKey(entries, '10.0.0.1', 22, ed).status).toBe('revoked')
  })

  it('matches entries hashed by the real ssh-keygen -H', () => {
    const file = path.join(dir, 'hashed')
    fs.writeFileSync(file, `10.1.2.3 ${ed.type} ${ed.base64}\n[10.1.2.3]:2200 ${rsa.type} ${rsa.base64}\n`)
    execFileSync('ssh-keygen', ['-H', '-f', file], {stdio: 'pipe'})
    const text = fs.readFileSync(file, 'utf8')
    expect(text).not.toContain('10.1.2.3')
    const entries = loadKnownHosts([file, path.join(dir, 'missing')])
    expect(entries).toHaveLength(2)
    expect(checkHostKey(entries, '10.1.2.3', 22, ed).status).toBe('match')
    expect(checkHostKey(entries, '10.1.2.3', 2200, rsa).status).toBe('match')
    expect(checkHostKey(entries, '10.1.2.4', 22, ed).status).toBe('unknown')
    expect(checkHostKey(entries, '10.1.2.3', 22, ed2).status).toBe('changed')
  })

  it('records hashed entries that ssh-keygen -F finds, and plain ones', () => {
    const file = path.join(dir, 'sub', 'known_hosts')
    fs.mkdirSync(path.dirname(file), {recursive: true})
    fs.writeFileSync(file, `other ${ed2.type} ${ed2.base64}`) // no trailing newline
    appendKnownHost(file, '10.9.9.9', 2222, ed, {hashed: true})
    appendKnownHost(file, '10.9.9.8', 22, rsa)
    const lines = fs.readFileSync(file, 'utf8').split('\n')
    expect(lines).toHaveLength(4)
    expect(lines[1]).toMatch(/^\|1\|/)
    expect(lines[2]).toBe(`10.9.9.8 ssh-rsa ${rsa.base64}`)
    const found = execFileSync('ssh-keygen', ['-F', '[10.9.9.9]:2222', '-f', file], {encoding: 'utf8'})
    expect(found).toContain(ed.base64)
    expect(checkHostKey(loadKnownHosts([file]), '10.9.9.9', 2222, ed).status).toBe('match')
    expect(hashHostName('a', Buffer.alloc(20))).toMatch(/^\|1\|A{27}=\|/)
  })

  it('creates a missing file and directory privately', () => {
    const file = path.join(dir, 'new', 'deeper', 'known_hosts')
    appendKnownHost(file, 'h', 22, ed)
    expect(fs.statSync(file).mode & 0o777).toBe(0o600)
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700)
  })
})
