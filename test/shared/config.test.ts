/**
 * Configuration: defaults < file (YAML/JSON) < env < flags, with errors that name the field;
 * deprecated flag and env names; and the defaults of every config field backed by a module
 * option equal that module's own defaults (they are written once, in the module).
 * (The derived types are checked by tsc: config-types.test.ts.)
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig, loadConfigOrHelp, formatHelp, moduleFields, type ConfigSpec } from '../../shared/config/index.js';
import { edgeConfigSpec } from '../../edge/config.js';
import { tempDir } from '../helpers/files.js';
import { repoRoot } from '../helpers/process.js';
import { cloudConfigSpec } from '../../cloud/config.js';
import { apiServerConfigSpec } from '../../apiserver/cli.js';
import { defaultApiServerOptions } from '../../apiserver/options.js';
import { defaultCloudHubOptions, resolveCloudHubOptions } from '../../cloud/cloudhub/options.js';
import { defaultSyncControllerOptions } from '../../cloud/synccontroller/options.js';
import { defaultLeaderElectionOptions } from '../../cloud/leaderelection/options.js';
import { defaultEdgeHubOptions } from '../../edge/edgehub/options.js';
import { defaultNodeStatusOptions } from '../../edge/nodestatus/options.js';
import { defaultMetaManagerOptions, defaultMetaStoreOptions } from '../../edge/metamanager/options.js';

const required = ['--cloud', 'ws://c:10000', '--node-name', 'n1'];

describe('config', () => {
  test('defaults apply and flags set fields', async () => {
    const { config } = await loadConfig(edgeConfigSpec, { argv: required, env: {} });
    assert.deepEqual(config.cloud, ['ws://c:10000']);
    assert.equal(config.hub.heartbeatIntervalMs, 15_000);
    assert.equal(config.dataDir, '/var/lib/ledge');
  });

  test('precedence: file < env < flag', async () => {
    const d = tempDir();
    try {
      const file = join(d.path, 'edgecore.yaml');
      writeFileSync(file, 'nodeName: from-file\ndataDir: /from/file\nhub:\n  heartbeatIntervalMs: 1000\n  reconnectMaxMs: 7000\n');
      const { config } = await loadConfig(edgeConfigSpec, {
        argv: ['--config', file, '--cloud', 'ws://a,ws://b', '--heartbeat-interval-ms', '2000'],
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
    await assert.rejects(loadConfig(edgeConfigSpec, { argv: [...required, '--heartbeat-interval-ms', 'soon'], env: {} }), (err: Error & { code: string }) => {
      assert.equal(err.code, 'LEDGE_ERR_CONFIG');
      assert.match(err.message, /"hub\.heartbeatIntervalMs" \(from --heartbeat-interval-ms\) must be an integer/);
      return true;
    });
    await assert.rejects(
      loadConfig(edgeConfigSpec, { argv: required, env: { LEDGE_LOG_LEVEL: 'loud' } }),
      /"log\.level" \(from LEDGE_LOG_LEVEL\) must be one of debug, info, warn, error, silent/,
    );
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
    assert.match(help, /--heartbeat-interval-ms <integer>\s+keepalive interval \(ms\) \[default: 15000\]/);
    assert.match(help, /field: hub\.heartbeatIntervalMs \(deprecated: --heartbeat-interval\)/);
  });

  test('the shipped example configs load and mean what they say', async () => {
    const edge = await loadConfig(edgeConfigSpec, { argv: ['--config', join(repoRoot, 'deploy/edgecore.example.yaml')], env: {} });
    assert.deepEqual(edge.config.cloud, ['wss://cloudcore.example.com:10000']);
    assert.equal(edge.config.nodeName, 'pi-kitchen-1');
    assert.equal(edge.config.hub.caFile, '/var/lib/ledge/pki/ca.crt');
    assert.equal(edge.config.hub.certFile, '/var/lib/ledge/pki/node.crt');
    const cloud = await loadConfig(cloudConfigSpec, { argv: ['--config', join(repoRoot, 'deploy/cloudcore.example.yaml')], env: {} });
    assert.equal(cloud.config.hub.port, 10000);
    assert.equal(cloud.config.hub.tls?.certFile, undefined);
    assert.deepEqual(cloud.config.ca.tlsSans, ['cloudcore.example.com']);
  });

  test('a deprecated flag still sets its field, and says once what replaced it; the current flag wins', async () => {
    const old = await loadConfig(edgeConfigSpec, { argv: [...required, '--heartbeat-interval', '2000', '--reconnect-max', '9000'], env: {} });
    assert.equal(old.config.hub.heartbeatIntervalMs, 2000);
    assert.equal(old.config.hub.reconnectMaxMs, 9000);
    assert.deepEqual(old.warnings, ['--heartbeat-interval is deprecated; use --heartbeat-interval-ms', '--reconnect-max is deprecated; use --reconnect-max-ms']);
    const both = await loadConfig(edgeConfigSpec, { argv: [...required, '--heartbeat-interval-ms', '3000', '--heartbeat-interval', '2000'], env: {} });
    assert.equal(both.config.hub.heartbeatIntervalMs, 3000);
    assert.equal(both.warnings.length, 1);
    const current = await loadConfig(edgeConfigSpec, { argv: [...required, '--heartbeat-interval-ms', '3000'], env: {} });
    assert.deepEqual(current.warnings, []);
    // An error names the flag actually used.
    await assert.rejects(loadConfig(edgeConfigSpec, { argv: [...required, '--heartbeat-interval', 'soon'], env: {} }), /\(from --heartbeat-interval\) must be an integer/);
  });

  test('a boolean flag on by default is turned off with --no-<flag>; both at once is refused; --help shows --[no-]flag', async () => {
    const required = ['--cloud', 'ws://127.0.0.1:1', '--node-name', 'n1'];
    assert.equal((await loadConfig(edgeConfigSpec, { argv: required, env: {} })).config.dmi.enabled, true);
    assert.equal((await loadConfig(edgeConfigSpec, { argv: [...required, '--no-dmi'], env: {} })).config.dmi.enabled, false);
    // The flag wins over the environment, as every flag does.
    assert.equal((await loadConfig(edgeConfigSpec, { argv: [...required, '--no-dmi'], env: { LEDGE_DMI: 'true' } })).config.dmi.enabled, false);
    await assert.rejects(loadConfig(edgeConfigSpec, { argv: [...required, '--dmi', '--no-dmi'], env: {} }), /--dmi and --no-dmi contradict/);
    assert.match(formatHelp('usage', edgeConfigSpec), /--\[no-\]dmi\b/);
  });

  test('--host and LEDGE_CLOUDHUB_HOST are deprecated names of --bind-address and LEDGE_CLOUDHUB_BIND_ADDRESS', async () => {
    const flag = await loadConfig(cloudConfigSpec, { argv: ['--host', '0.0.0.0'], env: {} });
    assert.equal(flag.config.hub.host, '0.0.0.0');
    assert.deepEqual(flag.warnings, ['--host is deprecated; use --bind-address']);
    const env = await loadConfig(cloudConfigSpec, { argv: [], env: { LEDGE_CLOUDHUB_HOST: '::1' } });
    assert.equal(env.config.hub.host, '::1');
    assert.deepEqual(env.warnings, ['environment variable LEDGE_CLOUDHUB_HOST is deprecated; use LEDGE_CLOUDHUB_BIND_ADDRESS']);
    const both = await loadConfig(cloudConfigSpec, { argv: [], env: { LEDGE_CLOUDHUB_HOST: '::1', LEDGE_CLOUDHUB_BIND_ADDRESS: '127.0.0.2' } });
    assert.equal(both.config.hub.host, '127.0.0.2');
    assert.deepEqual(both.warnings, []);
    const api = await loadConfig(apiServerConfigSpec, { argv: [], env: { LEDGE_APISERVER_HOST: '127.0.0.3' } });
    assert.equal(api.config.host, '127.0.0.3');
    assert.equal(api.warnings.length, 1);
  });

  test('every command spells a listen address --bind-address and a duration in milliseconds with -ms', () => {
    for (const [command, spec] of [
      ['cloud', cloudConfigSpec],
      ['edge', edgeConfigSpec],
      ['apiserver', apiServerConfigSpec],
    ] as const) {
      for (const [key, f] of Object.entries(spec as ConfigSpec)) {
        if (!f.flag) continue;
        if (/Ms$/.test(key)) assert.match(f.flag, /-ms$/, `${command}: --${f.flag} (${key}) is in ms`);
        // The main listener is --bind-address; another one of the same command is --<what>-bind-address.
        if (/(^|\.)host$/.test(key)) assert.match(f.flag, /^([a-z]+-)?bind-address$/, `${command}: ${key}`);
        assert.doesNotMatch(f.flag, /^host$|-interval$|-timeout$|-duration$/, `${command}: --${f.flag} names no unit`);
      }
    }
  });

  test('--help: loadConfigOrHelp returns no config (required fields may be missing); loadConfig refuses it', async () => {
    const help = await loadConfigOrHelp(edgeConfigSpec, { argv: ['--help'], env: {} });
    assert.equal(help.help, true);
    assert.equal('config' in help, false);
    await assert.rejects(loadConfig(edgeConfigSpec, { argv: ['--help'], env: {} }), /Unknown option '--help'/);
  });

  test("defaults are checked like any value: a module default outside its field's range fails at load", async () => {
    const spec = { ...moduleFields('hub', { heartbeatIntervalMs: 50 }, { heartbeatIntervalMs: { type: 'integer', min: 100, description: 'x' } }) } as const satisfies ConfigSpec;
    await assert.rejects(loadConfig(spec, { argv: [], env: {} }), /config field "hub\.heartbeatIntervalMs" \(default\) must be an integer ≥ 100, got 50/);
  });

  test('a loaded list is a copy: changing it changes neither the default nor the next load', async () => {
    const spec = { names: { type: 'string[]', default: ['a'], description: 'x' } } as const satisfies ConfigSpec;
    const first = await loadConfig(spec, { argv: [], env: {} });
    first.config.names.push('b');
    assert.deepEqual(spec.names.default, ['a']);
    assert.deepEqual((await loadConfig(spec, { argv: [], env: {} })).config.names, ['a']);
  });

  test('moduleFields refuses, at run time too, a field that is not an option of the module', () => {
    // A plain object (as from JavaScript) bypasses the compile-time check.
    const fields: Record<string, { type: 'integer'; description: string }> = { nope: { type: 'integer', description: 'x' } };
    assert.throws(() => moduleFields('hub', defaultCloudHubOptions, fields as never), /"nope" is not an option of the module/);
  });
});

/**
 * Config fields backed by a module option, per command: the field prefix and the module's
 * defaults object. `unbacked` lists the fields under the prefix that are not options with a
 * default (optional, or mapped by hand), so a new field must be classified here.
 */
