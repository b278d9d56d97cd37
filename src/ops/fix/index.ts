// `sideload fix`: plan.ts (which containers wait for which image, one transfer per image and
// node), pods.ts (listing, waiting, nudging), transfer.ts (the source check and push), fix.ts
// (once), watch.ts (--watch), result.ts (rows, transfers, reasons).
export {fix} from './fix.js'
export {fixWatch, type FixWatchOptions, type FixWatchSummary} from './watch.js'
export type {FixOptions} from './options.js'
export {containerState, PUSHED_AT_ANNOTATION} from './pods.js'
export {FixError, type FixAction, type FixDiagnosis, type FixResult, type FixRow, type TransferResult} from './result.js'
export {defaultPullPolicy, findStuckContainers, IMAGE_WAIT_REASONS, planFix, type Diagnosis, type FixPlan, type StuckContainer, type Transfer} from './plan.js'
