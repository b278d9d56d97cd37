import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {createRequire} from 'node:module'

/** How to reach one node; every field optional, later sources override earlier ones. */
export interface NodeAccess {
  /** Address to SSH to (IP or host name); for Kubernetes nodes it overrides the API's address. */
  address?: string
  sshUser?: string
  sshPort?: number
  sshKey?: string
  /** containerd socket on the node; detected among the usual paths when absent. */
  containerdSocket?: string
  snapshotter?: string
  importMode?: 'auto' | 'native' | 'ctr'
}

export interface SideloadConfig {
  /** Applies to every node unless the node's own entry says otherwise. */
  defaults: NodeAccess & {knownHosts?: string; jobs?: number; pin?: boolean}
  /** Per node, keyed by Kubernetes node name or by the host given to --host. */
  nodes: Record<string, NodeAccess>
}

export class ConfigError extends Error {
  constructor(message: string, readonly file: string) {
    super(`${file}: ${message}`)
    this.name = 'ConfigError'
  }
}

export function defaultConfigPath(env = process.env): string {
  if (env.SIDELOAD_CONFIG) return env.SIDELOAD_CONFIG
  const base = env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config')
  return path.join(base, 'sideload', 'config.yaml')
}

const NODE_KEYS: Record<keyof NodeAccess, 'string' | 'number'> = {
  address: 'string',
  sshUser: 'string',
  sshPort: 'number',
  sshKey: 'string',
  containerdSocket: 'string',
  snapshotter: 'string',
  importMode: 'string',
}

function checkNodeAccess(value: unknown, where: string, file: string, extra: Record<string, 'string' | 'number' | 'boolean'> = {}): NodeAccess {
  if (value === null || value === undefined) return {}
  if (typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(`${where} must be a mapping`, file)
  const allowed: Record<string, string> = {...NODE_KEYS, ...extra}
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    const type = allowed[key]
    if (!type) throw new ConfigError(`${where}.${key} is not a known setting (known: ${Object.keys(allowed).join(', ')})`, file)
    if (typeof v !== type) throw new ConfigError(`${where}.${key} must be a ${type}`, file)
  }
  const access = value as NodeAccess
  if (access.importMode && !['auto', 'native', 'ctr'].includes(access.importMode)) {
    throw new ConfigError(`${where}.importMode must be auto, native or ctr`, file)
  }
  if (access.sshKey) access.sshKey = expandHome(access.sshKey)
  return access
}

export function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? path.join(os.homedir(), p.slice(1)) : p
}

/**
 * Reads the config file. A missing file at the default path is an empty config; a missing
 * file that the user named explicitly is an error.
 */
export function loadConfig(file?: string): SideloadConfig {
  const explicit = file !== undefined
  const configPath = file ?? defaultConfigPath()
  let text: string
  try {
    text = fs.readFileSync(configPath, 'utf8')
  } catch (error) {
    if (!explicit && (error as NodeJS.ErrnoException).code === 'ENOENT') return {defaults: {}, nodes: {}}
    throw new ConfigError(`cannot read the config file: ${(error as Error).message}`, configPath)
  }
  let doc: unknown
  try {
    // Loaded only when there is a file to parse: the YAML library is ~70 modules of start-up.
    const {parse} = createRequire(import.meta.url)('yaml') as typeof import('yaml')
    doc = parse(text) ?? {}
  } catch (error) {
    throw new ConfigError(`not valid YAML: ${(error as Error).message}`, configPath)
  }
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError('the top level must be a mapping with "defaults" and "nodes"', configPath)
  const {defaults, nodes, ...rest} = doc as Record<string, unknown>
  const unknown = Object.keys(rest)
  if (unknown.length > 0) throw new ConfigError(`unknown top-level key(s) ${unknown.join(', ')}; expected "defaults" and "nodes"`, configPath)
  const config: SideloadConfig = {
    defaults: checkNodeAccess(defaults, 'defaults', configPath, {knownHosts: 'string', jobs: 'number', pin: 'boolean'}),
    nodes: {},
  }
  if (nodes !== undefined && nodes !== null) {
    if (typeof nodes !== 'object' || Array.isArray(nodes)) throw new ConfigError('"nodes" must be a mapping of node name to settings', configPath)
    for (const [name, value] of Object.entries(nodes as Record<string, unknown>)) {
      config.nodes[name] = checkNodeAccess(value, `nodes.${name}`, configPath)
    }
  }
  return config
}

/** The settings for one node: defaults, then the node's own entry, then explicit flags. */
export function accessFor(config: SideloadConfig, nodeName: string, flags: NodeAccess = {}): NodeAccess {
  const {knownHosts: _k, jobs: _j, pin: _p, ...defaults} = config.defaults
  const merged: NodeAccess = {...defaults, ...config.nodes[nodeName]}
  for (const [key, value] of Object.entries(flags)) {
    if (value !== undefined) (merged as Record<string, unknown>)[key] = value
  }
  return merged
}
