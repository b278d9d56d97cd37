// A command running on a node over one SSH session channel: its exit, its stdin, and how it is
// ended (signals, or EOF first so it can clean up after itself). Session channels are counted,
// since sshd limits them per connection.
import type {Readable} from 'node:stream'
import type {ClientChannel} from 'ssh2'
import {SshError} from './errors.js'
import {describeTarget, type ResolvedTarget} from './target.js'
import type {ExecOptions, RemoteExit, RemoteProcess} from './types.js'

/** A little counting semaphore for session channels. */
export class Slots {
  private free: number
  private waiting: Array<() => void> = []
  constructor(n: number) {
    this.free = n
  }
  async acquire(): Promise<() => void> {
    if (this.free > 0) this.free--
    else await new Promise<void>((resolve) => this.waiting.push(resolve))
    let released = false
    return () => {
      if (released) return
      released = true
      const next = this.waiting.shift()
      if (next) next()
      else this.free++
    }
  }
}

/** Feeds the command's stdin from `input` (see ExecOptions), ending the channel's write side when done. */
function feedStdin(channel: ClientChannel, input: ExecOptions['stdin'], onError: (err: Error) => void): void {
  if (input === 'pipe') return // the caller writes and ends the channel itself
  if (input === undefined) {
    channel.end()
  } else if (typeof input === 'string' || Buffer.isBuffer(input)) {
    channel.end(input)
  } else {
    const source: Readable = input
    source.on('error', (err: Error) => {
      onError(err)
      channel.close()
    })
    source.pipe(channel)
    // the command may exit without reading everything: stop the source (as pipeline() would)
    channel.once('close', () => {
      source.unpipe(channel)
      if (!source.readableEnded) source.destroy()
    })
  }
}

/**
 * The RemoteProcess of `argv` on `channel`. `exitOf()` returns the exit status the channel reported
 * (listened for from the moment it opened); `release` frees its session slot when it closes.
 */
export function remoteProcess(channel: ClientChannel, argv: readonly string[], target: ResolvedTarget, opts: ExecOptions,
  exitOf: () => RemoteExit | undefined, release: () => void): RemoteProcess {
  let stdinError: Error | undefined
  const done = new Promise<RemoteExit>((resolve, reject) => {
    channel.on('close', () => {
      release()
      const exit = exitOf()
      if (stdinError) {
        reject(
          new SshError('channel', `sending stdin to ${argv[0]} on ${describeTarget(target)} failed: ${stdinError.message}`, {
            target: target.alias,
            cause: stdinError,
          }),
        )
      } else if (exit) resolve(exit)
      else {
        reject(
          new SshError('closed', `${argv[0]} on ${describeTarget(target)} ended without an exit status (connection lost?)`, {
            hint: 'retry; if it keeps happening, check the node',
            target: target.alias,
          }),
        )
      }
    })
  })
  done.catch(() => undefined) // observed via wait()
  channel.on('error', (err: Error) => (stdinError ??= err))
  feedStdin(channel, opts.stdin, (err) => (stdinError ??= err))

  return {
    stdout: channel,
    stderr: channel.stderr,
    stdin: channel,
    wait: () => done,
    kill: (signal = 'TERM') => {
      try {
        channel.signal(signal)
      } finally {
        channel.close()
      }
    },
    stop: async (graceMs = 10_000) => {
      const ended = done.then(() => true, () => true)
      const within = (ms: number): Promise<boolean> => Promise.race([ended, new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())])
      if (!channel.writableEnded) channel.end()
      if (await within(graceMs)) return
      for (const signal of ['TERM', 'KILL'] as const) {
        try {
          channel.signal(signal)
        } catch {
          // the connection is gone: so is the command's session
        }
        if (await within(3000)) return
      }
      channel.close()
      await within(3000)
    },
  }
}
