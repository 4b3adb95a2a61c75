/**
 * Node revocation, the parts without a network (issue 13, cloud/revocation): the decision (a
 * certificate issued before the node's revocation time is refused, one issued after it — a re-join
 * — is accepted, the CA's backdate and the one-second precision of certificate times included),
 * the ConfigMap's parsing (malformed entries logged and left out, never a crash), the module's
 * state (deletions, the ConfigMap, fail-closed start) and the store's writes against a fake API
 * that answers like the API server (resourceVersion conflicts, 404, Date header).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import type * as X509 from '@peculiar/x509';
import { loadKube, type k8s, type WatchedResource } from '../../cloud/kube/index.js';
import { caFromPem, generateCaPem } from '../../cloud/certauthority/index.js';
import {
  certificateTimes,
  createNodeRevocation,
  createRevocationStore,
  defaultRevocationOptions,
  parseRevocations,
  parseRfc3339,
  revocationRefusal,
  type CertificateTimes,
  type RevocationApi,
  type RevocationStore,
  type RevokeResult,
} from '../../cloud/revocation/index.js';
import { EDGE_ROLE_LABEL } from '../../cloud/edgecontroller/index.js';
import { KEY_ALGORITHM, generateKeyPair, loadX509 } from '../../shared/x509/index.js';
import { captureLog } from '../helpers/cloud.js';
import { eventually } from '../helpers/process.js';

const B = defaultRevocationOptions.backdateMs; // 5 min, as the CA backdates
const o = { backdateMs: B, toleranceMs: defaultRevocationOptions.toleranceMs };
const T = Date.parse('2025-06-01T12:00:00.400Z');
const YEAR = 365 * 86_400_000;
/** notBefore as a certificate carries it: cut to the second. */
const toSecond = (ms: number) => Math.floor(ms / 1000) * 1000;
/** The times of a certificate the CA issues at `issuedAt`, backdated by `backdate`, living `lifetime`. */
const issued = (issuedAt: number, backdate = B, lifetime = YEAR): CertificateTimes => ({ notBeforeMs: toSecond(issuedAt - backdate), notAfterMs: toSecond(issuedAt + lifetime) });

describe('revocation decision', () => {
  test('a node that is not revoked is accepted, whatever its certificate', () => {
    assert.equal(revocationRefusal('n1', undefined, issued(T - 10 * YEAR), o), undefined);
    assert.equal(revocationRefusal('n1', undefined, { notBeforeMs: Number.NaN, notAfterMs: Number.NaN }, o), undefined);
  });

  test('a certificate issued before the revocation is refused, with the reason the contract gives', () => {
    assert.equal(revocationRefusal('n1', T, issued(T - 86_400_000), o), 'node n1 was revoked at 2025-06-01T12:00:00.400Z: re-join it (edgecore join --force with a new token)');
    // A second and a half before T: outside the one-second tolerance.
    assert.match(String(revocationRefusal('n1', T, issued(T - 1500), o)), /was revoked at/);
  });

  test('a certificate issued at or after the revocation is accepted (a re-join right after a revoke), at every millisecond of the second', () => {
    for (let d = 0; d < 3000; d += 7) assert.equal(revocationRefusal('n1', T, issued(T + d), o), undefined, `issued ${d} ms after T`);
    // The same for a revocation time on a second boundary.
    const T0 = toSecond(T);
    for (let d = 0; d < 1000; d += 3) assert.equal(revocationRefusal('n1', T0, issued(T0 + d), o), undefined, `issued ${d} ms after T0`);
  });

  test("the backdate: a fresh certificate's notBefore lies 5 minutes before T, and it is still accepted; not counting the backdate would refuse it", () => {
    const fresh = issued(T + 10);
    assert.ok(fresh.notBeforeMs < T - 4 * 60_000);
    assert.equal(revocationRefusal('n1', T, fresh, o), undefined);
    assert.match(String(revocationRefusal('n1', T, fresh, { ...o, backdateMs: 0 })), /was revoked/);
    // A short-lived certificate is backdated by a tenth of its lifetime (6 s for 60 s): accepted when issued after T too.
    assert.equal(revocationRefusal('n1', T, issued(T + 1, 6000, 60_000), o), undefined);
  });

  test('unreadable certificate times are refused for a revoked node', () => {
    assert.match(String(revocationRefusal('n1', T, { notBeforeMs: Number.NaN, notAfterMs: Number.NaN }, o)), /was revoked/);
  });

  test("certificates from the real CA (its clock set before and after T), read from node's X509Certificate", async () => {
    const { cert, key } = await generateCaPem();
    const csr = await makeCsr();
    const issuedAt = async (ms: number) => {
      const ca = await caFromPem(cert, key, { source: 'files', where: 'test CA', now: () => ms });
      return certificateTimes(new X509Certificate(await ca.signNodeCsr(csr, 'n1')));
    };
    assert.equal(revocationRefusal('n1', T, await issuedAt(T + 1), o), undefined, 'issued 1 ms after T');
    assert.equal(revocationRefusal('n1', T, await issuedAt(T + 600), o), undefined, 'issued 600 ms after T');
    assert.match(String(revocationRefusal('n1', T, await issuedAt(T - 2000), o)), /was revoked/, 'issued 2 s before T');
    assert.match(String(revocationRefusal('n1', T, await issuedAt(T - 30 * 86_400_000), o)), /was revoked/, 'issued a month before');
  });
});

