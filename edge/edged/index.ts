/**
 * @module
 * Edged: runs the pods the node is given. So far the runtime interface and the `process`
 * runtime; the module that drives them from the store is the next step of issue 10.
 */
export type * from './runtime.js';
export { ProcessRuntime, createProcessRuntime, resolveEnv } from './process-runtime.js';
export type { ConfigLookup, KeyValueObject, ProcessRuntimeOptions } from './process-runtime.js';
export { defaultProcessRuntimeOptions } from './options.js';
