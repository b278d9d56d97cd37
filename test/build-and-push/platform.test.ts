import {describe, expect, it} from 'vitest'
import {buildPlatforms} from '../../src/ops/build-and-push.js'

describe('build-and-push: which platform is built', () => {
  const amd64 = {os: 'linux', architecture: 'amd64'}
  it('the node\'s platform when it differs from this machine\'s, else the builder default, and --platform always wins', () => {
    expect(buildPlatforms(undefined, {os: 'linux', architecture: 'arm64', variant: 'v8'}, amd64)).toEqual(['linux/arm64/v8'])
    expect(buildPlatforms(undefined, amd64, amd64)).toBeUndefined()
    expect(buildPlatforms(undefined, undefined, amd64)).toBeUndefined()
    expect(buildPlatforms(['linux/amd64'], {os: 'linux', architecture: 'arm64'}, amd64)).toEqual(['linux/amd64'])
  })
})