describe('revocation ConfigMap parsing', () => {
  test('node: RFC 3339 entries are read; every other entry is described and left out', () => {
    const { entries, problems } = parseRevocations({
      'edge-1': '2025-06-01T12:00:00Z',
      'edge-2.example': '2025-06-01T14:00:00.123+02:00',
      'edge-3': '  2025-06-01t12:00:00z ',
      Upper: '2025-06-01T12:00:00Z',
      'bad..name': '2025-06-01T12:00:00Z',
      'edge-4': 'yesterday',
      'edge-5': '2025-02-30T00:00:00Z',
      'edge-6': '2025-06-01 12:00:00',
      'edge-7': '1748779200',
      'edge-8': '',
      'edge-9': '2025-06-01T24:00:00Z',
    });
    assert.deepEqual(
      [...entries],
      [
        ['edge-1', Date.parse('2025-06-01T12:00:00Z')],
        ['edge-2.example', Date.parse('2025-06-01T12:00:00.123Z')],
        ['edge-3', Date.parse('2025-06-01T12:00:00Z')],
      ],
    );
    assert.equal(problems.length, 8, problems.join('\n'));
    assert.match(problems.join('\n'), /"Upper": not a node name/);
    assert.match(problems.join('\n'), /"edge-5": "2025-02-30T00:00:00Z" is not an RFC 3339 time/);
  });

  test('never throws, whatever the data holds', () => {
    const junk: unknown[] = [undefined, null, 'text', 42, [], ['a'], { a: 1 }, { a: null }, { a: { b: 'c' } }, { a: 'x'.repeat(100_000) }, { ['y'.repeat(10_000)]: 'z' }];
    for (const data of junk) {
      const r = parseRevocations(data);
      assert.equal(r.entries.size, 0, JSON.stringify(data)?.slice(0, 50));
    }
    assert.deepEqual(parseRevocations(['a']).problems, ['data is an array, not a map']);
    for (const text of ['', 'T', '2025-13-01T00:00:00Z', '2025-01-01T00:00:60Z', '2025-01-01T00:00:00+25:00', '2025-01-01T00:00:00.1234567890Z'])
      assert.equal(parseRfc3339(text), undefined, text);
  });
});

/** A fake edge-Node informer: what the EdgeController hands over. */
function fakeNodeInformer(): { informers: { nodes: WatchedResource<k8s.V1Node> }; emitDelete(node: k8s.V1Node): void } {
  const handlers: ((n: k8s.V1Node) => void)[] = [];
  const nodes = { on: (event: string, h: (n: k8s.V1Node) => void) => void (event === 'delete' && handlers.push(h)) } as unknown as WatchedResource<k8s.V1Node>;
  return {
    informers: { nodes },
    emitDelete: (n) => {
      for (const h of handlers) h(n);
    },
  };
}

const configMap = (data: Record<string, string>): k8s.V1ConfigMap => ({ metadata: { name: 'ledge-revoked-nodes', namespace: 'kube-system' }, data });