const backed: { command: string; spec: ConfigSpec; prefix: string; defaults: Record<string, unknown>; unbacked: string[] }[] = [
  {
    command: 'cloud',
    spec: cloudConfigSpec,
    prefix: 'hub.',
    defaults: defaultCloudHubOptions as unknown as Record<string, unknown>,
    unbacked: ['tls.certFile', 'tls.keyFile', 'tls.caFile'],
  },
  { command: 'cloud', spec: cloudConfigSpec, prefix: 'controllers.', defaults: defaultSyncControllerOptions, unbacked: [] },
  { command: 'cloud', spec: cloudConfigSpec, prefix: 'leaderElection.', defaults: defaultLeaderElectionOptions, unbacked: ['identity'] },
  { command: 'cloud', spec: cloudConfigSpec, prefix: 'apiserver.', defaults: defaultApiServerOptions, unbacked: ['kubeconfig'] },
  { command: 'edge', spec: edgeConfigSpec, prefix: 'hub.', defaults: defaultEdgeHubOptions as unknown as Record<string, unknown>, unbacked: ['caFile', 'certFile', 'keyFile'] },
  { command: 'edge', spec: edgeConfigSpec, prefix: 'nodeStatus.', defaults: defaultNodeStatusOptions, unbacked: [] },
  { command: 'edge', spec: edgeConfigSpec, prefix: 'meta.', defaults: { ...defaultMetaStoreOptions, ...defaultMetaManagerOptions }, unbacked: [] },
  {
    command: 'apiserver',
    spec: apiServerConfigSpec,
    prefix: '',
    defaults: defaultApiServerOptions,
    unbacked: ['dataDir', 'insecureHttp', 'kubeconfig', 'log.level', 'log.format'],
  },
];

