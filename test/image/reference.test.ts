import {describe, expect, it} from 'vitest'
import {chainIds, chooseManifest, familiarName, normalizeImageName, parsePlatform, parseReference, platformMatches, sha256Digest, type ImageIndex} from '../../src/image/index.js'

describe('image references, normalised like CRI', () => {
  it.each([
    ['nginx', 'docker.io/library/nginx:latest'],
    ['nginx:1.25', 'docker.io/library/nginx:1.25'],
    ['foo/bar:1', 'docker.io/foo/bar:1'],
    ['docker.io/foo/bar', 'docker.io/foo/bar:latest'],
    ['index.docker.io/library/nginx:1', 'docker.io/library/nginx:1'],
    ['localhost:5000/x', 'localhost:5000/x:latest'],
    ['localhost/x:2', 'localhost/x:2'],
    ['registry.example.com:443/team/app:v1.2', 'registry.example.com:443/team/app:v1.2'],
    ['ghcr.io/a/b/c:dev', 'ghcr.io/a/b/c:dev'],
    [`nginx@sha256:${'a'.repeat(64)}`, `docker.io/library/nginx@sha256:${'a'.repeat(64)}`],
    [`nginx:1@sha256:${'b'.repeat(64)}`, `docker.io/library/nginx:1@sha256:${'b'.repeat(64)}`],
  ])('%s → %s', (input, want) => {
    expect(normalizeImageName(input)).toBe(want)
  })

  it('splits the parts and gives the familiar form back', () => {
    expect(parseReference('localhost:5000/team/app:3')).toMatchObject({domain: 'localhost:5000', path: 'team/app', tag: '3', repository: 'localhost:5000/team/app'})
    expect(familiarName('docker.io/library/nginx:latest')).toBe('nginx:latest')
    expect(familiarName('docker.io/foo/bar:1')).toBe('foo/bar:1')
  })

  it.each([['foo/Bar'], ['nginx:'], ['nginx@sha256:zz'], [''], ['a//b']])('rejects %j with a reason', (input) => {
    expect(() => parseReference(input)).toThrow(/invalid image reference/)
  })
})

describe('platforms', () => {
  it('parses and normalises', () => {
    expect(parsePlatform('linux/amd64')).toEqual({os: 'linux', architecture: 'amd64'})
    expect(parsePlatform('linux/arm64/v8')).toEqual({os: 'linux', architecture: 'arm64'})
    expect(parsePlatform('linux/arm')).toEqual({os: 'linux', architecture: 'arm', variant: 'v7'})
    expect(parsePlatform('aarch64')).toEqual({os: 'linux', architecture: 'arm64'})
    expect(() => parsePlatform('linux/')).toThrow(/invalid platform/)
  })

  it('matches compatible variants and picks the best one from an index', () => {
    expect(platformMatches({os: 'linux', architecture: 'arm', variant: 'v7'}, {os: 'linux', architecture: 'arm', variant: 'v6'})).toBe(true)
    expect(platformMatches({os: 'linux', architecture: 'arm', variant: 'v6'}, {os: 'linux', architecture: 'arm', variant: 'v7'})).toBe(false)
    expect(platformMatches({os: 'linux', architecture: 'arm64'}, {os: 'linux', architecture: 'arm64', variant: 'v8'})).toBe(true)
    expect(platformMatches({os: 'linux', architecture: 'amd64'}, {os: 'linux', architecture: 'arm64'})).toBe(false)
    const d = (n: number) => `sha256:${String(n).repeat(64)}`
    const index: ImageIndex = {
      schemaVersion: 2,
      manifests: [
        {mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: d(1), size: 1, platform: {os: 'linux', architecture: 'arm', variant: 'v6'}},
        {mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: d(2), size: 1, platform: {os: 'linux', architecture: 'arm', variant: 'v7'}},
        {mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: d(3), size: 1, platform: {os: 'unknown', architecture: 'unknown'}},
        {mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: d(4), size: 1, platform: {os: 'linux', architecture: 'amd64'}},
      ],
    }
    expect(chooseManifest(index, parsePlatform('linux/arm/v7'), 'x').digest).toBe(d(2))
    expect(chooseManifest(index, parsePlatform('linux/arm/v6'), 'x').digest).toBe(d(1))
    expect(chooseManifest(index, parsePlatform('linux/amd64'), 'x').digest).toBe(d(4))
    expect(() => chooseManifest(index, parsePlatform('linux/s390x'), 'app.tar')).toThrow(/app\.tar has no image for platform linux\/s390x \(it has: linux\/arm\/v6, linux\/arm\/v7, unknown\/unknown, linux\/amd64\)/)
  })
})

describe('chain IDs', () => {
  it('follows the OCI definition', () => {
    const a = sha256Digest('a')
    const b = sha256Digest('b')
    const c = sha256Digest('c')
    const ab = sha256Digest(`${a} ${b}`)
    expect(chainIds([a, b, c])).toEqual([a, ab, sha256Digest(`${ab} ${c}`)])
    expect(chainIds([])).toEqual([])
  })
})
