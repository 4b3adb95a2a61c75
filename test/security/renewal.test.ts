/**
 * The edge's certificate renewal schedule (edge/edgehub/renewal.ts), with a fake clock and fake
 * timers and the HTTPS exchange replaced by CloudCore's real CA signing the CSR: renewal at 80 %
 * of the lifetime ± jitter, backoff after failures (logged once per streak), the one error line
 * of an expired certificate, long waits made of timers under 2^31 ms, unref'd timers, stop, the
 * files (0600, a new key every time, an interrupted write finished or discarded), and the CSR
 * encoder loaded only when a renewal is made.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { caFromPem, generateCaPem, type CertificateAuthority } from '../../cloud/certauthority/index.js';
import { createCsr } from '../../edge/join/csr.js';
import type { TlsRequest, TlsResponse } from '../../edge/join/request.js';
import { CertificateRenewal, PENDING_SUFFIX, completeInterruptedRenewal, writeCredentials, type RenewalTimers } from '../../edge/edgehub/renewal.js';
import { captureLog, type LogCapture } from '../helpers/cloud.js';
import { tempDir } from '../helpers/files.js';
import { eventually, repoRoot } from '../helpers/process.js';

const DAY = 86_400_000;
const MAX_TIMER_MS = 2 ** 31 - 1;
const NODE = 'n1';
const ENDPOINT = 'wss://127.0.0.1:10443/v1/hub';

interface FakeTimer {
  at: number;
  ms: number;
  fn: () => void;
  unrefd: boolean;
  unref(): void;
}

/** A clock and timers that move only when told to. */
function fakeTime(start: number) {
  let now = start;
  const pending: FakeTimer[] = [];
  const created: FakeTimer[] = [];
  const timers: RenewalTimers = {
    setTimeout(fn, ms) {
      const h: FakeTimer = {
        at: now + ms,
        ms,
        fn,
        unrefd: false,
        unref() {
          h.unrefd = true;
        },
      };
      pending.push(h);
      created.push(h);
      return h;
    },
    clearTimeout(handle) {
      const i = pending.indexOf(handle as FakeTimer);
      if (i >= 0) pending.splice(i, 1);
    },
  };
  return {
    timers,
    now: () => now,
    set: (t: number) => {
      now = t;
    },
    pending,
    created,
    /** The one pending timer (the renewal keeps at most one). */
    only(): FakeTimer {
      assert.equal(pending.length, 1, `expected one pending timer, got ${pending.length}`);
      return pending[0]!;
    },
    /** Moves the clock to the earliest timer and fires it. */
    fire(): FakeTimer {
      pending.sort((a, b) => a.at - b.at);
      const h = pending.shift();
      assert.ok(h, 'no timer pending');
      now = Math.max(now, h.at);
      h.fn();
      return h;
    },
  };
}

