/**
 * @module
 * MetaManager and the edge's crash-safe metadata store.
 */
export { MetaManager, createMetaManager } from './metamanager.js';
export type { MetaManagerOptions, EdgeStore, MetaView, MetaChange, MetaListener } from './metamanager.js';
export { MetaStore } from './store.js';
export { defaultMetaStoreOptions, defaultMetaManagerOptions } from './options.js';
export type { StoredObject, ApplyResult, MetaStoreOptions, StoreHealth, StoreLimit, StoreLimitState } from './store.js';
