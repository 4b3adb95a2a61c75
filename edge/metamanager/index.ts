/**
 * @module
 * MetaManager and the edge's crash-safe metadata store.
 */
export { MetaManager, createMetaManager } from './metamanager.js';
export type { MetaManagerOptions, EdgeStore } from './metamanager.js';
export { MetaStore } from './store.js';
export { defaultMetaStoreOptions } from './options.js';
export type { StoredObject, ApplyResult, MetaStoreOptions, StoreHealth } from './store.js';
