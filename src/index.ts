// The CLI's entry (bin/run.js loads it from the bundle, dist/bundle/index.js: scripts/bundle.mjs).
export {execute, run} from '@oclif/core'
