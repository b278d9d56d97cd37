// ProxyCommand, run like ssh runs it: its stdio carries the SSH stream.
import {type ChildProcess, spawn} from 'node:child_process'
import {Duplex} from 'node:stream'
import {SshError} from './errors.js'
import {describeTarget, type ResolvedTarget} from './target.js'

export interface ProxyProcess {
  child: ChildProcess
  stream: Duplex
  /** Rewrite a handshake failure with what the proxy command said on stderr. */
  explain(err: SshError): SshError
}

/** Run ProxyCommand like ssh: `/bin/sh -c <command>` with %h %p %r %n %% expanded; its stdio carries the SSH stream. */
export function startProxyCommand(target: ResolvedTarget): ProxyProcess {
  const tokens: Record<string, string> = {h: target.host, p: String(target.port), r: target.user, n: target.alias, '%': '%'}
  // host, user and alias passed parseTarget's character checks, so they are shell-safe words
  const command = (target.proxyCommand ?? '').replace(/%(.)/g, (whole, c: string) => tokens[c] ?? whole).replace(/^exec\s+/, '')
  const child = spawn('/bin/sh', ['-c', `exec ${command}`], {stdio: ['pipe', 'pipe', 'pipe']})
  let stderr = ''
  child.stderr.on('data', (b: Buffer) => {
    stderr = (stderr + b.toString('utf8')).slice(-2000)
  })
  child.on('error', () => undefined) // reported through the closed stream
  const stream = Duplex.from({readable: child.stdout, writable: child.stdin})
  return {
    child,
    stream,
    explain: (err) =>
      new SshError('unreachable', `ProxyCommand for ${describeTarget(target)} failed (${command}): ${stderr.trim() || err.message}`, {
        hint: 'run the ProxyCommand from your ssh config by hand to see why it fails',
        target: target.alias,
        cause: err,
      }),
  }
}
