/**
 * @module
 * Streams over the cloud–edge link (kubectl logs, exec, attach): a multiplexer with per-stream
 * credit, used by CloudHub and EdgeHub. Frames and the request shape: shared/protocol.
 */
export { Mux, Stream, defaultMuxOptions } from './mux.js';
export type { MuxOptions, StreamError } from './mux.js';
export { Channel, StreamFrameType, type StreamFrame, type StreamKind, type StreamRequest } from '../protocol/index.js';
