import {Command, Errors} from '@oclif/core'
import {type ErrorInfo, errorInfo, errorJson, renderError} from './errors.js'
import {withFlagSuggestion} from './suggest.js'

/** A mistake on the command line (exit 2): what is wrong, and how to write it. */
export class UsageError extends Error {
  override name = 'UsageError'
  readonly reason = 'usage'
  constructor(message: string, readonly hint?: string) {
    super(message)
  }
}

/**
 * What every command shares: exit codes (0 done, 1 failed, 2 a usage mistake, 130 stopped by Ctrl-C,
 * 143 by SIGTERM: 128 + the signal, as a shell shows it), one way to print an error (ui/errors.ts: a line on stderr, or with --json the result line
 * on stdout), and SIGINT/SIGTERM.
 *
 * A command that passes `this.signal` on stops its own way at the first signal (cleanup, its result)
 * and exits 130 (143) when its run then throws; a command that never reads it, or a second signal, ends at once.
 * (It lives here, not in commands/: oclif takes every class with a `run` in that folder for a command.)
 */
export abstract class SideloadCommand extends Command {
  private readonly stopping = new AbortController()
  private signalTaken = false
  private stoppedBy: NodeJS.Signals | undefined

  private readonly onSignal = (sig: NodeJS.Signals): void => {
    const again = this.stoppedBy !== undefined
    this.stoppedBy = sig
    if (this.signalTaken && !again) {
      this.stopping.abort()
      return
    }
    this.report(this.cancelled(), '')
    process.exit(this.stoppedExitCode())
  }

  /** 128 + the signal's number, as a shell reports a process the signal ended: 130 for Ctrl-C, 143 for SIGTERM. */
  private stoppedExitCode(): number {
    return this.stoppedBy === 'SIGTERM' ? 143 : 130
  }

  /** Aborted by the first Ctrl-C / SIGTERM. */
  protected get signal(): AbortSignal {
    this.signalTaken = true
    return this.stopping.signal
  }

  /** The signal that stopped the command, if one came. */
  protected get stopped(): NodeJS.Signals | undefined {
    return this.stoppedBy
  }

  /** --json (where the command has it): errors and Ctrl-C end in a result line on stdout, nothing on stderr. */
  protected get jsonOutput(): boolean {
    if (!('json' in (this.ctor.flags ?? {}))) return false
    const end = this.argv.indexOf('--')
    return this.argv.slice(0, end === -1 ? undefined : end).includes('--json')
  }

  /** What a stopped run says (stderr, or the `error` of its result line); commands say what they left behind. */
  protected cancelledMessage(): string {
    return `${this.id ?? 'command'} cancelled`
  }

  /** How this command's errors read; `build` adds the failed step's log. */
  protected describe(err: unknown): ErrorInfo {
    return errorInfo(err)
  }

  /** Print an error the one way: with --json the result line (`{type: 'result', ok: false, error, …}`), else stderr. */
  protected report(info: ErrorInfo, label = 'error'): void {
    if (this.jsonOutput) {
      const signal = this.stoppedBy ? {signal: this.stoppedBy} : {}
      process.stdout.write(JSON.stringify({type: 'result', ok: false, ...errorJson(info), ...signal}) + '\n')
    } else {
      process.stderr.write(renderError(info, label) + '\n')
    }
  }

  /** After a run that handled the signal and printed its (partial) result: stderr says so, exit 130 (143 for SIGTERM). */
  protected exitIfStopped(): void {
    if (!this.stoppedBy) return
    if (!this.jsonOutput) process.stderr.write(this.cancelledMessage() + '\n')
    this.exit(this.stoppedExitCode())
  }

  private cancelled(): ErrorInfo {
    return {message: this.cancelledMessage(), reason: 'cancelled'}
  }

  protected override async init(): Promise<void> {
    await super.init()
    process.on('SIGINT', this.onSignal)
    process.on('SIGTERM', this.onSignal)
  }

  protected override async catch(err: Error & {exitCode?: number}): Promise<unknown> {
    if (err instanceof Errors.ExitError) throw err
    if (this.stoppedBy) {
      this.report(this.cancelled(), '')
      throw new Errors.ExitError(this.stoppedExitCode())
    }
    const e = withFlagSuggestion(err, this)
    this.report(this.describe(e))
    throw new Errors.ExitError(e instanceof UsageError ? 2 : e instanceof Errors.CLIError ? (e.oclif?.exit ?? 2) : 1)
  }

  protected override async finally(err: Error | undefined): Promise<unknown> {
    process.off('SIGINT', this.onSignal)
    process.off('SIGTERM', this.onSignal)
    return super.finally(err)
  }
}
