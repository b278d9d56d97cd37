// Which keys to offer a node, in ssh's order: --ssh-key files, the agent (limited to the
// configured identities under IdentitiesOnly), then IdentityFile or the default ~/.ssh/id_* files.
// Key files are parsed up front so a failed authentication can say what was tried and skipped.
import * as fs from 'node:fs'
import * as path from 'node:path'
import ssh2 from 'ssh2'
import type {AnyAuthMethod, IdentityCallback, ParsedKey} from 'ssh2'
import {SshError} from './errors.js'
import type {ResolvedTarget} from './target.js'
import type {ConnectOptions} from './types.js'

export interface AuthCandidate {
  method: AnyAuthMethod
  label: string
}

function defaultIdentityFiles(home: string): string[] {
  return ['id_rsa', 'id_ecdsa', 'id_ecdsa_sk', 'id_ed25519', 'id_ed25519_sk', 'id_dsa'].map((n) => path.join(home, '.ssh', n))
}

/** base64 public key blob of an identity file: from `<file>.pub`, else from the (unencrypted) key itself. */
function publicBlobOf(file: string): string | undefined {
  try {
    const pub = fs.readFileSync(`${file}.pub`, 'utf8').trim().split(/\s+/)[1]
    if (pub) return Buffer.from(pub, 'base64').toString('base64')
  } catch {
    // no .pub file: try the private key
  }
  try {
    const parsed = ssh2.utils.parseKey(fs.readFileSync(file))
    if (parsed instanceof Error) return undefined
    const key = (Array.isArray(parsed) ? parsed[0] : parsed) as ParsedKey
    return key.getPublicSSH().toString('base64')
  } catch {
    return undefined
  }
}

/** An ssh-agent client that only lists the identities whose public key is in `allowed`. */
class IdentitiesOnlyAgent extends ssh2.OpenSSHAgent {
  constructor(
    socketPath: string,
    private readonly allowed: ReadonlySet<string>,
  ) {
    super(socketPath)
  }

  override getIdentities(cb: IdentityCallback<ParsedKey>): void {
    super.getIdentities((err, keys) =>
      cb(
        err,
        // OpenSSHAgent lists ParsedKeys (the union in the typings also covers custom agents)
        keys?.filter((k) => 'getPublicSSH' in k && this.allowed.has(k.getPublicSSH().toString('base64'))),
      ),
    )
  }
}

/** Parse key files up front so the auth error can say which keys were tried and why some were not. */
export function buildAuthCandidates(
  target: ResolvedTarget,
  opts: ConnectOptions,
  home: string,
): {candidates: AuthCandidate[]; skipped: string[]} {
  const candidates: AuthCandidate[] = []
  const skipped: string[] = []
  const seen = new Set<string>()
  const addKeyFile = (file: string, explicit: boolean): void => {
    const abs = path.resolve(file)
    if (seen.has(abs)) return
    seen.add(abs)
    let data: Buffer
    try {
      data = fs.readFileSync(abs)
    } catch (err) {
      if (explicit) {
        throw new SshError('auth', `cannot read SSH key ${abs}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
          hint: 'check the --ssh-key path',
          target: target.alias,
        })
      }
      return // ssh silently skips default/config identity files that do not exist
    }
    const parsed = ssh2.utils.parseKey(data)
    if (parsed instanceof Error) {
      const why = /encrypted/i.test(parsed.message) ? 'encrypted, needs ssh-agent' : parsed.message
      skipped.push(`${abs} (${why})`)
      return
    }
    const key = (Array.isArray(parsed) ? parsed[0] : parsed) as ParsedKey
    candidates.push({method: {type: 'publickey', username: target.user, key}, label: `key ${abs}`})
  }

  for (const f of opts.identityFiles ?? []) addKeyFile(f, true)

  let agent: string | undefined
  if (opts.agent === false) agent = undefined
  else if (typeof opts.agent === 'string') agent = opts.agent
  else if (target.identityAgent?.toLowerCase() === 'none') agent = undefined
  else if (target.identityAgent && target.identityAgent !== 'SSH_AUTH_SOCK') agent = target.identityAgent
  else agent = process.env.SSH_AUTH_SOCK || undefined
  if (agent) {
    if (target.identitiesOnly && target.identityFiles.length > 0) {
      // IdentitiesOnly: offer only the agent keys that belong to the configured identity files,
      // so a full agent does not exhaust the server's MaxAuthTries.
      const allowed = new Set(target.identityFiles.map(publicBlobOf).filter((b): b is string => b !== undefined))
      candidates.push({
        method: {type: 'agent', username: target.user, agent: new IdentitiesOnlyAgent(agent, allowed)},
        label: `ssh-agent ${agent} (only keys of ${target.identityFiles.join(', ')})`,
      })
    } else {
      candidates.push({method: {type: 'agent', username: target.user, agent}, label: `ssh-agent ${agent}`})
    }
  }

  // like ssh: the default ~/.ssh/id_* files only when neither --ssh-key nor IdentityFile names a key
  const named = target.identityFiles.length > 0 || (opts.identityFiles?.length ?? 0) > 0
  const configured = named ? target.identityFiles : defaultIdentityFiles(home)
  for (const f of configured) addKeyFile(f, false)
  return {candidates, skipped}
}
