import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {SshError} from '../../src/ssh/errors.js'
import {describeTarget, formatTarget, parseTarget, resolveTarget, targetKey, withProxyJump} from '../../src/ssh/target.js'

describe('parseTarget', () => {
  it('parses the forms ssh accepts', () => {
    expect(parseTarget('node-1')).toEqual({user: undefined, host: 'node-1', port: undefined})
    expect(parseTarget('root@10.0.0.5')).toEqual({user: 'root', host: '10.0.0.5', port: undefined})
    expect(parseTarget('admin@node-1:2222')).toEqual({user: 'admin', host: 'node-1', port: 2222})
    expect(parseTarget('u@[fe80::1]:2200')).toEqual({user: 'u', host: 'fe80::1', port: 2200})
    expect(parseTarget('::1')).toEqual({user: undefined, host: '::1', port: undefined})
    expect(parseTarget('ssh://me@h.example.com:23')).toEqual({user: 'me', host: 'h.example.com', port: 23})
  })

  it('refuses what would be ambiguous or dangerous', () => {
    for (const bad of ['', 'a b', 'h:0', 'h:99999', 'h:x', '-oProxyCommand=id', 'u;id@h', '[::1', 'h$(id)', '@h']) {
      expect(() => parseTarget(bad), bad).toThrow(SshError)
    }
  })

  it('formats back', () => {
    expect(formatTarget({user: 'u', host: 'fe80::1', port: 2200})).toBe('u@[fe80::1]:2200')
    expect(formatTarget({host: 'h', port: 22})).toBe('h')
  })
})

