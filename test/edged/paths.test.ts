/**
 * Path confinement (edge/edged/paths.ts) on real directories and symlinks: what is refused
 * lexically (absolute, `..`, `.`, empty segments, NUL, over-long), symlinks that leave the base
 * (absolute, relative, chained, dangling) refused, symlinks that stay inside accepted, and the
 * lexical path returned.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkRelativePath, safeJoin } from '../../edge/edged/paths.js';
import { PodSpecError } from '../../shared/errors/index.js';
import { tempDir } from '../helpers/files.js';

const dirs: { cleanup: () => void }[] = [];
after(() => {
  for (const d of dirs) d.cleanup();
});
function dir(): string {
  const d = tempDir('ledge-paths-');
  dirs.push(d);
  return d.path;
}

function refused(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof PodSpecError, `a PodSpecError, got ${String(err)}`);
    assert.match(err.message, message);
    return true;
  });
}

describe('safeJoin', () => {
  test('lexically bad paths are refused with a message naming them', () => {
    const base = dir();
    refused(() => safeJoin(base, '/etc/passwd', 'subPath'), /^subPath "\/etc\/passwd" must be a relative path$/);
    refused(() => safeJoin(base, '..'), /must not contain '\.\.'/);
    refused(() => safeJoin(base, 'a/../../b'), /must not contain '\.\.'/);
    refused(() => safeJoin(base, 'a/..'), /must not contain '\.\.'/);
    refused(() => safeJoin(base, 'a//b'), /empty segment/);
    refused(() => safeJoin(base, 'a/'), /empty segment/);
    refused(() => safeJoin(base, ''), /is empty/);
    refused(() => safeJoin(base, './a'), /'\.' segments/);
    refused(() => safeJoin(base, 'a\0b'), /NUL/);
    refused(() => safeJoin(base, 'x'.repeat(256)), /longer than 255/);
    refused(() => safeJoin(base, 'a/'.repeat(2100)), /longer than 4096/);
    assert.deepEqual(checkRelativePath('a/b..c/..d'), ['a', 'b..c', '..d'], "names that merely contain '..' are fine here");
  });

  test('plain paths, existing or not, give the lexical join', () => {
    const base = dir();
    mkdirSync(join(base, 'a'));
    assert.equal(safeJoin(base, 'a'), join(base, 'a'));
    assert.equal(safeJoin(base, 'a/b/c.txt'), join(base, 'a', 'b', 'c.txt'));
    assert.equal(safeJoin(base, 'not/yet'), join(base, 'not', 'yet'));
    writeFileSync(join(base, 'file'), 'x');
    assert.equal(safeJoin(base, 'file/under'), join(base, 'file', 'under'), 'a file in the way is for the caller to fail on');
  });

  test('symlinks that leave the base are refused: absolute, relative, chained, dangling', () => {
    const base = dir();
    const outside = dir();
    writeFileSync(join(outside, 'secret'), 'x');
    symlinkSync(outside, join(base, 'abs'));
    symlinkSync('..', join(base, 'up'));
    mkdirSync(join(base, 'd'));
    symlinkSync('../abs', join(base, 'd', 'chain'));
    symlinkSync(join(base, 'nowhere'), join(base, 'dangling'));
    refused(() => safeJoin(base, 'abs'), /escapes .* through the symlink/);
    refused(() => safeJoin(base, 'abs/secret'), /escapes .* through the symlink/);
    refused(() => safeJoin(base, 'up/x'), /escapes/);
    refused(() => safeJoin(base, 'd/chain/secret'), /escapes/);
    refused(() => safeJoin(base, 'dangling'), /does not resolve/);
  });

  test('symlinks that stay inside are followed for the check and kept in the result (the atomic writer layout)', () => {
    const base = dir();
    mkdirSync(join(base, '..2024_01_01_00_00_00.abc', 'sub'), { recursive: true });
    writeFileSync(join(base, '..2024_01_01_00_00_00.abc', 'key'), 'v');
    symlinkSync('..2024_01_01_00_00_00.abc', join(base, '..data'));
    symlinkSync('..data/key', join(base, 'key'));
    symlinkSync('..data/sub', join(base, 'sub'));
    assert.equal(safeJoin(base, 'key'), join(base, 'key'));
    assert.equal(safeJoin(base, 'sub/new'), join(base, 'sub', 'new'));
  });

  test('a base that is itself a symlink: links to its real location are inside', () => {
    const real = dir();
    const holder = dir();
    const base = join(holder, 'base');
    symlinkSync(real, base);
    mkdirSync(join(real, 'x'));
    symlinkSync(join(real, 'x'), join(real, 'toX'));
    assert.equal(safeJoin(base, 'toX'), join(base, 'toX'));
    symlinkSync(holder, join(real, 'toHolder'));
    refused(() => safeJoin(base, 'toHolder'), /escapes/);
  });
});
