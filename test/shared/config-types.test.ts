/**
 * Config types are derived from the specs (`ConfigOf<typeof spec>`). This file is checked
 * by `tsc` (npm run typecheck): each `Expect<Equal<…>>` fails to compile when a derived
 * type drifts from what the code relies on, and each `@ts-expect-error` fails to compile
 * when the error it marks stops being an error (a typo or a wrong type that type-checks).
 * The runtime test only makes the runner count the file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig, moduleFields, type ConfigOf, type ConfigSpec } from '../../shared/config/index.js';
import type { LogLevel } from '../../shared/log/index.js';
import { cloudConfigSpec, type CloudConfig } from '../../cloud/config.js';
import { edgeConfigSpec, type EdgeConfig } from '../../edge/config.js';
import { apiServerConfigSpec, type ApiServerCliConfig } from '../../apiserver/cli.js';
import { defaultCloudHubOptions } from '../../cloud/cloudhub/options.js';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Expect<T extends true> = T;

// ---- A small spec: every field type, optional fields, nesting. ----
const spec = {
  name: { type: 'string', description: 'required string' },
  'a.count': { type: 'integer', default: 1, description: 'integer with default' },
  'a.ratio': { type: 'number', default: 0.5, description: 'number' },
  'a.on': { type: 'boolean', default: false, description: 'boolean' },
  'a.list': { type: 'string[]', default: [], description: 'list' },
  'a.mode': { type: 'enum', values: ['x', 'y'], default: 'x', description: 'enum' },
  'a.note': { type: 'string', optional: true, description: 'optional string' },
  'b.c.d': { type: 'string', optional: true, description: 'all of b optional: b is optional' },
} as const satisfies ConfigSpec;

export type SmallChecks = [
  Expect<
    Equal<
      ConfigOf<typeof spec>,
      {
        name: string;
        a: { count: number; ratio: number; on: boolean; list: string[]; mode: 'x' | 'y'; note?: string };
        b?: { c?: { d?: string } };
      }
    >
  >,
];

// ---- The real specs derive the shapes the code was written against. ----
export type CloudChecks = [
  Expect<Equal<CloudConfig['log'], { level: LogLevel; format?: 'json' | 'text' }>>,
  Expect<
    Equal<
      CloudConfig['hub'],
      {
        host: string;
        port: number;
        insecurePlainWebSocket: boolean;
        tls?: { certFile?: string; keyFile?: string; caFile?: string };
        heartbeatIntervalMs: number;
        heartbeatTimeoutMs: number;
        ackTimeoutMs: number;
        maxFrameBytes: number;
        maxQueuedPerNode: number;
        upstreamQps: number;
        upstreamBurst: number;
        maxNodes: number;
        maxUnflushedBytes: number;
        slowPeerTimeoutMs: number;
      }
    >
  >,
  Expect<Equal<CloudConfig['leaderElection'], { namespace: string; leaseDurationMs: number; renewIntervalMs: number; identity?: string }>>,
  Expect<Equal<CloudConfig['controllers'], { reconcileIntervalMs: number }>>,
  Expect<Equal<CloudConfig['apiserver'], { port: number; kubeconfig?: string }>>,
  Expect<Equal<CloudConfig['local'], boolean>>,
  Expect<Equal<CloudConfig['kubeconfig'], string | undefined>>,
];

export type EdgeChecks = [
  Expect<Equal<EdgeConfig['cloud'], string[]>>,
  Expect<Equal<EdgeConfig['nodeName'], string>>,
  Expect<Equal<EdgeConfig['jit'], boolean>>,
  Expect<
    Equal<
      EdgeConfig['nodeStatus'],
      {
        intervalMs: number;
        kubeletVersion: string;
        memoryAvailableMinBytes: number;
        nodefsAvailableMinPercent: number;
        nodefsInodesFreeMinPercent: number;
        pidAvailableMinPercent: number;
        pressureTransitionPeriodMs: number;
      }
    >
  >,
  Expect<
    Equal<
      EdgeConfig['meta'],
      {
        compactAfter: number;
        compactMinBytes: number;
        compactRatio: number;
        maxObjects: number;
        maxObjectBytes: number;
        maxLiveBytes: number;
        remoteQueryTimeoutMs: number;
      }
    >
  >,
  Expect<Equal<EdgeConfig['hub']['caFile'], string | undefined>>,
  Expect<Equal<EdgeConfig['hub']['insecureSkipTlsVerify'], boolean>>,
];

export type ApiServerChecks = [
  Expect<Equal<ApiServerCliConfig['port'], number>>,
  Expect<Equal<ApiServerCliConfig['host'], string>>,
  Expect<Equal<ApiServerCliConfig['kubeconfig'], string | undefined>>,
  Expect<Equal<ApiServerCliConfig['log'], { level: LogLevel; format?: 'json' | 'text' }>>,
];

// ---- What must NOT type-check. Never called: these lines exist for tsc. ----
export function mistakes(cloud: CloudConfig, edge: EdgeConfig): void {
  // @ts-expect-error a typo in a key
  void cloud.hub.heartbeatIntervalMS;
  // @ts-expect-error a section that does not exist
  void edge.hubs;
  // @ts-expect-error a number field is not a string
  const port: string = cloud.hub.port;
  void port;
  // @ts-expect-error an enum field holds only its values
  const level: 'verbose' = cloud.log.level;
  void level;
  // @ts-expect-error an optional field may be absent
  const ca: string = edge.hub.caFile;
  void ca;
  // @ts-expect-error a nested object whose fields are all optional may be absent
  void cloud.hub.tls.certFile;

  const wrongDefault = {
    // @ts-expect-error a default of the wrong type
    n: { type: 'integer', default: '10', description: 'x' },
  } as const satisfies ConfigSpec;
  const unknownType = {
    // @ts-expect-error an unknown field type
    n: { type: 'duration', description: 'x' },
  } as const satisfies ConfigSpec;
  const enumWithoutValues = {
    // @ts-expect-error an enum needs its values
    n: { type: 'enum', description: 'x' },
  } as const satisfies ConfigSpec;
  // @ts-expect-error a module field that is not an option of the module
  const notAnOption = moduleFields('hub', defaultCloudHubOptions, { heartbeatIntervalMS: { type: 'integer', description: 'x' } });
  // @ts-expect-error a module field whose type does not fit the option (port is a number)
  const wrongKind = moduleFields('hub', defaultCloudHubOptions, { port: { type: 'string', description: 'x' } });
  // @ts-expect-error a module field never writes its own default
  const ownDefault = moduleFields('hub', defaultCloudHubOptions, { port: { type: 'integer', default: 1, description: 'x' } });
  void [wrongDefault, unknownType, enumWithoutValues, notAnOption, wrongKind, ownDefault];
}

// loadConfig returns the derived type itself (no type argument, no cast).
export async function derived(): Promise<void> {
  const { config } = await loadConfig(edgeConfigSpec, { argv: [] });
  const check: Expect<Equal<typeof config, EdgeConfig>> = true;
  void check;
  const cloud = await loadConfig(cloudConfigSpec, { argv: [] });
  const check2: Expect<Equal<typeof cloud.config, CloudConfig>> = true;
  void check2;
  const api = await loadConfig(apiServerConfigSpec, { argv: [] });
  const check3: Expect<Equal<typeof api.config, ApiServerCliConfig>> = true;
  void check3;
}

test('config types are checked by tsc (npm run typecheck)', () => {
  assert.equal(typeof mistakes, 'function');
});
