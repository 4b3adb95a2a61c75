/**
 * @module
 * The frame codec. Frames are standard CBOR (RFC 8949) with the layout in
 * docs/protocol.md: `[version, [id, parentId, timestamp, resourceVersion, sync],
 * [source, group, operation, resource], content]`. cbor-x does the encoding and
 * decoding (chosen over node-cbor by the numbers in docs/benchmarks.md); untrusted
 * input is pre-checked by {@link validateCbor} first.
 */
import { Encoder } from 'cbor-x/encode';
import { Decoder } from 'cbor-x/decode';
import { FrameTooLargeError, InvalidFrameError, InvalidMessageError, UnknownOperationError, UnsupportedVersionError } from '../errors/index.js';
import { Limits, operations, PROTOCOL_VERSION } from './constants.js';
import type { Message, MessageHeader } from './message.js';
import { validateCbor } from './cbor-validate.js';
import { streamFrameFromWire, type StreamFrame } from './stream-frame.js';

/** Encodes and decodes whole messages. Implementations must throw only Ledge errors from decode. */
export interface Codec {
  readonly name: string;
  encode(message: Message): Uint8Array;
  /** Decodes a message frame (a stream frame is an InvalidMessageError here). */
  decode(frame: Uint8Array): Message;
  /** Encodes a stream frame (`[id, type, data]`). */
  encodeStream(frame: StreamFrame): Uint8Array;
  /** Decodes either kind of frame: a message (4 items) or a stream frame (3 items; see `isStreamFrame`). */
  decodeFrame(frame: Uint8Array): Message | StreamFrame;
}

/** Whether a decoded frame is a stream frame (else a message). */
export function isStreamFrame(f: Message | StreamFrame): f is StreamFrame {
  return (f as StreamFrame).type !== undefined && (f as Message).header === undefined;
}

export interface CodecOptions {
  /** Frames larger than this are rejected on decode and refused on encode. Default 1 MiB. */
  maxFrameBytes?: number;
  /** Maximum CBOR nesting depth. Default 64. */
  maxDepth?: number;
}

type WireHeader = [string, string | null, number, string | null, boolean];
type WireRoute = [string, string, string, string];

function isStr(v: unknown, max: number): v is string {
  return typeof v === 'string' && v.length <= max;
}

/** Error raised for a decoded frame whose operation is unknown; carries the id so the receiver can reply. */
export function messageIdOf(err: unknown): string | undefined {
  return (err as { messageId?: string } | null)?.messageId;
}

/** Checks the decoded frame layout and builds a {@link Message}. */
export function fromWire(value: unknown): Message {
  if (!Array.isArray(value) || value.length !== 4) throw new InvalidMessageError('frame must be a 4-element array');
  const [version, h, r, content] = value as [unknown, unknown, unknown, unknown];
  if (version !== PROTOCOL_VERSION) throw new UnsupportedVersionError(`unsupported protocol version ${String(version)} (this build speaks ${PROTOCOL_VERSION})`);
  const max = Limits.maxStringField;
  if (!Array.isArray(h) || h.length !== 5) throw new InvalidMessageError('header must be a 5-element array');
  const [id, parentId, timestamp, rv, sync] = h as WireHeader;
  if (!isStr(id, max) || id === '') throw new InvalidMessageError('header.id must be a non-empty string');
  if (parentId !== null && !isStr(parentId, max)) throw new InvalidMessageError('header.parentId must be a string or null');
  if (typeof timestamp !== 'number' || !Number.isFinite(timestamp)) throw new InvalidMessageError('header.timestamp must be a number');
  if (rv !== null && !isStr(rv, max)) throw new InvalidMessageError('header.resourceVersion must be a string or null');
  if (typeof sync !== 'boolean') throw new InvalidMessageError('header.sync must be a boolean');
  if (!Array.isArray(r) || r.length !== 4) throw new InvalidMessageError('route must be a 4-element array');
  const [source, group, operation, resource] = r as WireRoute;
  if (!isStr(source, max) || !isStr(group, max) || !isStr(operation, max) || !isStr(resource, max)) {
    throw new InvalidMessageError('route fields must be strings of at most 512 characters');
  }
  const header: MessageHeader = { id, timestamp, sync };
  if (parentId !== null) header.parentId = parentId;
  if (rv !== null) header.resourceVersion = rv;
  const message: Message = { header, route: { source, group, operation, resource }, content };
  if (!operations.has(operation)) {
    const err = new UnknownOperationError(`unknown operation "${operation.slice(0, 64)}"`);
    Object.assign(err, { messageId: id });
    throw err;
  }
  return message;
}

/** The wire array for a message. */
export function toWire(m: Message): unknown[] {
  const h = m.header;
  const r = m.route;
  return [
    PROTOCOL_VERSION,
    [h.id, h.parentId ?? null, h.timestamp, h.resourceVersion ?? null, h.sync],
    [r.source, r.group, r.operation, r.resource],
    m.content === undefined ? null : m.content,
  ];
}

