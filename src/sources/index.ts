export * from './spec.js'
export * from './open.js'
export * from './inventory.js'
export {UnnamedArchiveImageError} from './unnamed.js'
