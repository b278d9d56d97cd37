// Arguments as docker and kubectl users type them (issue 14), on the built CLI (`node bin/run.js`):
// a repeatable flag takes one value per occurrence, so flags go before or after the positional
// arguments; -n/--namespace is the Kubernetes namespace in every command; a mistyped flag or
// command gets one line naming the nearest one. No daemon is needed: each run fails at a later,
// recognisable step whose message shows how the arguments were read (the archive or Dockerfile it
// looked for, the Kubernetes API paths a stand-in API server saw).
import {execFile} from 'node:child_process'
import * as fs from 'node:fs'
import * as http from 'node:http'
import type {AddressInfo} from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

const ROOT = path.resolve(__dirname, '..', '..')
const BIN = path.join(ROOT, 'bin', 'run.js')
const DEAD_SOCKET = 'unix:///nonexistent/sideload-args-test.sock'

/** stderr with its whitespace runs made single spaces; rawStderr as written */
interface Run {code: number; stdout: string; stderr: string; rawStderr: string}

let tmp: string
let ctx: string // a build context without a Dockerfile
let elsewhere: string // the working directory of every run: no Dockerfile either, a different path

function sideload(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], {
      cwd: elsewhere,
      // no line wrapping of error messages; no real cluster, builder or ssh settings of this machine
      env: {...process.env, OCLIF_COLUMNS: '1000', KUBECONFIG: path.join(tmp, 'no-kubeconfig'), BUILDKIT_HOST: '', DOCKER_HOST: '', ...env},
      timeout: 30_000,
    }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0
      resolve({code, stdout, stderr: stderr.replace(/\s+/g, ' '), rawStderr: stderr})
    })
  })
}

/** Runs each argument list, all at once (they share nothing); the runs in the same order. */
async function sideloadEach(cases: string[][], extra: string[] = []): Promise<Array<[string, Run]>> {
  return Promise.all(cases.map(async (args) => [args.join(' '), await sideload([...args, ...extra])] as [string, Run]))
}

/** A Kubernetes API stand-in that records each request: the nodes it is given, empty pod lists, 404 for the rest. */
class FakeApi {
  readonly requests: string[] = []
  private server?: http.Server
  kubeconfig = ''

  constructor(private readonly nodes: string[] = []) {}

  async start(dir: string): Promise<void> {
    this.server = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x')
      this.requests.push(`${req.method} ${url.pathname}`)
      const node = /^\/api\/v1\/nodes\/([^/]+)$/.exec(url.pathname)?.[1]
      const podList = /^\/api\/v1\/namespaces\/[^/]+\/pods$/.test(url.pathname)
      res.setHeader('content-type', 'application/json')
      if (node && this.nodes.includes(node)) {
        res.end(JSON.stringify({
          kind: 'Node', apiVersion: 'v1', metadata: {name: node},
          status: {addresses: [{type: 'InternalIP', address: '127.0.0.1'}], nodeInfo: {operatingSystem: 'linux', architecture: 'amd64'},
            conditions: [{type: 'Ready', status: 'True'}]},
        }))
      } else if (podList && req.method === 'GET') {
        res.end(JSON.stringify({kind: 'PodList', apiVersion: 'v1', metadata: {resourceVersion: '1'}, items: []}))
      } else {
        res.statusCode = 404
        res.end(JSON.stringify({kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404, message: `${url.pathname} not found`}))
      }
    })
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve))
    const {port} = this.server.address() as AddressInfo
    this.kubeconfig = path.join(dir, `kubeconfig-${port}`)
    fs.writeFileSync(this.kubeconfig, [
      'apiVersion: v1', 'kind: Config',
      `clusters: [{name: fake, cluster: {server: "http://127.0.0.1:${port}", insecure-skip-tls-verify: true}}]`,
      'users: [{name: u, user: {token: t}}]',
      'contexts: [{name: c, context: {cluster: fake, user: u, namespace: ctxns}}]',
      'current-context: c', '',
    ].join('\n'))
  }

  async stop(): Promise<void> {
    await new Promise((resolve) => this.server?.close(resolve))
  }

  /** The requests since the last call. */
  take(): string[] {
    return this.requests.splice(0)
  }
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sideload-args-'))
  ctx = path.join(tmp, 'ctx')
  elsewhere = path.join(tmp, 'cwd')
  fs.mkdirSync(ctx)
  fs.mkdirSync(elsewhere)
})

