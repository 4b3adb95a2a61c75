/**
 * Tests of the beehive (shared/beehive): routing, request/response, restart policy,
 * mailbox backpressure and shutdown. Real timers with small delays; time bounds
 * are only generous upper limits.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { Beehive, Mailbox } from '../../shared/beehive/index.js';
import type { Module, ModuleContext, RestartPolicy } from '../../shared/beehive/index.js';
import { newMessage } from '../../shared/protocol/index.js';
import type { Message } from '../../shared/protocol/index.js';

function msg(content: unknown = null, resource = 'default/pod/nginx'): Message {
  return newMessage({ source: 'test', group: 'resource', operation: 'update', resource, content });
}

function mod(name: string, group: string, start: (ctx: ModuleContext, signal: AbortSignal) => Promise<void>, restartPolicy?: RestartPolicy): Module {
  return restartPolicy ? { name, group, start, restartPolicy } : { name, group, start };
}

/** A module that records everything it receives until stopped. */
function recorder(name: string, group: string, got: Message[]): Module {
  return mod(name, group, async (ctx, signal) => {
    for (;;) got.push(await ctx.receive(signal));
  });
}

/** Resolves when `signal` aborts. */
function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await delay(2);
  }
}

async function rejectsWithCode(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.equal((err as { code?: string }).code, code, String(err));
    return true;
  });
}

/** Whether `p` has settled after the event loop has had `ms` to run. */
async function settledWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  await delay(ms);
  return settled;
}

describe('beehive: routing', () => {
  it('delivers send() from one module to another, in order', async (t) => {
    const bus = new Beehive();
    t.after(() => bus.stop());
    const got: Message[] = [];
    const sent = Array.from({ length: 5 }, (_, i) => msg({ n: i }));
    bus.register(recorder('b', 'meta', got));
    bus.register(
      mod('a', 'resource', async (ctx, signal) => {
        for (const m of sent) await ctx.send('b', m);
        await aborted(signal);
      }),
    );
    bus.start();
    await waitFor(() => got.length === 5, 'five messages');
    assert.deepEqual(
      got.map((m) => m.header.id),
      sent.map((m) => m.header.id),
    );
    assert.deepEqual(
      got.map((m) => m.content),
      [{ n: 0 }, { n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }],
    );
  });

  it('sendToGroup reaches every member of the group and no one else', async (t) => {
    const bus = new Beehive();
    t.after(() => bus.stop());
    const twins: Message[][] = [[], [], []];
    const other: Message[] = [];
    twins.forEach((got, i) => {
      bus.register(recorder(`twin-${i}`, 'twin', got));
    });
    bus.register(recorder('meta', 'meta', other));
    bus.start();
    const m = msg({ temperature: 21.5 });
    await bus.context('test').sendToGroup('twin', m);
    await waitFor(() => twins.every((g) => g.length === 1), 'every twin module');
    for (const got of twins) {
      assert.equal(got[0]!.header.id, m.header.id);
      assert.deepEqual(got[0]!.content, { temperature: 21.5 });
    }
    // Each member gets its own (shallow) copy.
    assert.notEqual(twins[0]![0], twins[1]![0]);
    await delay(20);
    assert.equal(other.length, 0);
  });

  it('rejects with LEDGE_ERR_NO_SUCH_MODULE for unknown modules and groups', async (t) => {
    const bus = new Beehive({ syncTimeoutMs: 5000 });
    t.after(() => bus.stop());
    bus.register(recorder('known', 'meta', []));
    bus.start();
    const ctx = bus.context('test');
    await rejectsWithCode(ctx.send('nope', msg()), 'LEDGE_ERR_NO_SUCH_MODULE');
    await rejectsWithCode(ctx.sendToGroup('no-group', msg()), 'LEDGE_ERR_NO_SUCH_MODULE');
    // sendSync fails at once, not after the 5 s timeout.
    const started = Date.now();
    await rejectsWithCode(ctx.sendSync('nope', msg()), 'LEDGE_ERR_NO_SUCH_MODULE');
    assert.ok(Date.now() - started < 2000);
    await rejectsWithCode(bus.context('ghost').receive(), 'LEDGE_ERR_NO_SUCH_MODULE');
    assert.equal(bus.has('known'), true);
    assert.equal(bus.has('nope'), false);
  });

  it('refuses duplicate names and registration after start', () => {
    const bus = new Beehive();
    bus.register(recorder('a', 'meta', []));
    assert.throws(() => bus.register(recorder('a', 'twin', [])), TypeError);
    bus.start();
    assert.throws(() => bus.register(recorder('b', 'meta', [])), TypeError);
    return bus.stop();
  });
});

