// What sideload reads from a containerd config (config.toml, or `containerd config dump`): the
// CRI's snapshotter, its registry host config directory, whether it discards unpacked layers and its
// sandbox image,
// at their 2.x (`io.containerd.cri.v1.images`) and 1.6/1.7 (`io.containerd.grpc.v1.cri`) places.
import {readToml, type TomlEntries} from '../util/toml.js'

const SNAPSHOTTER_KEYS = [
  ['plugins', 'io.containerd.cri.v1.images', 'snapshotter'],
  ['plugins', 'io.containerd.grpc.v1.cri', 'containerd', 'snapshotter'],
]
const CONFIG_PATH_KEYS = [
  ['plugins', 'io.containerd.cri.v1.images', 'registry', 'config_path'],
  ['plugins', 'io.containerd.grpc.v1.cri', 'registry', 'config_path'],
]
const SANDBOX_IMAGE_KEYS = [
  ['plugins', 'io.containerd.cri.v1.images', 'pinned_images', 'sandbox'],
  ['plugins', 'io.containerd.grpc.v1.cri', 'sandbox_image'],
]
const DISCARD_KEYS = [
  ['plugins', 'io.containerd.cri.v1.images', 'discard_unpacked_layers'],
  ['plugins', 'io.containerd.grpc.v1.cri', 'containerd', 'discard_unpacked_layers'],
]

/** A containerd config's CRI settings sideload cares about. */
export interface CriConfig {
  /** the snapshotter the CRI unpacks images into */
  snapshotter?: string
  /** where the CRI reads `<registry>/hosts.toml` (its mirrors) */
  registryConfigPath?: string
  /** the CRI deletes layer blobs once unpacked: the node cannot serve them to peers */
  discardUnpackedLayers: boolean
  /** the pause image every pod sandbox runs (the node cannot start a pod without it) */
  sandboxImage?: string
}

export function criConfig(text: string): CriConfig {
  const toml = readToml(text)
  return {
    snapshotter: firstString(toml, SNAPSHOTTER_KEYS),
    registryConfigPath: firstString(toml, CONFIG_PATH_KEYS),
    discardUnpackedLayers: DISCARD_KEYS.some((k) => toml.get(k) === true),
    sandboxImage: firstString(toml, SANDBOX_IMAGE_KEYS),
  }
}

function firstString(toml: TomlEntries, keys: string[][]): string | undefined {
  for (const k of keys) {
    const v = toml.get(k)
    if (typeof v === 'string' && v) return v
  }
  return undefined
}