describe('NodeRevocation state', () => {
  test('the ConfigMap revokes nodes, announces them once, logs malformed entries once per distinct set, and an entry removed unrevokes', () => {
    const log = captureLog();
    let now = T + 60_000;
    const r = createNodeRevocation({}, { log: log.logger, now: () => now });
    const announced: string[][] = [];
    r.onRevoked((nodes) => announced.push(nodes));
    const old = issued(T - 86_400_000);
    r.applyConfigMap(configMap({ 'edge-1': new Date(T).toISOString(), 'edge-2': 'garbage' }));
    assert.match(String(r.refusal('edge-1', old)), /node edge-1 was revoked at/);
    assert.equal(r.refusal('edge-2', old), undefined, 'a malformed entry revokes nothing');
    assert.equal(r.refusal('edge-1', issued(T + 5)), undefined, 're-joined');
    assert.deepEqual(announced, [['edge-1']]);
    const warnings = () => log.lines.filter((l) => l.code === 'LEDGE_ERR_REVOCATION_LIST');
    assert.equal(warnings().length, 1);
    assert.match(String(warnings()[0]!.msg), /"edge-2": "garbage" is not an RFC 3339 time/);
    // The same content again (a resync): nothing announced, nothing logged again.
    r.applyConfigMap(configMap({ 'edge-1': new Date(T).toISOString(), 'edge-2': 'garbage' }));
    assert.deepEqual(announced, [['edge-1']]);
    assert.equal(warnings().length, 1);
    // A later time for edge-1 (revoked again): announced again.
    now += 1000;
    r.applyConfigMap(configMap({ 'edge-1': new Date(T + 30_000).toISOString() }));
    assert.deepEqual(announced, [['edge-1'], ['edge-1']]);
    r.applyConfigMap(configMap({}));
    assert.equal(r.refusal('edge-1', old), undefined, 'unrevoked');
    r.applyConfigMap(configMap({ 'edge-1': '2025-06-01T12:00:00Z' }));
    r.applyConfigMap(undefined);
    assert.equal(r.refusal('edge-1', old), undefined, 'the ConfigMap deleted');
  });

  test('a deleted edge Node revokes its node at the deletion time; a Node that only lost the edge label does not', () => {
    const log = captureLog();
    const now = T;
    const r = createNodeRevocation({}, { log: log.logger, now: () => now });
    const announced: string[][] = [];
    r.onRevoked((nodes) => announced.push(nodes));
    const { informers, emitDelete } = fakeNodeInformer();
    r.attach(informers);
    emitDelete({ metadata: { name: 'edge-1', labels: { [EDGE_ROLE_LABEL]: '' } } });
    emitDelete({ metadata: { name: 'edge-2', labels: { 'kubernetes.io/hostname': 'edge-2' } } });
    assert.deepEqual(announced, [['edge-1']]);
    assert.equal(r.revokedAt('edge-1'), T);
    assert.equal(r.revokedAt('edge-2'), undefined);
    assert.match(String(r.refusal('edge-1', issued(T - 60_000))), /was revoked at 2025-06-01T12:00:00.400Z/);
    assert.equal(r.refusal('edge-1', issued(T + 1)), undefined);
  });

  test('a deletion counts from memory until the ConfigMap holds it, then from the ConfigMap (so unrevoking it works)', () => {
    const r = createNodeRevocation({}, { log: captureLog().logger, now: () => T });
    const old = issued(T - 60_000);
    r.nodeDeleted('edge-1');
    r.applyConfigMap(configMap({})); // the ConfigMap does not hold it yet: still revoked
    assert.match(String(r.refusal('edge-1', old)), /was revoked/);
    r.applyConfigMap(configMap({ 'edge-1': new Date(T).toISOString() }));
    assert.match(String(r.refusal('edge-1', old)), /was revoked/);
    r.applyConfigMap(configMap({})); // `ledge node unrevoke edge-1`
    assert.equal(r.refusal('edge-1', old), undefined);
  });

  test('fails closed until the ConfigMap was listed: every certificate is refused', async () => {
    await loadKube();
    const kc = {} as k8s.KubeConfig; // never used: start() is not called
    const r = createNodeRevocation({}, { log: captureLog().logger, kc, store: createRevocationStore({ core: fakeApi().core }) });
    assert.equal(r.loaded(), false);
    assert.match(String(r.refusal('edge-1', issued(Date.now()))), /has not loaded the node revocations/);
    assert.equal(r.isRevoked('edge-1', issued(Date.now())), true);
  });

  test('deletions are written to the ConfigMap (the latest time wins), and retried when the API fails', async () => {
    const api = fakeApi();
    const log = captureLog();
    const inner = createRevocationStore({ core: api.core, now: () => T });
    const results: RevokeResult[] = [];
    const store: RevocationStore = { ...inner, revoke: async (node, opts) => pushed(results, await inner.revoke(node, opts)) };
    const r = createNodeRevocation({ retryMs: 10, maxRetryMs: 20 }, { log: log.logger, store, now: () => T });
    const stop = new AbortController();
    const running = r.start({} as never, stop.signal);
    try {
      api.failNext = 2;
      r.nodeDeleted('edge-1', T);
      await eventually(() => results.length === 1, 5000, 'the deletion written');
      assert.equal(api.data()?.['edge-1'], new Date(T).toISOString());
      assert.equal(log.lines.filter((l) => l.code === 'LEDGE_ERR_REVOCATION_LIST').length, 1, 'one warning for the failing streak');
      assert.ok(log.has(/recorded in ConfigMap kube-system\/ledge-revoked-nodes again/));
      // Another replica recorded a later time: this one's earlier deletion does not lower it.
      api.set({ 'edge-2': new Date(T + 5000).toISOString() });
      const writes = api.writes;
      r.nodeDeleted('edge-2', T + 1000);
      await eventually(() => results.length === 2, 5000, 'the second deletion considered');
      assert.equal(results[1]!.written, false);
      assert.equal(api.writes, writes, 'nothing written');
      assert.equal(api.data()?.['edge-2'], new Date(T + 5000).toISOString());
    } finally {
      stop.abort();
      await running;
    }
  });
});