describe('beehive: sendSync', () => {
  it('resolves with the response whose parentId is the request id', async (t) => {
    const bus = new Beehive();
    t.after(() => bus.stop());
    bus.register(
      mod('echo', 'meta', async (ctx, signal) => {
        for (;;) {
          const req = await ctx.receive(signal);
          await ctx.respond(req, { echo: req.content, sync: req.header.sync });
        }
      }),
    );
    bus.start();
    const req = msg('ping');
    const res = await bus.context('test').sendSync('echo', req, 2000);
    assert.equal(res.header.parentId, req.header.id);
    assert.equal(res.route.operation, 'response');
    assert.equal(res.route.source, 'echo');
    assert.deepEqual(res.content, { echo: 'ping', sync: true });
    assert.equal(req.header.sync, true, 'sendSync marks the request sync');
  });

  it('correlates concurrent requests answered out of order', async (t) => {
    const bus = new Beehive();
    t.after(() => bus.stop());
    bus.register(
      mod('batcher', 'meta', async (ctx, signal) => {
        const batch: Message[] = [];
        while (batch.length < 4) batch.push(await ctx.receive(signal));
        for (const req of batch.reverse()) await ctx.respond(req, `answer to ${String(req.content)}`);
        await aborted(signal);
      }),
    );
    bus.start();
    const ctx = bus.context('test');
    const answers = await Promise.all(['a', 'b', 'c', 'd'].map((q) => ctx.sendSync<string>('batcher', msg(q), 2000)));
    assert.deepEqual(
      answers.map((r) => r.content),
      ['answer to a', 'answer to b', 'answer to c', 'answer to d'],
    );
  });

  it('rejects with LEDGE_ERR_TIMEOUT when no response comes', async (t) => {
    const bus = new Beehive();
    t.after(() => bus.stop());
    const got: Message[] = [];
    bus.register(recorder('silent', 'meta', got));
    bus.start();
    const started = Date.now();
    await rejectsWithCode(bus.context('test').sendSync('silent', msg(), 30), 'LEDGE_ERR_TIMEOUT');
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 20 && elapsed < 2000, `timed out after ${elapsed} ms`);
    assert.equal(got.length, 1, 'the request was delivered');
  });

  it('uses the bus default timeout when none is given', async (t) => {
    const bus = new Beehive({ syncTimeoutMs: 25 });
    t.after(() => bus.stop());
    bus.register(recorder('silent', 'meta', []));
    bus.start();
    await rejectsWithCode(bus.context('test').sendSync('silent', msg()), 'LEDGE_ERR_TIMEOUT');
  });
});

