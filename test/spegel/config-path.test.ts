// containerd's registry config_path comes from the node's own config and reaches `find`/`cat` on the
// node (push --p2p spegel, doctor --p2p spegel): a value that is not an absolute path of plain
// characters (one starting with '-' would be read as an option) is never passed on; the node is
// treated as one whose mirror config cannot be read, with an error naming the node and the value.
import {describe, expect, it} from 'vitest'
import {checkP2p} from '../../src/ops/doctor/p2p.js'
import type {DoctorCheck} from '../../src/ops/doctor/index.js'
import {registryMirrors} from '../../src/nodes/mirror.js'
import {SshError, type SshConnection} from '../../src/ssh/index.js'

/** An SSH connection that records the commands run and answers `cat` from `files`. */
function fakeNode(files: Record<string, string>): {conn: SshConnection; commands: string[][]} {
  const commands: string[][] = []
  const conn = {
    target: {alias: 'node-7', host: '10.0.0.7', user: 'root', port: 22},
    execCapture: async (argv: readonly string[]) => {
      commands.push([...argv])
      const file = argv[0] === 'cat' ? argv[argv.length - 1] : undefined
      if (file !== undefined && file in files) return {code: 0, stdout: files[file], stderr: ''}
      return {code: 1, stdout: '', stderr: `${argv[0]}: ${file ?? argv.join(' ')}: No such file or directory`}
    },
  }
  return {conn: conn as unknown as SshConnection, commands}
}

const HOSTS_TOML = '[host."http://10.0.0.7:5000"]\n  capabilities = ["pull", "resolve"]\n'

describe('the registry config_path read from a node', () => {
  it.each(['-exec', '--files0-from=/etc/shadow', 'etc/containerd/certs.d', '/etc/containerd/../../tmp', '/etc/certs.d\nrm -rf /', '/etc/certs d'])(
    '%j is refused before any command, naming the node and the value', async (value) => {
      const {conn, commands} = fakeNode({})
      const err = await registryMirrors(conn, value, 'docker.io').then(() => undefined, (e: unknown) => e)
      expect(err).toBeInstanceOf(SshError)
      expect((err as SshError).message).toContain('root@10.0.0.7')
      expect((err as SshError).message).toContain(JSON.stringify(value))
      expect((err as SshError).message).toContain('its mirror config is not read')
      expect((err as SshError).hint).toContain('absolute path')
      expect(commands).toEqual([])
    })

  it('an absolute path is read with cat --', async () => {
    const {conn, commands} = fakeNode({'/etc/containerd/certs.d/docker.io/hosts.toml': HOSTS_TOML})
    expect(await registryMirrors(conn, '/etc/containerd/certs.d', 'docker.io')).toEqual([{url: 'http://10.0.0.7:5000', registries: ['docker.io']}])
    expect(commands).toEqual([['cat', '--', '/etc/containerd/certs.d/docker.io/hosts.toml']])
  })

  it('doctor --p2p: a row that fails naming the value, and no find on the node', async () => {
    const config = '[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "-fprint /tmp/x"\n'
    const {conn, commands} = fakeNode({'/etc/containerd/config.toml': config})
    const rows: DoctorCheck[] = []
    await checkP2p({name: 'node-7', sshTarget: 'root@10.0.0.7'}, conn, 5000, (c) => rows.push(c))
    expect(rows).toHaveLength(1)
    expect(rows[0]).toMatchObject({check: 'p2p', target: 'node-7', status: 'fail'})
    expect(rows[0].detail).toContain('"-fprint /tmp/x"')
    expect(rows[0].hint).toContain('absolute path')
    expect(commands).toEqual([['cat', '--', '/etc/containerd/config.toml']])
  })

  it('doctor --p2p: a plain config_path is listed with find --', async () => {
    const config = '[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n'
    const {conn, commands} = fakeNode({'/etc/containerd/config.toml': config})
    await checkP2p({name: 'node-7', sshTarget: 'root@10.0.0.7'}, conn, 5000, () => undefined)
    expect(commands[1]).toEqual(['find', '--', '/etc/containerd/certs.d', '-mindepth', '2', '-maxdepth', '2', '-name', 'hosts.toml'])
  })
})
