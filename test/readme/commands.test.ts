// Every `sideload …` command line the README shows in a ```sh block is one the CLI accepts: the
// command exists and its flags, their values and arguments parse (oclif's parser, with the
// command's own flag definitions). What needs a cluster or nodes is run for real elsewhere (the
// Sandbox and the story in readme.test.ts; each command's own suites).
import * as fs from 'node:fs'
import * as path from 'node:path'
import {Parser} from '@oclif/core'
import {describe, expect, it} from 'vitest'

const REPO = path.resolve(import.meta.dirname, '..', '..')

/** The command lines: `sideload` up to a comment, also after a pipe. */
function readmeCommands(): string[] {
  // the README and the developer pages it links (docs/)
  const pages = ['README.md', ...fs.readdirSync(path.join(REPO, 'docs')).filter((f) => f.endsWith('.md')).map((f) => path.join('docs', f))]
  const blocks = pages.flatMap((page) => [...fs.readFileSync(path.join(REPO, page), 'utf8').matchAll(/^```sh\n([\s\S]*?)^```/gm)].map((m) => m[1]))
  const lines = blocks.flatMap((b) => b.split('\n'))
  return lines.flatMap((line) => {
    const code = line.replace(/\s+#.*$/, '')
    const at = code.search(/(?:^|\|\s*)sideload\s/)
    if (at < 0 || code.trimStart().startsWith('#')) return []
    return [code.slice(code.indexOf('sideload', at)).trim()]
  })
}

/** Shell words: spaces split, single and double quotes group (no expansion is used in these lines). */
function words(line: string): string[] {
  return [...line.matchAll(/'([^']*)'|"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3])
}

describe('the README\'s command lines', () => {
  const commands = readmeCommands()
  it('finds them', () => {
    expect(commands.length).toBeGreaterThan(20)
    expect(commands).toContain('sideload push registry.lab/myapp:1.0 --all-nodes --p2p spegel --seeds 2')
  })

  it.each(commands)('%s', async (line) => {
    const [, id, ...argv] = words(line)
    const file = path.join(REPO, 'src', 'commands', `${id}.ts`)
    expect(fs.existsSync(file), `no command "${id}"`).toBe(true)
    const Cmd = (await import(file)).default
    await expect(Parser.parse(argv, {flags: Cmd.flags, args: Cmd.args, strict: Cmd.strict})).resolves.toBeDefined()
  })
})
