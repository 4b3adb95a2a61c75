/**
 * The bus as it ships: bundled with esbuild like dist/edgecore.js (readable-stream aliased to
 * node:stream, `debug` stubbed, minified), run as its own process in mode `both` against a real
 * Mosquitto, and driven with mosquitto_pub / mosquitto_sub on both brokers.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { banner, streamAlias, stubDebug } from '../../build/esbuild-plugins.mjs';
import { tempDir } from '../helpers/files.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { eventually, repoRoot, within } from '../helpers/process.js';
import { mosquittoSkipReason, mqttPub, mqttSub, startMosquitto, type Mosquitto } from './helpers.js';

const skip = mosquittoSkipReason();
const entry = fileURLToPath(new URL('./fixtures/bundle-entry.ts', import.meta.url));

describe('the bundled bus (esbuild, readable-stream → node:stream, debug stubbed)', { skip }, () => {
  const dir = tempDir('ledge-eventbus-bundle-');
  let mosquitto: Mosquitto;
  let child: ChildProcess;
  let out = '';
  const waitFor = (re: RegExp) => eventually(() => out.match(re), 15_000, `${re} from the bundled bus; output:\n${out}`);
  let inner: number;
  before(async () => {
    const outfile = join(dir.path, 'bus.mjs');
    await build({
      entryPoints: [entry],
      outfile,
      bundle: true,
      minify: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      absWorkingDir: repoRoot,
      // The device bundles' own options (build/esbuild-plugins.mjs).
      alias: streamAlias,
      plugins: [stubDebug],
      banner,
      logLevel: 'error',
    });
    mosquitto = await startMosquitto({ dir: dir.path });
    // Its own spawn: the bus reads commands from stdin.
    child = spawn(process.execPath, [outfile, String(mosquitto.port)], { stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    child.stdin!.on('error', () => {});
    inner = Number((await waitFor(/READY (\d+)/))[1]);
  });
  after(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.stdin!.end();
      await within(exited, 15_000, 'the bundled bus to stop').catch(() => child.kill('SIGKILL'));
    }
    await mosquitto?.stop();
    dir.cleanup();
  });

  it('bridges a device message both ways and hands it to its handler', async () => {
    const outer = await mqttSub({ port: mosquitto.port }, '$hw/events/device/default/b1/#');
    await mqttPub({ port: inner }, '$hw/events/device/default/b1/twin/update', 'from-inner');
    assert.deepEqual(await outer.waitLines(1), ['$hw/events/device/default/b1/twin/update from-inner']);
    await waitFor(/GOT \$hw\/events\/device\/default\/b1\/twin\/update from-inner/);
    await outer.stop();
    const innerSub = await mqttSub({ port: inner }, '$hw/events/device/default/b2/#');
    await mqttPub({ port: mosquitto.port }, '$hw/events/device/default/b2/twin/update', 'from-outer');
    assert.deepEqual(await innerSub.waitLines(1), ['$hw/events/device/default/b2/twin/update from-outer']);
    await waitFor(/GOT \$hw\/events\/device\/default\/b2\/twin\/update from-outer/);
    await innerSub.stop();
  });

  it('publishes to both brokers', async () => {
    const a = await mqttSub({ port: inner }, '$hw/events/device/default/b3/#');
    const b = await mqttSub({ port: mosquitto.port }, '$hw/events/device/default/b3/#');
    child.stdin!.write('PUB $hw/events/device/default/b3/twin/update/delta hello\n');
    assert.deepEqual(await a.waitLines(1), ['$hw/events/device/default/b3/twin/update/delta hello']);
    assert.deepEqual(await b.waitLines(1), ['$hw/events/device/default/b3/twin/update/delta hello']);
    await mqttPub({ port: inner }, '$hw/events/device/default/b3/marker', 'm');
    await waitFor(/GOT \$hw\/events\/device\/default\/b3\/marker m/);
    assert.doesNotMatch(out, /GOT \S+\/b3\/twin/, 'its own publish is not handed back');
    await a.stop();
    await b.stop();
  });
});
