// A build context on disk for the build tests: files by relative path under work/name.
import * as fs from 'node:fs'
import * as path from 'node:path'

export function writeContext(work: string, name: string, files: Record<string, string>): string {
  const dir = path.join(work, name)
  for (const [rel, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), {recursive: true})
    fs.writeFileSync(path.join(dir, rel), content)
  }
  return dir
}
