// `--restart` (push, fix, build-and-push): after a node got a new digest under a tag, the pods on
// it that run that tag with an older digest, in the namespace of -n (else the context's; -A: every
// namespace), are restarted so they run the new one. An owner is rolled out as `kubectl rollout
// restart` does it; a pod of another owner is evicted (a PodDisruptionBudget may refuse) for it to
// create again; a bare pod is deleted and created again from its own spec on its node, its manifest
// written to a file first so that it is never lost; a Job's pod runs to completion and is left alone.
//
// Where restarted pods land: a StatefulSet's or bare pod's replacement keeps its place (the bare
// pod's nodeName is kept); a Deployment's new pods are placed by the scheduler, and a DaemonSet's
// on every node it covers. So before an owner is rolled out, the image goes to every node its pods
// run on (`pushMore`); a new pod that still lands on a node without it is reported with the command
// that sends it there. Nothing is pinned: that would rewrite the owner's template behind its back.
//
// stale.ts (which pods run an older digest, and their owners), owner.ts (rolling an owner out),
// evict.ts (evicting another owner's pod), bare-pod.ts (re-creating a bare pod), left-alone.ts
// (the pods not restarted, and why), restart.ts (one restart per owner or bare pod),
// messages.ts (the warning without --restart, rows as lines), pod-state.ts (what a pod runs).
export type {PushedDigest, RestartOptions} from './options.js'
export type {PodOwner, RestartReport, RestartRow, StalePod} from './result.js'
export {imageIdDigest} from './pod-state.js'
export {findStalePods, nodeNamesOf, pushedDigests, restartTarget, stalePods} from './stale.js'
export {recreatableManifest, restartStateDir} from './bare-pod.js'
export {describeRestart, rerunWithRestart, restartErrors, staleWarning} from './messages.js'
export {pushMoreWith, restartStalePods} from './restart.js'
