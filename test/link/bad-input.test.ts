/**
 * Bad input on the wire: each case gets a clear logged reason and either closes the
 * offending session or rejects the message, while the process and every other
 * session keep working.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { once } from 'node:events';
import { startTestCloud, ThinEdge, codec, statusUpdate, type TestCloud } from '../helpers/cloud.js';
import { eventually, within } from '../helpers/process.js';
import { newMessage, toWire, SUBPROTOCOL, NODE_NAME_HEADER } from '../../shared/protocol/index.js';
import { Encoder } from 'cbor-x/encode';

let cloud: TestCloud;
let bystander: ThinEdge;

before(async () => {
  cloud = await startTestCloud({ maxFrameBytes: 64 * 1024, upstreamQps: 50, upstreamBurst: 20 });
  bystander = await ThinEdge.connect(cloud.hub.url, 'bystander');
});
after(async () => {
  bystander.close();
  await cloud.stop();
});

/** The bystander session still works: a downstream message is delivered and ACKed, an upstream one handled. */
async function bystanderWorks(tag: string): Promise<void> {
  const before = cloud.hub.nodeSummary('bystander')!.stats.acked;
  cloud.hub.sendToNode(
    'bystander',
    newMessage({ source: 'test', group: 'resource', operation: 'update', resource: `default/configmap/${tag}`, resourceVersion: '1', sync: true, content: { tag } }),
  );
  await eventually(() => cloud.hub.nodeSummary('bystander')!.stats.acked > before, 5000, 'bystander ACK');
  const n = cloud.received.length;
  bystander.send(statusUpdate(1));
  await eventually(() => cloud.received.length > n, 5000, 'bystander upstream handled');
}

