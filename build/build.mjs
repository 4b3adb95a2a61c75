// Builds dist/edgecore.js (one self-contained, minified file: runs with plain
// `node edgecore.js`, no node_modules), dist/cloudcore.js and dist/ledge.js (the CLI;
// both use node_modules for their dependencies). Prints sizes and fails when the
// edge bundle is over budget.
import { build } from 'esbuild';
import { readFileSync, statSync, mkdirSync, existsSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { asn1Esm, banner, streamAlias, stubDebug, stubLong, stubNative, stubSerialport, wsClientOnly } from './esbuild-plugins.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
/**
 * Budget for the finished EdgeCore, minified: what it measures, rounded up to 10 KB, plus ~5% (a
 * ceiling that catches growth, not a target). History: 400 KB for the link (issue #3); 480 KB when
 * EdgeCore learned to run pods (issue 10: Edged and its two runtimes ≈ 100 KB, MetaServer ≈ 22 KB;
 * docs/benchmarks.md, "Edge bundle by module"); 820 KB with devices (issue 12: the MQTT broker and
 * DMI took it from 449 KB to 789.5 KB, and stubbing `long` and ws's server half brought it to
 * 771.1 KB; the 400 KB target is out of reach with them, docs/devices.md, "Bundle cost"); 950 KB
 * with joining (issue 13: `edgecore join` makes its CSR with @peculiar/asn1-csr, +128 KB, loaded only
 * by that command; docs/security.md, "What the edge bundle pays").
 * `npm run build -- --sizes` prints what each part costs.
 */
const EDGE_BUDGET = 950 * 1024;
const SHOW_SIZES = process.argv.includes('--sizes');

const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  absWorkingDir: root,
  define: { LEDGE_VERSION: JSON.stringify(pkg.version) },
  logLevel: 'warning',
  legalComments: 'none',
};

mkdirSync(`${root}/dist`, { recursive: true });
const started = Date.now();
const device = { ...common, minify: true, banner, alias: streamAlias };
const [edgecore, cloudcore] = await Promise.all([
  build({ ...device, entryPoints: ['edge/edgecore.ts'], outfile: 'dist/edgecore.js', plugins: [stubNative, stubDebug, stubLong, wsClientOnly, asn1Esm], metafile: SHOW_SIZES }),
  build({ ...common, entryPoints: ['cloud/cloudcore.ts'], outfile: 'dist/cloudcore.js', packages: 'external', sourcemap: true, metafile: true }),
  build({ ...common, entryPoints: ['cli/ledge.ts'], outfile: 'dist/ledge.js', packages: 'external', sourcemap: true }),
  // The mappers run on the device beside EdgeCore, as pods: self-contained like it.
  build({ ...device, entryPoints: ['mappers/virtual/main.ts'], outfile: 'dist/mappers/virtual.js', plugins: [stubDebug, stubLong] }),
  build({ ...device, entryPoints: ['mappers/modbus/main.ts'], outfile: 'dist/mappers/modbus.js', plugins: [stubDebug, stubLong, stubSerialport] }),
]);

function size(file) {
  const bytes = statSync(`${root}/${file}`).size;
  const gz = gzipSync(readFileSync(`${root}/${file}`)).length;
  return { file, kb: (bytes / 1024).toFixed(1), gzipKb: (gz / 1024).toFixed(1), bytes };
}
const rows = ['dist/edgecore.js', 'dist/cloudcore.js', 'dist/ledge.js', 'dist/mappers/virtual.js', 'dist/mappers/modbus.js'].filter((f) => existsSync(`${root}/${f}`)).map(size);
for (const r of rows) console.log(`${r.file.padEnd(24)} ${r.kb.padStart(8)} KB  (gzip ${r.gzipKb} KB)`);
console.log(`built in ${Date.now() - started} ms`);
if (SHOW_SIZES) {
  // Bytes of dist/edgecore.js per package (node_modules) or per module folder (edge/edged, shared/wal, …).
  const by = new Map();
  for (const [file, info] of Object.entries(Object.values(edgecore.metafile.outputs)[0].inputs)) {
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file);
    const key = m
      ? m[1]
      : file
          .split('/')
          .slice(0, file.startsWith('edge/') || file.startsWith('shared/') ? 2 : 1)
          .join('/');
    by.set(key, (by.get(key) ?? 0) + info.bytesInOutput);
  }
  for (const [k, v] of [...by].sort((a, b) => b[1] - a[1])) console.log(`  ${k.padEnd(28)} ${(v / 1024).toFixed(1).padStart(7)} KB`);
}
// The in-cluster CloudCore has no embedded control plane (docs/design.md, "The control plane is
// not part of CloudCore"): only the ledge CLI loads apiserver/, for --local and `ledge up`.
// apiserver/options.ts is the exception: its option defaults, a module without imports.
const CLOUDCORE_MAY_USE = new Set(['apiserver/options.ts']);
const leaked = Object.keys(cloudcore.metafile.inputs).filter((f) => f.startsWith('apiserver/') && !CLOUDCORE_MAY_USE.has(f));
if (leaked.length) {
  console.error(`dist/cloudcore.js bundles the control plane (${leaked.join(', ')}): only cli/ may import apiserver/`);
  process.exit(1);
}
if (rows[0].bytes > EDGE_BUDGET) {
  console.error(`dist/edgecore.js is ${rows[0].kb} KB, over the ${EDGE_BUDGET / 1024} KB budget`);
  process.exit(1);
}
