/**
 * EdgeHub with fake sockets: its reconnect delays come from the shared backoff (full jitter
 * under reconnectBaseMs doubling to reconnectMaxMs, reset by a connection that opened), and
 * the sessions it closes carry `<code>: <message>` close reasons with the classes' close codes.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import type WebSocket from 'ws';
import { Beehive } from '../../shared/beehive/index.js';
import { EdgeHub } from '../../edge/edgehub/index.js';
import type { EdgeHubInit } from '../../edge/edgehub/edgehub.js';
import { captureLog, type LogCapture } from '../helpers/cloud.js';
import { eventually } from '../helpers/process.js';
import { FakeSocket } from '../helpers/fake-ws.js';
import { tempDir } from '../helpers/files.js';

interface Rig {
  hub: EdgeHub;
  bee: Beehive;
  sockets: FakeSocket[];
  log: LogCapture;
}

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** An EdgeHub whose sockets are fakes; `onSocket` decides what each attempt does. */
async function rig(options: Partial<EdgeHubInit>, onSocket: (s: FakeSocket, n: number) => void = () => {}): Promise<Rig> {
  const d = tempDir();
  const log = captureLog();
  const sockets: FakeSocket[] = [];
  const hub = new EdgeHub(
    {
      endpoints: ['ws://127.0.0.1:1'],
      nodeName: 'fake-node',
      dataDir: d.path,
      heartbeatIntervalMs: 60_000,
      heartbeatTimeoutMs: 120_000,
      ...options,
      // Test double for ws: only the members EdgeHub uses.
      createSocket: () => {
        const s = new FakeSocket();
        sockets.push(s);
        setImmediate(() => onSocket(s, sockets.length));
        return s as unknown as WebSocket;
      },
    },
    log.logger,
  );
  const bee = new Beehive({ log: log.logger });
  bee.register(hub);
  bee.start();
  const stop = async () => {
    await bee.stop();
    d.cleanup();
  };
  cleanups.push(stop);
  return { hub, bee, sockets, log };
}

/** The delays EdgeHub logged before reconnecting, in order. */
function reconnectDelays(log: LogCapture): number[] {
  return log.lines
    .map((l) => /^reconnecting in (\d+) ms$/.exec(String(l.msg))?.[1])
    .filter((v): v is string => v !== undefined)
    .map(Number);
}

describe('edgehub: reconnect backoff', () => {
  test('full jitter under reconnectBaseMs on the first retry, doubling to reconnectMaxMs, back to the base after a connection opened', async (t) => {
    // The top of the jitter range: each delay is its ceiling minus one.
    t.mock.method(Math, 'random', () => 0.999_999);
    // Attempts 1-4 fail, 5 opens and then drops, 6 and later fail.
    const { log } = await rig({ reconnectBaseMs: 20, reconnectMaxMs: 80 }, (s, n) => {
      if (n !== 5) return s.shut(1006);
      s.open();
      setImmediate(() => s.shut(1006));
    });
    await eventually(() => reconnectDelays(log).length >= 6, 10_000, 'six reconnect delays logged');
    assert.deepEqual(reconnectDelays(log).slice(0, 6), [19, 39, 79, 79, 19, 39]);
  });
});

describe('edgehub: close reasons carry the error code', () => {
  test('a text frame: 1003, reason "LEDGE_ERR_TEXT_FRAME: …"', async () => {
    const { hub, sockets } = await rig({});
    const s = await eventually(() => sockets[0], 5000, 'socket');
    s.open();
    await eventually(() => hub.connected, 5000, 'connected');
    s.emit('message', Buffer.from('hello'), false);
    await eventually(() => s.closed, 5000, 'closed');
    assert.equal(s.closed!.code, 1003);
    assert.match(s.closed!.reason ?? '', /^LEDGE_ERR_TEXT_FRAME: text frames are not accepted$/);
  });

  test('an undecodable frame: 1007, reason "LEDGE_ERR_INVALID_FRAME: …" within a close frame\'s 123 bytes', async () => {
    const { hub, sockets } = await rig({});
    const s = await eventually(() => sockets[0], 5000, 'socket');
    s.open();
    await eventually(() => hub.connected, 5000, 'connected');
    s.emit('message', Buffer.from([0xff, 0x00, 0x13]), true);
    await eventually(() => s.closed, 5000, 'closed');
    assert.equal(s.closed!.code, 1007);
    assert.match(s.closed!.reason ?? '', /^LEDGE_ERR_INVALID_FRAME: /);
    assert.ok(Buffer.byteLength(s.closed!.reason ?? '') <= 123);
  });

  test('a silent cloud: 1001, reason "LEDGE_ERR_HEARTBEAT_TIMEOUT: no complete message …"', async () => {
    const { hub, sockets } = await rig({ heartbeatIntervalMs: 50, heartbeatTimeoutMs: 150, reconnectBaseMs: 60_000, reconnectMaxMs: 60_000 });
    const s = await eventually(() => sockets[0], 5000, 'socket');
    s.open();
    await eventually(() => hub.connected, 5000, 'connected');
    await eventually(() => s.closed, 10_000, 'closed by the heartbeat timeout');
    assert.equal(s.closed!.code, 1001);
    assert.match(s.closed!.reason ?? '', /^LEDGE_ERR_HEARTBEAT_TIMEOUT: no complete message from the cloud for \d+ ms$/);
  });
});
