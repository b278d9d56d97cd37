// The few TOML forms containerd's config.toml and hosts.toml use: [tables] with dotted, quoted
// names, `key = value` lines with strings, booleans, numbers and string arrays. Anything else
// (inline tables, multi-line strings) is skipped, not refused: doctor reads, it does not validate.

export type TomlValue = string | boolean | number | string[]

/** Every key of the file under its full path (table names, then the key's own dotted parts). */
export interface TomlEntries {
  get(path: readonly string[]): TomlValue | undefined
  /** The tables' names (full paths) in file order. */
  tables: string[][]
}

const SEP = '\u0000'

export function readToml(text: string): TomlEntries {
  const values = new Map<string, TomlValue>()
  const tables: string[][] = []
  let table: string[] = []
  const lines = text.split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    let line = stripComment(lines[i]).trim()
    if (!line) continue
    const header = /^\[\[?(.*?)\]\]?$/.exec(line)
    if (header) {
      table = splitKey(header[1])
      tables.push(table)
      continue
    }
    const eq = indexOutsideQuotes(line, '=')
    if (eq < 0) continue
    // an array that goes on over several lines
    while (line.slice(eq + 1).trim().startsWith('[') && !balanced(line.slice(eq + 1)) && i + 1 < lines.length) line += ` ${stripComment(lines[++i]).trim()}`
    const value = parseValue(line.slice(eq + 1).trim())
    if (value !== undefined) values.set([...table, ...splitKey(line.slice(0, eq))].join(SEP), value)
  }
  return {get: (p) => values.get(p.join(SEP)), tables}
}

function indexOutsideQuotes(s: string, ch: string): number {
  let quote = ''
  for (let i = 0; i < s.length; i++) {
    const c = s[i]
    if (quote) {
      if (c === '\\' && quote === '"') i++
      else if (c === quote) quote = ''
    } else if (c === '"' || c === "'") quote = c
    else if (c === ch) return i
  }
  return -1
}

function stripComment(line: string): string {
  const at = indexOutsideQuotes(line, '#')
  return at < 0 ? line : line.slice(0, at)
}

function balanced(s: string): boolean {
  return indexOutsideQuotes(s, ']') >= 0
}

/** `plugins.'io.containerd.cri.v1.images'.registry` → [plugins, io.containerd.cri.v1.images, registry]. */
function splitKey(key: string): string[] {
  const parts: string[] = []
  let rest = key.trim()
  while (rest) {
    let part: string
    if (rest[0] === '"' || rest[0] === "'") {
      const end = rest.indexOf(rest[0], 1)
      part = rest.slice(1, end < 0 ? undefined : end)
      rest = end < 0 ? '' : rest.slice(end + 1)
    } else {
      const dot = rest.indexOf('.')
      part = (dot < 0 ? rest : rest.slice(0, dot)).trim()
      rest = dot < 0 ? '' : rest.slice(dot)
    }
    parts.push(part)
    rest = rest.trim().replace(/^\./, '').trim()
  }
  return parts
}

function parseValue(v: string): TomlValue | undefined {
  if (v === 'true' || v === 'false') return v === 'true'
  if (v.startsWith('"') || v.startsWith("'")) return unquote(v)
  if (v.startsWith('[')) {
    const inner = v.slice(1, v.lastIndexOf(']') < 0 ? undefined : v.lastIndexOf(']'))
    const items: string[] = []
    for (const m of inner.matchAll(/"((?:[^"\\]|\\.)*)"|'([^']*)'/g)) items.push(m[1] ?? m[2])
    return items
  }
  const n = Number(v.replace(/_/g, ''))
  return Number.isFinite(n) && v !== '' ? n : undefined
}

function unquote(v: string): string {
  if (v[0] === "'") return /^'([^']*)/.exec(v)?.[1] ?? ''
  return (/^"((?:[^"\\]|\\.)*)/.exec(v)?.[1] ?? '').replace(/\\(["\\])/g, '$1')
}
