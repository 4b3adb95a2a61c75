/**
 * The command line, as a user runs it: `ledge --help`, `node dist/edgecore.js`
 * with bad flags, and a clean SIGTERM.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { repoRoot, edgecoreBundle, startEdge } from '../helpers/process.js';
import { tempDir } from '../helpers/files.js';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestCloud } from '../helpers/cloud.js';
import { eventually, startProcess } from '../helpers/process.js';

function run(args: string[]) {
  return spawnSync(process.execPath, args, { cwd: repoRoot, encoding: 'utf8', env: { ...process.env, LEDGE_LOG_FORMAT: 'json' }, timeout: 30_000 });
}

describe('CLI', () => {
  test('ledge --help lists the commands', () => {
    const r = run(['bin/ledge.mjs', '--help']);
    assert.equal(r.status, 0);
    for (const cmd of ['up', 'cloud', 'edge', 'apiserver']) assert.match(r.stdout, new RegExp(`\\n  ${cmd}\\s`));
  });

  test('ledge edge --help and node edgecore.js --help show the same options', () => {
    const a = run(['bin/ledge.mjs', 'edge', '--help']);
    const b = run([edgecoreBundle, '--help']);
    assert.equal(a.status, 0);
    assert.equal(b.status, 0);
    assert.match(b.stdout, /--node-name <string>/);
    assert.equal(a.stdout, b.stdout);
  });

  test('every command names a listen address --bind-address and durations with -ms; `ledge up --help` shows the cloud options', () => {
    for (const cmd of ['cloud', 'up', 'apiserver']) {
      const r = run(['bin/ledge.mjs', cmd, '--help']);
      assert.equal(r.status, 0, cmd);
      assert.match(r.stdout, /--bind-address <string>/, cmd);
      assert.match(r.stdout, /--log-format <json\|text>/, cmd);
      assert.doesNotMatch(r.stdout, /^\s+(-\w, )?--(host|[a-z-]+-(interval|timeout|duration)) /m, `${cmd}: a duration flag without its unit`);
    }
    const edge = run(['bin/ledge.mjs', 'edge', '--help']);
    assert.match(edge.stdout, /--heartbeat-interval-ms <integer>/);
    assert.match(edge.stdout, /--node-status-interval-ms <integer>/);
  });

  test('a deprecated flag still works and logs one warning naming its replacement', async () => {
    const d = tempDir();
    try {
      const edge = startEdge(['--cloud', 'ws://127.0.0.1:1', '--node-name', 'n', '--data-dir', d.path, '--heartbeat-interval', '1000', '--log-level', 'info']);
      await edge.waitFor(/edgecore started/);
      assert.equal(await edge.stop(), 0);
      const warnings = edge
        .output()
        .split('\n')
        .filter((l) => l.includes('deprecated'));
      assert.equal(warnings.length, 1, warnings.join('\n'));
      assert.match(warnings[0]!, /--heartbeat-interval is deprecated; use --heartbeat-interval-ms/);
    } finally {
      d.cleanup();
    }
  });

  test('a bad flag value exits 2 with one line naming the field', () => {
    const r = run([edgecoreBundle, '--cloud', 'ws://127.0.0.1:1', '--node-name', 'n', '--max-frame-bytes', '12']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /config field "hub\.maxFrameBytes" \(from --max-frame-bytes\) must be an integer between 1024 and 67108864, got "12"/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
  });

  test('an unknown command exits 2', () => {
    const r = run(['bin/ledge.mjs', 'fly']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /unknown command "fly"/);
  });

  test('an invalid endpoint URL is refused at start', () => {
    const d = tempDir();
    try {
      const r = run([edgecoreBundle, '--cloud', 'http://nope', '--node-name', 'n', '--data-dir', d.path]);
      assert.equal(r.status, 2);
      assert.match(r.stderr, /must use ws:\/\/ or wss:\/\//);
    } finally {
      d.cleanup();
    }
  });

  test('SIGTERM stops EdgeCore cleanly with exit code 0', async () => {
    const d = tempDir();
    try {
      const edge = startEdge(['--cloud', 'ws://127.0.0.1:1', '--node-name', 'n', '--data-dir', d.path, '--log-level', 'info']);
      await edge.waitFor(/edgecore started/);
      assert.equal(await edge.stop(), 0);
      assert.match(edge.output(), /SIGTERM received; stopping/);
      assert.match(edge.output(), /edgecore stopped/);
    } finally {
      d.cleanup();
    }
  });

  test('dist/edgecore.js is self-contained: copied alone to an empty folder, it runs and connects', async () => {
    const d = tempDir();
    const cloud = await startTestCloud();
    try {
      const alone = join(d.path, 'edgecore.js');
      copyFileSync(edgecoreBundle, alone);
      // No node_modules anywhere above a temp dir: imports of dependencies would fail here.
      const edge = startProcess([alone, '--cloud', cloud.hub.url, '--node-name', 'standalone', '--data-dir', join(d.path, 'data'), '--log-level', 'info'], {}, 'standalone');
      await edge.waitFor(/connected to cloud/);
      await eventually(() => cloud.hub.nodeSummary('standalone')?.connected, 5000, 'session');
      assert.equal(await edge.stop(), 0);
    } finally {
      await cloud.stop();
      d.cleanup();
    }
  });
});
