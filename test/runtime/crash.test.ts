/**
 * The crash policy, in child processes: an unhandled rejection and an uncaught
 * exception are treated alike: one fatal log line with the stack, a bounded
 * best-effort drain, exit code 70.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startProcess, repoRoot } from '../helpers/process.js';

async function crash(mode: string, format = 'json'): Promise<{ code: number | null; stdout: string[]; errors: string[] }> {
  const p = startProcess(['--import', 'tsx', join(repoRoot, 'test/runtime/fixtures/crash-child.ts'), mode, format], { LEDGE_LOG_FORMAT: format }, `crash-${mode}`);
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([p.exited, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), 20_000)))]);
  clearTimeout(timer);
  if (code === 'timeout') {
    await p.kill9();
    assert.fail(`the process did not exit within 20 s of its failure; output:\n${p.output()}`);
  }
  const lines = p
    .output()
    .split('\n')
    .filter((l) => l.trim() !== '');
  return { code, stdout: lines.filter((l) => /^(READY|DRAIN START|DRAINED)$/.test(l)), errors: lines.filter((l) => !/^(READY|DRAIN START|DRAINED)$/.test(l)) };
}

describe('crash policy: rejections and exceptions alike', () => {
  for (const [mode, what, text] of [
    ['rejection', 'unhandled rejection', 'boom in a promise'],
    ['exception', 'uncaught exception', 'boom in a callback'],
  ] as const) {
    test(`${what}: one fatal line with the stack, the drain runs, exit 70`, async () => {
      const r = await crash(mode);
      assert.equal(r.code, 70);
      assert.deepEqual(r.stdout, ['READY', 'DRAIN START', 'DRAINED']);
      assert.equal(r.errors.length, 1, `one line:\n${r.errors.join('\n')}`);
      const line = JSON.parse(r.errors[0]!) as { level: string; msg: string; stack: string; fatal: boolean; code: string };
      assert.equal(line.level, 'error');
      assert.equal(line.fatal, true);
      assert.match(line.msg, new RegExp(`^${what}: ${text}`));
      assert.match(line.stack, /triggerFailure|crash-child/, 'the stack says where');
    });
  }

  test('a rejection with a non-Error reason: the same policy', async () => {
    const r = await crash('non-error');
    assert.equal(r.code, 70);
    assert.equal(r.errors.length, 1);
    assert.match((JSON.parse(r.errors[0]!) as { msg: string }).msg, /^unhandled rejection: a bare string/);
  });

  test('a drain that hangs does not keep the process alive', async () => {
    const r = await crash('drain-hangs');
    assert.equal(r.code, 70);
    assert.deepEqual(r.stdout, ['READY', 'DRAIN START']);
    assert.equal(r.errors.length, 2, r.errors.join('\n'));
    assert.match(r.errors[1]!, /drain did not finish/);
  });

  test('a second fault while draining exits at once', async () => {
    const r = await crash('fault-during-drain');
    assert.equal(r.code, 70);
    assert.equal(r.errors.length, 2, r.errors.join('\n'));
    assert.match(r.errors[1]!, /second fault while draining/);
  });

  test('text format: still one line', async () => {
    const r = await crash('exception', 'text');
    assert.equal(r.code, 70);
    assert.equal(r.errors.length, 1, r.errors.join('\n'));
    assert.match(r.errors[0]!, /ERROR uncaught exception: boom in a callback.*stack=".*crash-child\.ts/);
  });
});
