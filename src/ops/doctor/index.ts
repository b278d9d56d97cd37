export {type CheckStatus, type DoctorCheck} from './check.js'
export {type DoctorOptions, type DoctorResult} from './options.js'
export {doctor} from './doctor.js'
