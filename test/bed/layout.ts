// The test bed's names and paths: bed and node dirs, network namespaces, bridges, IPs, owner and index files.
import * as fs from 'node:fs'
import * as path from 'node:path'
import type {BedNode, NodeOptions} from './bed.js'
import {isAlive, processStartTime} from './processes.js'

export const BED_ROOT = '/run/sideload-bed'
export const BEDS_DIR = `${BED_ROOT}/beds`
export const INDEX_DIR = `${BED_ROOT}/index`
export const NON_ROOT_USER = 'sluser'
export const SUDOERS_FILE = '/etc/sudoers.d/sideload-bed'
export const NETNS_PREFIX = 'slbed-'
export const MAX_INDEX = 250
export const CONTAINERD_SOCKET = '/run/containerd/containerd.sock'

// ---------------------------------------------------------------------------------------------
// names and paths

export function validateName(name: string): void {
  if (!/^[a-z0-9][a-z0-9-]{0,39}$/.test(name)) {
    throw new Error(`bed name '${name}' is invalid: use 1-40 characters a-z, 0-9, '-' (it becomes node, netns and dir names)`)
  }
}

export const bedDirOf = (name: string) => path.join(BEDS_DIR, name)
export const nodeDirOf = (name: string, i: number) => path.join(bedDirOf(name), `n${i}`)
export const netnsName = (name: string, i: number) => `${NETNS_PREFIX}${name}-${i}`
export const netnsPath = (name: string, i: number) => `/run/netns/${netnsName(name, i)}`
export const bridgeName = (k: number) => `slbr${k}`
export const vethName = (k: number, i: number) => `slb${k}n${i}`
export const nodeIp = (k: number, i: number) => `198.18.${k}.${10 + i}`
export const hostIpOf = (k: number) => `198.18.${k}.1`

export interface NodePaths {
  dir: string
  mntNs: string
  etcSsh: string
  etcContainerd: string
  runContainerd: string
  varLibContainerd: string
  /** root's home inside the node (a real node's own, not this host's: its .bashrc runs on every ssh command) */
  rootHome: string
  logDir: string
  containerdPid: string
  sshdPid: string
}

export function nodePaths(bedName: string, i: number): NodePaths {
  const dir = nodeDirOf(bedName, i)
  return {
    dir,
    mntNs: path.join(dir, 'mnt.ns'),
    etcSsh: path.join(dir, 'etc-ssh'),
    etcContainerd: path.join(dir, 'etc-containerd'),
    runContainerd: path.join(dir, 'run-containerd'),
    varLibContainerd: path.join(dir, 'var-lib-containerd'),
    rootHome: path.join(dir, 'root-home'),
    logDir: path.join(dir, 'log'),
    containerdPid: path.join(dir, 'containerd.pid'),
    sshdPid: path.join(dir, 'sshd.pid'),
  }
}

export interface Owner {
  pid: number
  startTime: string
  /** Started by the CLI for humans (`npm run bed -- up`): test-run cleanup leaves it alone. */
  persistent?: boolean
}

export interface BedState {
  name: string
  index: number
  nodes: BedNode[]
  nodeOptions: Record<number, NodeOptions>
}

export function readOwner(name: string): Owner | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(bedDirOf(name), 'owner.json'), 'utf8')) as Owner
  } catch {
    return undefined
  }
}

export function ownerAlive(owner: Owner | undefined): boolean {
  return owner !== undefined && isAlive(owner.pid) && processStartTime(owner.pid) === owner.startTime
}

export function readIndex(name: string): number | undefined {
  try {
    const k = Number(fs.readFileSync(path.join(bedDirOf(name), 'index'), 'utf8').trim())
    return Number.isInteger(k) && k > 0 ? k : undefined
  } catch {
    return undefined
  }
}
