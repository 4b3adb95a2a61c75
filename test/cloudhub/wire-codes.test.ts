/**
 * The codes CloudHub puts on the wire (docs/protocol.md "Close codes and error codes"), on a
 * real CloudHub on 127.0.0.1: a refused upgrade answers HTTP 400 with `LEDGE_ERR_HANDSHAKE: …`,
 * and a heartbeat timeout closes with 1001 and the reason `LEDGE_ERR_HEARTBEAT_TIMEOUT: …`.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { startTestCloud, ThinEdge, type TestCloud } from '../helpers/cloud.js';
import { eventually } from '../helpers/process.js';
import { NODE_NAME_HEADER } from '../../shared/protocol/index.js';

const clouds: TestCloud[] = [];
after(async () => {
  for (const c of clouds) await c.stop();
});

async function cloud(options: Parameters<typeof startTestCloud>[0] = {}): Promise<TestCloud> {
  const c = await startTestCloud(options);
  clouds.push(c);
  return c;
}

/** Sends an upgrade request and returns the refusal's status and body. */
function upgrade(url: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url.replace(/^ws/, 'http'), {
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', ...headers },
    });
    req.on('upgrade', () => reject(new Error('the upgrade was accepted')));
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('cloudhub: codes on the wire', () => {
  test('a refused upgrade: HTTP 400, body "LEDGE_ERR_HANDSHAKE: <reason>"', async () => {
    const c = await cloud();
    const noProtocol = await upgrade(c.hub.url, { [NODE_NAME_HEADER]: 'ok-node' });
    assert.equal(noProtocol.status, 400);
    assert.match(noProtocol.body, /^LEDGE_ERR_HANDSHAKE: subprotocol ledge\.v1 required/);
    const badName = await upgrade(c.hub.url, { 'sec-websocket-protocol': 'ledge.v1', [NODE_NAME_HEADER]: 'Bad_Name!' });
    assert.equal(badName.status, 400);
    assert.match(badName.body, /^LEDGE_ERR_HANDSHAKE: missing or invalid node name header/);
  });

  test('a heartbeat timeout closes with 1001 and the reason "LEDGE_ERR_HEARTBEAT_TIMEOUT: …"', async () => {
    const c = await cloud({ heartbeatIntervalMs: 100, heartbeatTimeoutMs: 400 });
    // Pings go unanswered and nothing is sent: a dead link as the cloud sees it.
    const e = await ThinEdge.connect(c.hub.url, 'mute-node', { ws: { autoPong: false } });
    await eventually(() => c.hub.isConnected('mute-node'), 5000, 'connected');
    await eventually(() => !c.hub.isConnected('mute-node'), 10_000, 'session closed by the heartbeat timeout');
    // The reason CloudHub closed the session with, as it logs it.
    const reasons = c.log.lines.filter((l) => l.msg === 'node disconnected' && l.node === 'mute-node').map((l) => String(l.reason));
    assert.equal(reasons.length, 1);
    assert.match(reasons[0]!, /^LEDGE_ERR_HEARTBEAT_TIMEOUT: nothing received for \d+ ms \(limit 400 ms\)$/);
    const line = c.log.lines.find((l) => /^node missed its heartbeats/.test(String(l.msg)));
    assert.equal(line?.code, 'LEDGE_ERR_HEARTBEAT_TIMEOUT');
    // When the close frame makes it out before the socket is dropped, it says the same.
    const closed = await e.closedWith();
    if (closed.code !== 1006) {
      assert.equal(closed.code, 1001);
      assert.match(closed.reason, /^LEDGE_ERR_HEARTBEAT_TIMEOUT: /);
    }
    e.close();
  });
});
