/**
 * Leader election on virtual time: a fake Lease store (compare-and-swap on
 * resourceVersion, per-call latency, calls that hang before or after the server
 * applied them), replicas with skewed wall clocks and monotonic clocks of different
 * rates and origins. Checked after every event: never two replicas leading at the same
 * instant (by isLeader() and by the callbacks), and every replica keeps taking part
 * (its calls keep reaching the store) once its link is healthy again.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { LeaderElector, type Clock, type LeaseRecord, type LeaseStore, type VersionedLease } from '../../cloud/leaderelection/index.js';
import { createLogger } from '../../shared/log/index.js';
import type { ModuleContext } from '../../shared/beehive/index.js';
import { prng } from '../helpers/prng.js';

/** Virtual time: timers run in order; after each, every promise reaction settles before the next. */
class Sim {
  t = 0;
  private seq = 0;
  private timers: { at: number; seq: number; fn: () => void; cancelled: boolean }[] = [];

  schedule(at: number, fn: () => void): { cancelled: boolean } {
    const timer = { at: Math.max(at, this.t), seq: this.seq++, fn, cancelled: false };
    this.timers.push(timer);
    return timer;
  }

  cancel(h: unknown): void {
    if (h) (h as { cancelled: boolean }).cancelled = true;
  }

  /** Runs every timer due until `until`, calling `check` after each one's consequences settled. */
  async run(until: number, check: () => void): Promise<void> {
    for (;;) {
      // Promise reactions (all of them: nothing here waits on real I/O) run before setImmediate:
      // whatever the caller or the last timer set going settles before time moves on.
      await new Promise((r) => setImmediate(r));
      check();
      this.timers = this.timers.filter((x) => !x.cancelled);
      if (this.timers.length === 0) break;
      this.timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.timers[0]!;
      if (next.at > until) break;
      this.timers.shift();
      this.t = next.at;
      next.fn();
    }
    this.t = Math.max(this.t, until);
  }
}

/** A replica's clocks: monotonic with its own origin and rate, wall clock skewed. */
function replicaClock(sim: Sim, o: { rate: number; monoOrigin: number; wallSkewMs: number }): Clock {
  const WALL0 = Date.parse('2030-01-01T00:00:00Z');
  return {
    now: () => o.monoOrigin + sim.t * o.rate,
    wallNow: () => WALL0 + o.wallSkewMs + sim.t * o.rate,
    setTimeout: (fn, ms) => sim.schedule(sim.t + ms / o.rate, fn),
    clearTimeout: (h) => sim.cancel(h),
  };
}

type Link = 'ok' | 'hang' | 'apply-then-hang' | 'slow';

/** One Lease in "the API server": linearizable, compare-and-swap on version. */
class FakeApi {
  lease: VersionedLease | undefined;
  private version = 0;
  calls = new Map<string, number>();
  writes = 0;

  constructor(
    private readonly sim: Sim,
    private readonly latency: () => number,
    private readonly link: (replica: string) => Link,
  ) {}

  /** The store as one replica reaches it. */
  storeFor(replica: string): LeaseStore {
    return {
      get: (signal) => this.call(replica, signal, () => (this.lease ? structuredClone(this.lease) : undefined)),
      create: (record, signal) => this.call(replica, signal, () => (this.lease ? undefined : this.write(record))),
      update: (record, version, signal) => this.call(replica, signal, () => (this.lease?.version === version ? this.write(record) : undefined)),
    };
  }

  private write(record: LeaseRecord): string {
    this.writes++;
    this.lease = { record: structuredClone(record), version: String(++this.version) };
    return this.lease.version;
  }

