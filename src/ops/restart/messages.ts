import {renderError} from '../../ui/errors.js'
import {leftAlone} from './left-alone.js'
import type {RestartReport, StalePod} from './result.js'
import {restartTarget, ROLLOUT_KINDS} from './stale.js'

/** The command line that was run, again, with --restart: what restarts the pods it left on the old image. */
export function rerunWithRestart(id: string, argv: string[]): string {
  return ['sideload', id, ...argv.filter((a) => a !== '--no-restart').map(shellWord), '--restart'].join(' ')
}

/**
 * The warning after a push without --restart: which pods keep the old image, and the command that
 * restarts them (`rerun`: the same command with --restart; it finds the image up to date and restarts);
 * a Job's or static pod, which --restart leaves alone, with what restarts it instead.
 */
export function staleWarning(stale: StalePod[], rerun: string): string | undefined {
  const restartable = stale.filter((s) => !leftAlone(s))
  const said = stale.flatMap((s) => {
    const alone = leftAlone(s)
    return alone ? [`${s.namespace}/${s.pod} on ${s.node} still runs the old image of ${s.image}: ${alone.why} — ${alone.instead}`] : []
  })
  if (restartable.length > 0) said.unshift(restartableWarning(restartable, rerun))
  return said.length > 0 ? said.join('; ') : undefined
}

/** The pods --restart would restart, and the commands that do it. */
function restartableWarning(stale: StalePod[], rerun: string): string {
  const pods = stale.map((s) => `${s.namespace}/${s.pod} on ${s.node}${s.owner ? ` (${restartTarget(s)})` : ''}`)
  const owners = [...new Set(stale.filter((s) => s.owner && ROLLOUT_KINDS.has(s.owner.kind)).map((s) => `kubectl rollout restart ${restartTarget(s)} -n ${s.namespace}`))]
  const images = [...new Set(stale.map((s) => s.image))].join(', ')
  return `${stale.length === 1 ? 'pod' : 'pods'} ${pods.join(', ')} still ${stale.length === 1 ? 'runs' : 'run'} the old image of ${images}; ` +
    `restart ${stale.length === 1 ? 'it' : 'them'} with: ${rerun}${owners.length ? ` (or ${owners.join('; ')})` : ''}`
}

/** One line per restarted owner or bare pod, for people (stdout). */
export function describeRestart(report: RestartReport): string[] {
  return report.rows.map((r) => `restart ${r.namespace}/${r.target}: ${r.action}: ${r.result}`)
}

/** The failures, as every error is rendered (stderr): subject, message, hint. */
export function restartErrors(report: RestartReport): string[] {
  return report.rows.filter((r) => r.error).map((r) => renderError(r.error!))
}

export function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`
}
