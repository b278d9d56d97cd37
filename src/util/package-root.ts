import * as fs from 'node:fs'
import * as path from 'node:path'
import {fileURLToPath} from 'node:url'

/**
 * sideload's own directory (package.json, proto/, dist/), found upward from this module: it runs
 * from src/ under tsx and vitest, from dist/, and from a chunk of the bundle (dist/bundle/).
 */
export const PACKAGE_ROOT = packageRoot(path.dirname(fileURLToPath(import.meta.url)))

function packageRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'proto', 'containerd')) && fs.existsSync(path.join(dir, 'package.json'))) return dir
    if (dir === path.dirname(dir)) throw new Error(`sideload's own directory (with proto/) is not above ${from}: the installation is incomplete`)
  }
}