  /** Request travels (latency), is applied at the server, the answer travels back; a link fault may swallow either. */
  private call<T>(replica: string, signal: AbortSignal, apply: () => T): Promise<T> {
    this.calls.set(replica, (this.calls.get(replica) ?? 0) + 1);
    const link = this.link(replica);
    return new Promise<T>((resolve, reject) => {
      let timer: unknown;
      const onAbort = () => {
        this.sim.cancel(timer);
        reject(signal.reason);
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      const slow = link === 'slow' ? 20 : 1;
      timer = this.sim.schedule(this.sim.t + this.latency() * slow, () => {
        if (link === 'hang') return; // never reaches the server
        const result = apply();
        if (link === 'apply-then-hang') return; // applied, the answer is lost
        timer = this.sim.schedule(this.sim.t + this.latency() * slow, () => {
          signal.removeEventListener('abort', onAbort);
          resolve(result);
        });
      });
    });
  }
}

const LEASE = { leaseDurationMs: 15_000, renewIntervalMs: 2_000, renewDeadlineMs: 10_000 };
const log = createLogger({ level: 'silent' });
const ctx = {} as ModuleContext;

interface Replica {
  id: string;
  elector: LeaderElector;
  /** Leading as told by the callback. */
  leadingByCallback: boolean;
  transitions: { at: number; leading: boolean }[];
  stop(): Promise<void>;
  running: Promise<void>;
}

function cluster(sim: Sim, api: FakeApi, specs: { id: string; rate?: number; monoOrigin?: number; wallSkewMs?: number }[]) {
  const replicas: Replica[] = specs.map((s) => {
    const ac = new AbortController();
    const r: Replica = {
      id: s.id,
      leadingByCallback: false,
      transitions: [],
      elector: undefined as unknown as LeaderElector,
      stop: async () => {
        ac.abort();
        await r.running;
      },
      running: Promise.resolve(),
    };
    r.elector = new LeaderElector(
      undefined,
      {
        namespace: 'kube-system',
        name: 'ledge-cloudcore',
        identity: s.id,
        ...LEASE,
        onLeadershipChange: (leading) => {
          r.leadingByCallback = leading;
          r.transitions.push({ at: sim.t, leading });
        },
      },
      log,
      { store: api.storeFor(s.id), clock: replicaClock(sim, { rate: s.rate ?? 1, monoOrigin: s.monoOrigin ?? 0, wallSkewMs: s.wallSkewMs ?? 0 }) },
    );
    r.running = r.elector.start(ctx, ac.signal);
    return r;
  });
  const violations: string[] = [];
  const check = () => {
    const byIsLeader = replicas.filter((r) => r.elector.isLeader()).map((r) => r.id);
    const byCallback = replicas.filter((r) => r.leadingByCallback).map((r) => r.id);
    if (byIsLeader.length > 1) violations.push(`t=${sim.t}: isLeader() true on ${byIsLeader.join(', ')}`);
    if (byCallback.length > 1) violations.push(`t=${sim.t}: leading (callbacks) on ${byCallback.join(', ')}`);
    for (const r of replicas) if (r.elector.isLeader() && !r.leadingByCallback) violations.push(`t=${sim.t}: ${r.id} isLeader() without the callback`);
  };
  return { replicas, check, violations, leaders: () => replicas.filter((r) => r.elector.isLeader()).map((r) => r.id) };
}

const MIN = 60_000;

/** Stops replicas (they release the lease over the fake API, on virtual time); each must have stopped within 30 s. */
async function stopAll(sim: Sim, replicas: Replica[], check: () => void): Promise<void> {
  const stopped = new Set<string>();
  const stopping = Promise.all(replicas.map((r) => r.stop().then(() => void stopped.add(r.id))));
  await sim.run(sim.t + 30_000, check);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(
    replicas.filter((r) => !stopped.has(r.id)).map((r) => r.id),
    [],
    'electors stop within 30 s (none stuck in a call)',
  );
  await stopping;
}

describe('leader election: one leader at a time, on skewed clocks and hung calls', () => {
  test('wall clocks 10 minutes apart: the candidate neither takes a live lease nor waits forever for a dead one', async () => {
    const sim = new Sim();
    const links = new Map<string, Link>();
    const api = new FakeApi(
      sim,
      () => 50,
      (id) => links.get(id) ?? 'ok',
    );
    // a starts first and leads; b's wall clock is 10 min ahead, c's 10 min behind.
    const c1 = cluster(sim, api, [{ id: 'a' }]);
    await sim.run(1_000, c1.check);
    assert.deepEqual(c1.leaders(), ['a']);
    const c2 = cluster(sim, api, [
      { id: 'b', wallSkewMs: 10 * MIN, monoOrigin: 123_456 },
      { id: 'c', wallSkewMs: -10 * MIN, rate: 1.01 },
    ]);
    const all = [...c1.replicas, ...c2.replicas];
    const check = () => {
      c1.check();
      c2.check();
      const leaders = all.filter((r) => r.elector.isLeader());
      if (leaders.length > 1) c1.violations.push(`t=${sim.t}: ${leaders.map((r) => r.id).join(', ')} lead`);
    };
    await sim.run(5 * MIN, check);
    assert.deepEqual(c1.violations, []);
    assert.deepEqual(
      all.filter((r) => r.elector.isLeader()).map((r) => r.id),
      ['a'],
      'a keeps leading while it renews',
    );
    assert.deepEqual(
      c2.replicas.map((r) => r.transitions.length),
      [0, 0],
      'nobody else ever led',
    );

    // a's link dies (its calls hang): a steps down within the renew deadline; another takes over, after a's lease ran out.
    links.set('a', 'hang');
    const diedAt = sim.t;
    await sim.run(diedAt + 2 * MIN, check);
    assert.deepEqual(c1.violations, []);
    const aDown = c1.replicas[0]!.transitions.find((x) => !x.leading && x.at >= diedAt)!;
    assert.ok(aDown, 'a was told it no longer leads');
    assert.ok(aDown.at - diedAt <= LEASE.renewDeadlineMs, `a stepped down within the renew deadline (${aDown.at - diedAt} ms)`);
    const next = c2.replicas.flatMap((r) => r.transitions.map((x) => ({ id: r.id, ...x }))).find((x) => x.leading)!;
    assert.ok(next, 'another replica took over');
    assert.ok(next.at > aDown.at, 'only after a stopped');
    assert.ok(next.at - diedAt <= LEASE.leaseDurationMs + 3 * LEASE.renewIntervalMs, `takeover within lease duration + a few retries (${next.at - diedAt} ms)`);
    await stopAll(sim, all, check);
  });

  test('a renew that hangs: the leader steps down before its lease could be taken over, and takes part again once its link heals', async () => {
    const sim = new Sim();
    const links = new Map<string, Link>();
    const api = new FakeApi(
      sim,
      () => 30,
      (id) => links.get(id) ?? 'ok',
    );
    const c = cluster(sim, api, [{ id: 'a' }]);
    await sim.run(1_000, c.check);
    const b = cluster(sim, api, [{ id: 'b', rate: 0.99 }]);
    const check = () => {
      c.check();
      b.check();
      if (c.leaders().length + b.leaders().length > 1) c.violations.push(`t=${sim.t}: two leaders`);
    };
    await sim.run(30_000, check);
    assert.deepEqual(c.leaders(), ['a']);
    // Requests reach the server, but no answer comes back.
    links.set('a', 'apply-then-hang');
    const hungAt = sim.t;
    await sim.run(hungAt + MIN, check);
    assert.deepEqual(c.violations, []);
    const aDown = c.replicas[0]!.transitions.find((x) => !x.leading && x.at >= hungAt);
    assert.ok(aDown && aDown.at - hungAt <= LEASE.renewDeadlineMs, 'a stepped down within the renew deadline');
    const bUp = b.replicas[0]!.transitions.find((x) => x.leading);
    assert.ok(bUp && bUp.at > aDown.at, 'b took over, after a stopped');
    assert.deepEqual(b.leaders(), ['b']);
    // a's link heals: its elector was not stuck in the hung call, it takes part again (and sees b's lease).
    links.set('a', 'ok');
    const callsBefore = api.calls.get('a') ?? 0;
    await sim.run(sim.t + 30_000, check);
    assert.ok((api.calls.get('a') ?? 0) > callsBefore + 5, 'a keeps calling the API after its calls hung');
    assert.deepEqual(b.leaders(), ['b']);
    // b stops gracefully and releases the lease: a, alive, takes it over at once (not after a lease duration).
    const stopAt = sim.t;
    await stopAll(sim, b.replicas, check);
    const aUp = c.replicas[0]!.transitions.find((x) => x.leading && x.at > stopAt);
    assert.ok(aUp && aUp.at - stopAt < LEASE.renewIntervalMs + 1_000, `a took over the released lease at once (${aUp ? aUp.at - stopAt : '-'} ms)`);
    assert.deepEqual(c.leaders(), ['a']);
    assert.deepEqual(c.violations, []);
    await stopAll(sim, c.replicas, check);
  });

  test('randomised: 3 replicas, skewed clocks, latency, hung and lost calls: never two leaders; all take part again when healthy', async (t) => {
    const total = { handovers: 0, timeouts: 0, writes: 0 };
    for (let seed = 1; seed <= 12; seed++) {
      const rnd = prng(seed);
      const sim = new Sim();
      const ids = ['r1', 'r2', 'r3'];
      // Fault windows per replica, during the first 15 minutes; then 3 healthy minutes.
      const faults = new Map<string, { from: number; to: number; link: Link }[]>();
      for (const id of ids) {
        const w: { from: number; to: number; link: Link }[] = [];
        for (let t = rnd() * 60_000; t < 15 * MIN; t += 20_000 + rnd() * 90_000) {
          const link = (['hang', 'apply-then-hang', 'slow'] as const)[Math.floor(rnd() * 3)]!;
          w.push({ from: t, to: t + 2_000 + rnd() * 40_000, link });
        }
        faults.set(id, w);
      }
      const link = (id: string): Link => faults.get(id)!.find((f) => sim.t >= f.from && sim.t < f.to)?.link ?? 'ok';
      const api = new FakeApi(sim, () => 1 + rnd() * 400, link);
      const c = cluster(
        sim,
        api,
        ids.map((id) => ({ id, rate: 0.98 + rnd() * 0.04, monoOrigin: rnd() * 1e9, wallSkewMs: (rnd() - 0.5) * 2 * 60 * MIN })),
      );
      await sim.run(15 * MIN, c.check);
      const calls = new Map(ids.map((id) => [id, api.calls.get(id) ?? 0]));
      await sim.run(18 * MIN, c.check);
      assert.deepEqual(c.violations.slice(0, 5), [], `seed ${seed}`);
      assert.equal(c.leaders().length, 1, `seed ${seed}: one leader once the links are healthy`);
      for (const id of ids) assert.ok((api.calls.get(id) ?? 0) - calls.get(id)! >= 30, `seed ${seed}: ${id} keeps taking part`);
      assert.ok(
        c.replicas.some((r) => r.transitions.length > 2),
        `seed ${seed}: leadership changed hands (the faults mattered)`,
      );
      await stopAll(sim, c.replicas, c.check);
      assert.equal(api.lease?.record.holderIdentity, '', `seed ${seed}: released on stop`);
      total.handovers += c.replicas.reduce((n, r) => n + r.transitions.filter((x) => x.leading).length, 0);
      total.timeouts += c.replicas.reduce((n, r) => n + r.elector.stats.timeouts, 0);
      total.writes += api.writes;
    }
    t.diagnostic(
      `12 runs of 20 virtual minutes: ${total.handovers} acquisitions, ${total.timeouts} calls cut off at their deadline, ${total.writes} lease writes; never two leaders`,
    );
  });

  test('renew interval, deadline and lease duration must be ordered', () => {
    assert.throws(
      () => new LeaderElector(undefined, { namespace: 'n', name: 'l', identity: 'i', leaseDurationMs: 3_000, renewIntervalMs: 2_500 }, log, { store: {} as LeaseStore }),
      (e: { code?: string }) => e.code === 'LEDGE_ERR_CONFIG',
    );
    assert.throws(
      () =>
        new LeaderElector(undefined, { namespace: 'n', name: 'l', identity: 'i', leaseDurationMs: 3_000, renewIntervalMs: 500, renewDeadlineMs: 3_000 }, log, {
          store: {} as LeaseStore,
        }),
      (e: { code?: string }) => e.code === 'LEDGE_ERR_CONFIG',
    );
  });
});