describe('resolveTarget through ssh_config', () => {
  let dir: string
  let config: string
  const opts = () => ({configPath: config, home: dir, localUser: 'localme'})

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slb-ssh-target-'))
    config = path.join(dir, 'config')
    fs.writeFileSync(
      config,
      [
        'Host node-1',
        '  HostName 198.18.0.11',
        '  User admin',
        '  Port 2201',
        '  IdentityFile ~/.ssh/id_node1',
        '  IdentityFile %d/keys/%r@%h',
        '  IdentitiesOnly yes',
        '  UserKnownHostsFile ~/kh1 ~/kh2',
        '  StrictHostKeyChecking accept-new',
        '  HashKnownHosts yes',
        '',
        'Host node-2',
        '  HostName 198.18.0.12',
        '  ProxyJump node-1',
        '',
        'Host node-3',
        '  HostName 198.18.0.13',
        '  ProxyJump jumper@node-1:2299,node-2',
        '',
        'Host loop-a',
        '  ProxyJump loop-b',
        'Host loop-b',
        '  ProxyJump loop-a',
        '',
        'Host *.lab',
        '  HostName %h.example.net',
        '',
        'Host *',
        '  User fallback',
        '  ConnectTimeout 7',
        '',
      ].join('\n'),
    )
  })
  afterAll(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('applies HostName, User, Port, IdentityFile (~ and %-tokens) and known_hosts settings', () => {
    const t = resolveTarget('node-1', opts())
    expect(t).toMatchObject({
      alias: 'node-1',
      host: '198.18.0.11',
      user: 'admin',
      port: 2201,
      identitiesOnly: true,
      strictHostKeyChecking: 'accept-new',
      hashKnownHosts: true,
      connectTimeoutMs: 7000,
      via: undefined,
    })
    expect(t.identityFiles).toEqual([path.join(dir, '.ssh/id_node1'), path.join(dir, 'keys/admin@198.18.0.11')])
    expect(t.knownHostsFiles).toEqual([path.join(dir, 'kh1'), path.join(dir, 'kh2')])
    expect(describeTarget(t)).toBe('node-1 (admin@198.18.0.11:2201)')
  })

  it('lets the target string override user and port, like ssh', () => {
    expect(resolveTarget('root@node-1:22', opts())).toMatchObject({user: 'root', port: 22, host: '198.18.0.11'})
  })

  it('falls back to Host * and then to the local user', () => {
    expect(resolveTarget('10.1.1.1', opts())).toMatchObject({host: '10.1.1.1', user: 'fallback', port: 22, identityFiles: []})
    expect(resolveTarget('10.1.1.1', {configPath: null, localUser: 'localme', home: dir})).toMatchObject({user: 'localme'})
    expect(resolveTarget('box.lab', opts()).host).toBe('box.lab.example.net')
  })

  it('resolves ProxyJump hops through the config, one and several', () => {
    const two = resolveTarget('node-2', opts())
    expect(two.via).toMatchObject({alias: 'node-1', host: '198.18.0.11', user: 'admin', port: 2201})
    expect(targetKey(two)).toBe('admin@198.18.0.11:2201>fallback@198.18.0.12:22')

    const three = resolveTarget('node-3', opts())
    // node-3 is reached through node-2, which is reached through jumper@node-1:2299 (the list wins over node-2's own ProxyJump)
    expect(three.via).toMatchObject({alias: 'node-2', host: '198.18.0.12'})
    expect(three.via?.via).toMatchObject({alias: 'node-1', user: 'jumper', port: 2299})
    expect(three.via?.via?.via).toBeUndefined()

    const explicit = withProxyJump(resolveTarget('10.2.2.2', opts()), 'node-1', opts())
    expect(explicit.via?.host).toBe('198.18.0.11')
  })

  it('stops a ProxyJump loop with a clear error', () => {
    expect(() => resolveTarget('loop-a', opts())).toThrow(/ProxyJump chain/)
  })

  it('follows Include (globs, relative to ~/.ssh) without leaking included blocks', () => {
    fs.mkdirSync(path.join(dir, '.ssh', 'conf.d'), {recursive: true})
    fs.writeFileSync(path.join(dir, '.ssh', 'conf.d', '10-a.conf'), 'Host inc-a\n  HostName 10.5.0.1\n  User inc\n')
    fs.writeFileSync(path.join(dir, '.ssh', 'conf.d', '20-b.conf'), 'Host inc-b\n  HostName 10.5.0.2\n')
    fs.writeFileSync(path.join(dir, '.ssh', 'conf.d', 'skip.txt'), 'Host inc-a\n  HostName 6.6.6.6\n')
    const main = path.join(dir, 'with-include')
    fs.writeFileSync(
      main,
      ['Include conf.d/*.conf', 'Port 2022', '', 'Host other', '  User o', '  Include ~/.ssh/conf.d/20-b.conf', '  Port 2023', ''].join('\n'),
    )
    const o = {configPath: main, home: dir, localUser: 'localme'}
    expect(resolveTarget('inc-a', o)).toMatchObject({host: '10.5.0.1', user: 'inc', port: 2022})
    expect(resolveTarget('inc-b', o)).toMatchObject({host: '10.5.0.2', user: 'localme', port: 2022})
    // the top-level Port after the Include still applies to every host, not just to inc-b
    expect(resolveTarget('plain', o)).toMatchObject({port: 2022})
    // lines after an Include inside a block stay in that block
    expect(resolveTarget('other', o)).toMatchObject({user: 'o', port: 2022})
  })

  it('keeps ProxyCommand when no ProxyJump applies', () => {
    const f = path.join(dir, 'proxycmd')
    fs.writeFileSync(f, 'Host pc\n  HostName 10.6.0.1\n  ProxyCommand ssh -W "%h:%p" bastion\nHost pj\n  ProxyJump pc\n  ProxyCommand nc %h %p\n')
    const o = {configPath: f, home: dir, localUser: 'localme'}
    expect(resolveTarget('pc', o).proxyCommand).toBe('ssh -W "%h:%p" bastion')
    expect(resolveTarget('pj', o)).toMatchObject({proxyCommand: undefined, via: {alias: 'pc'}})
  })

  it('reports an unreadable explicit config file', () => {
    expect(() => resolveTarget('x', {configPath: path.join(dir, 'nope')})).toThrow(/cannot read ssh config/)
  })
})
