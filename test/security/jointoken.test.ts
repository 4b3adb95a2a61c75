/**
 * shared/jointoken: the join token's shape (`<id>.<secret>@sha256:<hex>`), parse errors that name
 * the wrong part and never the secret, the hash compare; caCertHash (shared/x509) against openssl's
 * definition (SHA-256 of the SubjectPublicKeyInfo DER).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createHash } from 'node:crypto';
import { JoinTokenMalformedError } from '../../shared/errors/index.js';
import {
  caCertHash,
  TOKEN_ID_LENGTH,
  TOKEN_SECRET_LENGTH,
  formatBearer,
  formatJoinToken,
  generateJoinCredential,
  isValidNodeName,
  parseBearer,
  parseJoinToken,
  secretMatches,
  secretSha256,
} from '../../shared/jointoken/index.js';
import { generateCaPem } from '../../cloud/certauthority/index.js';

const HASH = `sha256:${'ab'.repeat(32)}`;
const cred = { id: 'abc123', secret: '0123456789abcdef' };

describe('join tokens', () => {
  test("generated credentials have kubeadm's shape and differ", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const c = generateJoinCredential();
      assert.match(c.id, /^[a-z0-9]{6}$/);
      assert.match(c.secret, /^[a-z0-9]{16}$/);
      seen.add(c.secret);
    }
    assert.equal(seen.size, 200);
    assert.equal(TOKEN_ID_LENGTH + TOKEN_SECRET_LENGTH, 22);
  });

  test('format and parse round-trip; a bare credential parses without a hash; white space and upper-case hex are tolerated', () => {
    const t = formatJoinToken(cred, HASH);
    assert.equal(t, `abc123.0123456789abcdef@${HASH}`);
    assert.deepEqual(parseJoinToken(t), { ...cred, caHash: HASH });
    assert.deepEqual(parseJoinToken(` ${t.toUpperCase().replace('ABC123.0123456789ABCDEF', 'abc123.0123456789abcdef').replace('SHA256', 'sha256')}\n`), { ...cred, caHash: HASH });
    assert.deepEqual(parseJoinToken('abc123.0123456789abcdef'), cred);
    assert.deepEqual(parseBearer(formatBearer(cred)), cred);
  });

  test('malformed tokens: a typed error naming the part, never the secret', () => {
    const cases: [string, RegExp][] = [
      ['', /empty/],
      ['abc1230123456789abcdef', /no "\."/],
      ['abc12.0123456789abcdef', /token id .* 6 characters/],
      ['ABC123.0123456789abcdef', /token id .*upper case/],
      ['abc123.0123456789abcde', /secret of token abc123 .* 16 characters a-z0-9, got 15/],
      ['abc123.0123456789ABCDEF', /secret .*upper case/],
      ['abc123.0123456789abcdef@', /CA hash/],
      ['abc123.0123456789abcdef@sha1:abcd', /CA hash/],
      [`abc123.0123456789abcdef@sha256:${'a'.repeat(63)}`, /CA hash .*\(70 characters\)/],
      [`abc123.0123456789abcdef@sha256:${'g'.repeat(64)}`, /CA hash/],
    ];
    for (const [input, message] of cases) {
      assert.throws(
        () => parseJoinToken(input),
        (err: unknown) => {
          assert.ok(err instanceof JoinTokenMalformedError, `${input}: ${String(err)}`);
          assert.match(err.message, message, input);
          assert.equal(err.httpStatus, 401);
          for (const secret of ['0123456789abcdef', '0123456789abcde', '0123456789ABCDEF'])
            assert.ok(!err.message.includes(secret), `${input}: the secret is not echoed: ${err.message}`);
          return true;
        },
      );
    }
    assert.throws(() => formatJoinToken(cred, 'sha256:xyz'), JoinTokenMalformedError);
    assert.throws(() => formatBearer({ id: 'abc123', secret: 'short' }), JoinTokenMalformedError);
  });

  test('secretMatches: the SHA-256 of the secret, nothing else; a damaged hash is no match (no throw)', () => {
    const h = secretSha256(cred.secret);
    assert.equal(h, createHash('sha256').update(cred.secret).digest('hex'));
    assert.ok(secretMatches(cred.secret, h));
    assert.ok(secretMatches(cred.secret, h.toUpperCase()));
    assert.ok(!secretMatches('0123456789abcdeg', h));
    assert.ok(!secretMatches(cred.secret, h.slice(1)));
    assert.ok(!secretMatches(cred.secret, ''));
  });

  test('node names: DNS-1123 subdomains of at most 253 characters', () => {
    for (const ok of ['edge-1', 'a', 'pi.shop-3.example', 'x'.repeat(253)]) assert.ok(isValidNodeName(ok), ok);
    for (const bad of ['', 'Edge-1', '-a', 'a-', 'a..b', 'a_b', 'a/b', '../x', 'x'.repeat(254), 'a b']) assert.ok(!isValidNodeName(bad), bad);
  });
});

describe('caCertHash', () => {
  test("sha256:<hex> of the DER SubjectPublicKeyInfo (kubeadm's --discovery-token-ca-cert-hash); the same for a bundle's first certificate", async () => {
    const ca = await generateCaPem();
    const spki = new X509Certificate(ca.cert).publicKey.export({ type: 'spki', format: 'der' });
    const expected = `sha256:${createHash('sha256').update(spki).digest('hex')}`;
    assert.equal(caCertHash(ca.cert), expected);
    assert.match(expected, /^sha256:[0-9a-f]{64}$/);
    const other = await generateCaPem();
    assert.equal(caCertHash(ca.cert + other.cert), expected);
    assert.notEqual(caCertHash(other.cert), expected);
    // Not the hash of the whole certificate (what a fingerprint is).
    assert.notEqual(expected.slice(7), createHash('sha256').update(new X509Certificate(ca.cert).raw).digest('hex'));
  });
});