/** A node with a CA (on the fake clock), its files, and a fake CloudHub that signs with that CA or answers what the script says. */
async function setup(o: { lifetimeMs: number; start?: number; random?: () => number; retryBaseMs?: number; retryMaxMs?: number }) {
  const time = fakeTime(o.start ?? Date.parse('2030-01-01T00:00:00Z'));
  const pem = await generateCaPem();
  const ca: CertificateAuthority = await caFromPem(pem.cert, pem.key, { source: 'files', where: 'test CA', now: time.now });
  const dir = tempDir('ledge-renewal-');
  const files = { certFile: join(dir.path, 'node.crt'), keyFile: join(dir.path, 'node.key'), caFile: join(dir.path, 'ca.crt') };
  const keys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  writeFileSync(files.keyFile, keys.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
  writeFileSync(files.certFile, await ca.signNodeCsr(createCsr(NODE, keys.privateKey, keys.publicKey), NODE, { lifetimeMs: o.lifetimeMs }), { mode: 0o600 });
  writeFileSync(files.caFile, ca.certPem);
  const seen: TlsRequest[] = [];
  /** What the next requests get: a status (an error answer), 'hang' (until aborted), or nothing left: a signed certificate. */
  const script: (number | 'hang')[] = [];
  const request = async (r: TlsRequest): Promise<TlsResponse> => {
    seen.push(r);
    const next = script.shift();
    if (next === 'hang') {
      return new Promise((_, reject) => {
        if (r.signal.aborted) reject(r.signal.reason);
        r.signal.addEventListener('abort', () => reject(r.signal.reason), { once: true });
      });
    }
    if (typeof next === 'number') return { status: next, headers: {}, body: Buffer.from(JSON.stringify({ code: 'LEDGE_ERR_TEST', message: `answered ${next}` })) };
    const { csr } = JSON.parse(r.body!) as { csr: string };
    const certificate = await ca.signNodeCsr(csr, NODE, { lifetimeMs: o.lifetimeMs });
    return { status: 200, headers: {}, body: Buffer.from(JSON.stringify({ certificate, ca: ca.certPem })) };
  };
  const log = captureLog();
  const renewal = new CertificateRenewal({
    nodeName: NODE,
    ...files,
    dataDir: dir.path,
    endpoint: () => ENDPOINT,
    log: log.logger,
    now: time.now,
    timers: time.timers,
    random: o.random ?? (() => 0.5),
    request,
    ...(o.retryBaseMs ? { renewRetryBaseMs: o.retryBaseMs } : {}),
    ...(o.retryMaxMs ? { renewRetryMaxMs: o.retryMaxMs } : {}),
  });
  return { time, ca, dir, files, seen, script, renewal, log };
}

/** notBefore and notAfter (ms) of the certificate in `file`. */
function validity(file: string): { notBefore: number; notAfter: number; serial: string } {
  const x = new X509Certificate(readFileSync(file));
  return { notBefore: Date.parse(x.validFrom), notAfter: Date.parse(x.validTo), serial: x.serialNumber };
}

const dueAt = (v: { notBefore: number; notAfter: number }, fraction: number) => v.notBefore + (v.notAfter - v.notBefore) * fraction;
const lines = (log: LogCapture, level: string, re: RegExp) => log.lines.filter((l) => l.level === level && re.test(String(l.msg)));

describe('certificate renewal schedule', () => {
  test('at 80 % of the lifetime, ± 5 % of it drawn per certificate; the timer is unref’d', async (t) => {
    for (const [r, fraction] of [
      [0.5, 0.8],
      [0, 0.75],
      [0.999, 0.8 + 0.998 * 0.05],
    ] as const) {
      const s = await setup({ lifetimeMs: 10 * DAY, random: () => r });
      t.after(s.dir.cleanup);
      s.renewal.start();
      const v = validity(s.files.certFile);
      const timer = s.time.only();
      assert.equal(timer.at, dueAt(v, fraction), `random ${r}: renewal at ${fraction} of the lifetime`);
      assert.equal(s.renewal.nextAttemptAt, timer.at);
      assert.ok(timer.unrefd, 'the renewal timer does not keep the process alive');
      await s.renewal.stop();
      assert.equal(s.time.pending.length, 0, 'stop clears the timer');
    }
  });

  test('when due: a new key, the CSR only, over the current identity; files replaced 0600; the next renewal scheduled for the new certificate', async (t) => {
    const s = await setup({ lifetimeMs: 10 * DAY });
    t.after(s.dir.cleanup);
    s.renewal.start();
    const before = { key: readFileSync(s.files.keyFile, 'utf8'), cert: readFileSync(s.files.certFile, 'utf8'), v: validity(s.files.certFile) };
    s.time.set(s.time.only().at - 1);
    assert.equal(s.seen.length, 0);
    s.time.fire();
    await s.renewal.idle();
    assert.equal(s.seen.length, 1, 'one renewal request');
    const req = s.seen[0]!;
    assert.equal(req.method, 'POST');
    assert.equal(req.path, '/v1/renew');
    assert.deepEqual(req.target, { host: '127.0.0.1', port: 10443, origin: 'https://127.0.0.1:10443' });
    assert.equal(req.verify?.ca, readFileSync(s.files.caFile, 'utf8'), 'CloudHub verified against hub.caFile');
    assert.deepEqual(req.clientCert, { cert: before.cert, key: before.key }, 'authenticated by the current certificate and key');
    const body = JSON.parse(req.body!) as Record<string, unknown>;
    assert.deepEqual(Object.keys(body), ['csr'], 'the body is the CSR, nothing else');
    assert.doesNotMatch(req.body!, /PRIVATE KEY/, 'no key leaves the device');

    const key = readFileSync(s.files.keyFile, 'utf8');
    const cert = new X509Certificate(readFileSync(s.files.certFile));
    assert.notEqual(key, before.key, 'a new key');
    assert.ok(cert.checkPrivateKey(createPrivateKey(key)), 'the new certificate is for the new key');
    assert.notEqual(cert.serialNumber, before.v.serial);
    assert.equal(statSync(s.files.keyFile).mode & 0o777, 0o600);
    assert.equal(statSync(s.files.certFile).mode & 0o777, 0o600);
    assert.ok(!existsSync(s.files.keyFile + PENDING_SUFFIX) && !existsSync(s.files.certFile + PENDING_SUFFIX), 'no pending files left');
    assert.equal(s.renewal.stats.renewed, 1);
    assert.equal(lines(s.log, 'info', /^renewed the client certificate; /).length, 1);
    assert.equal(s.time.only().at, dueAt(validity(s.files.certFile), 0.8), 'the next renewal: 80 % of the new certificate');

    // Again, and again: each renewal schedules the next.
    for (let i = 0; i < 2; i++) {
      s.time.fire();
      await s.renewal.idle();
    }
    assert.equal(s.renewal.stats.renewed, 3);
    assert.equal(s.seen.length, 3);
    await s.renewal.stop();
  });

  test('failures back off (doubling, equal jitter, capped), are logged once per streak, and change nothing', async (t) => {
    const base = 10_000;
    const max = 80_000;
    const s = await setup({ lifetimeMs: 10 * DAY, retryBaseMs: base, retryMaxMs: max });
    t.after(s.dir.cleanup);
    s.script.push(503, 503, 500, 401, 429, 503);
    s.renewal.start();
    const files = () => [readFileSync(s.files.keyFile, 'utf8'), readFileSync(s.files.certFile, 'utf8')];
    const original = files();
    s.time.fire();
    await s.renewal.idle();
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      const timer = s.time.only();
      delays.push(timer.at - s.time.now());
      s.time.fire();
      await s.renewal.idle();
    }
    // random 0.5: three quarters of each cap; caps 10, 20, 40, 80, 80 s.
    assert.deepEqual(delays, [0.75 * base, 1.5 * base, 3 * base, 0.75 * max, 0.75 * max]);
    assert.deepEqual(files(), original, 'a failed renewal leaves the key and certificate alone');
    assert.equal(s.renewal.stats.failed, 6);
    const warned = lines(s.log, 'warn', /^client certificate renewal failed/);
    assert.equal(warned.length, 1, 'one warning for the streak');
    assert.match(String(warned[0]!.msg), /HTTP 503 LEDGE_ERR_TEST.*answered 503.*the current certificate \(valid until .*\) and the link stay as they are/);
    assert.equal(lines(s.log, 'debug', /renewal failed again/).length, 5);

    // The seventh attempt succeeds: one line saying how many failed, and the backoff starts over.
    s.time.fire();
    await s.renewal.idle();
    assert.equal(lines(s.log, 'info', /^renewed the client certificate after 6 failed attempts/).length, 1);
    assert.notDeepEqual(files(), original);
    s.script.push(503);
    s.time.fire();
    await s.renewal.idle();
    assert.equal(lines(s.log, 'warn', /^client certificate renewal failed/).length, 2, 'a new streak is logged again');
    assert.equal(s.time.only().at - s.time.now(), 0.75 * base, 'the backoff was reset by the success');
    await s.renewal.stop();
  });

  test('retries come faster than the backoff near the expiry; an expiry during a failing streak is one error line, then nothing', async (t) => {
    const s = await setup({ lifetimeMs: 120_000, retryBaseMs: 60_000, retryMaxMs: 600_000 });
    t.after(s.dir.cleanup);
    for (let i = 0; i < 100; i++) s.script.push(503);
    s.renewal.start();
    const v = validity(s.files.certFile);
    let fired = 0;
    while (s.time.pending.length && fired < 100) {
      const timer = s.time.only();
      const left = v.notAfter - s.time.now();
      if (fired > 0) assert.ok(timer.at - s.time.now() <= Math.max(1000, left / 2), 'a retry never waits past half the time left');
      s.time.fire();
      fired++;
      await s.renewal.idle();
    }
    assert.equal(s.time.pending.length, 0, 'nothing is scheduled after the expiry');
    assert.ok(fired > 3, `several retries before the expiry (${fired})`);
    const errors = lines(s.log, 'error', /expired/);
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.code, 'LEDGE_ERR_CERT_EXPIRED');
    assert.match(String(errors[0]!.msg), /edgecore join --force --cloud https:\/\/127\.0\.0\.1:10443 --token <token> --node-name n1 --data-dir /);
    assert.equal(lines(s.log, 'warn', /renewal failed/).length, 1);
  });

  test('a certificate expired at start: one error line with the recovery, no timer, no request', async (t) => {
    const s = await setup({ lifetimeMs: DAY });
    t.after(s.dir.cleanup);
    s.time.set(validity(s.files.certFile).notAfter + 1000);
    s.renewal.start();
    assert.equal(s.time.pending.length, 0);
    const errors = s.log.lines.filter((l) => l.level === 'error');
    assert.equal(errors.length, 1, JSON.stringify(s.log.lines));
    assert.match(String(errors[0]!.msg), /^the client certificate .*node\.crt expired at .*: CloudHub refuses this node until it joins again\. Re-join: .*edgecore join --force/);
    assert.equal(s.seen.length, 0);
  });

  test('a one-year certificate: no timer longer than 2^31-1 ms, no request before 80 %', async (t) => {
    const s = await setup({ lifetimeMs: 365 * DAY });
    t.after(s.dir.cleanup);
    s.renewal.start();
    const due = dueAt(validity(s.files.certFile), 0.8);
    let wakes = 0;
    while (s.seen.length === 0 && wakes < 50) {
      const timer = s.time.only();
      assert.ok(timer.ms <= MAX_TIMER_MS, `timer of ${timer.ms} ms`);
      s.time.fire();
      wakes++;
      await s.renewal.idle();
      if (s.seen.length === 0) assert.ok(s.time.now() < due, 'a wake before the due time re-arms');
    }
    assert.equal(s.seen.length, 1);
    assert.ok(wakes > 10, `the ~292-day wait took ${wakes} timers`);
    assert.ok(s.time.now() >= due && s.time.now() - due < 1000, 'renewed when due');
    await s.renewal.stop();
  });

  test('stop aborts a renewal in flight: nothing written, nothing logged, nothing scheduled', async (t) => {
    const s = await setup({ lifetimeMs: 10 * DAY });
    t.after(s.dir.cleanup);
    s.script.push('hang');
    s.renewal.start();
    const before = readFileSync(s.files.certFile, 'utf8');
    s.time.fire();
    await eventually(() => s.seen.length === 1, 10_000, 'the renewal request');
    await s.renewal.stop();
    assert.equal(s.seen.length, 1);
    assert.equal(readFileSync(s.files.certFile, 'utf8'), before);
    assert.equal(s.time.pending.length, 0);
    assert.equal(lines(s.log, 'warn', /renewal failed/).length, 0);
  });

  test('an answer that is not a certificate for the new key, this node and the CA is refused; the files stay', async (t) => {
    const s = await setup({ lifetimeMs: 10 * DAY });
    t.after(s.dir.cleanup);
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = await generateCaPem();
    const foreign = await caFromPem(pem.cert, pem.key, { source: 'files', where: 'foreign', now: s.time.now });
    const answers: ((csr: string) => Promise<unknown>)[] = [
      async () => ({ certificate: await s.ca.signNodeCsr(createCsr(NODE, other.privateKey, other.publicKey), NODE) }),
      async (csr) => ({ certificate: await s.ca.signNodeCsr(csr, 'n2') }),
      async (csr) => ({ certificate: await foreign.signNodeCsr(csr, NODE) }),
      async (csr) => ({ certificate: await s.ca.signNodeCsr(csr, NODE), ca: foreign.certPem }),
      async () => ({ certificate: 'not a certificate' }),
    ];
    const expected = [/not for the node's new key/, /names "CN=system:node:n2/, /not signed by a CA of hub\.caFile/, /a CA that is not in hub\.caFile/, /cannot be parsed/];
    const before = [readFileSync(s.files.keyFile, 'utf8'), readFileSync(s.files.certFile, 'utf8')];
    for (const [i, answer] of answers.entries()) {
      const r = new CertificateRenewal({
        nodeName: NODE,
        ...s.files,
        dataDir: s.dir.path,
        endpoint: () => ENDPOINT,
        log: s.log.logger,
        now: s.time.now,
        timers: s.time.timers,
        request: async (req) => ({ status: 200, headers: {}, body: Buffer.from(JSON.stringify(await answer((JSON.parse(req.body!) as { csr: string }).csr))) }),
      });
      assert.equal(await r.renewNow(), false);
      assert.match(String(s.log.lines.at(-1)!.msg), expected[i]!);
    }
    assert.deepEqual([readFileSync(s.files.keyFile, 'utf8'), readFileSync(s.files.certFile, 'utf8')], before);
  });
});

