import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {GO_MODE, cleanPath, globToRegExp, goFileMode, walkDir} from '../../src/buildkit/fswalk.js'

let root: string

function write(rel: string, content = rel): void {
  fs.mkdirSync(path.dirname(path.join(root, rel)), {recursive: true})
  fs.writeFileSync(path.join(root, rel), content)
}

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'sl-fswalk-'))
  for (const f of ['a.txt', 'a/x', 'a-b', 'a.dir/y', 'B', 'b/deep/er/file', 'logs/1.log', 'logs/keep/2.log', 'node_modules/m/i.js', 'src/node_modules/n.js', 'Dockerfile']) write(f)
  fs.symlinkSync('a.txt', path.join(root, 'link'))
  fs.symlinkSync('b/deep', path.join(root, 'deeplink'))
  fs.linkSync(path.join(root, 'a.txt'), path.join(root, 'z-hard'))
  fs.chmodSync(path.join(root, 'B'), 0o4755)
})

afterAll(() => fs.rmSync(root, {recursive: true, force: true}))

describe('walkDir (fsutil sender listing)', () => {
  it('lists depth-first with siblings in byte order, a directory before its children (fsutil Validator order)', async () => {
    const paths = (await walkDir(root)).map((e) => e.path)
    expect(paths).toEqual([
      'B',
      'Dockerfile',
      'a',
      'a/x',
      'a-b',
      'a.dir',
      'a.dir/y',
      'a.txt',
      'b',
      'b/deep',
      'b/deep/er',
      'b/deep/er/file',
      'deeplink',
      'link',
      'logs',
      'logs/1.log',
      'logs/keep',
      'logs/keep/2.log',
      'node_modules',
      'node_modules/m',
      'node_modules/m/i.js',
      'src',
      'src/node_modules',
      'src/node_modules/n.js',
      'z-hard',
    ])
  })

  it('sends Go FileMode bits, exact nanosecond mtimes, symlink targets and hard links as links to the first path', async () => {
    const entries = new Map((await walkDir(root)).map((e) => [e.path, e]))
    const st = fs.lstatSync(path.join(root, 'a.txt'), {bigint: true})
    expect(entries.get('a.txt')).toMatchObject({mode: 0o644, size: '5', modTime: st.mtimeNs.toString(), linkname: '', isRegular: true})
    expect(entries.get('a')?.mode).toBe(GO_MODE.dir + 0o755)
    expect(entries.get('a')?.size).toBe('0')
    expect(entries.get('B')?.mode).toBe(GO_MODE.setuid + 0o755)
    expect(entries.get('link')).toMatchObject({mode: GO_MODE.symlink + 0o777, linkname: 'a.txt', size: '0', isRegular: false})
    expect(entries.get('z-hard')).toMatchObject({linkname: 'a.txt', size: '0'})
    expect(goFileMode(0o140755)).toBe(GO_MODE.socket + 0o755)
    expect(goFileMode(0o020600)).toBe(GO_MODE.device + GO_MODE.charDevice + 0o600)
  })

  it('applies .dockerignore exclusions with ! exceptions and **, descending only where an exception lies below', async () => {
    const paths = (await walkDir(root, {excludePatterns: ['logs', '!logs/keep/2.log', '**/node_modules', 'a*', '!a.txt']})).map((e) => e.path)
    expect(paths).toEqual(['B', 'Dockerfile', 'a.txt', 'b', 'b/deep', 'b/deep/er', 'b/deep/er/file', 'deeplink', 'link', 'logs', 'logs/keep', 'logs/keep/2.log', 'src', 'z-hard'])
  })

  it('include patterns match path prefixes, so parents come along; followpaths add symlink targets', async () => {
    const paths = (await walkDir(root, {includePatterns: ['b/deep/er/file', 'a.*']})).map((e) => e.path)
    expect(paths).toEqual(['a.dir', 'a.dir/y', 'a.txt', 'b', 'b/deep', 'b/deep/er', 'b/deep/er/file'])
    const followed = (await walkDir(root, {followPaths: ['link', 'Dockerfile.dockerignore']})).map((e) => e.path)
    expect(followed).toEqual(['a.txt', 'link'])
    const dir = (await walkDir(root, {followPaths: ['deeplink']})).map((e) => e.path)
    expect(dir).toEqual(['b', 'b/deep', 'b/deep/er', 'b/deep/er/file', 'deeplink'])
  })

  it('Go path helpers: Clean and filepath.Match', () => {
    expect(cleanPath('./a//b/../c/')).toBe('a/c')
    expect(cleanPath('/x/../y')).toBe('/y')
    expect(cleanPath('')).toBe('.')
    expect(globToRegExp('*.md').test('a.md')).toBe(true)
    expect(globToRegExp('*.md').test('d/a.md')).toBe(false)
    expect(globToRegExp('file[0-9]').test('file7')).toBe(true)
    expect(globToRegExp('file[^0-9]').test('file7')).toBe(false)
    expect(globToRegExp('a\\*b').test('a*b')).toBe(true)
    expect(globToRegExp('a+b(c)').test('a+b(c)')).toBe(true)
  })
})
