/**
 * @module
 * Joining (issue 13): `join()` admits this device to CloudCore with a join token and writes the
 * key, certificates and EdgeCore config; `runJoin()` is its command line (`edgecore join`).
 */
export { JOIN_FILES, JOIN_PATHS, join, type JoinResult } from './join.js';
export { joinConfigSpec, joinUsage, runJoin, type RunJoinIo } from './cli.js';
export { defaultJoinOptions, resolveJoinOptions, type JoinInput, type JoinOptions } from './options.js';
