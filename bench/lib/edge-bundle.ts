/**
 * @module
 * What issue 13 adds to the edge bundle (dist/edgecore.js), measured by building it as each tree's
 * own build/build.mjs does (the same esbuild options, and the plugins its `edge/edgecore.ts` line
 * names, from that tree's build/esbuild-plugins.mjs; the edge bundle only, so work in progress
 * elsewhere in the tree cannot fail it) in four throwaway copies of the tree, side by side in
 * one run, so dist/ of the working tree is never touched:
 *
 * - **base**: the commit before issue 13 (`git archive <commit>`), as it shipped then;
 * - **link**: the working tree without `edgecore join` (its line in edge/edgecore.ts replaced by
 *   an exit code) and without the CSR encoder (edge/join/csr.ts replaced by a stub that throws):
 *   mTLS, renewal's logic and everything else of the link, but no ASN.1;
 * - **without join**: the working tree without `edgecore join` only: the link plus the CSR
 *   encoder that certificate renewal (edge/edgehub/renewal.ts) imports too;
 * - **shipped**: the working tree as it is (tracked and untracked files, not ignored ones).
 *
 * node_modules is a symlink to the project's. Each copy is removed afterwards.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build as esbuild, type Plugin } from 'esbuild';

export interface BundleBuild {
  label: string;
  /** The commit built (base only). */
  commit?: string;
  /** dist/edgecore.js, bytes. */
  bytes: number;
  gzipBytes: number;
  /** KB of the bundle per package or module folder (e.g. `edge/join`, `asn1js`), grouped as `build.mjs --sizes` groups them. */
  parts: Record<string, number>;
  buildMs: number;
}

/** What stands in for edge/join/csr.ts in the "link" copy. */
const CSR_STUB = "export function createCsr(): string {\n  throw new Error('the CSR encoder is cut out of this build (bench/lib/edge-bundle.ts)');\n}\n";
/** The line of edge/edgecore.ts that runs `edgecore join`, replaced by an exit code in the "without join" copy. */
const JOIN_LINE = /^if \(argv\[0\] === 'join'\).*$/m;
/** build/build.mjs's edge line: the plugins it names. */
const EDGE_PLUGINS = /entryPoints: \['edge\/edgecore\.ts'\][^\n]*plugins: \[([^\]]*)\]/;

function copyWorkingTree(root: string, to: string): void {
  const files = execFileSync('git', ['ls-files', '-co', '--exclude-standard', '-z'], { cwd: root, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
    .split('\0')
    .filter(Boolean);
  for (const f of files) {
    const src = join(root, f);
    if (!existsSync(src)) continue; // deleted in the working tree
    const dst = join(to, f);
    mkdirSync(dirname(dst), { recursive: true });
    copyFileSync(src, dst);
  }
}

async function build(tree: string, label: string, commit?: string): Promise<BundleBuild> {
  const started = Date.now();
  const script = readFileSync(join(tree, 'build', 'build.mjs'), 'utf8');
  const names = EDGE_PLUGINS.exec(script)?.[1]
    ?.split(',')
    .map((n) => n.trim())
    .filter(Boolean);
  if (!names) throw new Error(`${label}: build/build.mjs has no edge/edgecore.ts build line naming its plugins; update EDGE_PLUGINS in bench/lib/edge-bundle.ts`);
  const mod = (await import(pathToFileURL(join(tree, 'build', 'esbuild-plugins.mjs')).href)) as Record<string, unknown>;
  const plugins = names.map((n) => {
    if (!mod[n]) throw new Error(`${label}: build/esbuild-plugins.mjs exports no ${n}`);
    return mod[n] as Plugin;
  });
  const pkg = JSON.parse(readFileSync(join(tree, 'package.json'), 'utf8')) as { version: string };
  const outfile = join(tree, 'dist', 'edgecore.js');
  // build/build.mjs's `common` and `device` options.
  const result = await esbuild({
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    absWorkingDir: tree,
    define: { LEDGE_VERSION: JSON.stringify(pkg.version) },
    logLevel: 'silent',
    legalComments: 'none',
    minify: true,
    banner: mod.banner as { js: string },
    alias: mod.streamAlias as Record<string, string>,
    entryPoints: ['edge/edgecore.ts'],
    outfile,
    plugins,
    metafile: true,
  });
  const parts: Record<string, number> = {};
  for (const [file, info] of Object.entries(Object.values(result.metafile.outputs)[0]!.inputs)) {
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file);
    const key = m
      ? m[1]!
      : file
          .split('/')
          .slice(0, file.startsWith('edge/') || file.startsWith('shared/') ? 2 : 1)
          .join('/');
    parts[key] = (parts[key] ?? 0) + info.bytesInOutput;
  }
  for (const k of Object.keys(parts)) parts[k] = Math.round((parts[k]! / 1024) * 10) / 10;
  const data = readFileSync(outfile);
  return { label, ...(commit ? { commit } : {}), bytes: data.length, gzipBytes: gzipSync(data).length, parts, buildMs: Date.now() - started };
}

/** The four builds of the module doc, in that order. */
export interface EdgeBundles {
  base: BundleBuild;
  link: BundleBuild;
  withoutJoin: BundleBuild;
  shipped: BundleBuild;
}

function cutJoinCommand(tree: string): void {
  const entry = join(tree, 'edge', 'edgecore.ts');
  const src = readFileSync(entry, 'utf8');
  if (!JOIN_LINE.test(src)) throw new Error('edge/edgecore.ts no longer has the join line this benchmark cuts out; update JOIN_LINE in bench/lib/edge-bundle.ts');
  writeFileSync(entry, src.replace(JOIN_LINE, "if (argv[0] === 'join') process.exitCode = 2;"));
}

/** Builds the four variants (module doc); `base` is a commit of the project's repository. */
export async function measureEdgeBundles(root: string, base: string): Promise<EdgeBundles> {
  const tmp = mkdtempSync(join(tmpdir(), 'ledge-bundle-'));
  try {
    const trees = { base: join(tmp, 'base'), link: join(tmp, 'link'), withoutJoin: join(tmp, 'without-join'), shipped: join(tmp, 'shipped') };
    for (const t of Object.values(trees)) mkdirSync(t, { recursive: true });
    const commit = execFileSync('git', ['rev-parse', '--short', base], { cwd: root, encoding: 'utf8' }).trim();
    // git archive reads the commit; it changes nothing in the repository.
    const tar = execFileSync('git', ['archive', '--format=tar', commit], { cwd: root, maxBuffer: 256 * 1024 * 1024 });
    execFileSync('tar', ['-x', '-C', trees.base], { input: tar });
    for (const t of [trees.link, trees.withoutJoin, trees.shipped]) copyWorkingTree(root, t);
    cutJoinCommand(trees.withoutJoin);
    cutJoinCommand(trees.link);
    const csr = join(trees.link, 'edge', 'join', 'csr.ts');
    if (!existsSync(csr)) throw new Error('edge/join/csr.ts is gone; update bench/lib/edge-bundle.ts');
    writeFileSync(csr, CSR_STUB);
    for (const t of Object.values(trees)) symlinkSync(join(root, 'node_modules'), join(t, 'node_modules'));
    return {
      base: await build(trees.base, 'base', commit),
      link: await build(trees.link, 'link: no join command, no CSR encoder'),
      withoutJoin: await build(trees.withoutJoin, 'no join command'),
      shipped: await build(trees.shipped, 'shipped'),
    };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
