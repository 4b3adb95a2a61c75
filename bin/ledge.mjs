#!/usr/bin/env node
// The `ledge` command. Runs the built CLI (dist/ledge.js, made by `npm run build`, which
// `npm ci` runs via the prepare script); from a source checkout without a build it
// falls back to running the TypeScript sources through tsx.
import { existsSync } from 'node:fs';

const built = new URL('../dist/ledge.js', import.meta.url);
if (existsSync(built)) {
  await import(built.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  const { main } = await import('../cli/main.ts');
  await main(process.argv.slice(2));
}
