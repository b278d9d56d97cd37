// The shape of src/ that the design promises (README, Design): no import cycles (madge, as
// `npx madge --circular --extensions ts --ts-config tsconfig.json src` reports them), and the
// layers only point down: commands → ops → nodes → containerd/buildkit/kube → ssh/grpc/image.
import * as fs from 'node:fs'
import * as path from 'node:path'
import madge from 'madge'
import {describe, expect, it} from 'vitest'

const ROOT = path.resolve(import.meta.dirname, '..', '..')

describe('the structure of src/', () => {
  it('has no import cycle', async () => {
    const graph = await madge(path.join(ROOT, 'src'), {fileExtensions: ['ts'], tsConfig: path.join(ROOT, 'tsconfig.json')})
    expect(Object.keys(graph.obj()).length).toBeGreaterThan(50)
    expect(graph.circular()).toEqual([])
  })

  it('imports only downwards between layers', async () => {
    const graph = await madge(path.join(ROOT, 'src'), {fileExtensions: ['ts'], tsConfig: path.join(ROOT, 'tsconfig.json')})
    // a folder may import from its own layer or any below it
    const layer: Record<string, number> = {
      commands: 6, hooks: 6, cli: 6, ops: 5, sources: 4, nodes: 4, containerd: 3, buildkit: 3, kube: 3,
      ssh: 2, grpc: 2, docker: 2, image: 2, ui: 1, config: 1, util: 0,
    }
    // cli/: the commands' shared flags (oclif takes every file under commands/ for a command)
    const top = (file: string): string => file.split('/')[0]
    const upward: string[] = []
    for (const [from, tos] of Object.entries(graph.obj())) {
      for (const to of tos) {
        const [a, b] = [top(from), top(to)]
        if (a === b || !(a in layer) || !(b in layer)) continue
        if (layer[b] > layer[a]) upward.push(`${from} → ${to}`)
      }
    }
    expect(upward).toEqual([])
  })

  it('no error message of src/ begins with its node: the caller names the node once, as the renderer prints it', () => {
    // `node X: what failed` (the form the renderer would have to strip), in an error or a message field
    const begins = /(?:Error\(|message:).*(?:`|')node \$\{[^}]+\}: /
    const offenders: string[] = []
    for (const file of fs.readdirSync(path.join(ROOT, 'src'), {recursive: true}) as string[]) {
      if (!file.endsWith('.ts') || file.startsWith('grpc/generated')) continue
      fs.readFileSync(path.join(ROOT, 'src', file), 'utf8').split('\n').forEach((line, i) => {
        if (begins.test(line)) offenders.push(`src/${file}:${i + 1}: ${line.trim()}`)
      })
    }
    expect(offenders).toEqual([])
  })

  it('every folder of src/ has its place in the layers', () => {
    const folders = fs.readdirSync(path.join(ROOT, 'src'), {withFileTypes: true}).filter(d => d.isDirectory()).map(d => d.name).sort()
    expect(folders).toEqual(['buildkit', 'cli', 'commands', 'config', 'containerd', 'docker', 'grpc', 'hooks', 'image', 'kube', 'nodes', 'ops', 'sources', 'ssh', 'ui', 'util'])
  })
})
