/**
 * A container's environment (edge/edged/env.ts) as the kubelet builds it: envFrom in order then
 * env (which wins), invalid envFrom keys skipped with the kubelet's event text, configMap/secret
 * key references (optional, missing: the kubelet's messages), fieldRef and resourceFieldRef
 * values (the kubelet's rounding and defaults), and `$(VAR)` expansion with the cases of
 * Kubernetes' own expansion tests.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Container, V1EnvVar, V1Pod } from '@kubernetes/client-node';
import {
  type ConfigLookup,
  EnvResolveError,
  expand,
  expandCommand,
  expandSubPathExpr,
  formatMap,
  type KeyValueObject,
  type PodFields,
  podFieldValue,
  resolveEnv,
  resourceFieldValue,
} from '../../edge/edged/env.js';
import { ContainerConfigError, ErrorCode } from '../../shared/errors/index.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');

function lookupOf(configMaps: Record<string, KeyValueObject>, secrets: Record<string, KeyValueObject> = {}): ConfigLookup & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    configMap: (ns, name) => {
      calls.push(`cm ${ns}/${name}`);
      return ns === 'ns1' && Object.hasOwn(configMaps, name) ? configMaps[name] : undefined;
    },
    secret: (ns, name) => {
      calls.push(`secret ${ns}/${name}`);
      return ns === 'ns1' && Object.hasOwn(secrets, name) ? secrets[name] : undefined;
    },
  };
}

const fields: PodFields = { podIP: '10.0.0.5', hostIP: '192.168.1.2', allocatable: { cpu: '4', memory: '8Gi', 'ephemeral-storage': '100Gi' } };

function podWith(container: V1Container, extra: Partial<V1Pod['spec']> = {}): V1Pod {
  return {
    metadata: {
      name: 'dapi-test-pod-name',
      namespace: 'ns1',
      uid: 'uid-1234',
      labels: { app: 'web', tier: 'front' },
      annotations: { note: 'say "hi"\n\tnow', 'a.io/x': 'y' },
    },
    spec: { nodeName: 'edge-1', serviceAccountName: 'sa1', containers: [container], ...extra },
  };
}

function run(env: V1EnvVar[], lookup: ConfigLookup = lookupOf({}), c: Partial<V1Container> = {}) {
  const container: V1Container = { name: 'c', env, ...c };
  return resolveEnv(podWith(container), container, lookup, fields);
}

describe('resolveEnv: sources and precedence', () => {
  test('envFrom in order (later overrides earlier), then env, which wins; prefixes; secret data decoded; binaryData not in env', () => {
    const lookup = lookupOf(
      { one: { data: { A: 'cm-a', B: 'cm-b', SHARED: 'one' }, binaryData: { BIN: b64('x') } }, two: { data: { SHARED: 'two' } } },
      { s: { data: { TOKEN: b64('s3cret\u00e9'), A: b64('secret-a') }, stringData: { PLAIN: 'p' } } },
    );
    const container: V1Container = {
      name: 'c',
      envFrom: [{ configMapRef: { name: 'one' } }, { configMapRef: { name: 'two' } }, { secretRef: { name: 's' }, prefix: 'S_' }],
      env: [{ name: 'A', value: 'env-a' }],
    };
    const { env, skipped } = resolveEnv(podWith(container), container, lookup, fields);
    assert.deepEqual(env, { A: 'env-a', B: 'cm-b', SHARED: 'two', S_TOKEN: 's3cret\u00e9', S_A: 'secret-a', S_PLAIN: 'p' });
    assert.deepEqual(skipped, []);
  });

  test("envFrom keys that are not variable names are skipped, sorted, with the kubelet's event text", () => {
    const lookup = lookupOf({ cfg: { data: { '1234': 'abc', '1z': 'abc', key: 'value', 'app.properties': 'ok', 'with space': 'x' } } }, { sec: { data: { 'bad=key': b64('v') } } });
    const container: V1Container = { name: 'c', envFrom: [{ configMapRef: { name: 'cfg' } }, { secretRef: { name: 'sec' } }, { configMapRef: { name: 'cfg' }, prefix: 'p_' }] };
    const { env, skipped } = resolveEnv(podWith(container), container, lookup, fields);
    assert.deepEqual(env, { key: 'value', 'app.properties': 'ok', p_1234: 'abc', p_1z: 'abc', p_key: 'value', 'p_app.properties': 'ok' });
    assert.deepEqual(
      skipped.map((s) => s.message),
      [
        'Keys [1234, 1z, with space] from the EnvFrom configMap ns1/cfg were skipped since they are considered invalid environment variable names.',
        'Keys [bad=key] from the EnvFrom secret ns1/sec were skipped since they are considered invalid environment variable names.',
        'Keys [p_with space] from the EnvFrom configMap ns1/cfg were skipped since they are considered invalid environment variable names.',
      ],
    );
    assert.deepEqual(skipped[0], { kind: 'ConfigMap', namespace: 'ns1', name: 'cfg', keys: ['1234', '1z', 'with space'], message: skipped[0]?.message });
  });

  test('configMapKeyRef and secretKeyRef; each object is looked up once', () => {
    const lookup = lookupOf({ cfg: { data: { k1: 'v1', k2: 'v2' } } }, { sec: { data: { pw: b64('hunter2') } } });
    const { env } = run(
      [
        { name: 'K1', valueFrom: { configMapKeyRef: { name: 'cfg', key: 'k1' } } },
        { name: 'K2', valueFrom: { configMapKeyRef: { name: 'cfg', key: 'k2' } } },
        { name: 'PW', valueFrom: { secretKeyRef: { name: 'sec', key: 'pw' } } },
      ],
      lookup,
    );
    assert.deepEqual(env, { K1: 'v1', K2: 'v2', PW: 'hunter2' });
    assert.deepEqual(lookup.calls, ['cm ns1/cfg', 'secret ns1/sec']);
  });

  test("missing objects and keys throw EnvResolveError with the kubelet's messages (code LEDGE_ERR_CONTAINER_CONFIG)", () => {
    const lookup = lookupOf({ cfg: { data: { k: 'v' } } }, { sec: { data: {} } });
    const cases: [V1EnvVar[] | V1Container['envFrom'], string, 'env' | 'envFrom'][] = [
      [[{ name: 'X', valueFrom: { configMapKeyRef: { name: 'nope', key: 'k' } } }], 'configmap "nope" not found', 'env'],
      [[{ name: 'X', valueFrom: { configMapKeyRef: { name: 'cfg', key: 'missing' } } }], "couldn't find key missing in ConfigMap ns1/cfg", 'env'],
      [[{ name: 'X', valueFrom: { secretKeyRef: { name: 'nope', key: 'k' } } }], 'secret "nope" not found', 'env'],
      [[{ name: 'X', valueFrom: { secretKeyRef: { name: 'sec', key: 'pw' } } }], "couldn't find key pw in Secret ns1/sec", 'env'],
      [[{ name: 'X', valueFrom: { configMapKeyRef: { name: 'cfg', key: 'constructor' } } }], "couldn't find key constructor in ConfigMap ns1/cfg", 'env'],
      [[{ configMapRef: { name: 'gone' } }], 'configmap "gone" not found', 'envFrom'],
      [[{ secretRef: { name: 'gone' } }], 'secret "gone" not found', 'envFrom'],
    ];
    for (const [spec, message, where] of cases) {
      const c = where === 'env' ? { env: spec as V1EnvVar[] } : { envFrom: spec as V1Container['envFrom'] };
      assert.throws(
        () => run([], lookup, c),
        (err: unknown) => {
          assert.ok(err instanceof EnvResolveError && err instanceof ContainerConfigError);
          assert.equal(err.code, ErrorCode.ContainerConfig);
          assert.equal(err.message, message);
          return true;
        },
      );
    }
  });

  test('optional references that are missing leave the variable unset; an optional envFrom is skipped', () => {
    const lookup = lookupOf({ cfg: { data: { k: 'v' } } });
    const { env } = run(
      [
        { name: 'A', valueFrom: { configMapKeyRef: { name: 'nope', key: 'k', optional: true } } },
        { name: 'B', valueFrom: { configMapKeyRef: { name: 'cfg', key: 'missing', optional: true } } },
        { name: 'C', valueFrom: { secretKeyRef: { name: 'nope', key: 'k', optional: true } } },
        { name: 'D', valueFrom: { configMapKeyRef: { name: 'cfg', key: 'k', optional: true } } },
      ],
      lookup,
      { envFrom: [{ configMapRef: { name: 'absent', optional: true } }, { secretRef: { name: 'absent', optional: true } }] },
    );
    assert.deepEqual(env, { D: 'v' });
  });

  test('keys such as __proto__ stay plain variables', () => {
    const data = JSON.parse('{"__proto__":"p","toString":"t"}') as Record<string, string>;
    const { env } = run([{ name: 'REF', value: '$(__proto__)-$(toString)' }], lookupOf({ cfg: { data } }), { envFrom: [{ configMapRef: { name: 'cfg' } }] });
    assert.equal(Object.getPrototypeOf(env), Object.prototype);
    assert.deepEqual(Object.entries(env), [
      ['__proto__', 'p'],
      ['toString', 't'],
      ['REF', 'p-t'],
    ]);
  });

  test('an env entry with an empty value and no valueFrom is the empty string; fileKeyRef is refused naming it', () => {
    assert.deepEqual(run([{ name: 'E' }, { name: 'F', value: '' }]).env, { E: '', F: '' });
    assert.throws(() => run([{ name: 'G', valueFrom: { fileKeyRef: { path: 'p', key: 'k', volumeName: 'v' } } }]), /fileKeyRef is not supported/);
  });

  test('options.extra: visible to $(VAR), in the result under the spec', () => {
    const container: V1Container = {
      name: 'c',
      env: [
        { name: 'URL', value: 'https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)' },
        { name: 'KUBERNETES_SERVICE_PORT', value: '1' },
        { name: 'URL2', value: '$(KUBERNETES_SERVICE_PORT)' },
      ],
    };
    const { env } = resolveEnv(podWith(container), container, lookupOf({}), fields, { extra: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: '10550' } });
    assert.deepEqual(env, { URL: 'https://127.0.0.1:10550', KUBERNETES_SERVICE_PORT: '1', URL2: '1', KUBERNETES_SERVICE_HOST: '127.0.0.1' }, "the container's own variables first");
  });
});

describe('resolveEnv: fieldRef and resourceFieldRef', () => {
  test('every fieldPath an env var may use', () => {
    const f = (fieldPath: string): V1EnvVar => ({ name: fieldPath.replace(/[^a-zA-Z]/g, '_'), valueFrom: { fieldRef: { fieldPath } } });
    const paths = [
      'metadata.name',
      'metadata.namespace',
      'metadata.uid',
      "metadata.labels['app']",
      "metadata.labels['absent']",
      "metadata.annotations['a.io/x']",
      'spec.nodeName',
      'spec.serviceAccountName',
      'status.podIP',
      'status.hostIP',
      'status.podIPs',
      'status.hostIPs',
    ];
    const values = Object.values(run(paths.map(f)).env);
    assert.deepEqual(values, ['dapi-test-pod-name', 'ns1', 'uid-1234', 'web', '', 'y', 'edge-1', 'sa1', '10.0.0.5', '192.168.1.2', '10.0.0.5', '192.168.1.2']);
    const dual = podWith({ name: 'c' });
    const dualFields: PodFields = { podIP: 'ignored', hostIP: 'h', podIPs: ['10.0.0.5', 'fd00::5'], hostIPs: ['192.168.1.2', 'fd00::2'] };
    assert.equal(podFieldValue(dual, 'status.podIP', dualFields), '10.0.0.5', 'the first of podIPs');
    assert.equal(podFieldValue(dual, 'status.podIPs', dualFields), '10.0.0.5,fd00::5');
    assert.equal(podFieldValue(dual, 'status.hostIPs', dualFields), '192.168.1.2,fd00::2');
    assert.throws(
      () => run([f('spec.containers')]),
      (err: unknown) => err instanceof EnvResolveError && err.message === 'unsupported fieldPath: spec.containers',
    );
  });

  test('whole labels/annotations maps: sorted k="v" lines, values quoted as Go does', () => {
    const pod = podWith({ name: 'c' });
    assert.equal(podFieldValue(pod, 'metadata.labels'), 'app="web"\ntier="front"');
    assert.equal(podFieldValue(pod, 'metadata.annotations'), 'a.io/x="y"\nnote="say \\"hi\\"\\n\\tnow"');
    assert.equal(formatMap({ b: '\u0001\u007f\\', a: 'é' }), 'a="é"\nb="\\x01\\x7f\\\\"');
    assert.equal(formatMap(undefined), '');
    assert.throws(() => podFieldValue(pod, 'spec.nodeName'), /unsupported fieldPath: spec.nodeName/, 'volumes: metadata only');
  });

  test("resourceFieldRef: the kubelet's rounding, divisors and defaults", () => {
    const container: V1Container = {
      name: 'main',
      resources: { limits: { cpu: '250m', memory: '64Mi', 'ephemeral-storage': '1Gi' }, requests: { cpu: '100m' } },
    };
    const other: V1Container = { name: 'side', resources: { limits: { cpu: '2' } } };
    const pod = podWith(container, { containers: [container, other], initContainers: [{ name: 'init', resources: { requests: { memory: '1k' } } }] });
    const v = (resource: string, divisor?: string, containerName?: string) =>
      resourceFieldValue(pod, container, { resource, ...(divisor ? { divisor } : {}), ...(containerName ? { containerName } : {}) }, fields);
    assert.equal(v('limits.cpu'), '1', 'cpu rounds up to whole cores');
    assert.equal(v('limits.cpu', '1m'), '250');
    assert.equal(v('limits.cpu', '0'), '1', 'a zero divisor is the default 1');
    assert.equal(v('requests.cpu', '1m'), '100');
    assert.equal(v('limits.memory'), '67108864');
    assert.equal(v('limits.memory', '1Mi'), '64');
    assert.equal(v('limits.memory', '1M'), '68', '67.108864 rounds up');
    assert.equal(v('requests.memory', '1Mi'), '64', 'an unset request is the limit (the API defaulting)');
    assert.equal(v('limits.ephemeral-storage', '1Mi'), '1024');
    assert.equal(v('limits.cpu', undefined, 'side'), '2', 'containerName picks another container');
    assert.equal(v('limits.memory', '1Gi', 'side'), '8', 'an unset limit is the node allocatable');
    assert.equal(v('requests.cpu', undefined, 'side'), '2');
    assert.equal(v('requests.memory', undefined, 'side'), '0', 'no request and no limit: 0');
    assert.equal(v('requests.memory', undefined, 'init'), '1000', 'init containers count');
    assert.throws(
      () => v('limits.nvidia.com/gpu'),
      (err: unknown) => err instanceof EnvResolveError && err.message === 'unsupported container resource : limits.nvidia.com/gpu',
    );
    assert.throws(() => v('limits.cpu', undefined, 'nope'), /container nope not found/);
    assert.throws(() => resourceFieldValue(pod, undefined, { resource: 'limits.cpu' }, fields), /names no containerName/, 'volumes must name one');
    assert.throws(() => v('limits.cpu', 'bogus'), /divisor of limits.cpu: invalid quantity "bogus"/);
    const zero = podWith({ name: 'z', resources: { limits: { cpu: '0' } } });
    assert.equal(resourceFieldValue(zero, zero.spec?.containers[0], { resource: 'limits.cpu' }, fields), '4', 'a zero limit is the allocatable too');
    const noAlloc = resourceFieldValue(zero, zero.spec?.containers[0], { resource: 'limits.cpu' }, { podIP: '', hostIP: '' });
    assert.ok(Number(noAlloc) >= 1, 'without allocatable: the host CPU count');
    // Through resolveEnv, the container itself
    const { env } = resolveEnv(pod, container, lookupOf({}), fields);
    assert.deepEqual(env, {});
    const withEnv: V1Container = { ...container, env: [{ name: 'MEM', valueFrom: { resourceFieldRef: { resource: 'limits.memory', divisor: '1Mi' } } }] };
    assert.deepEqual(resolveEnv(pod, withEnv, lookupOf({}), fields).env, { MEM: '64' });
  });
});

describe('$(VAR) expansion', () => {
  const vars: Record<string, string> = { VAR_A: 'A', VAR_B: 'B', VAR_C: 'C', VAR_REF: '$(VAR_A)', VAR_EMPTY: '' };
  const m = (name: string) => (Object.hasOwn(vars, name) ? vars[name] : undefined);
  // Kubernetes' third_party/forked/golang/expansion tests (TestMapping).
  const cases: [string, string][] = [
    ['$(VAR_A)', 'A'],
    ['___$(VAR_B)___', '___B___'],
    ['___$(VAR_C)', '___C'],
    ['$(VAR_A)-$(VAR_A)', 'A-A'],
    ['$(VAR_A)-1', 'A-1'],
    ['$(VAR_A)_$(VAR_B)_$(VAR_C)', 'A_B_C'],
    ['$$(VAR_B)_$(VAR_A)', '$(VAR_B)_A'],
    ['$$(VAR_A)$$(VAR_B)', '$(VAR_A)$(VAR_B)'],
    ['f000-$$VAR_A', 'f000-$VAR_A'],
    ['foo\\$(VAR_C)bar', 'foo\\Cbar'],
    ['foo\\\\$(VAR_C)bar', 'foo\\\\Cbar'],
    ['foo\\\\\\\\$(VAR_A)bar', 'foo\\\\\\\\Abar'],
    ['$(VAR_A$(VAR_B))', '$(VAR_A$(VAR_B))'],
    ['$(VAR_A$(VAR_B)', '$(VAR_A$(VAR_B)'],
    ['$(VAR_REF)', '$(VAR_A)'],
    ['%%$(VAR_REF)--$(VAR_REF)%%', '%%$(VAR_A)--$(VAR_A)%%'],
    ['foo$(VAR_EMPTY)bar', 'foobar'],
    ['$(VAR_A)$(VAR_B)$(VAR_C)', 'ABC'],
    ['$(VAR_A)$(VAR_', 'A$(VAR_'],
    ['$(VAR_A', '$(VAR_A'],
    ['$(VAR_A)$', 'A$'],
    ['$', '$'],
    ['$$', '$'],
    ['$$$', '$$'],
    ['$$$$', '$$'],
    ['$$$(VAR_A)', '$A'],
    ['$$$$(VAR_A)', '$$(VAR_A)'],
    ['$VAR_A', '$VAR_A'],
    ['$(VAR_DNE)', '$(VAR_DNE)'],
    ['$()', '$()'],
    ['$(', '$('],
    ['$)', '$)'],
    ['()', '()'],
    ['(VAR_A)', '(VAR_A)'],
    ['\u00e9$(VAR_A)\u{1F600}$\u{1F600}', '\u00e9A\u{1F600}$\u{1F600}'],
    ['', ''],
  ];
  test("Kubernetes' expansion cases", () => {
    for (const [input, want] of cases) assert.equal(expand(input, m), want, JSON.stringify(input));
  });

  test('env values see only what was defined before them (kubelet TestMakeEnvironmentVariables); valueFrom values are not expanded', () => {
    const { env } = run(
      [
        { name: 'TEST_LITERAL', value: 'test-test-test' },
        { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
        { name: 'OUT_OF_ORDER_TEST', value: '$(OUT_OF_ORDER_TARGET)' },
        { name: 'OUT_OF_ORDER_TARGET', value: 'FOO' },
        { name: 'EMPTY_VAR' },
        { name: 'EMPTY_TEST', value: 'foo-$(EMPTY_VAR)' },
        { name: 'POD_NAME_TEST2', value: 'test2-$(POD_NAME)' },
        { name: 'POD_NAME_TEST3', value: '$(POD_NAME_TEST2)-3' },
        { name: 'LITERAL_TEST', value: 'literal-$(TEST_LITERAL)' },
        { name: 'TEST_UNDEFINED', value: '$(UNDEFINED_VAR)' },
        { name: 'FROM_ENVFROM', value: '$(CM_KEY)/$$(CM_KEY)' },
        { name: 'RAW', valueFrom: { configMapKeyRef: { name: 'cfg', key: 'raw' } } },
        { name: 'CM_KEY', value: 'redefined-$(CM_KEY)' },
      ],
      lookupOf({ cfg: { data: { CM_KEY: 'cm', raw: '$(TEST_LITERAL)' } } }),
      { envFrom: [{ configMapRef: { name: 'cfg' } }] },
    );
    assert.equal(env.OUT_OF_ORDER_TEST, '$(OUT_OF_ORDER_TARGET)');
    assert.equal(env.EMPTY_TEST, 'foo-');
    assert.equal(env.POD_NAME_TEST2, 'test2-dapi-test-pod-name');
    assert.equal(env.POD_NAME_TEST3, 'test2-dapi-test-pod-name-3');
    assert.equal(env.LITERAL_TEST, 'literal-test-test-test');
    assert.equal(env.TEST_UNDEFINED, '$(UNDEFINED_VAR)');
    assert.equal(env.FROM_ENVFROM, 'cm/$(CM_KEY)');
    assert.equal(env.RAW, '$(TEST_LITERAL)', 'a valueFrom value is taken as it is');
    assert.equal(env.CM_KEY, 'redefined-cm', 'a redefinition sees the earlier value');
  });

  test('expandCommand: command/args against the final environment; unknown references stay', () => {
    assert.deepEqual(expandCommand(['sh', '-c', 'echo $(GREETING) $$(HOME) $(NOPE) $HOME'], { GREETING: 'hi' }), ['sh', '-c', 'echo hi $(HOME) $(NOPE) $HOME']);
    assert.deepEqual(expandCommand([], {}), []);
    assert.deepEqual(expandCommand(['$(toString)'], {}), ['$(toString)'], 'no prototype lookups');
  });

  test('expandSubPathExpr: a missing or empty variable is an error naming them all', () => {
    assert.equal(expandSubPathExpr('logs/$(POD_NAME)', { POD_NAME: 'p1' }), 'logs/p1');
    assert.throws(
      () => expandSubPathExpr('$(B)/$(A)/$(EMPTY)/$(OK)', { EMPTY: '', OK: 'x' }),
      (err: unknown) => err instanceof EnvResolveError && err.message === 'missing value for A, B, EMPTY',
    );
  });
});
