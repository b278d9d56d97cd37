// The SSH layer: everything above reaches nodes only through these exports.
export {
  type CaptureOptions,
  type CapturedOutput,
  type ConnectOptions,
  connectNode,
  type ExecOptions,
  type HostKeyInfo,
  knownHostsNameFor,
  type RemoteExit,
  type RemoteProcess,
  SshConnection,
} from './connection.js'
export {copiesBeforeCallback} from './channel-writes.js'
export {isSshError, SshError, type SshErrorCode} from './errors.js'
export {appendKnownHost, checkHostKey, fingerprint, type HostKey, type HostKeyCheck, loadKnownHosts, parseKnownHosts} from './known-hosts.js'
export {type PoolOptions, SshPool} from './pool.js'
export {commandLine, shellQuote, validateDigest, validateImageReference, validateRemotePath} from './quote.js'
export {
  describeTarget,
  formatTarget,
  type NodeTargetSpec,
  parseTarget,
  type ResolvedTarget,
  type ResolveOptions,
  resolveTarget,
  targetKey,
  withProxyJump,
} from './target.js'
