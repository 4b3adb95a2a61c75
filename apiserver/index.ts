/**
 * @module
 * The local control plane: an embedded server speaking the Kubernetes REST API well
 * enough for client-node informers and kubectl (k3s+kine in miniature). See
 * docs/apiserver.md. CloudCore talks to it only over HTTP, like to any cluster.
 */
export { startApiServer } from './server.js';
export type { ApiServerOptions, ApiServerHandle } from './server.js';
export { defaultApiServerOptions } from './options.js';
export { apiServerConfigSpec, runApiServerCli } from './cli.js';
export { ApiError } from './errors.js';
export type { StatusObject } from './errors.js';