describe('certificate files', () => {
  test('an interrupted renewal is finished when the new key was already in place, else discarded', async (t) => {
    const s = await setup({ lifetimeMs: 10 * DAY });
    t.after(s.dir.cleanup);
    const { certFile, keyFile } = s.files;
    const oldCert = readFileSync(certFile, 'utf8');
    const fresh = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const freshKey = fresh.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const freshCert = await s.ca.signNodeCsr(createCsr(NODE, fresh.privateKey, fresh.publicKey), NODE);

    // Stopped before the renames: the current pair is intact; the pending files go.
    writeFileSync(keyFile + PENDING_SUFFIX, freshKey, { mode: 0o600 });
    writeFileSync(certFile + PENDING_SUFFIX, freshCert, { mode: 0o600 });
    assert.equal(completeInterruptedRenewal(certFile, keyFile, s.log.logger), 'discarded');
    assert.equal(readFileSync(certFile, 'utf8'), oldCert);
    assert.ok(!existsSync(keyFile + PENDING_SUFFIX) && !existsSync(certFile + PENDING_SUFFIX));

    // Stopped between the renames: the new key is in place, its certificate still pending.
    writeFileSync(keyFile, freshKey, { mode: 0o600 });
    writeFileSync(certFile + PENDING_SUFFIX, freshCert, { mode: 0o600 });
    assert.equal(completeInterruptedRenewal(certFile, keyFile, s.log.logger), 'completed');
    assert.ok(new X509Certificate(readFileSync(certFile)).checkPrivateKey(createPrivateKey(readFileSync(keyFile))));
    assert.equal(completeInterruptedRenewal(certFile, keyFile, s.log.logger), 'none');

    // writeCredentials leaves the pair in place, 0600, and no pending file.
    await writeCredentials(certFile, keyFile, oldCert, readFileSync(keyFile, 'utf8'));
    assert.equal(readFileSync(certFile, 'utf8'), oldCert);
    assert.equal(statSync(certFile).mode & 0o777, 0o600);
    assert.ok(!existsSync(certFile + PENDING_SUFFIX));
  });
});