// Plain RFC 8949: no records, no packing, no tag 259, no tag 64; maps decode to objects.
// useTag259ForMaps and int64AsNumber are honoured by cbor-x but missing from its typings.
// Shared with the edge metadata store (edge/metamanager/store.ts), which writes its records the same way.
/** cbor-x encoder options of the wire profile. */
export const cborEncoderOptions = {
  useRecords: false,
  mapsAsObjects: true,
  pack: false,
  structuredClone: false,
  tagUint8Array: false,
  useTag259ForMaps: false,
  variableMapSize: true,
};
/** cbor-x decoder options of the wire profile. */
export const cborDecoderOptions = { useRecords: false, mapsAsObjects: true, int64AsNumber: true };

/** The size of the working buffer cbor-x starts with (and is given back after a big encode). */
const CBOR_WORKING_BYTES = 8192;
/** A working buffer grown past this is dropped after the encode that grew it. */
const CBOR_KEEP_WORKING_BYTES = 64 * 1024;

/**
 * Encodes `value` with `encoder` and returns a copy of the bytes (cbor-x returns a view of its
 * working buffer, which the next encode overwrites).
 *
 * cbor-x encodes into one working buffer shared by every encoder of the process and keeps it at
 * the largest size any encode needed: one big value (a store compaction, a large message) would
 * hold that much memory for good (an 800 KiB buffer on an edge node holding 1,000 Devices). A
 * buffer grown past 64 KiB is replaced by a fresh 8 KiB one once the bytes are copied out.
 */
export function encodeCbor(encoder: Encoder, value: unknown): Uint8Array {
  const view = encoder.encode(value);
  const bytes = Uint8Array.prototype.slice.call(view);
  // useBuffer is cbor-x's own API for this (Encoder.prototype.useBuffer), missing from its typings.
  if (view.buffer.byteLength > CBOR_KEEP_WORKING_BYTES) (encoder as Encoder & { useBuffer(b: Buffer): void }).useBuffer(Buffer.allocUnsafeSlow(CBOR_WORKING_BYTES));
  return bytes;
}

/** Creates the CBOR codec used on the wire. */
export function createCborCodec(options: CodecOptions = {}): Codec {
  const maxFrameBytes = options.maxFrameBytes ?? Limits.maxFrameBytes;
  const maxDepth = options.maxDepth ?? Limits.maxDepth;
  const encoder = new Encoder(cborEncoderOptions);
  const decoder = new Decoder(cborDecoderOptions);
  const decodeValue = (frame: Uint8Array): unknown => {
    if (frame.length > maxFrameBytes) throw new FrameTooLargeError(`frame of ${frame.length} bytes is over the ${maxFrameBytes}-byte limit`);
    validateCbor(frame, maxDepth);
    try {
      return decoder.decode(frame);
    } catch (err) {
      throw new InvalidFrameError(`undecodable CBOR: ${(err as Error).message}`, { cause: err });
    }
  };
  return {
    name: 'cbor',
    encode(message: Message): Uint8Array {
      // A copy: a subarray would keep cbor-x's whole working buffer alive while the frame is queued.
      const frame = encodeCbor(encoder, toWire(message));
      if (frame.length > maxFrameBytes) {
        throw new FrameTooLargeError(`message ${message.header.id} encodes to ${frame.length} bytes, over the ${maxFrameBytes}-byte limit`);
      }
      // cbor-x writes Date, Set, big BigInt… as tags the profile forbids; refuse here, where the
      // sender can see it, rather than have the peer close the session.
      try {
        validateCbor(frame, maxDepth);
      } catch (err) {
        throw new InvalidMessageError(
          `message ${message.header.id} (${message.route.resource}) has content outside the wire profile: ${(err as Error).message}; convert Dates to ISO strings and use only JSON values and byte strings`,
          { cause: err },
        );
      }
      return frame;
    },
    decode(frame: Uint8Array): Message {
      return fromWire(decodeValue(frame));
    },
    encodeStream(f: StreamFrame): Uint8Array {
      // Stream frames are built by the mux from checked parts (ids, byte strings, the request map).
      const frame = encodeCbor(encoder, [f.id, f.type, f.data === undefined ? null : f.data]);
      if (frame.length > maxFrameBytes) throw new FrameTooLargeError(`stream frame of stream ${f.id} encodes to ${frame.length} bytes, over the ${maxFrameBytes}-byte limit`);
      return frame;
    },
    decodeFrame(frame: Uint8Array): Message | StreamFrame {
      const value = decodeValue(frame);
      if (Array.isArray(value) && value.length === 3) return streamFrameFromWire(value);
      return fromWire(value);
    },
  };
}