describe('CloudHub rejects bad input and keeps serving others', () => {
  test('garbage bytes close the session with 1007 and a logged reason', async () => {
    const e = await ThinEdge.connect(cloud.hub.url, 'garbage');
    e.sendRaw(Buffer.from([0xff, 0x00, 0x13, 0x37]));
    const closed = await e.closedWith();
    assert.equal(closed.code, 1007);
    assert.match(closed.reason, /LEDGE_ERR_INVALID_FRAME/);
    assert.ok(cloud.log.has(/undecodable frame from node.*LEDGE_ERR_INVALID_FRAME/), 'logged');
    await bystanderWorks('after-garbage');
  });

  test('a truncated CBOR item closes the session with 1007', async () => {
    const e = await ThinEdge.connect(cloud.hub.url, 'truncated');
    const frame = codec.encode(statusUpdate(1));
    e.sendRaw(Buffer.from(frame.subarray(0, frame.length - 3)));
    assert.equal((await e.closedWith()).code, 1007);
    await bystanderWorks('after-truncated');
  });

  // That the transport refuses it from its declared length, before buffering it, is test/cloudhub/frame-limit.test.ts:
  // here the codec's own limit would close with the same code.
  test('an oversized frame closes the session with 1009', async () => {
    const e = await ThinEdge.connect(cloud.hub.url, 'oversized');
    e.sendRaw(Buffer.alloc(128 * 1024, 1));
    assert.equal((await e.closedWith()).code, 1009);
    await bystanderWorks('after-oversized');
  });

  test('a text frame closes the session with 1003', async () => {
    const e = await ThinEdge.connect(cloud.hub.url, 'texter');
    e.sendRaw('{"hello":"world"}');
    const closed = await e.closedWith();
    assert.equal(closed.code, 1003);
    assert.match(closed.reason, /LEDGE_ERR_TEXT_FRAME/);
    await bystanderWorks('after-text');
  });

  test('an unknown protocol version closes the session with 1002', async () => {
    const e = await ThinEdge.connect(cloud.hub.url, 'future');
    const wire = toWire(statusUpdate(1));
    wire[0] = 99;
    e.sendRaw(Buffer.from(new Encoder({ useRecords: false }).encode(wire)));
    const closed = await e.closedWith();
    assert.equal(closed.code, 1002);
    assert.match(closed.reason, /LEDGE_ERR_UNSUPPORTED_VERSION/);
  });

  test('an unknown operation rejects that message with an error ACK; the session stays open', async () => {
    const e = await ThinEdge.connect(cloud.hub.url, 'odd-op');
    const m = statusUpdate(1);
    m.route.operation = 'teleport';
    e.send(m);
    const ack = await eventually(() => e.messages.find((x) => x.route.operation === 'ack' && x.header.parentId === m.header.id), 5000, 'error ACK');
    assert.equal((ack.content as { code: string }).code, 'LEDGE_ERR_UNKNOWN_OPERATION');
    assert.equal(e.closed, undefined, 'session still open');
    // And it still works afterwards.
    const ok = statusUpdate(2);
    e.send(ok);
    await eventually(() => e.messages.find((x) => x.header.parentId === ok.header.id), 5000, 'normal ACK after rejection');
    assert.ok(cloud.log.has(/message rejected: unknown operation .{0,2}teleport/));
    e.close();
  });

  test('many rejected frames: each gets its error ACK, the log gets one line (the rest are summarised)', async () => {
    const e = await ThinEdge.connect(cloud.hub.url, 'odd-many');
    const ids: string[] = [];
    for (let i = 0; i < 60; i++) {
      const m = statusUpdate(i);
      m.route.operation = 'teleport';
      ids.push(m.header.id);
      e.send(m);
    }
    await eventually(() => ids.every((id) => e.messages.some((x) => x.header.parentId === id)), 10_000, 'every error ACK');
    const rejected = cloud.log.lines.filter((l) => l.node === 'odd-many' && /message rejected/.test(String(l.msg)));
    assert.equal(rejected.length, 1, 'one line for 60 rejected frames');
    assert.equal(cloud.hub.nodeSummary('odd-many')!.stats.rejected, 60);
    e.close();
    await eventually(() => cloud.log.has(/59 more rejected frames from node odd-many in the last/), 5000, 'summary line when the session closed');
  });

  test('a flood from one node is throttled; it loses nothing and others keep working', async () => {
    const e = await ThinEdge.connect(cloud.hub.url, 'flooder');
    const sent: string[] = [];
    for (let i = 0; i < 300; i++) {
      const m = statusUpdate(i);
      m.route.resource = `default/nodestatus/flood-${i}`;
      sent.push(m.header.id);
      e.send(m);
    }
    // While the flood is being throttled, the bystander is served.
    await bystanderWorks('during-flood');
    assert.ok(cloud.log.has(/flooder.*LEDGE_ERR_RATE_LIMIT|LEDGE_ERR_RATE_LIMIT.*flooder/), 'throttling logged');
    // Throttled, not dropped: every message is eventually handled and ACKed.
    await eventually(() => sent.every((id) => e.messages.some((m) => m.header.parentId === id)), 20_000, 'all flood messages ACKed');
    e.close();
  });

  test('handshake: missing subprotocol, bad node name and wrong path are refused with 400', async () => {
    const attempts: [string, string, Record<string, string>][] = [
      [cloud.hub.url, 'other.v9', { [NODE_NAME_HEADER]: 'ok-node' }],
      [cloud.hub.url, SUBPROTOCOL, { [NODE_NAME_HEADER]: 'Bad_Name!' }],
      [cloud.hub.url, SUBPROTOCOL, {}],
      [cloud.hub.url.replace('/v1/edge', '/nope'), SUBPROTOCOL, { [NODE_NAME_HEADER]: 'ok-node' }],
    ];
    for (const [url, proto, headers] of attempts) {
      const ws = new WebSocket(url, proto, { headers });
      ws.on('error', () => {}); // the refusal itself is what is asserted
      // Accepting the upgrade would be the failure: it fails at once instead of waiting for a refusal forever.
      const opened = once(ws, 'open').then(() => {
        throw new Error(`the handshake to ${url} (${JSON.stringify(headers)}) was accepted`);
      });
      opened.catch(() => {});
      const [, res] = (await within(Promise.race([once(ws, 'unexpected-response'), opened]), 10_000, 'the handshake to be refused')) as [unknown, { statusCode: number }];
      assert.equal(res.statusCode, 400);
      ws.terminate();
    }
    assert.ok(cloud.log.has(/edge connection refused: subprotocol ledge.v1 required/));
    assert.ok(cloud.log.has(/edge connection refused: missing or invalid node name/));
    await bystanderWorks('after-handshakes');
  });

  test('duplicate upstream messages are handled once and ACKed again', async () => {
    const e = await ThinEdge.connect(cloud.hub.url, 'repeater');
    const m = statusUpdate(7);
    const before = cloud.received.filter((x) => x.header.id === m.header.id).length;
    e.send(m);
    await eventually(() => e.messages.filter((x) => x.header.parentId === m.header.id).length === 1, 5000, 'first ACK');
    e.send(m);
    await eventually(() => e.messages.filter((x) => x.header.parentId === m.header.id).length === 2, 5000, 'second ACK');
    assert.equal(cloud.received.filter((x) => x.header.id === m.header.id).length - before, 1, 'handled exactly once');
    e.close();
  });
});
