/**
 * Shipped manifests: generated ones match the code (RBAC from cloud/rbac.ts, CRDs
 * from the SyncController), and the CRDs apply with a real kubectl.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { startApiServer } from '../../apiserver/index.js';
import { createLogger } from '../../shared/log/index.js';
import { repoRoot } from '../helpers/process.js';
import { tempDir } from '../helpers/files.js';
import { KUBECTL_SKIP } from '../apiserver/helpers.js';

describe('deploy manifests', () => {
  test('generated manifests are up to date with the code', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'build/gen-manifests.ts', '--check'], { cwd: repoRoot, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  });

  test('the CRDs apply with kubectl and their resources are then served', { skip: KUBECTL_SKIP }, async () => {
    const kubectl = join(repoRoot, '.tools/bin/kubectl');
    const d = tempDir();
    const api = await startApiServer({ dataDir: d.path, port: 0, log: createLogger({ level: 'warn' }) });
    try {
      // Asynchronous: the API server runs in this process and must keep serving meanwhile.
      const k = (...args: string[]) => promisify(execFile)(kubectl, ['--kubeconfig', api.kubeconfigPath, ...args], { encoding: 'utf8', timeout: 30_000 });
      const applied = await k('apply', '-f', join(repoRoot, 'deploy/crds'));
      assert.match(applied.stdout, /objectsyncs\.reliablesyncs\.ledge\.io created/);
      await k('get', 'objectsyncs,clusterobjectsyncs', '-A');
    } finally {
      await api.close();
      d.cleanup();
    }
  });
});
