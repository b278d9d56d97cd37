/**
 * An error as every command shows it: what failed (`message`), about which node, pod, file or image
 * (`subject`, named once), what to do (`hint`), and a code for programs (`reason`; never match the text).
 */
export interface ErrorInfo {
  message: string
  subject?: string
  hint?: string
  reason?: string
}

interface ErrorFields {
  message?: unknown
  subject?: unknown
  hint?: unknown
  reason?: unknown
  code?: unknown
}

const text = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined)

/**
 * The fields of any thrown value. `subject` is the caller's (which node, pod, file) and wins over the
 * error's own. Messages from before errors carried their hint apart (`…\n  hint: …`, `…. Hint: …`) are
 * split, and a `node X: ` / `X: ` the callee put in front of its message goes, so nothing is said twice.
 */
export function errorInfo(err: unknown, subject?: string): ErrorInfo {
  const e = (typeof err === 'object' && err !== null ? err : {}) as ErrorFields
  let message = text(e.message) ?? String(err)
  let hint = text(e.hint)
  if (hint) for (const form of [`\n  hint: ${hint}`, ` Hint: ${hint}`]) message = message.replace(form, '')
  const inline = /\n\s*hint:\s*|\.?\s+Hint:\s*/.exec(message)
  if (inline) {
    const rest = message.slice(inline.index + inline[0].length).split(/\n\s*hint:\s*|\.?\s+Hint:\s*/).map((h) => h.replace(/[\s.]+$/, '').trim()).filter(Boolean)
    message = message.slice(0, inline.index)
    hint = [...rest, ...(hint ? [hint] : [])].join('; ') || undefined
  }
  message = message.replace(/[\s.]+$/, '')
  const about = subject ?? text(e.subject)
  if (about) {
    for (const prefix of [`node ${about}: `, `${about}: `]) if (message.startsWith(prefix)) message = message.slice(prefix.length)
  }
  const reason = text(e.reason) ?? text(e.code)
  return {message, ...(about ? {subject: about} : {}), ...(hint ? {hint} : {}), ...(reason ? {reason} : {})}
}

/** Whether `message` already names `subject` (as a whole word, not inside a longer name). */
function names(message: string, subject: string): boolean {
  const at = message.indexOf(subject)
  if (at < 0) return false
  const edge = /[\w.@/-]/
  return !edge.test(message[at - 1] ?? ' ') && !edge.test(message[at + subject.length] ?? ' ')
}

/**
 * The one text form of an error: `SUBJECT: LABEL: message; hint: …`. The subject is left out when the
 * message already names it; `label` is `error` for a final report, `FAILED` on a progress line, '' in a
 * table cell. One line (people grep for it), unless the message has several lines or `layout` is
 * `block` (doctor's table): then the hint goes on a line of its own.
 */
export function renderError(info: ErrorInfo, label = 'error', layout: 'line' | 'block' = 'line'): string {
  const subject = info.subject && !names(info.message, info.subject) ? `${info.subject}: ` : ''
  const head = `${subject}${label ? `${label}: ` : ''}${info.message}`
  if (!info.hint) return head
  if (layout === 'block') return `${head}\n  hint: ${info.hint}`
  return info.message.includes('\n') ? `${head}\nhint: ${info.hint}` : `${head}; hint: ${info.hint}`
}

/** The same for --json: `{error, subject?, hint?, reason?}`, spread into a result line or a node's result. */
export function errorJson(info: ErrorInfo): {error: string; subject?: string; hint?: string; reason?: string} {
  return {error: info.message, ...(info.subject ? {subject: info.subject} : {}), ...(info.hint ? {hint: info.hint} : {}), ...(info.reason ? {reason: info.reason} : {})}
}
