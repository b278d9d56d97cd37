import {Errors, type Hook, toConfiguredId} from '@oclif/core'
import {renderError} from '../ui/errors.js'
import {closest} from '../ui/suggest.js'

/** `sideload pushh` → `unknown command pushh (did you mean push?); see sideload --help`, exit code 2. */
const hook: Hook.CommandNotFound = async function (opts) {
  // With a space as topic separator oclif joins the words up to the first flag into the id
  // (`pushh app:1 --host x` → pushh:app:1): the unknown command is the first word after known topics.
  const words = opts.id.split(':')
  let known = 0
  while (known < words.length - 1 && opts.config.findTopic(words.slice(0, known + 1).join(':'))) known++
  const typed = words.slice(0, known + 1).join(':')
  const ids = opts.config.commands.filter((c) => !c.hidden).flatMap((c) => [c.id, ...c.aliases])
  const near = closest(typed, ids)
  const message = `unknown command ${toConfiguredId(typed, opts.config)}${near ? ` (did you mean ${toConfiguredId(near, opts.config)}?)` : ''}; see ${opts.config.bin} --help`
  // printed as every command prints its errors (ui/errors.ts), not in oclif's own style
  process.stderr.write(renderError({message, reason: 'usage'}) + '\n')
  throw new Errors.ExitError(2)
}

export default hook
