/**
 * aedes is loaded only when the mode has the embedded broker: EdgeCore with the bus off or on an
 * external broker never evaluates it (startup time and memory). Checked in a child process with a
 * module resolve hook that reports every resolution of `aedes`.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { exitCode, startProcess } from '../helpers/process.js';

const child = fileURLToPath(new URL('./fixtures/lazy-child.ts', import.meta.url));

async function resolvesAedes(mode: string): Promise<boolean> {
  const p = startProcess(['--import', 'tsx', child, mode], {}, `lazy-${mode}`);
  assert.equal(await exitCode(p, 30_000), 0, p.output());
  assert.match(p.output(), /DONE/);
  return p.output().includes('RESOLVED aedes');
}

describe('aedes is loaded lazily', () => {
  it('mode internal loads it (the hook sees it)', async () => assert.equal(await resolvesAedes('internal'), true));
  it('mode off does not', async () => assert.equal(await resolvesAedes('off'), false));
  it('mode external does not', async () => assert.equal(await resolvesAedes('external'), false));
});
