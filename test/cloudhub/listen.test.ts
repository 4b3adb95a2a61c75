/**
 * Where CloudHub listens: loopback unless told otherwise (plain ws://, where nodes name
 * themselves, only there: test/cloudhub/mtls.test.ts); the cluster manifest says otherwise explicitly.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { createCloudHub, resolveCloudHubOptions } from '../../cloud/cloudhub/index.js';
import { Beehive } from '../../shared/beehive/index.js';
import { isLoopbackHost } from '../../cloud/cloudhub/cloudhub.js';
import { cloudConfigSpec } from '../../cloud/config.js';
import { loadConfig } from '../../shared/config/index.js';
import { hubOptionsFrom } from '../../cloud/main.js';
import { captureLog } from '../helpers/cloud.js';
import { eventually, repoRoot } from '../helpers/process.js';

describe('CloudHub listen address', () => {
  test('`ledge cloud` listens on 127.0.0.1 by default; --bind-address changes it', async () => {
    assert.equal(resolveCloudHubOptions({}).host, '127.0.0.1');
    const { config } = await loadConfig(cloudConfigSpec, { argv: [], env: {} });
    assert.equal(config.hub.host, '127.0.0.1');
    assert.equal(hubOptionsFrom(config).host, '127.0.0.1');
    const other = await loadConfig(cloudConfigSpec, { argv: ['--bind-address', '0.0.0.0'], env: {} });
    assert.equal(other.config.hub.host, '0.0.0.0');
    const env = await loadConfig(cloudConfigSpec, { argv: [], env: { LEDGE_CLOUDHUB_BIND_ADDRESS: '::1' } });
    assert.equal(env.config.hub.host, '::1');
  });

  test('a plain hub started without a host binds loopback, with one loud warning', async () => {
    assert.ok(isLoopbackHost(resolveCloudHubOptions({}).host), 'default is loopback (checked before binding anything)');
    const log = captureLog();
    const bee = new Beehive({ log: log.logger });
    bee.register(createCloudHub({ port: 0, insecurePlainWebSocket: true }, { log: log.logger }));
    bee.start();
    try {
      const line = await eventually(() => log.lines.find((l) => l.msg === 'cloudhub listening'), 5000, 'listening');
      assert.equal(line.address, '127.0.0.1');
      assert.equal(log.lines.filter((l) => /WITHOUT AUTHENTICATION/.test(String(l.msg))).length, 1, 'one warning about plain ws://');
    } finally {
      await bee.stop();
    }
  });

  test('loopback addresses are recognised; everything else is refused for plain ws://', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', '0:0:0:0:0:0:0:1', 'localhost', '::ffff:127.0.0.1']) assert.ok(isLoopbackHost(h), h);
    for (const h of ['0.0.0.0', '::', '10.0.0.5', '192.168.1.1', 'example.com', '::ffff:10.0.0.1', '128.0.0.1', '']) assert.ok(!isLoopbackHost(h), h);
  });

  test('the cluster Deployment passes --bind-address 0.0.0.0 explicitly (pod IP, Service and probe)', () => {
    const docs = parseAllDocuments(readFileSync(join(repoRoot, 'deploy/kubernetes/cloudcore.yaml'), 'utf8')).map(
      (d) => d.toJS() as { kind?: string; spec?: { template?: { spec?: { containers?: { name: string; args?: string[] }[] } } } },
    );
    const deployment = docs.find((d) => d.kind === 'Deployment');
    const args = deployment?.spec?.template?.spec?.containers?.find((c) => c.name === 'cloudcore')?.args ?? [];
    const i = args.indexOf('--bind-address');
    assert.ok(i >= 0, `--bind-address in ${JSON.stringify(args)}`);
    assert.equal(args[i + 1], '0.0.0.0');
  });
});