describe('beehive: restart policy', () => {
  it('restarts a failing module with backoff while the others keep working', async (t) => {
    const bus = new Beehive();
    t.after(() => bus.stop());
    let starts = 0;
    const flakyGot: Message[] = [];
    bus.register(
      mod(
        'flaky',
        'twin',
        async (ctx, signal) => {
          starts++;
          if (starts <= 3) throw new Error(`boom ${starts}`);
          for (;;) flakyGot.push(await ctx.receive(signal));
        },
        { mode: 'on-failure', initialDelayMs: 5, maxDelayMs: 20 },
      ),
    );
    const got: Message[] = [];
    bus.register(recorder('steady', 'meta', got));
    bus.start();
    // Sent while flaky may still be failing: its mailbox keeps the message across restarts.
    const early = msg('early');
    await bus.context('test').send('flaky', early);
    await bus.context('test').send('steady', msg('during restarts'));
    await waitFor(() => starts === 4, 'the fourth start');
    assert.equal(bus.restartCount('flaky'), 3);
    assert.equal(bus.restartCount('steady'), 0);
    await waitFor(() => flakyGot.length === 1, 'flaky to receive after recovering');
    assert.equal(flakyGot[0]!.header.id, early.header.id);
    assert.deepEqual(
      got.map((m) => m.content),
      ['during restarts'],
    );
    await delay(30);
    assert.equal(starts, 4, 'a recovered module is not restarted again');
  });

  it('keeps restarting a module that always fails, synchronously or not', async (t) => {
    const bus = new Beehive();
    t.after(() => bus.stop());
    const policy: RestartPolicy = { mode: 'on-failure', initialDelayMs: 2, maxDelayMs: 8 };
    bus.register(mod('async-fail', 'a', async () => Promise.reject(new Error('nope')), policy));
    bus.register(
      mod(
        'sync-fail',
        'b',
        () => {
          throw new Error('thrown synchronously');
        },
        policy,
      ),
    );
    bus.start();
    await waitFor(() => bus.restartCount('async-fail') >= 5 && bus.restartCount('sync-fail') >= 5, 'five restarts each');
    const seen = bus.restartCount('async-fail');
    await waitFor(() => bus.restartCount('async-fail') > seen, 'the count to keep growing');
  });

  it('doubles the delay from initialDelayMs', async (t) => {
    const bus = new Beehive();
    t.after(() => bus.stop());
    const starts: number[] = [];
    bus.register(
      mod(
        'backoff',
        'meta',
        async () => {
          starts.push(performance.now());
          throw new Error('fail');
        },
        { mode: 'on-failure', initialDelayMs: 10, maxDelayMs: 5000 },
      ),
    );
    bus.start();
    await waitFor(() => starts.length >= 4, 'four starts');
    // Delays 10 + 20 + 40 ms: at least ~70 ms in all (timers never fire much early),
    // and far less than the 5 s cap.
    const total = starts[3]! - starts[0]!;
    assert.ok(total >= 65, `three restarts took ${total} ms`);
  });

  it('caps the delay at maxDelayMs', async (t) => {
    const bus = new Beehive();
    t.after(() => bus.stop());
    bus.register(mod('capped', 'meta', async () => Promise.reject(new Error('fail')), { mode: 'on-failure', initialDelayMs: 5, maxDelayMs: 10 }));
    bus.start();
    // Uncapped, 12 restarts would wait 5 * (2^12 - 1) ms ≈ 20 s; capped, about 0.1 s.
    await waitFor(() => bus.restartCount('capped') >= 12, 'twelve restarts', 5000);
  });

  it("does not restart a module whose policy is 'never'", async (t) => {
    const bus = new Beehive();
    t.after(() => bus.stop());
    let starts = 0;
    bus.register(
      mod(
        'once',
        'meta',
        async () => {
          starts++;
          throw new Error('fatal');
        },
        { mode: 'never', initialDelayMs: 1 },
      ),
    );
    const got: Message[] = [];
    bus.register(recorder('other', 'twin', got));
    bus.start();
    await waitFor(() => starts === 1, 'the first start');
    await delay(50);
    assert.equal(starts, 1);
    await bus.context('test').send('other', msg('still alive'));
    await waitFor(() => got.length === 1, 'the other module');
  });

  it('does not restart a module that finished normally', async (t) => {
    const bus = new Beehive();
    t.after(() => bus.stop());
    let starts = 0;
    bus.register(mod('oneshot', 'meta', async () => void starts++, { mode: 'on-failure', initialDelayMs: 1 }));
    bus.start();
    await delay(50);
    assert.equal(starts, 1);
    assert.equal(bus.restartCount('oneshot'), 0);
  });
});

