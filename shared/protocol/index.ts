/**
 * @module
 * The cloud–edge protocol: message model, wire names, limits and the frame codec.
 * Both CloudCore and EdgeCore import it from here. Spec: docs/protocol.md.
 */
export * from './constants.js';
export * from './message.js';
export { cborDecoderOptions, cborEncoderOptions, createCborCodec, fromWire, toWire, messageIdOf, isStreamFrame } from './codec.js';
export * from './stream-frame.js';
export type { Codec, CodecOptions } from './codec.js';
export { validateCbor } from './cbor-validate.js';
