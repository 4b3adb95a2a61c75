/**
 * @module
 * Stream frames: the second kind of frame on the link (docs/protocol.md, "Streams"), beside
 * messages. A stream frame is a CBOR array of three, `[id, type, data]`; a message is an array
 * of four. The multiplexer that uses them is shared/stream.
 */
import { InvalidMessageError } from '../errors/index.js';

/** Stream frame types. */
export const StreamFrameType = { Open: 1, Data: 2, Credit: 3, Close: 4 } as const;

/** A stream frame: `[id, type, data]` on the wire. */
export interface StreamFrame {
  id: number;
  type: number;
  data: unknown;
}

/** Largest stream id and largest credit in one frame (2^31 - 1). */
export const MAX_STREAM_UINT = 0x7fffffff;

/**
 * Channels of a stream's messages: the first byte of every DATA payload, as in Kubernetes'
 * `v5.channel.k8s.io`, so the cloud bridges kubectl's WebSocket messages one for one.
 */
export const Channel = { Stdin: 0, Stdout: 1, Stderr: 2, Error: 3, Resize: 4, Close: 255 } as const;

export type StreamKind = 'logs' | 'exec' | 'attach';

/** What the cloud asks of the edge when it opens a stream (OPEN's data, plus the opener's `window`). */
export interface StreamRequest {
  kind: StreamKind;
  namespace: string;
  pod: string;
  /** Default: the pod's only container (with more than one the request is refused, as a kubelet does). */
  container?: string;
  // logs (kubelet's PodLogOptions)
  follow?: boolean;
  tailLines?: number;
  sinceSeconds?: number;
  /** RFC 3339. */
  sinceTime?: string;
  timestamps?: boolean;
  previous?: boolean;
  limitBytes?: number;
  // exec and attach
  command?: string[];
  stdin?: boolean;
  stdout?: boolean;
  stderr?: boolean;
  tty?: boolean;
}

const KINDS = new Set<string>(['logs', 'exec', 'attach']);

function bad(message: string): never {
  throw new InvalidMessageError(`stream frame: ${message}`);
}

/** Checks a decoded 3-element frame and returns it typed (throws InvalidMessageError). */
export function streamFrameFromWire(value: unknown[]): StreamFrame {
  const [id, type, data] = value as [unknown, unknown, unknown];
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 1 || id > MAX_STREAM_UINT) bad('id must be an integer from 1 to 2^31-1');
  switch (type) {
    case StreamFrameType.Open: {
      if (data === null || typeof data !== 'object' || Array.isArray(data)) bad('OPEN data must be a map');
      const r = data as Record<string, unknown>;
      if (typeof r.kind !== 'string' || !KINDS.has(r.kind)) bad('OPEN kind must be logs, exec or attach');
      if (typeof r.namespace !== 'string' || typeof r.pod !== 'string') bad('OPEN needs namespace and pod strings');
      if (r.window !== undefined && (typeof r.window !== 'number' || !Number.isInteger(r.window) || r.window < 1 || r.window > MAX_STREAM_UINT))
        bad('OPEN window must be a positive integer');
      break;
    }
    case StreamFrameType.Data:
      if (!(data instanceof Uint8Array) || data.length === 0) bad('DATA data must be a non-empty byte string');
      break;
    case StreamFrameType.Credit:
      if (typeof data !== 'number' || !Number.isInteger(data) || data < 1 || data > MAX_STREAM_UINT) bad('CREDIT data must be a positive integer');
      break;
    case StreamFrameType.Close:
      if (data !== null) {
        const e = data as { code?: unknown; message?: unknown };
        if (typeof data !== 'object' || typeof e.code !== 'string' || typeof e.message !== 'string') bad('CLOSE data must be null or {code, message}');
      }
      break;
    default:
      bad(`unknown type ${String(type)}`);
  }
  return { id: id as number, type: type as number, data };
}

/**
 * The metav1.Status JSON of a failed exec or attach on the error channel (3), as a kubelet writes
 * it: the session could not run, or was cut.
 */
export function streamFailureStatus(message: string): string {
  return JSON.stringify({ metadata: {}, status: 'Failure', message });
}

/** The Status JSON an exec or attach ends with: success, or `NonZeroExitCode` with the code (kubectl exits with it). */
export function streamExitStatus(exitCode: number | undefined): string {
  if (exitCode === undefined || exitCode === 0) return JSON.stringify({ metadata: {}, status: 'Success' });
  return JSON.stringify({
    metadata: {},
    status: 'Failure',
    message: `command terminated with non-zero exit code: exit status ${exitCode}`,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(exitCode) }] },
  });
}
