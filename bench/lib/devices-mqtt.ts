/**
 * @module
 * Bare MQTT 3.1.1 clients for bench/devices-throughput.ts, on mqtt-packet's parser and generator
 * (what the edge's own external-broker client uses): no library session layer, so the clients cost
 * little CPU and the broker is what gets measured.
 *
 * - {@link connectRaw}: CONNECT (clean session), waits for CONNACK; PUBACKs QoS 1 messages it receives.
 * - {@link RawClient.subscribe}: SUBSCRIBE, waits for SUBACK; counts what arrives.
 * - {@link RawClient.flood}: publishes until a deadline. QoS 0: as fast as the socket takes it
 *   (writes in batches and waits for 'drain' when the kernel buffer is full: aedes stops reading a
 *   publisher while its subscribers' sockets are full, so this is closed-loop through TCP). QoS 1: a
 *   window of unacknowledged publishes per client (the next goes when a PUBACK comes back).
 * Payloads carry their send time (ms since the epoch, `timestamp`), so the subscriber can tell the
 * delivery latency on the same clock.
 */
import { connect, type Socket } from 'node:net';
import mqtt from 'mqtt-packet';
import type { IPublishPacket, Packet } from 'mqtt-packet';

const OPTS = { protocolVersion: 4 } as const;

/** A KubeEdge twin update (~100 bytes): what a device publishes on `$hw/events/device/{ns}/{name}/twin/update`. */
export function twinUpdatePayload(seq: number, at: number): Buffer {
  const value = (20 + (seq % 100) / 10).toFixed(1);
  return Buffer.from(`{"event_id":"${seq}","timestamp":${at},"twin":{"temperature":{"actual":{"value":"${value}"},"metadata":{"type":"Updated"}}}}`);
}

/** The `timestamp` of a {@link twinUpdatePayload} (NaN when absent). */
export function payloadTime(payload: Buffer): number {
  const s = payload.toString('latin1', 0, 64);
  const i = s.indexOf('"timestamp":');
  return i < 0 ? Number.NaN : Number.parseInt(s.slice(i + 12, i + 25), 10);
}

export interface RawClient {
  readonly socket: Socket;
  /** Messages received on subscriptions. */
  received: number;
  /** Delivery latency samples (ms, receive time − payload timestamp), one per `latencyEvery` messages. */
  readonly latencies: number[];
  subscribe(filter: string, qos: 0 | 1): Promise<void>;
  /**
   * Publishes on `topic` until `deadline` (ms since the epoch); resolves with the publishes sent
   * (QoS 1: acknowledged). `ratePerS` > 0 paces QoS 0 publishes (10 ms ticks) instead of flooding.
   */
  flood(topic: string, qos: 0 | 1, deadline: number, window: number, ratePerS?: number): Promise<number>;
  close(): void;
}

/** Connects to the broker at 127.0.0.1:`port`; rejects on CONNACK ≠ 0 or after `timeoutMs`. */
export function connectRaw(port: number, clientId: string, latencyEvery = 100, timeoutMs = 10_000): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.setNoDelay(true);
    const parser = mqtt.parser(OPTS);
    let subackWaiter: (() => void) | undefined;
    let pubackHandler: ((id: number) => void) | undefined;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`MQTT ${clientId}: no CONNACK within ${timeoutMs} ms`));
    }, timeoutMs);
    const client: RawClient = {
      socket,
      received: 0,
      latencies: [],
      subscribe(filter, qos) {
        return new Promise((res) => {
          subackWaiter = res;
          socket.write(mqtt.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: filter, qos }] }, OPTS));
        });
      },
      flood(topic, qos, deadline, window, ratePerS = 0) {
        if (qos === 0 && ratePerS > 0) return pacedQos0(socket, topic, deadline, ratePerS);
        return qos === 0 ? floodQos0(socket, topic, deadline) : floodQos1(socket, topic, deadline, window, (h) => (pubackHandler = h));
      },
      close() {
        socket.end(mqtt.generate({ cmd: 'disconnect' }, OPTS));
        setTimeout(() => socket.destroy(), 500).unref();
      },
    };
    parser.on('packet', (p: Packet) => {
      switch (p.cmd) {
        case 'connack':
          clearTimeout(timer);
          if (p.returnCode !== 0) {
            socket.destroy();
            reject(new Error(`MQTT ${clientId}: CONNACK ${p.returnCode}`));
          } else resolve(client);
          return;
        case 'suback':
          subackWaiter?.();
          subackWaiter = undefined;
          return;
        case 'puback':
          if (p.messageId !== undefined) pubackHandler?.(p.messageId);
          return;
        case 'publish': {
          const n = ++client.received;
          if (n % latencyEvery === 0) client.latencies.push(Date.now() - payloadTime(p.payload as Buffer));
          if (p.qos === 1 && p.messageId !== undefined) socket.write(mqtt.generate({ cmd: 'puback', messageId: p.messageId }, OPTS));
          return;
        }
        default:
          return;
      }
    });
    parser.on('error', (err: Error) => socket.destroy(err));
    socket.on('data', (d: Buffer) => parser.parse(d));
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.write(mqtt.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 0 }, OPTS));
  });
}