afterAll(() => {
  fs.rmSync(tmp, {recursive: true, force: true})
})

describe('a repeatable flag takes one value per occurrence', () => {
  it('every repeatable flag of every command is declared so', async () => {
    const dir = path.join(ROOT, 'dist', 'commands')
    const greedy: string[] = []
    for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.js'))) {
      const {default: command} = await import(path.join(dir, file))
      for (const [name, flag] of Object.entries(command.flags as Record<string, {multiple?: boolean; multipleNonGreedy?: boolean}>)) {
        if (flag.multiple && !flag.multipleNonGreedy) greedy.push(`${file.replace(/\.js$/, '')} --${name}`)
      }
    }
    expect(greedy).toEqual([])
  })

  describe('push', () => {
    // app:1.0 taken as a second --host is the SSH target "app" with port "1.0", refused
    it('--host before the image: the image stays an image (not a second SSH target)', async () => {
      for (const [what, r] of await sideloadEach([
        ['push', '--archive', '/nonexistent.tar', '--host', 'root@127.0.0.1:1', 'app:1.0'],
        ['push', '--host', 'root@127.0.0.1:1', '--archive', '/nonexistent.tar', 'app:1.0'],
        ['push', 'app:1.0', '--archive', '/nonexistent.tar', '--host', 'root@127.0.0.1:1'],
        ['push', '-H', 'root@127.0.0.1:1', '-H', 'root@127.0.0.1:2', 'app:1.0', '-a', '/nonexistent.tar'],
      ])) {
        expect(r.stderr, what).toContain('cannot open image archive /nonexistent.tar')
        expect(r.stderr, what).not.toMatch(/SSH target/i)
        expect(r.code, what).toBe(1)
      }
    })

    it('images from the local containerd after --host and --ssh-key: each image is read, none taken as a host', async () => {
      for (const [what, r] of await sideloadEach([
        ['push', '--host', 'root@127.0.0.1:1', 'app:1.0', '--containerd-address', DEAD_SOCKET],
        ['push', '--ssh-key', '/nonexistent/key', 'app:1.0', '--host', 'root@127.0.0.1:1', '--containerd-address', DEAD_SOCKET],
        ['push', 'app:1.0', '--host', 'root@127.0.0.1:1', '--containerd-address', DEAD_SOCKET],
      ])) {
        expect(r.stderr, what).toContain('cannot read app:1.0 from the local containerd')
        expect(r.code, what).toBe(1)
      }
    })

    describe('with a Kubernetes API', () => {
      const api = new FakeApi(['n1', 'n2'])
      beforeAll(() => api.start(tmp))
      afterAll(() => api.stop())

      it('--node and --pod before the image look up only the nodes and pods named', async () => {
        let r = await sideload(['push', '--node', 'n1', '--node', 'n2', 'app:1', '--archive', '/nonexistent.tar', '--kubeconfig', api.kubeconfig])
        expect(api.take()).toEqual(['GET /api/v1/nodes/n1', 'GET /api/v1/nodes/n2'])
        expect(r.stderr).toContain('cannot open image archive /nonexistent.tar')

        r = await sideload(['push', '--pod', 'web-0', 'app:1', '--archive', '/nonexistent.tar', '--kubeconfig', api.kubeconfig])
        expect(api.take()).toEqual(['GET /api/v1/namespaces/ctxns/pods/web-0'])
        expect(r.code).toBe(1)
      })

      it('-n/--namespace is the namespace of --pod, as in kubectl', async () => {
        for (const args of [
          ['push', '-n', 'foo', '--pod', 'x', 'app:1'],
          ['push', '--pod', 'x', 'app:1', '--namespace', 'foo'],
          ['push', 'app:1', '--pod', 'x', '--namespace=foo'],
        ]) {
          const r = await sideload([...args, '--kubeconfig', api.kubeconfig])
          expect(api.take(), args.join(' ')).toEqual(['GET /api/v1/namespaces/foo/pods/x'])
          expect(r.stderr).toMatch(/pod "?x"?/)
          expect(r.code).toBe(1)
        }
      })

      it('--pod-namespace still works, with a deprecation warning', async () => {
        const r = await sideload(['push', '--pod-namespace', 'foo', '--pod', 'x', 'app:1', '--kubeconfig', api.kubeconfig])
        expect(api.take()).toEqual(['GET /api/v1/namespaces/foo/pods/x'])
        expect(r.stderr).toContain('"--pod-namespace" flag has been deprecated')
      })

      it('the Kubernetes error comes from the API server, not from parsing', async () => {
        const dead = path.join(tmp, 'dead-kubeconfig')
        fs.writeFileSync(dead, fs.readFileSync(api.kubeconfig, 'utf8').replace(/http:\/\/127\.0\.0\.1:\d+/, 'https://127.0.0.1:1'))
        const r = await sideload(['push', '-n', 'foo', '--pod', 'x', 'app:1'], {KUBECONFIG: dead})
        expect(r.stderr).toContain('cannot reach the Kubernetes API server https://127.0.0.1:1')
        expect(r.stderr).toContain('pod "x"')
        expect(r.code).toBe(1)
      })
    })

    it('--containerd-namespace names the local containerd\'s namespace; -n alone warns that it has no effect', async () => {
      let r = await sideload(['push', '--containerd-namespace', 'other', 'app:1', '--host', 'root@127.0.0.1:1', '--containerd-address', DEAD_SOCKET])
      expect(r.stderr).toContain('cannot read app:1 from the local containerd')
      r = await sideload(['push', '-n', 'other', 'app:1', '--host', 'root@127.0.0.1:1', '--containerd-address', DEAD_SOCKET])
      expect(r.stderr).toContain('-n/--namespace is the Kubernetes namespace of --pod and of the pods --restart restarts, not the local containerd\'s')
      expect(r.stderr).toContain('--containerd-namespace')
    })
  })

  describe('build', () => {
    const builder = ['--builder', 'buildkit', '--buildkit-host', DEAD_SOCKET]

    it('the context after -t, --build-arg, --label, --secret, --platform is the context', async () => {
      for (const [what, r] of await sideloadEach([
        ['build', '--builder', 'docker', '--docker-host', DEAD_SOCKET, '-t', 'app:1', '--build-arg', 'GREETING=hi', ctx],
        ['build', ...builder, '--build-arg', 'A=B', '-t', 'x:1', ctx],
        ['build', ...builder, '-t', 'x:1', '-t', 'x:latest', ctx, '--build-arg', 'A=B'],
        ['build', ...builder, '--label', 'a=b', ctx],
        ['build', ...builder, '--secret', 'id=s,env=S', ctx],
        ['build', ...builder, '--platform', 'linux/amd64,linux/arm64', ctx],
        ['build', ...builder, '--platform', 'linux/amd64', '--platform', 'linux/arm64', ctx, '-t', 'x:1'],
        ['build', ctx, '-t', 'x:1', '--build-arg', 'A=B', ...builder],
      ])) {
        expect(r.stderr, what).toContain(`Dockerfile ${path.join(ctx, 'Dockerfile')} not found`)
        expect(r.code, what).toBe(1)
      }
    })

    it('a missing Dockerfile or context says what to pass; a malformed --build-arg or --output is a usage mistake (exit 2)', async () => {
      const [[, noFile], [, noCtx], [, arg], [, out]] = await sideloadEach([
        ['build', ...builder, '-t', 'x:1', ctx],
        ['build', ...builder, '-t', 'x:1', path.join(tmp, 'no-such-context')],
        ['build', ...builder, '-t', 'x:1', '--build-arg', 'SIDELOAD_SURELY_UNSET_VAR', ctx],
        ['build', ...builder, '-t', 'x:1', '--output', 'zip:app.zip', ctx],
      ])
      expect(noFile.stderr).toMatch(/Dockerfile \S+ not found; hint: name the Dockerfile with -f FILE/)
      expect(noFile.code).toBe(1)
      expect(noCtx.stderr).toMatch(/build context \S+no-such-context not found; hint: give the directory to build from as the argument/)
      expect(noCtx.code).toBe(1)
      expect(arg.stderr).toMatch(/--build-arg SIDELOAD_SURELY_UNSET_VAR: expected KEY=VALUE; hint: write it as --build-arg KEY=VALUE/)
      expect(arg.code).toBe(2)
      expect(out.stderr).toMatch(/--output zip:app.zip: expected oci:FILE, docker:FILE or tar:FILE; hint: e\.g\. --output oci:app\.tar/)
      expect(out.code).toBe(2)
    })
  })

  describe('build-and-push', () => {
    it('the context after --build-arg, --secret and --ssh-key is the context', async () => {
      for (const [what, r] of await sideloadEach([
        ['build-and-push', '--build-arg', 'A=B', ctx, '--host', 'root@127.0.0.1:1', '-t', 'x:1'],
        ['build-and-push', '--secret', 'id=s,env=S', ctx, '--host', 'root@127.0.0.1:1', '-t', 'x:1'],
        ['build-and-push', '--ssh-key', '/nonexistent/key', ctx, '-H', 'root@127.0.0.1:1', '-t', 'x:1'],
        ['build-and-push', ctx, '--host', 'root@127.0.0.1:1', '-t', 'x:1', '--build-arg', 'A=B'],
      ], ['--builder', 'buildkit', '--buildkit-host', DEAD_SOCKET])) {
        expect(r.stderr, what).toContain(`Dockerfile ${path.join(ctx, 'Dockerfile')} not found`)
        expect(r.code, what).toBe(1)
      }
    })
  })

  describe('commands without positional arguments', () => {
    it('doctor: a word after --host is an unexpected argument, not a second host', async () => {
      const r = await sideload(['doctor', '--host', 'root@127.0.0.1:1', 'stray'])
      expect(r.stderr).toContain('Unexpected argument: stray')
      expect(r.code).toBe(2)
    })

    it('fix: a word after --ssh-key is an unexpected argument, not a second key', async () => {
      const r = await sideload(['fix', '--ssh-key', '/nonexistent/key', 'stray'])
      expect(r.stderr).toContain('Unexpected argument: stray')
      expect(r.code).toBe(2)
    })
  })
})

