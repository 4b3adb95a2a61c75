/**
 * @module
 * MetaServer: the node's local, read-only Kubernetes API (get/list/watch of what the node holds),
 * served from the edge store online and offline (docs/metaserver.md).
 */
export { MetaServer, createMetaServer } from './metaserver.js';
export type { MetaServerAddress, MetaServerInit } from './metaserver.js';
export { defaultMetaServerOptions, METASERVER_DIR, ADMIN_TOKEN_FILE, SERVER_URL_FILE } from './options.js';
export type { MetaServerOptions } from './options.js';
