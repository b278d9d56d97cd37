// The watcher's image (issue 27): `npm run image` makes, with no registry and no base image, the OCI
// archive of the image manifests/fix-watch.yaml names; sideload pushes it to a bed node like any
// archive, and containerd there runs it (ctr run, as the image says: its entrypoint, its non-root user).
import {execFile} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import YAML from 'yaml'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startBed, type Bed} from '../bed/bed.js'
import {runCli} from '../push/cli.js'

const ROOT = path.resolve(import.meta.dirname, '..', '..')
const version = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {version: string}).version
const NAME = `localhost/sideload:${version}`

function npm(args: string[]): Promise<{code: number; stdout: string; stderr: string}> {
  return new Promise((resolve) => {
    execFile('npm', args, {cwd: ROOT, timeout: 300_000, maxBuffer: 16 << 20}, (err, stdout, stderr) => {
      resolve({code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr})
    })
  })
}

describe('npm run image: the watcher\'s image', () => {
  let tmp: string
  let bed: Bed
  let archive: string
  let made: {code: number; stdout: string; stderr: string}

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sideload-image-test-'))
    archive = path.join(tmp, 'sideload-image.tar')
    ;[made, bed] = await Promise.all([npm(['run', '--silent', 'image', '--', '--out', archive]), startBed({name: 'slbt-image', nodes: 1})])
  }, 300_000)
  afterAll(async () => {
    await bed?.down()
    if (tmp) fs.rmSync(tmp, {recursive: true, force: true})
  })

  it('is the image fix-watch.yaml runs, made here: an OCI archive named for this version', () => {
    expect(made.code, made.stderr).toBe(0)
    expect(made.stdout).toContain(`${NAME} (linux/amd64, node v26.`)
    const deployment = YAML.parse(fs.readFileSync(path.join(ROOT, 'manifests', 'fix-watch.yaml'), 'utf8')) as {spec: {template: {spec: {containers: Array<{image: string; imagePullPolicy: string}>}}}}
    expect(deployment.spec.template.spec.containers[0]).toMatchObject({image: NAME, imagePullPolicy: 'Never'})
  })

  it('refuses a platform it cannot make, saying why; a missing --out is a usage mistake', async () => {
    const arm = await npm(['run', '--silent', 'image', '--', '--out', path.join(tmp, 'arm.tar'), '--platform', 'linux/arm64'])
    expect(arm.code).toBe(1)
    expect(arm.stderr).toMatch(/--platform linux\/arm64: only linux\/amd64 can be made here; hint: /)
    expect(fs.existsSync(path.join(tmp, 'arm.tar'))).toBe(false)
    const none = await npm(['run', '--silent', 'image'])
    expect(none.code).toBe(2)
    expect(none.stderr).toContain('no --out FILE')
  })

  it('goes to a node with sideload push and runs there as its non-root user: sideload answers', async () => {
    const node = bed.nodes[0]
    const push = await runCli(['push', '--archive', archive, '--host', `root@${node.ip}`, '--ssh-key', bed.keyPath, '--known-hosts', bed.knownHostsPath, '--progress', 'quiet'])
    expect(push.code, push.stderr).toBe(0)
    expect(await bed.ctr(node, ['images', 'ls', '-q'])).toContain(NAME)
    // the image's entrypoint with its arguments, as the kubelet would start it
    const run = async (id: string, args: string[]): Promise<string> => {
      try {
        return await bed.ctr(node, ['run', '--rm', NAME, id, '/usr/local/bin/node', '/opt/sideload/bin/run.js', ...args])
      } finally {
        await bed.ctr(node, ['containers', 'rm', id]).catch(() => undefined)
      }
    }
    expect(await run('sl-image-version', ['--version'])).toContain(`sideload/${version} linux-x64 node-v26.`)
    expect(await run('sl-image-help', ['fix', '--help'])).toContain('--watch')
    const who = await bed.ctr(node, ['run', '--rm', NAME, 'sl-image-id', '/usr/local/bin/node', '-p', 'process.getuid() + " " + require("node:os").homedir()'])
    expect(who.trim()).toBe('65532 /tmp')
  })
})
