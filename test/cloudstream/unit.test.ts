/**
 * CloudStream's pure parts: the kubelet query → StreamRequest translation, the edge error →
 * HTTP status map, Lease names, options checks, the serving certificate kept across restarts,
 * and the Lease writer's coalescing (bounded concurrency, one pending write per node, the
 * session state read when the write runs, retry after a failure).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { ErrorCode } from '../../shared/errors/index.js';
import {
  cloudStreamEndpoint,
  execRequest,
  logsRequest,
  refusalFor,
  resolveCloudStreamOptions,
  streamLeaseName,
  type PeerInfo,
  type StreamPeers,
} from '../../cloud/cloudstream/index.js';
import { loadOrCreateServingCert } from '../../cloud/cloudstream/cert.js';
import { LeaseKeeper } from '../../cloud/cloudstream/leases.js';
import { tempDir } from '../helpers/files.js';
import { eventually } from '../helpers/process.js';
import { quietLog } from './helpers.js';

const route = (kind: 'logs' | 'exec' | 'attach', query: string) => ({ kind, namespace: 'ns', pod: 'p', container: 'c', query: new URLSearchParams(query) });
const SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

describe('kubelet queries', () => {
  test('logs: every option, typed', () => {
    assert.deepEqual(logsRequest(route('logs', 'follow=true&previous=false&timestamps=true&tailLines=0&limitBytes=5&sinceTime=2024-05-01T10:00:00.5%2B02:00')), {
      kind: 'logs',
      namespace: 'ns',
      pod: 'p',
      container: 'c',
      follow: true,
      previous: false,
      timestamps: true,
      tailLines: 0,
      limitBytes: 5,
      sinceTime: '2024-05-01T10:00:00.5+02:00',
    });
    assert.deepEqual(logsRequest(route('logs', '')), { kind: 'logs', namespace: 'ns', pod: 'p', container: 'c' });
  });

  test('logs: bad values are StreamRequest errors', () => {
    for (const q of ['tailLines=1e3', 'tailLines=99999999999999999', 'sinceSeconds=0', 'limitBytes=', 'timestamps=yes', 'sinceTime=2024-05-01']) {
      assert.throws(
        () => logsRequest(route('logs', q)),
        (e: { code?: string }) => e.code === ErrorCode.StreamRequest,
        q,
      );
    }
  });

  test('exec/attach: kubelet names and PodExecOptions names; tty drops stderr; at least one stream; exec needs a command', () => {
    assert.deepEqual(execRequest(route('exec', 'command=ls&command=-l&input=1&output=1&error=1')), {
      kind: 'exec',
      namespace: 'ns',
      pod: 'p',
      container: 'c',
      command: ['ls', '-l'],
      stdin: true,
      stdout: true,
      stderr: true,
      tty: false,
    });
    assert.deepEqual(execRequest(route('attach', 'stdin=true&stdout=true&stderr=true&tty=true')), {
      kind: 'attach',
      namespace: 'ns',
      pod: 'p',
      container: 'c',
      stdin: true,
      stdout: true,
      stderr: false,
      tty: true,
    });
    assert.throws(() => execRequest(route('exec', 'command=ls')), /at least 1 of stdin, stdout, stderr/);
    assert.throws(() => execRequest(route('exec', 'output=1')), /needs a command/);
    assert.throws(() => execRequest(route('attach', 'tty=1&error=1')), /at least 1/, 'tty leaves no stderr');
  });

  test('edge errors → HTTP status', () => {
    const status = (code: string) => refusalFor({ code, message: 'm' }).code;
    assert.equal(status(ErrorCode.NotFound), 404);
    assert.equal(status(ErrorCode.StreamRequest), 400);
    assert.equal(status(ErrorCode.Forbidden), 403);
    assert.equal(status(ErrorCode.Unsupported), 501);
    assert.equal(status(ErrorCode.Disconnected), 503);
    assert.equal(status(ErrorCode.QueueFull), 503);
    assert.equal(status(ErrorCode.Timeout), 504);
    assert.equal(status(ErrorCode.StreamProtocol), 500);
    assert.equal(status('LEDGE_ERR_SOMETHING_NEW'), 500);
  });
});

test('Lease names: the prefix and the node; over 253 characters cut, hashed, a valid subdomain, distinct', () => {
  assert.equal(streamLeaseName('edge-1'), 'ledge-stream-edge-1');
  const a = `${'a'.repeat(62)}.${'b'.repeat(62)}.${'c'.repeat(62)}.${'d'.repeat(58)}-`.replace(/-$/, 'x');
  const b = `${a.slice(0, -1)}y`;
  for (const n of [a, b, `${'x'.repeat(238)}.yz`]) {
    const name = streamLeaseName(n);
    assert.ok(name.length <= 253, `${name.length}`);
    assert.match(name, SUBDOMAIN);
  }
  assert.notEqual(streamLeaseName(a), streamLeaseName(b));
});

test('the Node endpoint from the options: advertise address, else a specific host; advertise port, else the port', () => {
  assert.deepEqual(cloudStreamEndpoint({}), { address: '127.0.0.1', port: 10350 });
  assert.deepEqual(cloudStreamEndpoint({ host: '10.0.0.5', port: 1234 }), { address: '10.0.0.5', port: 1234 });
  assert.deepEqual(cloudStreamEndpoint({ host: '0.0.0.0', advertiseAddress: '203.0.113.7', advertisePort: 443 }), { address: '203.0.113.7', port: 443 });
  assert.match(cloudStreamEndpoint({ host: '0.0.0.0' }).address, /^\d+\.\d+\.\d+\.\d+$/);
});

test('options: defaults and the checks', () => {
  const o = resolveCloudStreamOptions({ dataDir: '/x' });
  assert.equal(o.host, '127.0.0.1');
  assert.equal(o.port, 10350);
  assert.equal(o.namespace, 'kube-system');
  assert.equal(o.maxConcurrent, 256);
  assert.equal(o.insecureNoClientAuth, false);
  assert.throws(() => resolveCloudStreamOptions({ dataDir: '/x', tlsCertFile: 'a' }), /together/);
  assert.throws(() => resolveCloudStreamOptions({ dataDir: '/x', peerAddress: 'http://h:1' }), /https/);
  assert.throws(() => resolveCloudStreamOptions({ dataDir: '/x', maxConcurrent: 0 }), /maxConcurrent/);
});

test('the generated serving certificate is kept across restarts, and remade when its names change', async () => {
  const d = tempDir('ledge-cloudstream-cert-');
  try {
    const dir = join(d.path, 'cloudstream');
    const first = await loadOrCreateServingCert(dir, ['10.1.2.3', '127.0.0.1', 'localhost']);
    const again = await loadOrCreateServingCert(dir, ['localhost', '127.0.0.1', '10.1.2.3']);
    assert.equal(again.sha256, first.sha256, 'the same certificate');
    const x = new X509Certificate(first.cert);
    assert.match(x.subjectAltName ?? '', /IP Address:10\.1\.2\.3/);
    assert.match(x.subjectAltName ?? '', /DNS:localhost/);
    assert.equal(readFileSync(join(dir, 'server.key'), 'utf8'), first.key);
    const moved = await loadOrCreateServingCert(dir, ['10.9.9.9', '127.0.0.1', 'localhost']);
    assert.notEqual(moved.sha256, first.sha256);
    assert.match(new X509Certificate(moved.cert).subjectAltName ?? '', /10\.9\.9\.9/);
  } finally {
    d.cleanup();
  }
});

describe('LeaseKeeper', () => {
  const self: PeerInfo = { identity: 'me', address: 'https://10.0.0.1:10350', certSha256: 'AA' };

  /** Peers whose writes wait until the test lets them finish. */
  function gatedPeers() {
    const log: string[] = [];
    const gates: { node: string; op: string; finish: (err?: Error) => void }[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const write = (op: string) => (node: string) =>
      new Promise<void>((resolve, reject) => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        log.push(`${op} ${node}`);
        gates.push({
          node,
          op,
          finish: (err) => {
            inFlight--;
            if (err) reject(err);
            else resolve();
          },
        });
      });
    const peers: StreamPeers = { holder: async () => undefined, token: async () => 't', claim: write('claim'), release: write('release') };
    return { peers, log, gates, max: () => maxInFlight };
  }

  const keeper = (peers: StreamPeers, connected: () => boolean) => new LeaseKeeper(peers, () => self, connected, quietLog());

  test('at most 4 writes in flight; the rest wait; each node written', async () => {
    const g = gatedPeers();
    const k = keeper(g.peers, () => true);
    for (let i = 0; i < 10; i++) k.touch(`n${i}`);
    await eventually(() => g.gates.length === 4, 5_000, 'four writes');
    assert.equal(g.max(), 4);
    while (g.log.length < 10 || g.gates.length > 0) {
      await eventually(() => g.gates.length > 0, 5_000, 'a write');
      g.gates.shift()!.finish();
    }
    assert.equal(g.max(), 4);
    assert.deepEqual(g.log.sort(), Array.from({ length: 10 }, (_, i) => `claim n${i}`).sort());
    k.stop();
  });

  test('many reports for one node while it is written: one more write, of the state at that time', async () => {
    const g = gatedPeers();
    let connected = true;
    const k = keeper(g.peers, () => connected);
    k.touch('n');
    await eventually(() => g.gates.length === 1, 5_000, 'the first write');
    for (let i = 0; i < 5; i++) k.touch('n');
    connected = false; // the session ended meanwhile: the next write releases
    g.gates.shift()!.finish();
    await eventually(() => g.gates.length === 1, 5_000, 'the second write');
    g.gates.shift()!.finish();
    await eventually(() => g.log.length === 2, 5_000, 'the writes to settle');
    assert.deepEqual(g.log, ['claim n', 'release n']);
    k.stop();
  });

  test('a failed write is retried', async () => {
    const g = gatedPeers();
    const k = keeper(g.peers, () => true);
    k.touch('n');
    await eventually(() => g.gates.length === 1, 5_000, 'the write');
    g.gates.shift()!.finish(new Error('the API is down'));
    await eventually(() => g.gates.length === 1, 10_000, 'the retry');
    g.gates.shift()!.finish();
    assert.deepEqual(g.log, ['claim n', 'claim n']);
    assert.equal(k.stats.failures, 1);
    k.stop();
  });
});