describe('lazy CSR encoder', () => {
  test('EdgeHub and a scheduled renewal load no ASN.1 code; the first renewal does', async () => {
    // A loader hook that reports every module URL loaded (with a ping to flush the reports).
    const hook = `let port; export function initialize(d) { port = d.port; port.on('message', () => port.postMessage('flushed')); }
export async function load(url, context, next) { port.postMessage(url); return next(url, context); }`;
    const script = `
import { register } from 'node:module';
import { MessageChannel } from 'node:worker_threads';
const { port1, port2 } = new MessageChannel();
const seen = [];
let flushed;
port1.on('message', (m) => (m === 'flushed' ? flushed?.() : seen.push(m)));
register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hook)}), { data: { port: port2 }, transferList: [port2] });
const flush = () => new Promise((r) => { flushed = r; port1.postMessage('ping'); });
const asn1 = () => seen.filter((u) => /@peculiar|edge\\/join\\/csr/.test(u)).length;
const { EdgeHub } = await import('./edge/edgehub/index.ts');
const { CertificateRenewal } = await import('./edge/edgehub/renewal.ts');
const { silentLogger } = await import('./shared/log/index.ts');
const files = JSON.parse(process.argv[1]);
const r = new CertificateRenewal({ nodeName: 'n1', ...files, dataDir: '.', endpoint: () => 'wss://127.0.0.1:1', log: silentLogger,
  request: async () => ({ status: 503, headers: {}, body: Buffer.from('{}') }) });
r.start();
await flush();
const idle = asn1();
await r.renewNow();
await r.stop();
await flush();
console.log(JSON.stringify({ edgehub: typeof EdgeHub, idle, renewed: asn1() }));
port1.close();
`;
    const pki = tempDir('ledge-lazy-');
    try {
      const files = { certFile: join(pki.path, 'node.crt'), keyFile: join(pki.path, 'node.key'), caFile: join(pki.path, 'ca.crt') };
      // Any certificate and its key will do (a CA's: valid ten years, so the renewal is not due).
      const pem = await generateCaPem();
      writeFileSync(files.certFile, pem.cert);
      writeFileSync(files.caFile, pem.cert);
      writeFileSync(files.keyFile, pem.key);
      const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, JSON.stringify(files)], { cwd: repoRoot, encoding: 'utf8', timeout: 60_000 });
      assert.equal(r.status, 0, r.stderr);
      const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { edgehub: string; idle: number; renewed: number };
      assert.equal(out.edgehub, 'function');
      assert.equal(out.idle, 0, 'no ASN.1 module before a renewal');
      assert.ok(out.renewed > 0, 'the renewal loaded the CSR encoder (the check sees it)');
    } finally {
      pki.cleanup();
    }
  });
});
