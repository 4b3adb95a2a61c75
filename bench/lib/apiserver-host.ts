/**
 * @module
 * Benchmark host for the local control plane: a child process (forked with an IPC channel) that
 * runs `startApiServer` on 127.0.0.1 (TLS, token, fsync on) in a temp data dir, measures its own
 * event-loop delay (bench/lib/eld.ts) and sends `{ type: 'ready', url, token, caCertPem, pid }`.
 * `{ cmd: 'watches' }` → `{ type: 'watches', open }` (open watch connections); `{ cmd: 'stop' }` closes it
 * and exits.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { startApiServer } from '../../apiserver/index.js';
import { createLogger } from '../../shared/log/index.js';
import { eventLoopDelayProbe } from './eld.js';

const dir = mkdtempSync(join(os.tmpdir(), 'ledge-bench-api-'));
const eld = eventLoopDelayProbe();
const api = await startApiServer({ dataDir: dir, port: 0, log: createLogger({ level: 'error', format: 'json' }) });
process.on('message', (raw) => {
  const m = raw as { cmd?: string };
  if (eld(m)) return;
  if (m.cmd === 'watches') {
    process.send?.({ type: 'watches', open: api.activeWatches() });
    return;
  }
  if (m.cmd === 'stop') {
    const hard = setTimeout(() => process.exit(0), 5000);
    hard.unref();
    void api.close().finally(() => {
      rmSync(dir, { recursive: true, force: true });
      process.exit(0);
    });
  }
});
process.on('disconnect', () => process.exit(0));
process.send?.({ type: 'ready', url: api.url, token: api.token, caCertPem: api.caCertPem, pid: process.pid });
