import {SshError} from './errors.js'

/*
 * Remote commands go through the login shell of the SSH user (sshd runs `$SHELL -c <line>`),
 * so every argument is quoted for a POSIX shell. Quoting alone makes any byte sequence
 * literal, except NUL (truncates the command line) and newlines (some shells and
 * ForceCommand wrappers split on them), which we refuse outright. The validators below are
 * defence in depth: the values that reach remote commands (image names, digests, paths)
 * must also look like what they claim to be.
 */

const SAFE_WORD = /^[A-Za-z0-9_@%+=:,./-]+$/

/** Refuse an argument no quoting can make safe. */
export function assertSafeArgument(arg: string): void {
  if (typeof arg !== 'string') throw new SshError('invalid-argument', `remote command argument is not a string: ${String(arg)}`)
  if (/[\0\n\r]/.test(arg)) {
    throw new SshError('invalid-argument', `remote command argument contains a NUL or newline character: ${JSON.stringify(arg)}`, {
      hint: 'this is refused to keep remote commands unambiguous; pass such data on stdin instead',
    })
  }
}

/** Quote one argument for a POSIX shell: 'it'\''s' style; plain words stay as they are. */
export function shellQuote(arg: string): string {
  assertSafeArgument(arg)
  if (SAFE_WORD.test(arg)) return arg
  return `'${arg.replace(/'/g, `'\\''`)}'`
}

/** Join argv into one command line for `sh -c`, every element quoted. */
export function commandLine(argv: readonly string[]): string {
  if (argv.length === 0) throw new SshError('invalid-argument', 'empty remote command')
  return argv.map(shellQuote).join(' ')
}

// Docker/OCI reference grammar (distribution/reference): [domain[:port]/]path[:tag][@digest]
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*'
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])'
const DOMAIN = `(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[0-9a-fA-F:]+\\])(?::[0-9]+)?`
const TAG = '[\\w][\\w.-]{0,127}'
const DIGEST = '[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}'
const REFERENCE = new RegExp(`^(?:${DOMAIN}/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*(?::${TAG})?(?:@${DIGEST})?$`)
const DIGEST_ONLY = /^sha256:[a-f0-9]{64}$|^sha512:[a-f0-9]{128}$/

/** An image reference as containerd/ctr accept it (e.g. docker.io/library/nginx:1.25@sha256:…). */
export function validateImageReference(ref: string): string {
  assertSafeArgument(ref)
  if (ref.length > 4096 || ref.startsWith('-') || !REFERENCE.test(ref)) {
    throw new SshError('invalid-argument', `not a valid image reference: ${JSON.stringify(ref)}`, {
      hint: 'use a name like docker.io/library/app:1.0 (lowercase repository, optional tag and @sha256: digest)',
    })
  }
  return ref
}

/** A content digest (sha256:<64 hex> or sha512:<128 hex>). */
export function validateDigest(digest: string): string {
  if (!DIGEST_ONLY.test(digest)) throw new SshError('invalid-argument', `not a valid digest: ${JSON.stringify(digest)}`)
  return digest
}

/** An absolute remote path made of ordinary characters, without `..` segments. */
export function validateRemotePath(p: string): string {
  assertSafeArgument(p)
  if (!/^\/[A-Za-z0-9._@+=:,\/-]*$/.test(p) || p.split('/').includes('..')) {
    throw new SshError('invalid-argument', `not an acceptable remote path: ${JSON.stringify(p)}`, {
      hint: 'use an absolute path of letters, digits and ._@+=:,/- only, without ".." segments',
    })
  }
  return p
}
