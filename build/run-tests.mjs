// Runs the test suite with node's test runner. Tests are TypeScript, loaded through
// tsx (type-checked separately by `npm run typecheck`). Node 20's runner has no glob
// support, so the files are listed here. Args: optional path filters (substring match).
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { provisionAll } from './tools.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
function find(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (name === 'fixtures' || name === 'node_modules') continue;
    if (statSync(p).isDirectory()) out.push(...find(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}
const filters = process.argv.slice(2);
const files = find(join(root, 'test'))
  .map((f) => relative(root, f))
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
// Everything the tests drive (kubectl, …) is provisioned here, so `npm test` needs nothing run before it.
await provisionAll();
// Per-test timeout: a hung wait fails its test within 2 minutes instead of 5. The slowest test of a
// full run on the 2-core dev machine took 18.4 s and the slowest file 32.6 s (on Node 20 the timeout
// also bounds each file), so 120 s leaves more than 3x. Raise it only with a measurement.
const TEST_TIMEOUT_MS = 120_000;
const args = ['--import', 'tsx', '--test', `--test-timeout=${TEST_TIMEOUT_MS}`, ...files];
// Many EdgeCores run at once: each MetaServer takes a free port instead of all trying 10550.
const env = {
  ...process.env,
  LEDGE_LOG_LEVEL: process.env.LEDGE_LOG_LEVEL ?? 'warn',
  LEDGE_METASERVER_PORT: process.env.LEDGE_METASERVER_PORT ?? '0',
  // Every CloudCore's CloudStream (kubectl logs/exec) too, instead of all trying 10350.
  LEDGE_STREAM_PORT: process.env.LEDGE_STREAM_PORT ?? '0',
  // Every EdgeCore's embedded MQTT broker (instead of all trying 1883) and DMI socket (a relative
  // path is under its data directory, instead of all trying /etc/kubeedge/dmi.sock).
  LEDGE_MQTT_PORT: process.env.LEDGE_MQTT_PORT ?? '0',
  LEDGE_DMI_SOCKET: process.env.LEDGE_DMI_SOCKET ?? 'dmi.sock',
};
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit', env });
process.exit(r.status ?? 1);