describe('beehive: backpressure', () => {
  it('makes send wait while the mailbox is full', async (t) => {
    const bus = new Beehive({ mailboxCapacity: 2 });
    t.after(() => bus.stop());
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    const got: Message[] = [];
    bus.register(
      mod('slow', 'meta', async (ctx, signal) => {
        await gate;
        for (;;) got.push(await ctx.receive(signal));
      }),
    );
    bus.start();
    const ctx = bus.context('test');
    const sent = [msg(1), msg(2), msg(3)];
    await ctx.send('slow', sent[0]!);
    await ctx.send('slow', sent[1]!);
    const third = ctx.send('slow', sent[2]!);
    assert.equal(await settledWithin(third, 30), false, 'the third send waits');
    openGate();
    await third;
    await waitFor(() => got.length === 3, 'all three');
    assert.deepEqual(
      got.map((m) => m.content),
      [1, 2, 3],
    );
  });
});

describe('beehive: stop', () => {
  it('aborts every module with a StoppedError reason and resolves once they return', async () => {
    const bus = new Beehive();
    const signals: AbortSignal[] = [];
    let returned = 0;
    for (const name of ['a', 'b']) {
      bus.register(
        mod(name, 'meta', async (_ctx, signal) => {
          signals.push(signal);
          await aborted(signal);
          returned++;
        }),
      );
    }
    bus.start();
    await waitFor(() => signals.length === 2, 'both modules');
    assert.ok(signals.every((s) => !s.aborted));
    await bus.stop();
    assert.ok(signals.every((s) => s.aborted));
    assert.equal((signals[0]!.reason as { code?: string }).code, 'LEDGE_ERR_STOPPED');
    assert.equal(returned, 2);
  });

  it('waits for a module draining in-flight work', async () => {
    const bus = new Beehive();
    const events: string[] = [];
    let working = false;
    bus.register(
      mod('worker', 'meta', async (ctx, signal) => {
        for (;;) {
          let m: Message;
          try {
            m = await ctx.receive(signal);
          } catch {
            return; // aborted while idle
          }
          working = true;
          events.push(`begin ${String(m.content)}`);
          await delay(60); // in-flight work that is not abandoned on abort
          events.push(`end ${String(m.content)}`);
          working = false;
        }
      }),
    );
    bus.start();
    await bus.context('test').send('worker', msg('job'));
    await waitFor(() => working, 'the job to start');
    const stopping = bus.stop();
    // While the worker drains, the bus takes no new messages.
    await rejectsWithCode(bus.context('test').send('worker', msg('late')), 'LEDGE_ERR_STOPPED');
    await stopping;
    events.push('stopped');
    assert.deepEqual(events, ['begin job', 'end job', 'stopped']);
  });

  it('gives up waiting after its timeout for a module that ignores the signal', async () => {
    const bus = new Beehive();
    let release!: () => void;
    bus.register(mod('stuck', 'meta', () => new Promise<void>((resolve) => (release = resolve))));
    bus.start();
    const started = Date.now();
    await bus.stop(40);
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 30 && elapsed < 2000, `stop took ${elapsed} ms`);
    release();
  });

  it('rejects pending requests and later sends with LEDGE_ERR_STOPPED', async () => {
    const bus = new Beehive();
    bus.register(recorder('silent', 'meta', []));
    bus.start();
    const ctx = bus.context('test');
    const pending = ctx.sendSync('silent', msg(), 10_000);
    const stopped = bus.stop();
    await rejectsWithCode(pending, 'LEDGE_ERR_STOPPED');
    await stopped;
    await rejectsWithCode(ctx.send('silent', msg()), 'LEDGE_ERR_STOPPED');
    await rejectsWithCode(ctx.sendToGroup('meta', msg()), 'LEDGE_ERR_STOPPED');
  });

  it('interrupts a restart backoff', async () => {
    const bus = new Beehive();
    let starts = 0;
    bus.register(
      mod(
        'failing',
        'meta',
        async () => {
          starts++;
          throw new Error('fail');
        },
        { mode: 'on-failure', initialDelayMs: 60_000 },
      ),
    );
    bus.start();
    await waitFor(() => starts === 1, 'the first failure');
    const started = Date.now();
    await bus.stop();
    assert.ok(Date.now() - started < 2000, 'stop did not wait out the 60 s backoff');
    assert.equal(starts, 1);
  });
});

