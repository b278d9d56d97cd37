// `sideload build`: options.ts (what is asked, where the image ends up), builder.ts (which daemon,
// whether its worker shares this containerd, which exporter), request.ts (the SolveRequest),
// build.ts (the build in its steps), image.ts (where the image is, reading it back), temp-archive.ts
// (the archive streamed back when no output was asked for: private to this user).
export type {SecretSource} from '../../buildkit/session.js'
export type {BuilderChoice} from '../../buildkit/client.js'
export {BuildCancelledError, BuildFailedError} from '../../buildkit/errors.js'
export type {BuildOptions, BuildOutput, BuildResult, ImageLocation} from './options.js'
export {buildkitSocketCandidates, chooseExporter, inspectLocalContainerd, type LocalContainerd, resolveBuilder, workerSharesContainerd} from './builder.js'
export {frontendAttrs, solveRequest} from './request.js'
export {build} from './build.js'
export {removeTemporaryArchive} from './temp-archive.js'
