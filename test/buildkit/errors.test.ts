import {describe, expect, it} from 'vitest'
import {locateStep, sourceFromStatusDetails} from '../../src/buildkit/errors.js'
import {parseOutput} from '../../src/commands/build.js'
import {parseSecrets} from '../../src/cli/flags.js'

function field(n: number, payload: Buffer | number): Buffer {
  if (typeof payload === 'number') return Buffer.from([n * 8, payload])
  return Buffer.concat([Buffer.from([n * 8 + 2, payload.length]), payload])
}

describe('Dockerfile location of a failed step', () => {
  it('decodes errdefs.Source from google.rpc.Status details (BuildKit ≥ v0.8 standalone)', () => {
    const dockerfile = 'FROM x\nRUN a\nRUN b && \\\n  c\n'
    const position = (line: number): Buffer => field(1, line)
    const range = Buffer.concat([field(1, position(3)), field(2, position(4))])
    const source = Buffer.concat([field(1, Buffer.concat([field(1, Buffer.from('Dockerfile')), field(2, Buffer.from(dockerfile))])), field(2, range)])
    const any = Buffer.concat([field(1, Buffer.from('github.com/moby/buildkit/solver/errdefs.Source')), field(2, source)])
    const otherAny = Buffer.concat([field(1, Buffer.from('type.googleapis.com/other')), field(2, Buffer.from('zz'))])
    const status = Buffer.concat([field(1, 2), field(2, Buffer.from('failed')), field(3, otherAny), field(3, any)])
    expect(sourceFromStatusDetails(status)).toEqual({filename: 'Dockerfile', lines: [3, 4], text: ['RUN b && \\', '  c']})
    expect(sourceFromStatusDetails(Buffer.concat([field(1, 2)]))).toBeUndefined()
  })

  it('finds the instruction by its vertex name when the daemon sends no location (dockerd 20.10)', () => {
    const dockerfile = '# syntax\nFROM base AS build\nrun   echo one\nRUN echo two \\\n    && false\nFROM build\nRUN echo one\n'
    expect(locateStep(dockerfile, 'Dockerfile', '[build 2/3] RUN echo two     && false')).toEqual({
      filename: 'Dockerfile',
      lines: [4, 5],
      text: ['RUN echo two \\', '    && false'],
    })
    expect(locateStep(dockerfile, 'Dockerfile', '[build 1/3] RUN echo one')?.lines).toEqual([3])
    expect(locateStep(dockerfile, 'Dockerfile', '[internal] load metadata')).toBeUndefined()
  })
})

describe('command flag parsing', () => {
  it('--output forms and --secret forms', () => {
    expect(parseOutput('oci:out.tar')).toEqual({type: 'oci', path: 'out.tar'})
    expect(parseOutput('type=docker,dest=/tmp/a.tar')).toEqual({type: 'docker', path: '/tmp/a.tar'})
    expect(() => parseOutput('registry:x')).toThrow(/oci:FILE/)
    expect(parseSecrets(['id=npmrc,src=/home/u/.npmrc', 'id=tok,env=TOKEN', 'id=GH'])).toEqual({
      npmrc: {file: '/home/u/.npmrc'},
      tok: {env: 'TOKEN'},
      GH: {env: 'GH'},
    })
    expect(() => parseSecrets(['src=/x'])).toThrow(/missing id/)
  })
})
