/**
 * @module
 * Beehive, the in-process module bus. See {@link Beehive}.
 */
export { Beehive } from './beehive.js';
export type { Module, ModuleContext, RestartPolicy, BeehiveOptions } from './beehive.js';
export { Mailbox } from './mailbox.js';
