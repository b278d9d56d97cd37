import {Errors} from '@oclif/core'

/** Edit distance: insertions, deletions, substitutions and swaps of two neighbours count one each. */
export function editDistance(a: string, b: string): number {
  // optimal string alignment: rows i-2, i-1 and i of the Levenshtein table
  let before: number[] = []
  let prev = Array.from({length: b.length + 1}, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j], before[j - 2] + 1)
    }
    before = prev
    prev = row
  }
  return prev[b.length]
}

/**
 * The candidate the user probably meant by `input`: the nearest by edit distance when it is at most
 * 2 edits away (a third of the word for long ones), else the only candidate that starts with it.
 */
export function closest(input: string, candidates: Iterable<string>): string | undefined {
  const all = [...new Set(candidates)].filter((c) => c !== input)
  let best: string | undefined
  let bestDistance = Math.max(2, Math.floor(input.length / 3)) + 1
  for (const c of all) {
    const d = editDistance(input, c)
    if (d < bestDistance) [best, bestDistance] = [c, d]
  }
  if (best !== undefined) return best
  const prefixed = input.length >= 2 ? all.filter((c) => c.startsWith(input)) : []
  return prefixed.length === 1 ? prefixed[0] : undefined
}

interface FlagDefinition {
  name?: string
  type?: string
  hidden?: boolean
  allowNo?: boolean
}

/** What oclif's NonExistentFlagsError carries (the class itself is not exported). */
interface UnknownFlagsParse {
  input?: {flags?: Record<string, FlagDefinition>}
  output?: {nonExistentFlags?: string[]}
}

/**
 * oclif answers an unknown flag with the command's whole help page. This turns that error into one
 * line naming the nearest flag, like `unknown flag --nodes (did you mean --node?); see sideload push --help`,
 * exit code 2. Any other error is returned as it is.
 */
export function withFlagSuggestion<E extends Error>(err: E, command: {id?: string; config: {bin: string}}): E | Errors.CLIError {
  const parse = (err as {parse?: UnknownFlagsParse}).parse
  const unknown = parse?.output?.nonExistentFlags
  if (!unknown?.length) return err
  const names = Object.entries(parse?.input?.flags ?? {})
    .filter(([, f]) => !f.hidden)
    .flatMap(([name, f]) => (f.type === 'boolean' && f.allowNo ? [name, `no-${name}`] : [name]))
  names.push('help')
  const described = unknown.map((flag) => {
    const typed = flag.split('=')[0]
    const near = typed.startsWith('--') ? closest(typed.slice(2), names) : undefined
    return near ? `${typed} (did you mean --${near}?)` : typed
  })
  const help = [command.config.bin, command.id, '--help'].filter(Boolean).join(' ')
  return new Errors.CLIError(`unknown flag${described.length > 1 ? 's' : ''} ${described.join(', ')}; see ${help}`, {exit: 2})
}
