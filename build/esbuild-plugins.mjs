// The esbuild plugins and options of the device bundles (dist/edgecore.js, dist/mappers/*.js), in
// one place: build/build.mjs uses them, and the tests that bundle a module as it ships
// (test/eventbus/bundled.test.ts) import the same ones (types: ./esbuild-plugins.d.mts).
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);

// Optional native accelerators of ws and cbor-x: never in the edge bundle. The stub
// throws, exactly like a missing optional package, so the libraries use their JS paths.
export const stubNative = {
  name: 'stub-native',
  setup(b) {
    b.onResolve({ filter: /^(bufferutil|utf-8-validate|cbor-extract)$/ }, (args) => ({ path: args.path, namespace: 'stub' }));
    b.onLoad({ filter: /.*/, namespace: 'stub' }, (args) => ({ contents: `throw new Error(${JSON.stringify(`${args.path} is not bundled`)});`, loader: 'js' }));
  },
};

// Libraries of the MQTT broker (aedes, mqtt-packet) log through `debug`, which EdgeCore never
// enables: a no-op stands in (saves ~8 KB and an environment read at load).
// mqtt-packet's `bl` pulls in readable-stream, npm's copy of Node's own stream module (76 KB):
// the bundles use node:stream instead (docs/devices.md, "Bundle cost"; the device tests run the bundle).
export const stubDebug = {
  name: 'stub-debug',
  setup(b) {
    b.onResolve({ filter: /^debug$/ }, () => ({ path: 'debug', namespace: 'stub-debug' }));
    b.onLoad({ filter: /.*/, namespace: 'stub-debug' }, () => ({
      contents:
        'const d = () => { const f = () => {}; f.enabled = false; f.extend = d; return f; }; d.enable = () => {}; d.disable = () => ""; d.enabled = () => false; module.exports = d;',
      loader: 'js',
    }));
  },
};
// The Modbus mapper speaks Modbus TCP only: modbus-serial's serial ports (the native serialport
// package) are replaced by a class that refuses, so the bundle needs no native addon.
export const stubSerialport = {
  name: 'stub-serialport',
  setup(b) {
    b.onResolve({ filter: /^serialport$/ }, () => ({ path: 'serialport', namespace: 'stub-serialport' }));
    b.onLoad({ filter: /.*/, namespace: 'stub-serialport' }, () => ({
      contents: 'class SerialPort { constructor() { throw new Error("serial ports are not supported by this mapper build (Modbus TCP only)"); } } module.exports = { SerialPort };',
      loader: 'js',
    }));
  },
};
// protobufjs decodes int64 fields to long.js objects when `long` loads, to numbers when it does not;
// shared/dmi/codec.ts turns Longs into numbers anyway (the same value: both compute hi * 2^32 + lo),
// so the device bundles go without it (10.7 KB). protobufjs requires it inside a try and takes
// anything without `isLong` for "not installed".
export const stubLong = {
  name: 'stub-long',
  setup(b) {
    b.onResolve({ filter: /^long$/ }, () => ({ path: 'long', namespace: 'stub-long' }));
    b.onLoad({ filter: /.*/, namespace: 'stub-long' }, () => ({ contents: 'module.exports = null;', loader: 'js' }));
  },
};
// EdgeCore is a WebSocket client only (edge/edgehub): `ws` resolves to its client class, without
// the server, createWebSocketStream and subprotocol parsing ws's index.js adds (7.7 KB). The class
// is the one ws's index exports (index.js only hangs the server and helpers on it as statics);
// an edge module that needs WebSocketServer must drop this plugin.
export const wsClientOnly = {
  name: 'ws-client-only',
  setup(b) {
    const client = join(dirname(require.resolve('ws')), 'lib/websocket.js');
    b.onResolve({ filter: /^ws$/ }, () => ({ path: client }));
  },
};
/**
 * The ASN.1 stack of edge/join/csr.ts (@peculiar/asn1-*, asn1js, pvtsutils, pvutils) resolved to
 * its ES module builds ("module" instead of "main") and marked side-effect free, so esbuild drops
 * the files a CSR never uses (extensions, CRLs, …): 127 instead of 188 KB in the edge bundle.
 */
const NAMES = /^(@peculiar\/asn1-[a-z0-9-]+|@peculiar\/utils|asn1js|pvtsutils|pvutils)$/;
function pkgRoot(file) {
  let d = dirname(file);
  while (!/node_modules\/(@[^/]+\/)?[^/]+$/.test(d)) {
    if (dirname(d) === d) return undefined;
    d = dirname(d);
  }
  return d;
}
export const asn1Esm = {
  name: 'asn1-esm',
  setup(b) {
    b.onResolve({ filter: /^(@peculiar\/(asn1-[a-z0-9-]+|utils)|asn1js|pvtsutils|pvutils)$/ }, async (args) => {
      if (args.pluginData?.asn1Esm) return undefined;
      const r = await b.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, importer: args.importer, pluginData: { asn1Esm: true } });
      if (r.errors.length) return r;
      const root = pkgRoot(r.path);
      if (!root) return r;
      const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
      if (!NAMES.test(pkg.name) || !pkg.module) return r;
      return { path: join(root, pkg.module), sideEffects: false };
    });
    // Files inside those packages (relative imports of their ES builds): side-effect free too.
    b.onResolve({ filter: /^\.\.?\// }, async (args) => {
      if (args.pluginData?.asn1Esm || !/node_modules\/(@peculiar\/(asn1-[a-z0-9-]+|utils)|asn1js|pvtsutils|pvutils)\//.test(args.importer)) return undefined;
      const r = await b.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, importer: args.importer, pluginData: { asn1Esm: true } });
      return r.errors.length ? r : { path: r.path, sideEffects: false };
    });
  },
};
export const streamAlias = { 'readable-stream': 'stream' };

// CommonJS dependencies (ws) call require() for Node built-ins; give the ESM bundle one.
export const banner = { js: "import { createRequire as __ledgeCreateRequire } from 'node:module'; const require = __ledgeCreateRequire(import.meta.url);" };
