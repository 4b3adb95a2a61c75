/**
 * Configuration: defaults < file (YAML/JSON) < env < flags, with errors that name the field.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig, formatHelp } from '../../shared/config/index.js';
import { edgeConfigSpec, type EdgeConfig } from '../../edge/config.js';
import { tempDir } from '../helpers/files.js';
import { repoRoot } from '../helpers/process.js';
import { cloudConfigSpec, type CloudConfig } from '../../cloud/config.js';

const required = ['--cloud', 'ws://c:10000', '--node-name', 'n1'];

describe('config', () => {
  test('defaults apply and flags set fields', async () => {
    const { config } = await loadConfig<EdgeConfig>(edgeConfigSpec, { argv: required, env: {} });
    assert.deepEqual(config.cloud, ['ws://c:10000']);
    assert.equal(config.hub.heartbeatIntervalMs, 15_000);
    assert.equal(config.dataDir, '/var/lib/ledge');
  });

  test('precedence: file < env < flag', async () => {
    const d = tempDir();
    try {
      const file = join(d.path, 'edgecore.yaml');
      writeFileSync(file, 'nodeName: from-file\ndataDir: /from/file\nhub:\n  heartbeatIntervalMs: 1000\n  reconnectMaxMs: 7000\n');
      const { config } = await loadConfig<EdgeConfig>(edgeConfigSpec, {
        argv: ['--config', file, '--cloud', 'ws://a,ws://b', '--heartbeat-interval', '2000'],
        env: { LEDGE_DATA_DIR: '/from/env' },
      });
      assert.equal(config.nodeName, 'from-file');
      assert.equal(config.dataDir, '/from/env');
      assert.equal(config.hub.heartbeatIntervalMs, 2000);
      assert.equal(config.hub.reconnectMaxMs, 7000);
      assert.deepEqual(config.cloud, ['ws://a', 'ws://b']);
    } finally {
      d.cleanup();
    }
  });

  test('a bad value names the field and where it came from', async () => {
    await assert.rejects(loadConfig(edgeConfigSpec, { argv: [...required, '--heartbeat-interval', 'soon'], env: {} }), (err: Error & { code: string }) => {
      assert.equal(err.code, 'LEDGE_ERR_CONFIG');
      assert.match(err.message, /"hub\.heartbeatIntervalMs" \(from --heartbeat-interval\) must be an integer/);
      return true;
    });
    await assert.rejects(loadConfig(edgeConfigSpec, { argv: required, env: { LEDGE_LOG_LEVEL: 'loud' } }), /"log\.level" \(from LEDGE_LOG_LEVEL\) must be one of debug, info, warn, error, silent/);
  });

  test('a missing required field says how to set it', async () => {
    await assert.rejects(loadConfig(edgeConfigSpec, { argv: ['--cloud', 'ws://x'], env: {} }), /"nodeName" is required .*--node-name, LEDGE_NODE_NAME/);
  });

  test('unknown fields and malformed files are rejected clearly', async () => {
    const d = tempDir();
    try {
      const typo = join(d.path, 'typo.json');
      writeFileSync(typo, JSON.stringify({ hub: { heartbeatIntervalMS: 5 } }));
      await assert.rejects(loadConfig(edgeConfigSpec, { argv: [...required, '--config', typo], env: {} }), /unknown config field "hub\.heartbeatIntervalMS"/);
      const broken = join(d.path, 'broken.yaml');
      writeFileSync(broken, 'hub: [unclosed\n');
      await assert.rejects(loadConfig(edgeConfigSpec, { argv: [...required, '--config', broken], env: {} }), /is not valid YAML/);
      await assert.rejects(loadConfig(edgeConfigSpec, { argv: [...required, '--config', join(d.path, 'missing.yaml')], env: {} }), /cannot read config file/);
      await assert.rejects(loadConfig(edgeConfigSpec, { argv: [...required, '--no-such-flag'], env: {} }), /Unknown option '--no-such-flag'/);
    } finally {
      d.cleanup();
    }
  });

  test('help lists every flag with its field and default', () => {
    const help = formatHelp('usage', edgeConfigSpec);
    assert.match(help, /--heartbeat-interval <integer>\s+keepalive interval \(ms\) \[default: 15000\]/);
    assert.match(help, /field: hub\.heartbeatIntervalMs/);
  });

  test('the shipped example configs load and mean what they say', async () => {
    const edge = await loadConfig<EdgeConfig>(edgeConfigSpec, { argv: ['--config', join(repoRoot, 'deploy/edgecore.example.yaml')], env: {} });
    assert.deepEqual(edge.config.cloud, ['wss://cloudcore.example.com:10000']);
    assert.equal(edge.config.nodeName, 'pi-kitchen-1');
    assert.equal(edge.config.hub.caFile, '/etc/ledge/ca.pem');
    const cloud = await loadConfig<CloudConfig>(cloudConfigSpec, { argv: ['--config', join(repoRoot, 'deploy/cloudcore.example.yaml')], env: {} });
    assert.equal(cloud.config.hub.port, 10000);
    assert.equal(cloud.config.hub.tls?.certFile, '/etc/ledge/tls/tls.crt');
  });
});

