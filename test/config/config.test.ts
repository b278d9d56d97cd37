import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {describe, expect, it} from 'vitest'
import {accessFor, ConfigError, loadConfig} from '../../src/config/config.js'

function writeConfig(text: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sideload-config-'))
  const file = path.join(dir, 'config.yaml')
  fs.writeFileSync(file, text)
  return file
}

describe('config file', () => {
  it('merges defaults, the node entry and flags in that order', () => {
    const file = writeConfig(`
defaults:
  sshUser: admin
  sshPort: 2222
  jobs: 8
nodes:
  node-b:
    address: 10.0.0.12
    sshUser: root
    containerdSocket: /run/k3s/containerd/containerd.sock
`)
    const config = loadConfig(file)
    expect(config.defaults.jobs).toBe(8)
    expect(accessFor(config, 'node-b')).toEqual({
      sshUser: 'root',
      sshPort: 2222,
      address: '10.0.0.12',
      containerdSocket: '/run/k3s/containerd/containerd.sock',
    })
    expect(accessFor(config, 'node-b', {sshUser: 'ops', sshPort: undefined}).sshUser).toBe('ops')
    expect(accessFor(config, 'other')).toEqual({sshUser: 'admin', sshPort: 2222})
  })

  it('rejects unknown keys and wrong types, naming the file and the key', () => {
    const file = writeConfig('nodes:\n  node-a:\n    sshPrt: 22\n')
    expect(() => loadConfig(file)).toThrow(ConfigError)
    expect(() => loadConfig(file)).toThrow(/config\.yaml: nodes\.node-a\.sshPrt is not a known setting/)
    const typed = writeConfig('defaults:\n  sshPort: "22"\n')
    expect(() => loadConfig(typed)).toThrow(/defaults\.sshPort must be a number/)
    const mode = writeConfig('defaults:\n  importMode: scp\n')
    expect(() => loadConfig(mode)).toThrow(/importMode must be auto, native or ctr/)
  })

  it('treats a missing default file as empty but a missing named file as an error', () => {
    const saved = process.env.SIDELOAD_CONFIG
    process.env.SIDELOAD_CONFIG = path.join(os.tmpdir(), 'sideload-does-not-exist', 'config.yaml')
    try {
      expect(loadConfig()).toEqual({defaults: {}, nodes: {}})
    } finally {
      if (saved === undefined) delete process.env.SIDELOAD_CONFIG
      else process.env.SIDELOAD_CONFIG = saved
    }
    expect(() => loadConfig('/nonexistent/sideload.yaml')).toThrow(/\/nonexistent\/sideload\.yaml: cannot read/)
  })

  it('reports invalid YAML with the file name', () => {
    expect(() => loadConfig(writeConfig('nodes: [unclosed'))).toThrow(/config\.yaml: not valid YAML/)
  })
})
