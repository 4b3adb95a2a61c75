/**
 * @module
 * The bridge between a kubectl-side WebSocket (`v5.channel.k8s.io` or `v4.channel.k8s.io`)
 * and a stream to the edge: every binary WebSocket message is one channel byte + payload, and
 * so is every stream message, so the bridge copies them one for one.
 *
 * - **Client → edge**: stdin (0), resize (4) and, in v5, close (255: stdin EOF). v4 has no close
 *   channel, so in v4 stdin EOF cannot be signalled (as with a kubelet). Other channels are
 *   dropped; a text message closes the WebSocket with 1003.
 * - **Edge → client**: stdout (1), stderr (2), the Status JSON (3); in v4, close (255) messages
 *   are dropped.
 * - **Back-pressure both ways**: when the WebSocket holds over 1 MiB unsent, the stream is
 *   paused (the edge stops after one window) until the socket drained below half of that; when
 *   the stream's send queue is full, reading from the WebSocket stops until the stream drains.
 * - **Ends**: the stream's end closes the WebSocket with 1000 (after the Status on channel 3). A
 *   stream that ends with an error and sent no Status gets one (Failure, the error's message),
 *   so kubectl prints why. The WebSocket's end aborts a stream still open.
 */
import type { WebSocket } from 'ws';
import { Channel, streamFailureStatus } from '../../shared/protocol/index.js';
import type { Stream, StreamError } from '../../shared/stream/index.js';
import { ErrorCode } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';

export const V5_PROTOCOL = 'v5.channel.k8s.io';
export const V4_PROTOCOL = 'v4.channel.k8s.io';
export type ChannelProtocol = typeof V5_PROTOCOL | typeof V4_PROTOCOL;

/** The subprotocol to answer among those offered: v5 over v4; undefined if neither. */
export function pickProtocol(offered: Iterable<string>): ChannelProtocol | undefined {
  const set = new Set([...offered].map((p) => p.trim()));
  if (set.has(V5_PROTOCOL)) return V5_PROTOCOL;
  if (set.has(V4_PROTOCOL)) return V4_PROTOCOL;
  return undefined;
}

/** Unsent WebSocket bytes above which the edge is paused. */
export const WS_HIGH_WATER = 1024 * 1024;

const FROM_CLIENT = new Set<number>([Channel.Stdin, Channel.Resize, Channel.Close]);

/** The metav1.Status JSON (channel 3) for a stream that failed without one. */
export function failureStatus(error: StreamError): Uint8Array {
  return Buffer.from(streamFailureStatus(error.message));
}

/** Bridges `ws` (already upgraded, `protocol` negotiated) and `stream` (open) until either ends. */
export function bridge(ws: WebSocket, stream: Stream, protocol: ChannelProtocol, log: Logger): void {
  const v5 = protocol === V5_PROTOCOL;
  let statusSent = false;
  let edgePaused = false;

  const afterSend = () => {
    if (edgePaused && ws.bufferedAmount < WS_HIGH_WATER / 2) {
      edgePaused = false;
      stream.resume();
    }
  };

  stream.on('message', (channel, payload) => {
    if (channel === Channel.Close && !v5) return;
    if (ws.readyState !== ws.OPEN) return;
    if (channel === Channel.Error) statusSent = true;
    const frame = Buffer.allocUnsafe(payload.length + 1);
    frame[0] = channel;
    frame.set(payload, 1);
    ws.send(frame, { binary: true }, afterSend);
    if (!edgePaused && ws.bufferedAmount > WS_HIGH_WATER) {
      edgePaused = true;
      stream.pause();
    }
  });
  stream.on('drain', () => {
    if (ws.isPaused) ws.resume();
  });
  stream.on('close', (error) => {
    if (ws.readyState !== ws.OPEN) return;
    if (error && !statusSent) {
      log.info(`stream ended: ${error.message}`, { code: error.code, pod: `${stream.request.namespace}/${stream.request.pod}` });
      const status = failureStatus(error);
      const frame = Buffer.allocUnsafe(status.length + 1);
      frame[0] = Channel.Error;
      frame.set(status, 1);
      ws.send(frame, { binary: true });
    }
    ws.close(1000);
  });

  ws.on('message', (data, isBinary) => {
    if (stream.closed) return;
    if (!isBinary) {
      ws.close(1003, 'binary messages only (v4/v5.channel.k8s.io)');
      return;
    }
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    if (buf.length === 0) return;
    const channel = buf[0]!;
    if (!FROM_CLIENT.has(channel) || (channel === Channel.Close && !v5)) {
      log.debug(`client message on channel ${channel} dropped`);
      return;
    }
    if (!stream.send(channel, buf.subarray(1)) && !stream.closed) ws.pause();
  });
  ws.on('error', (err) => log.debug(`exec WebSocket error: ${err.message}`));
  ws.on('close', () => {
    if (!stream.closed) stream.abort({ code: ErrorCode.Stopped, message: 'the client went away' });
  });
}
