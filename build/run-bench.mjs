// `npm run bench -- <name>`: runs bench/<name>.ts (or the one file whose name starts with it)
// with the tsx loader. Without a name, lists the benchmarks. Benchmarks are not tests: each prints
// a table and writes bench/results/<name>.json (docs/benchmarks.md has every command and figure).
import { readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const all = readdirSync(join(root, 'bench'))
  .filter((f) => f.endsWith('.ts'))
  .map((f) => f.replace(/\.ts$/, ''));
const want = process.argv[2];
if (!want) {
  console.log(`usage: npm run bench -- <name>\n\nbenchmarks:\n${all.map((b) => `  ${b}`).join('\n')}`);
  process.exit(0);
}
const matches = all.includes(want) ? [want] : all.filter((b) => b.startsWith(want));
if (matches.length !== 1) {
  console.error(matches.length === 0 ? `no benchmark named ${want}` : `${want} is ambiguous: ${matches.join(', ')}`);
  process.exit(2);
}
const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'bench', `${matches[0]}.ts`)], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
