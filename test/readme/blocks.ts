// What the README tests read of it: the commands of a section's first ```sh block.

/** The lines of the first ```sh block after `heading` in README.md, comments dropped. */
export function readmeBlock(readme: string, heading: string): string[] {
  const at = readme.indexOf(`\n${heading}\n`)
  if (at < 0) throw new Error(`README.md has no heading "${heading}"`)
  const m = /```sh\n([\s\S]*?)```/.exec(readme.slice(at))
  if (!m) throw new Error(`no sh block after "${heading}"`)
  return m[1].split('\n').map((l) => l.replace(/\s+#.*$/, '').trim()).filter(Boolean)
}
