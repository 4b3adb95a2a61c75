/**
 * Stable error codes (shared/errors): one declaration per code, every class carries its code,
 * close code and cause, close reasons fit a close frame with the code first, every code is in
 * docs/protocol.md, and no source file outside shared/errors writes a code as a string.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as errors from '../../shared/errors/index.js';
import { closeReason, ErrorCode, errorCode, errorContent, hasCode, LedgeError } from '../../shared/errors/index.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** Every exported error class but the base: name → class. */
const classes = Object.entries(errors).filter((e): e is [string, typeof LedgeError] => typeof e[1] === 'function' && e[1] !== LedgeError && e[1].prototype instanceof LedgeError);

describe('error codes', () => {
  test('each code is declared once: distinct LEDGE_ERR values', () => {
    const values = Object.values(ErrorCode);
    assert.equal(new Set(values).size, values.length, 'no two names share a code');
    for (const v of values) assert.match(v, /^LEDGE_ERR(_[A-Z0-9]+)*$/);
  });

  test('every class: a declared code (static and instance), its name, a default message, cause kept, one class per code', () => {
    assert.ok(classes.length >= 20, `found ${classes.length} classes`);
    const declared = new Set<string>(Object.values(ErrorCode));
    const seen = new Map<string, string>();
    for (const [name, Cls] of classes) {
      const cause = new Error('root cause');
      const err = new Cls(undefined as unknown as string, { cause });
      assert.ok(declared.has(err.code), `${name}.code ${err.code} is declared in ErrorCode`);
      assert.equal((Cls as unknown as { code: string }).code, err.code, `${name}: static code`);
      assert.equal(err.name, name);
      assert.ok(err.message.length > 0, `${name} has a default message`);
      assert.equal(err.cause, cause);
      assert.ok(err instanceof LedgeError && err instanceof Error);
      assert.equal(seen.get(err.code), undefined, `${err.code} has one class (${seen.get(err.code)} and ${name})`);
      seen.set(err.code, name);
    }
  });

  test('close codes and HTTP statuses of the classes that end sessions or answer over HTTP', () => {
    const close = (C: { new (): LedgeError }) => new C().closeCode;
    assert.equal(close(errors.InvalidFrameError), 1007);
    assert.equal(close(errors.InvalidMessageError), 1007);
    assert.equal(close(errors.FrameTooLargeError), 1009);
    assert.equal(close(errors.UnsupportedVersionError), 1002);
    assert.equal(close(errors.TextFrameError), 1003);
    assert.equal(close(errors.SlowPeerError), 1008);
    assert.equal(close(errors.HeartbeatTimeoutError), 1001);
    assert.equal(errors.InvalidFrameError.closeCode, 1007, 'also static');
    assert.equal(new errors.HandshakeError().httpStatus, 400);
    assert.equal(new errors.ProtobufDecodeError().httpStatus, 400);
    assert.equal(new errors.ProtobufUnsupportedError().httpStatus, 415);
  });

  test('instanceof tells the classes apart; hasCode matches an error or a received {code, message} against a constant', () => {
    const err = new errors.StorageError('disk full');
    assert.ok(err instanceof errors.StorageError);
    assert.ok(!(err instanceof errors.StoppedError));
    assert.ok(hasCode(err, ErrorCode.Storage));
    assert.ok(hasCode(errorContent(err), ErrorCode.Storage));
    assert.ok(!hasCode({ code: 'LEDGE_ERR_STORAGE_X', message: '' }, ErrorCode.Storage));
    assert.ok(!hasCode(null, ErrorCode.Storage));
    assert.ok(!hasCode('LEDGE_ERR_STORAGE', ErrorCode.Storage));
    assert.deepEqual(errorContent(err), { code: 'LEDGE_ERR_STORAGE', message: 'disk full' });
    assert.deepEqual(errorContent('boom'), { code: ErrorCode.Unknown, message: 'boom' });
    assert.equal(errorCode(Object.assign(new Error('x'), { code: 'ECONNREFUSED' })), 'ECONNREFUSED');
  });

  test('closeReason: "<code>: <message>", at most 123 bytes, cut at a character boundary', () => {
    assert.equal(closeReason(new errors.TextFrameError()), 'LEDGE_ERR_TEXT_FRAME: text frames are not accepted');
    const long = closeReason(new errors.SlowPeerError('é'.repeat(300)));
    assert.ok(long.startsWith('LEDGE_ERR_SLOW_PEER: '));
    assert.ok(Buffer.byteLength(long) <= 123, `${Buffer.byteLength(long)} bytes`);
    assert.ok(Buffer.byteLength(long) >= 122, 'cut no shorter than it must be');
    assert.ok(!long.includes('\uFFFD'));
    assert.equal(Buffer.from(long).toString(), long, 'valid UTF-8');
  });

  test('every code is in docs/protocol.md', () => {
    const doc = readFileSync(join(root, 'docs/protocol.md'), 'utf8');
    for (const code of Object.values(ErrorCode)) {
      if (code === ErrorCode.Ledge) continue; // the base class, never sent or logged as such
      assert.ok(doc.includes(`\`${code}\``), `${code} is documented in docs/protocol.md`);
    }
  });

  test('no source outside shared/errors writes a code as a string (declared once; no decision by string comparison)', () => {
    const offenders: string[] = [];
    const walk = (dir: string): void => {
      for (const name of readdirSync(dir)) {
        const p = join(dir, name);
        if (statSync(p).isDirectory()) walk(p);
        else if (name.endsWith('.ts')) {
          const rel = relative(root, p);
          if (rel === join('shared', 'errors', 'index.ts')) continue;
          readFileSync(p, 'utf8')
            .split('\n')
            .forEach((line, i) => {
              const code = line
                .replace(/\/\/.*$/, '')
                .replace(/^\s*\*.*$/, '')
                .replace(/\/\*.*?\*\//g, '');
              if (/['"`]LEDGE_ERR/.test(code)) offenders.push(`${rel}:${i + 1}: ${line.trim()}`);
            });
        }
      }
    };
    for (const dir of ['shared', 'cloud', 'edge', 'apiserver', 'cli']) walk(join(root, dir));
    assert.deepEqual(offenders, []);
  });
});
