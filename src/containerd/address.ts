/** Where containerd listens unless told otherwise (ctr's and nerdctl's default). No imports: flags load it at start-up. */
export const DEFAULT_CONTAINERD_ADDRESS = 'unix:///run/containerd/containerd.sock'
