/**
 * The embedded control plane (apiserver/) is not part of CloudCore: only the ledge CLI loads
 * it, for `ledge cloud --local` and `ledge up`. The in-cluster bundle dist/cloudcore.js
 * neither contains nor starts it, and refuses --local with a pointer to the CLI.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { repoRoot, startProcess, eventually } from '../helpers/process.js';
import { tempDir } from '../helpers/files.js';
import { startCloudCore } from '../../cloud/main.js';
import { cloudConfigSpec } from '../../cloud/config.js';
import { loadConfig } from '../../shared/config/index.js';
import { silentLogger } from '../../shared/log/index.js';
import { ConfigError } from '../../shared/errors/index.js';

const cloudcoreBundle = join(repoRoot, 'dist/cloudcore.js');
const ledgeBin = join(repoRoot, 'bin/ledge.mjs');

/** The input files of a bundle, from the source map esbuild writes beside it (paths relative to dist/). */
function bundleSources(bundle: string): string[] {
  const map = JSON.parse(readFileSync(`${bundle}.map`, 'utf8')) as { sources: string[] };
  return map.sources;
}

function kubeConfigAt(path: string): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(path);
  return kc;
}

function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

describe('the control plane is loaded only by the ledge CLI', () => {
  test('dist/cloudcore.js bundles no file of apiserver/, dist/ledge.js does', () => {
    assert.ok(existsSync(`${cloudcoreBundle}.map`), 'dist/cloudcore.js.map is missing: run "npm run build"');
    const cloud = bundleSources(cloudcoreBundle);
    assert.ok(
      cloud.some((s) => s.startsWith('../cloud/cloudhub/')),
      'the source map lists CloudCore inputs',
    );
    // Only the control plane's option defaults (a module without imports) may be shared.
    assert.deepEqual(
      cloud.filter((s) => s.startsWith('../apiserver/') && s !== '../apiserver/options.ts'),
      [],
    );
    // The same check sees the control plane where it belongs, so it is not vacuous.
    assert.ok(bundleSources(join(repoRoot, 'dist/ledge.js')).includes('../apiserver/server.ts'));
  });

  test('startCloudCore refuses local mode without a control plane, before it listens', async () => {
    const d = tempDir();
    try {
      const argv = ['--local', '--port', '0', '--bind-address', '127.0.0.1', '--apiserver-port', '0', '--data-dir', d.path];
      const { config } = await loadConfig(cloudConfigSpec, { argv, env: {} });
      const outcome = await startCloudCore(config, silentLogger).then(
        async (core) => {
          await core.stop(); // started anyway: stop it so the failure below ends the test
          return undefined;
        },
        (err: unknown) => err,
      );
      assert.ok(outcome instanceof ConfigError, `expected a ConfigError, got ${String(outcome)}`);
      assert.match(outcome.message, /ledge cloud --local/);
      assert.equal(existsSync(join(d.path, 'kubeconfig')), false, 'no control plane was started');
    } finally {
      d.cleanup();
    }
  });

  test('node dist/cloudcore.js --local exits 2 with one line pointing to "ledge cloud --local"', () => {
    const d = tempDir();
    try {
      const r = spawnSync(process.execPath, [cloudcoreBundle, '--local', '--port', '0', '--bind-address', '127.0.0.1', '--data-dir', d.path], {
        cwd: d.path,
        encoding: 'utf8',
        env: { ...process.env, LEDGE_LOG_FORMAT: 'json' },
        timeout: 30_000,
      });
      assert.equal(r.status, 2, r.stdout + r.stderr);
      const lines = `${r.stdout}${r.stderr}`.trim().split('\n');
      assert.equal(lines.length, 1, lines.join('\n'));
      assert.match(lines[0]!, /ledge cloud --local/);
      assert.match(lines[0]!, /LEDGE_ERR_CONFIG/);
      assert.equal(existsSync(join(d.path, 'kubeconfig')), false, 'no control plane was started');
    } finally {
      d.cleanup();
    }
  });

  test('ledge cloud --local starts the control plane in process and CloudCore uses it', async () => {
    const d = tempDir();
    const cloud = startProcess(
      [
        ledgeBin,
        'cloud',
        '--local',
        '--port',
        '0',
        '--bind-address',
        '127.0.0.1',
        '--insecure-plain-websocket',
        '--apiserver-port',
        '0',
        '--data-dir',
        d.path,
        '--log-level',
        'info',
      ],
      {},
      'ledge-cloud-local',
      process.execPath,
      d.path,
    );
    try {
      await cloud.waitFor(/"msg":"cloudcore started"/);
      assert.match(cloud.output(), /"msg":"local control plane started"/);
      const coord = kubeConfigAt(join(d.path, 'kubeconfig')).makeApiClient(k8s.CoordinationV1Api);
      // CloudCore's leader election writes its Lease through the embedded API server.
      const lease = await eventually(() => coord.readNamespacedLease({ name: 'ledge-cloudcore', namespace: 'kube-system' }), 20_000, 'leader lease in the local API');
      assert.ok(lease.spec?.holderIdentity);
      assert.equal(await cloud.stop(), 0);
    } finally {
      await cloud.kill9();
      d.cleanup();
    }
  });

  test('ledge up: control plane, CloudCore and EdgeCore "edge-1"; the node registers; SIGTERM stops both', async () => {
    const d = tempDir();
    const up = startProcess([ledgeBin, 'up', '--port', '0', '--apiserver-port', '0', '--log-level', 'info'], {}, 'ledge-up', process.execPath, d.path);
    let edgePid = 0;
    try {
      const [, pid] = await up.waitFor(/ledge is up: .*EdgeCore \\"edge-1\\" pid (\d+), kubectl --kubeconfig /);
      edgePid = Number(pid);
      const core = kubeConfigAt(join(d.path, '.ledge/cloud/kubeconfig')).makeApiClient(k8s.CoreV1Api);
      const node = await eventually(
        async () => {
          const n = await core.readNode({ name: 'edge-1' });
          return n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? n : undefined;
        },
        20_000,
        'node edge-1 Ready in the local API',
      );
      assert.equal(node.metadata?.name, 'edge-1');
      assert.equal(await up.stop(), 0);
      await eventually(() => processGone(edgePid), 10_000, 'the EdgeCore child to exit');
    } finally {
      await up.kill9();
      if (edgePid && !processGone(edgePid)) process.kill(edgePid, 'SIGKILL');
      d.cleanup();
    }
  });
});
