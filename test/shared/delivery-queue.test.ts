/**
 * DeliveryQueue: per-key order, coalescing, window, retries with backoff, bound,
 * link loss and backpressure.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { DeliveryQueue, type Delivery } from '../../shared/delivery/index.js';

function harness(opts: Partial<ConstructorParameters<typeof DeliveryQueue<string>>[0]> = {}) {
  const sent: Delivery<string>[] = [];
  const superseded: string[] = [];
  const q = new DeliveryQueue<string>({ transmit: (d) => void sent.push(d), onSuperseded: (d) => void superseded.push(d.item), ackTimeoutMs: 100, maxAckTimeoutMs: 400, ...opts });
  return { q, sent, superseded, items: () => sent.map((d) => d.item) };
}

describe('DeliveryQueue', () => {
  test('nothing is transmitted until attached; then in order, one in flight per key', () => {
    const { q, items } = harness();
    q.enqueue('1', 'a', 'a1');
    q.enqueue('2', 'a', 'a2');
    q.enqueue('3', 'b', 'b1');
    assert.deepEqual(items(), []);
    q.attach();
    assert.deepEqual(items(), ['a1', 'b1']);
    q.ack('1');
    assert.deepEqual(items(), ['a1', 'b1', 'a2']);
    assert.equal(q.ack('1'), undefined, 'duplicate ACK ignored');
    q.ack('2');
    q.ack('3');
    assert.equal(q.size, 0);
  });

  test('coalescing replaces an unsent older version and drops a superseded resend', () => {
    const { q, items, superseded } = harness({ coalesce: true });
    q.attach();
    q.enqueue('1', 'a', 'v1'); // in flight
    q.enqueue('2', 'a', 'v2'); // waits
    q.enqueue('3', 'a', 'v3'); // replaces v2
    assert.deepEqual(superseded, ['v2']);
    assert.equal(q.size, 2);
    // v1's retry falls due while v3 waits: v1 is dropped, v3 goes.
    q.tick(Date.now() + 1000);
    assert.deepEqual(superseded, ['v2', 'v1']);
    assert.deepEqual(items(), ['v1', 'v3']);
  });

  test('unacknowledged deliveries are resent with the same id and a doubling timeout, capped', () => {
    const { q, sent } = harness();
    q.attach();
    const t0 = Date.now();
    q.enqueue('1', 'a', 'x');
    q.tick(t0 + 50);
    assert.equal(sent.length, 1, 'not yet due');
    q.tick(t0 + 150);
    assert.equal(sent.length, 2);
    assert.equal(sent[1]!.id, '1');
    const d = sent[1]!;
    assert.ok(d.deadline - (t0 + 150) === 200, 'second timeout doubled');
    q.tick(t0 + 10_000);
    q.tick(t0 + 20_000);
    assert.ok(sent.at(-1)!.deadline - (t0 + 20_000) <= 400, 'capped');
  });

  test('the bound: enqueue beyond maxQueued throws LEDGE_ERR_QUEUE_FULL', () => {
    const { q } = harness({ maxQueued: 3 });
    q.enqueue('1', 'a', 'x');
    q.enqueue('2', 'b', 'x');
    q.enqueue('3', 'c', 'x');
    assert.throws(() => q.enqueue('4', 'd', 'x'), { code: 'LEDGE_ERR_QUEUE_FULL' });
  });

  test('coalescing keeps the queue bounded by distinct keys, not by updates', () => {
    const { q } = harness({ maxQueued: 2, coalesce: true });
    for (let i = 0; i < 100; i++) q.enqueue(String(i), 'same', `v${i}`);
    assert.equal(q.size, 1);
  });

  test('the window limits unacknowledged deliveries', () => {
    const { q, sent } = harness({ maxInFlight: 2 });
    q.attach();
    for (let i = 0; i < 5; i++) q.enqueue(String(i), `k${i}`, `v${i}`);
    assert.equal(sent.length, 2);
    q.ack('0');
    assert.equal(sent.length, 3);
  });

  test('link loss: in-flight deliveries go back first, in original order, and are resent on attach', () => {
    const { q, items } = harness();
    q.attach();
    q.enqueue('1', 'a', 'a1');
    q.enqueue('2', 'b', 'b1');
    q.enqueue('3', 'a', 'a2');
    q.detach();
    q.enqueue('4', 'c', 'c1');
    q.attach();
    assert.deepEqual(items(), ['a1', 'b1', 'a1', 'b1', 'c1']);
    q.ack('1');
    assert.equal(items().at(-1), 'a2');
  });

  test('backpressure: canTransmit false holds deliveries until pump', () => {
    let open = false;
    const { q, sent } = harness({ canTransmit: () => open });
    q.attach();
    q.enqueue('1', 'a', 'x');
    assert.equal(sent.length, 0);
    open = true;
    q.pump();
    assert.equal(sent.length, 1);
  });
});