describe('-n/--namespace is the Kubernetes namespace in every command', () => {
  const api = new FakeApi()
  beforeAll(() => api.start(tmp))
  afterAll(() => api.stop())

  it('expose, before and after the pod', async () => {
    for (const args of [['expose', '-n', 'foo', 'web-0', '--port', '80'], ['expose', 'web-0', '--port', '80', '--namespace', 'foo']]) {
      const r = await sideload([...args, '--kubeconfig', api.kubeconfig])
      expect(api.take(), args.join(' ')).toEqual(['GET /api/v1/namespaces/foo/pods/web-0'])
      expect(r.code).toBe(1)
    }
  })

  it('fix', async () => {
    for (const args of [['fix', '-n', 'foo'], ['fix', '--namespace', 'foo']]) {
      await sideload([...args, '--kubeconfig', api.kubeconfig])
      expect(api.take(), args.join(' ')).toContain('GET /api/v1/namespaces/foo/pods')
    }
  })

  it('build-and-push', async () => {
    const r = await sideload(['build-and-push', ctx, '--pod', 'web-0', '-n', 'foo', '--kubeconfig', api.kubeconfig, '--builder', 'buildkit', '--buildkit-host', DEAD_SOCKET])
    expect(api.take()[0]).toBe('GET /api/v1/namespaces/foo/pods/web-0')
    expect(r.code).toBe(1)
  })
})