describe("config defaults are the modules' defaults", () => {
  for (const { command, spec, prefix, defaults, unbacked } of backed) {
    test(`${command}: every ${prefix || 'top-level '}field's default is the module's`, async () => {
      const argv = command === 'edge' ? required : [];
      const { config } = await loadConfig(spec, { argv, env: {} });
      const fields = Object.keys(spec)
        .filter((k) => k.startsWith(prefix))
        .map((k) => k.slice(prefix.length));
      assert.ok(fields.length > 0);
      for (const field of fields) {
        if (unbacked.includes(field)) {
          // Listed as not backed: it must really not be an option with a default (else it would take that default).
          assert.ok(!(field in defaults), `${command}: "${prefix}${field}" is a module option with a default: declare it with moduleFields`);
          continue;
        }
        assert.ok(field in defaults, `${command}: config field "${prefix}${field}" is no option of the module (classify it in \`unbacked\`)`);
        let loaded: unknown = config;
        for (const part of (prefix + field).split('.')) loaded = (loaded as Record<string, unknown>)[part];
        assert.deepEqual(loaded, defaults[field], `${command}: "${prefix}${field}" defaults to ${JSON.stringify(loaded)}, the module to ${JSON.stringify(defaults[field])}`);
      }
    });
  }

  test('apiserver: --insecure-http is off exactly when the server defaults to TLS', async () => {
    const { config } = await loadConfig(apiServerConfigSpec, { argv: [], env: {} });
    assert.equal(config.insecureHttp, !defaultApiServerOptions.tls);
  });

  test('a CloudHub built from the loaded config with no flags has exactly the module defaults', async () => {
    const { config } = await loadConfig(cloudConfigSpec, { argv: [], env: {} });
    const { tls: _tls, ...hub } = config.hub;
    assert.deepEqual(resolveCloudHubOptions(hub), defaultCloudHubOptions);
  });
});