const BATCH = 64;

function floodQos0(socket: Socket, topic: string, deadline: number): Promise<number> {
  return new Promise((resolve) => {
    let sent = 0;
    const pump = () => {
      for (;;) {
        const now = Date.now();
        if (now >= deadline || socket.destroyed) {
          resolve(sent);
          return;
        }
        const parts: Buffer[] = [];
        for (let i = 0; i < BATCH; i++) {
          const packet: IPublishPacket = { cmd: 'publish', topic, payload: twinUpdatePayload(sent + i, now), qos: 0, retain: false, dup: false };
          parts.push(mqtt.generate(packet, OPTS));
        }
        sent += BATCH;
        if (!socket.write(Buffer.concat(parts))) {
          socket.once('drain', pump);
          return;
        }
        // Let the event loop breathe (IPC, timers) every batch that the socket accepted at once.
        if (sent % (BATCH * 16) === 0) {
          setImmediate(pump);
          return;
        }
      }
    };
    pump();
  });
}

function pacedQos0(socket: Socket, topic: string, deadline: number, ratePerS: number): Promise<number> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    let sent = 0;
    const timer = setInterval(() => {
      const now = Date.now();
      if (now >= deadline || socket.destroyed) {
        clearInterval(timer);
        resolve(sent);
        return;
      }
      const due = Math.floor(((now - t0) * ratePerS) / 1000);
      const parts: Buffer[] = [];
      for (; sent < due; sent++) parts.push(mqtt.generate({ cmd: 'publish', topic, payload: twinUpdatePayload(sent, now), qos: 0, retain: false, dup: false }, OPTS));
      if (parts.length) socket.write(Buffer.concat(parts));
    }, 10);
  });
}

function floodQos1(socket: Socket, topic: string, deadline: number, window: number, onPuback: (h: (id: number) => void) => void): Promise<number> {
  return new Promise((resolve) => {
    let next = 1;
    let inFlight = 0;
    let acked = 0;
    let seq = 0;
    let done = false;
    const send = () => {
      const id = next;
      next = next === 65535 ? 1 : next + 1;
      inFlight++;
      socket.write(mqtt.generate({ cmd: 'publish', topic, payload: twinUpdatePayload(seq++, Date.now()), qos: 1, messageId: id, retain: false, dup: false }, OPTS));
    };
    const finish = () => {
      if (done) return;
      done = true;
      clearInterval(check);
      resolve(acked);
    };
    onPuback(() => {
      inFlight--;
      acked++;
      if (Date.now() < deadline) send();
      else if (inFlight === 0) finish();
    });
    // The window stops refilling at the deadline; what is still unacknowledged a second later is not waited for.
    const check = setInterval(() => {
      if (Date.now() >= deadline + 1000 || socket.destroyed) finish();
    }, 100);
    for (let i = 0; i < window; i++) send();
  });
}