describe('did you mean', () => {
  it('a mistyped flag: one line naming the nearest flag, exit code 2, no help page', async () => {
    const r = await sideload(['push', '--nodes', 'x', 'app:1'])
    expect(r.stderr).toContain('unknown flag --nodes (did you mean --node?); see sideload push --help')
    expect(r.rawStderr.trim().split('\n')).toHaveLength(1)
    expect(r.code).toBe(2)

    const b = await sideload(['build', '--build-args', 'A=B', ctx])
    expect(b.stderr).toContain('unknown flag --build-args (did you mean --build-arg?)')
    expect(b.code).toBe(2)
  })

  it('an unknown flag with nothing near it: named, without a guess', async () => {
    const r = await sideload(['fix', '--frobnicate'])
    expect(r.stderr).toContain('unknown flag --frobnicate; see sideload fix --help')
    expect(r.code).toBe(2)
  })

  it('a mistyped command: the nearest command', async () => {
    const r = await sideload(['pushh', 'app:1', '--host', 'root@127.0.0.1:1'])
    expect(r.stderr).toContain('unknown command pushh (did you mean push?); see sideload --help')
    expect(r.code).toBe(2)
    const far = await sideload(['xyzzy'])
    expect(far.stderr).toContain('unknown command xyzzy; see sideload --help')
    expect(far.code).toBe(2)
  })
})