describe('revocation store', () => {
  test('revoke writes RFC 3339 at the API server clock (Date header), creates the ConfigMap when missing, keeps unreadable entries and prunes old ones', async () => {
    const api = fakeApi();
    api.serverDate = 'Sun, 01 Jun 2025 12:00:07 GMT';
    const store = createRevocationStore({ core: api.core, now: () => T });
    const r = await store.revoke('edge-1');
    assert.equal(r.at, Date.parse('2025-06-01T12:00:07Z'));
    assert.deepEqual(api.data(), { 'edge-1': '2025-06-01T12:00:07.000Z' });
    api.set({ 'edge-1': '2025-06-01T12:00:07.000Z', 'operator-note': 'hello', ancient: new Date(T - 2 * YEAR).toISOString() });
    const again = await store.revoke('edge-2', { at: T });
    assert.deepEqual(again.pruned, ['ancient']);
    assert.deepEqual(api.data(), { 'edge-1': '2025-06-01T12:00:07.000Z', 'operator-note': 'hello', 'edge-2': new Date(T).toISOString() });
    assert.deepEqual(await store.unrevoke('edge-1'), { removed: true, previous: Date.parse('2025-06-01T12:00:07Z') });
    assert.deepEqual(await store.unrevoke('edge-1'), { removed: false });
    assert.deepEqual([...(await store.list()).entries.keys()], ['edge-2']);
  });

  test('a concurrent writer (409 Conflict) loses nothing: the write is made again on the fresh ConfigMap', async () => {
    const api = fakeApi();
    api.set({ 'edge-1': new Date(T).toISOString() });
    // Between this store's read and its write, another writer adds edge-9.
    api.beforeWrite = () => {
      api.beforeWrite = undefined;
      api.set({ ...api.data(), 'edge-9': new Date(T).toISOString() });
    };
    await createRevocationStore({ core: api.core, now: () => T }).revoke('edge-2', { at: T });
    assert.deepEqual(Object.keys(api.data() ?? {}).sort(), ['edge-1', 'edge-2', 'edge-9']);
    assert.equal(api.conflicts, 1);
  });
});

function pushed<T>(list: T[], item: T): T {
  list.push(item);
  return item;
}

/** The three ConfigMap calls of the store, as the API server answers them: resourceVersion checked, 404, 409, Date. */
function fakeApi() {
  let cm: k8s.V1ConfigMap | undefined;
  let rv = 0;
  const status = (code: number, message: string) => Object.assign(new Error(message), { code, body: { message }, headers: { date: state.serverDate } });
  const state = {
    serverDate: undefined as string | undefined,
    failNext: 0,
    reads: 0,
    writes: 0,
    conflicts: 0,
    beforeWrite: undefined as (() => void) | undefined,
    data: () => cm?.data,
    set(data: Record<string, string>) {
      cm = { metadata: { name: 'ledge-revoked-nodes', namespace: 'kube-system', resourceVersion: String(++rv) }, data: { ...data } };
    },
    core: {
      async readNamespacedConfigMapWithHttpInfo() {
        state.reads++;
        if (state.failNext > 0) {
          state.failNext--;
          throw status(500, 'etcd is down');
        }
        if (!cm) throw status(404, 'configmaps "ledge-revoked-nodes" not found');
        return { data: structuredClone(cm), headers: state.serverDate ? { date: state.serverDate } : {} };
      },
      async createNamespacedConfigMap({ body }: { body: k8s.V1ConfigMap }) {
        state.beforeWrite?.();
        if (cm) {
          state.conflicts++;
          throw status(409, 'already exists');
        }
        state.writes++;
        state.set(body.data ?? {});
        return cm;
      },
      async replaceNamespacedConfigMap({ body }: { body: k8s.V1ConfigMap }) {
        state.beforeWrite?.();
        if (!cm) throw status(404, 'not found');
        if (body.metadata?.resourceVersion !== cm.metadata?.resourceVersion) {
          state.conflicts++;
          throw status(409, 'the object has been modified');
        }
        state.writes++;
        state.set(body.data ?? {});
        return cm;
      },
    } as unknown as RevocationApi,
  };
  return state;
}

/** A PKCS#10 request for a fresh P-256 key. */
async function makeCsr(): Promise<string> {
  const x509: typeof X509 = await loadX509();
  const keys = await generateKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=whatever', keys, signingAlgorithm: KEY_ALGORITHM });
  return csr.toString('pem');
}