describe('Mailbox', () => {
  it('is FIFO and makes put wait while full', async () => {
    const box = new Mailbox<number>(2);
    await box.put(1);
    await box.put(2);
    assert.equal(box.size, 2);
    const third = box.put(3);
    assert.equal(await settledWithin(third, 10), false);
    assert.equal(await box.take(), 1);
    await third;
    assert.equal(await box.take(), 2);
    assert.equal(await box.take(), 3);
    assert.equal(box.size, 0);
  });

  it('hands puts straight to waiting takers, first come first served', async () => {
    const box = new Mailbox<string>(1);
    const first = box.take();
    const second = box.take();
    await box.put('x');
    await box.put('y');
    assert.equal(await first, 'x');
    assert.equal(await second, 'y');
    assert.equal(box.size, 0);
  });

  it('rejects an aborted take with the reason and loses no later item', async () => {
    const box = new Mailbox<string>(4);
    const ac = new AbortController();
    const taken = box.take(ac.signal);
    ac.abort(new Error('cancelled'));
    await assert.rejects(taken, /cancelled/);
    await box.put('kept');
    assert.equal(box.size, 1, 'the put was not handed to the aborted taker');
    assert.equal(await box.take(), 'kept');
    const pre = new AbortController();
    pre.abort(new Error('already'));
    await assert.rejects(box.take(pre.signal), /already/);
  });

  it('close() rejects waiting takers and putters and future puts, but queued items stay takeable', async () => {
    const empty = new Mailbox<number>(1);
    const taker = empty.take();
    empty.close();
    await rejectsWithCode(taker, 'LEDGE_ERR_STOPPED');
    await rejectsWithCode(empty.take(), 'LEDGE_ERR_STOPPED');

    const full = new Mailbox<number>(1);
    await full.put(1);
    const putter = full.put(2);
    full.close();
    await rejectsWithCode(putter, 'LEDGE_ERR_STOPPED');
    await rejectsWithCode(full.put(3), 'LEDGE_ERR_STOPPED');
    assert.equal(await full.take(), 1);
  });

  it('stays correct past its compaction threshold', async () => {
    const box = new Mailbox<number>(5000);
    for (let i = 0; i < 3000; i++) await box.put(i);
    for (let i = 0; i < 2500; i++) assert.equal(await box.take(), i);
    for (let i = 3000; i < 4000; i++) await box.put(i);
    assert.equal(box.size, 1500);
    for (let i = 2500; i < 4000; i++) assert.equal(await box.take(), i);
  });
});

describe('beehive: edge cases', () => {
  it('rejects a mailbox capacity below 1 instead of deadlocking', () => {
    assert.throws(() => new Mailbox(0), TypeError);
  });

  it('drops a response that arrives after its sendSync timed out, without delivering it anywhere', async (t) => {
    const bus = new Beehive();
    t.after(() => bus.stop());
    const seenByResponder: Message[] = [];
    bus.register(
      mod('slow', 'meta', async (ctx, signal) => {
        for (;;) {
          const m = await ctx.receive(signal).catch(() => undefined);
          if (!m) return;
          seenByResponder.push(m);
          await delay(60);
          await ctx.respond(m, 'late');
        }
      }),
    );
    bus.start();
    const client = bus.context('client');
    await assert.rejects(client.sendSync('slow', newMessage({ source: 'client', group: 'meta', operation: 'query', resource: 'x', content: null }), 20), {
      code: 'LEDGE_ERR_TIMEOUT',
    });
    await delay(120);
    assert.equal(seenByResponder.length, 1, 'the late response did not come back to the responder');
  });
});
