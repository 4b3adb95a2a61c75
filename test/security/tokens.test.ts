/**
 * cloud/tokens and `ledge token` against the local control plane: records hold the secret's hash
 * only; list/revoke; a wrong secret answers like an unknown id; expiry; single use, with two
 * consumers racing (only one wins) and a record re-created between read and delete (the
 * preconditions refuse it).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { formatTokenTable, parseTtl, runToken } from '../../cli/token.js';
import { loadOrCreateCa } from '../../cloud/certauthority/index.js';
import { TOKEN_LABEL, TOKEN_SECRET_TYPE, createTokenStore, tokenSecretName, type TokenApi } from '../../cloud/tokens/index.js';
import { JoinTokenExpiredError, JoinTokenMalformedError, JoinTokenUnknownError, JoinTokenUsedError } from '../../shared/errors/index.js';
import { parseJoinToken } from '../../shared/jointoken/index.js';
import { silentLogger } from '../../shared/log/index.js';
import { useLocalControlPlane } from '../helpers/controlplane.js';

const plane = useLocalControlPlane('ledge-tokens-');
const DAY = 86_400_000;
const namespace = 'default';
const store = () => createTokenStore({ core: plane.core, namespace });
const bearer = (t: { id: string; secret: string }) => `${t.id}.${t.secret}`;
const decoded = (data: Record<string, string> | undefined) => Object.fromEntries(Object.entries(data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]));

describe('token records', () => {
  test('create stores the hash, never the secret; list shows no secret; revoke deletes', async () => {
    const tokens = store();
    const t = await tokens.create({ ttlMs: DAY, singleUse: true, description: 'pi in shop 3' });
    assert.match(t.expiration, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    const s = await plane.core.readNamespacedSecret({ name: tokenSecretName(t.id), namespace });
    assert.equal(s.type, TOKEN_SECRET_TYPE);
    assert.equal(s.metadata?.labels?.[TOKEN_LABEL], 'true');
    assert.deepEqual(decoded(s.data), {
      'token-id': t.id,
      'secret-sha256': createHash('sha256').update(t.secret).digest('hex'),
      expiration: t.expiration,
      'single-use': 'true',
      description: 'pi in shop 3',
    });
    assert.ok(!JSON.stringify(s).includes(t.secret), 'the secret is nowhere in the record');

    const listed = (await tokens.list()).find((r) => r.id === t.id);
    assert.deepEqual({ ...listed, created: undefined }, { id: t.id, expiration: t.expiration, expired: false, singleUse: true, description: 'pi in shop 3', created: undefined });
    assert.ok(!JSON.stringify(await tokens.list()).includes(t.secret));

    await tokens.revoke(t.id);
    assert.ok(!(await tokens.list()).some((r) => r.id === t.id));
    await assert.rejects(tokens.consume(bearer(t)), JoinTokenUnknownError, 'a revoked token is refused');
    await assert.rejects(tokens.revoke(t.id), JoinTokenUnknownError);
    await assert.rejects(tokens.revoke('BAD'), JoinTokenMalformedError);
    await assert.rejects(tokens.create({ ttlMs: 0 }), TypeError);
  });

  test('a reusable token admits many; a wrong secret is refused exactly like an unknown id', async () => {
    const tokens = store();
    const t = await tokens.create({ ttlMs: DAY });
    assert.deepEqual(await tokens.consume(bearer(t)), { id: t.id, singleUse: false, description: '' });
    assert.deepEqual(await tokens.consume(bearer(t)), { id: t.id, singleUse: false, description: '' });
    const wrong = await tokens.consume(`${t.id}.${'0'.repeat(16)}`).catch((e: unknown) => e);
    const never = await tokens.consume(`zzzzzz.${'0'.repeat(16)}`).catch((e: unknown) => e);
    assert.ok(wrong instanceof JoinTokenUnknownError && never instanceof JoinTokenUnknownError);
    assert.equal(wrong.message.replace(t.id, 'ID'), never.message.replace('zzzzzz', 'ID'));
    await assert.rejects(tokens.consume('nonsense'), JoinTokenMalformedError);
    await tokens.revoke(t.id);
  });

  test('an expired token is refused as expired (with the right secret) and listed as expired', async () => {
    let now = Date.now();
    const tokens = createTokenStore({ core: plane.core, namespace, now: () => now });
    const t = await tokens.create({ ttlMs: 60_000 });
    await tokens.consume(bearer(t));
    now += 61_000;
    await assert.rejects(tokens.consume(bearer(t)), (err: unknown) => {
      assert.ok(err instanceof JoinTokenExpiredError, String(err));
      assert.match(err.message, new RegExp(`join token ${t.id} expired at ${t.expiration}`));
      return true;
    });
    assert.equal((await tokens.list()).find((r) => r.id === t.id)?.expired, true);
    assert.match(formatTokenTable(await tokens.list(), now), new RegExp(`${t.id}\\s+\\S+\\s+expired\\s+reusable`));
    await tokens.revoke(t.id);
  });
});

describe('single use', () => {
  test('consumed once, then refused', async () => {
    const tokens = store();
    const t = await tokens.create({ ttlMs: DAY, singleUse: true });
    await tokens.consume(bearer(t));
    await assert.rejects(tokens.consume(bearer(t)), JoinTokenUnknownError);
  });

  test('two consumers that both read the record before either deletes: exactly one wins, the other is told "already used"', { timeout: 20_000 }, async () => {
    const t = await store().create({ ttlMs: DAY, singleUse: true });
    let reads = 0;
    let bothRead!: () => void;
    const barrier = new Promise<void>((resolve) => (bothRead = resolve));
    const core = {
      readNamespacedSecret: async (...args: Parameters<TokenApi['readNamespacedSecret']>) => {
        const s = await plane.core.readNamespacedSecret(...args);
        if (++reads === 2) bothRead();
        await barrier;
        return s;
      },
      deleteNamespacedSecret: (...args: Parameters<TokenApi['deleteNamespacedSecret']>) => plane.core.deleteNamespacedSecret(...args),
    } as TokenApi;
    const racer = createTokenStore({ core, namespace });
    const results = await Promise.allSettled([racer.consume(bearer(t)), racer.consume(bearer(t))]);
    assert.equal(reads, 2);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, 'one consumer wins');
    const lost = results.find((r) => r.status === 'rejected');
    assert.ok(lost?.status === 'rejected' && lost.reason instanceof JoinTokenUsedError, String(lost && 'reason' in lost ? lost.reason : lost));
    assert.match(lost.reason.message, new RegExp(`single-use join token ${t.id} was already used`));
  });

  test('a record re-created under the same name between read and delete is not consumed by the old read', { timeout: 20_000 }, async () => {
    const tokens = store();
    const t = await tokens.create({ ttlMs: DAY, singleUse: true });
    const name = tokenSecretName(t.id);
    const core = {
      readNamespacedSecret: async (...args: Parameters<TokenApi['readNamespacedSecret']>) => {
        const s = await plane.core.readNamespacedSecret(...args);
        // Meanwhile: deleted and created again (same name and data, a new uid and resourceVersion).
        await plane.core.deleteNamespacedSecret({ name, namespace });
        await plane.core.createNamespacedSecret({ namespace, body: { metadata: { name, labels: s.metadata?.labels }, type: s.type, data: s.data } });
        return s;
      },
      deleteNamespacedSecret: (...args: Parameters<TokenApi['deleteNamespacedSecret']>) => plane.core.deleteNamespacedSecret(...args),
    } as TokenApi;
    await assert.rejects(createTokenStore({ core, namespace }).consume(bearer(t)), JoinTokenUsedError);
    assert.ok(await plane.core.readNamespacedSecret({ name, namespace }), 'the new record is untouched');
    await tokens.revoke(t.id);
  });
});

describe('ledge token', () => {
  test('--ttl: 30m, 24h, 7d, 1d12h; nothing else', () => {
    assert.equal(parseTtl('30m'), 30 * 60_000);
    assert.equal(parseTtl('24h'), DAY);
    assert.equal(parseTtl('7d'), 7 * DAY);
    assert.equal(parseTtl('1d12h'), 1.5 * DAY);
    for (const bad of ['', '0h', '24', 'h', '1w', '-1h', '1h ']) assert.equal(parseTtl(bad), undefined, bad);
  });

  test('create prints the token with the CA hash (the CA CloudCore loads) and a join line; list and revoke', { timeout: 30_000 }, async () => {
    const out: string[] = [];
    const err: string[] = [];
    const io = { stdout: (s: string) => void out.push(s), stderr: (s: string) => void err.push(s) };
    const common = ['--kubeconfig', plane.api.kubeconfigPath, '-n', 'kube-public'];
    await runToken(['create', '--ttl', '7d', '--single-use', '--description', 'shop 3', '--cloud-url', 'https://hub.example:10000', ...common], io);
    const text = out.join('');
    const first = text.split('\n')[0]!;
    const parsed = parseJoinToken(first);
    const ca = await loadOrCreateCa({ core: plane.core, namespace: 'kube-public', log: silentLogger });
    assert.equal(ca.source, 'secret', 'the CLI created the CA Secret CloudCore will load');
    assert.equal(parsed.caHash, ca.hash);
    assert.match(err.join(''), /Created CloudCore's CA in Secret kube-public\/ledge-ca/);
    assert.ok(text.includes(`edgecore join --cloud https://hub.example:10000 --token ${first} --node-name <node-name>`), text);
    assert.match(text, /single use/);

    out.length = 0;
    await runToken(['list', ...common], io);
    assert.match(out.join(''), new RegExp(`^ID\\s+EXPIRES\\s+TTL\\s+USAGE\\s+DESCRIPTION\\n${parsed.id}\\s+\\S+Z\\s+6d23h\\s+single-use\\s+shop 3\\n$`));
    assert.ok(!out.join('').includes(parsed.secret));

    out.length = 0;
    await runToken(['revoke', parsed.id, ...common], io);
    assert.equal(out.join(''), `token ${parsed.id} revoked\n`);
    await assert.rejects(createTokenStore({ core: plane.core, namespace: 'kube-public' }).consume(`${parsed.id}.${parsed.secret}`), JoinTokenUnknownError);

    err.length = 0;
    await runToken(['create', '--ttl', '5x', ...common], io);
    assert.equal(process.exitCode, 2);
    process.exitCode = 0;
    assert.match(err.join(''), /--ttl "5x" is not a positive duration/);
  });
});
