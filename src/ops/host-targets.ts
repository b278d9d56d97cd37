import {accessFor, type NodeAccess, type SideloadConfig} from '../config/config.js'
import type {NodeTarget} from '../nodes/index.js'
import {formatTarget, parseTarget} from '../ssh/index.js'

/**
 * A node named by --host `[user@]host[:port]` (no cluster needed). The config file's entry
 * for that host (or for its bare host name) may supply the address, user, port, key and socket;
 * what the --host value spells out itself wins.
 */
export function hostTarget(host: string, config: SideloadConfig, flags: NodeAccess = {}): NodeTarget {
  const spec = parseTarget(host)
  const access = accessFor(config, config.nodes[host] ? host : spec.host, flags)
  return {
    name: host,
    sshTarget: formatTarget({user: spec.user ?? access.sshUser, host: access.address ?? spec.host, port: spec.port ?? access.sshPort}),
    sshKey: access.sshKey,
    containerdSocket: access.containerdSocket,
    snapshotter: access.snapshotter,
    importMode: access.importMode,
  }
}
