/**
 * The pod worker's kubelet rules (edge/edged/pod-worker.ts) against an in-memory runtime
 * (./fake-runtime.ts) on mocked time: start order (sandbox, init containers one at a time,
 * containers), restart policy and phase, CrashLoopBackOff timing and its status, start errors as
 * statuses, probes, spec changes, termination, and the pod status's stable fields.
 * Runtime events kick the worker as Edged does; nothing waits for real seconds.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import type { V1Container, V1ContainerStatus, V1Pod, V1PodCondition, V1PodSpec, V1PodStatus } from '@kubernetes/client-node';
import type { KeyValueObject } from '../../edge/edged/env.js';
import { defaultEdgedOptions } from '../../edge/edged/options.js';
import { PodWorker, qosClass, type PodWorkerSettings } from '../../edge/edged/pod-worker.js';
import { RuntimeError } from '../../edge/edged/runtime.js';
import { createLogger } from '../../shared/log/index.js';
import { tempDir } from '../helpers/files.js';
import { FakeRuntime, settle, until } from './fake-runtime.js';

const T0 = Date.parse('2025-01-01T00:00:00.000Z');
const HOST_IP = '192.168.7.10';

function ctr(name: string, extra: Partial<V1Container> = {}): V1Container {
  return { name, image: `img/${name}:1`, command: [`/bin/${name}`], ...extra };
}

function makePod(spec: Partial<V1PodSpec> = {}, extra: Partial<V1Pod> = {}): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'web', namespace: 'default', uid: 'uid-1' },
    spec: { nodeName: 'node-a', containers: [ctr('a')], ...spec },
    ...extra,
  };
}

interface Rig {
  rt: FakeRuntime;
  w: PodWorker;
  configMaps: Map<string, KeyValueObject>;
  logs: string[];
  /** Times the worker said its status may have changed. */
  readonly statusCalls: number;
  /** Lets the worker finish what it was kicked for. */
  settle(): Promise<void>;
  /** Moves mocked time (firing the timers due), then settles. */
  advance(ms: number): Promise<void>;
  status(): V1PodStatus;
  cs(name: string): V1ContainerStatus;
}

function rig(t: TestContext, pod: V1Pod, options: { settings?: Partial<PodWorkerSettings>; noRuntime?: string } = {}): Rig {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: T0 });
  const dir = tempDir('ledge-podworker-');
  t.after(() => dir.cleanup());
  const rt = new FakeRuntime('process');
  const configMaps = new Map<string, KeyValueObject>();
  const logs: string[] = [];
  let statusCalls = 0;
  const settings: PodWorkerSettings = {
    dataDir: dir.path,
    nodeName: 'node-a',
    terminationGracePeriodSeconds: defaultEdgedOptions.terminationGracePeriodSeconds,
    backoffBaseMs: defaultEdgedOptions.backoffBaseMs,
    backoffMaxMs: defaultEdgedOptions.backoffMaxMs,
    backoffResetMs: defaultEdgedOptions.backoffResetMs,
    containerLogMaxBytes: 1024,
    ...options.settings,
  };
  const w = new PodWorker(pod, {
    runtime: options.noRuntime === undefined ? rt : undefined,
    ...(options.noRuntime !== undefined ? { runtimeError: options.noRuntime } : {}),
    settings,
    lookup: { configMap: (ns, name) => configMaps.get(`${ns}/${name}`), secret: () => undefined },
    log: createLogger({ level: 'debug', format: 'json', write: (l) => void logs.push(l) }),
    hostIP: () => HOST_IP,
    extraEnv: () => ({ KUBERNETES_SERVICE_HOST: '127.0.0.1' }),
    onStatus: () => void statusCalls++,
    now: () => Date.now(),
  });
  // As Edged: an event of this pod's containers kicks its worker.
  const unsubscribe = rt.onEvent((e) => {
    if (!e.uid || e.uid === w.uid) w.kick();
  });
  t.after(() => {
    unsubscribe();
    w.detach();
  });
  // The worker's `syncing` flag is private; reading it is how a test knows a kicked sync finished.
  const idle = () => !(w as unknown as { syncing: boolean }).syncing;
  const r: Rig = {
    rt,
    w,
    configMaps,
    logs,
    get statusCalls() {
      return statusCalls;
    },
    settle: () => settle(idle, 'the pod worker to settle'),
    async advance(ms: number) {
      t.mock.timers.tick(ms);
      await r.settle();
    },
    status: () => w.status(),
    cs(name: string) {
      const s = w.status();
      const found = [...(s.initContainerStatuses ?? []), ...(s.containerStatuses ?? [])].find((c) => c.name === name);
      assert.ok(found, `no status for container ${name}`);
      return found;
    },
  };
  w.kick();
  return r;
}

/** The container's state is running (assert.ok always gets a message here: without one, Node re-parses the transpiled source to make one, which takes minutes). */
function assertRunning(r: Rig, name: string): void {
  const state = r.cs(name).state;
  assert.ok(state?.running, `container ${name} is not running: ${JSON.stringify(state)}`);
}

function cond(s: V1PodStatus, type: string): V1PodCondition {
  const c = s.conditions?.find((x) => x.type === type);
  assert.ok(c, `no condition ${type}`);
  return c;
}

/** Resolves with `p`, or fails the test after `maxMs` of real time. */
async function bounded<T>(p: Promise<T>, what: string, maxMs = 10_000): Promise<T> {
  let done = false;
  let value: T | undefined;
  void p.then((v) => {
    done = true;
    value = v;
  });
  await until(() => done, what, maxMs);
  return value as T;
}

// --- Order -------------------------------------------------------------------------------

test('the sandbox comes first, init containers run one at a time in spec order each after the previous exited 0, then the containers', async (t) => {
  const r = rig(t, makePod({ initContainers: [ctr('i1'), ctr('i2')], containers: [ctr('a'), ctr('b')] }));
  await r.settle();
  assert.equal(r.rt.ops()[0], 'runPodSandbox:uid-1', 'the sandbox is the first thing made');
  assert.deepEqual(r.rt.started(), ['i1']);
  let s = r.status();
  assert.equal(s.phase, 'Pending');
  assert.equal(cond(s, 'Initialized').status, 'False');
  assertRunning(r, 'i1');
  assert.equal(r.cs('i2').state?.waiting?.reason, 'PodInitializing');
  // More syncs while i1 runs start nothing else.
  r.w.kick();
  await r.advance(60_000);
  assert.deepEqual(r.rt.started(), ['i1']);

  r.rt.exit('i1', 0);
  await r.settle();
  assert.deepEqual(r.rt.started(), ['i1', 'i2']);
  assert.equal(r.cs('i1').state?.terminated?.exitCode, 0);
  assert.equal(r.cs('i1').state?.terminated?.reason, 'Completed');

  r.rt.exit('i2', 0);
  await r.settle();
  assert.deepEqual(r.rt.started(), ['i1', 'i2', 'a', 'b']);
  s = r.status();
  assert.equal(s.phase, 'Running');
  assert.equal(cond(s, 'Initialized').status, 'True');
  assert.equal(cond(s, 'Ready').status, 'True');
  // Every container was made in the one sandbox.
  const sandboxIds = new Set([...r.rt.containers.values()].map((c) => c.sandboxId));
  assert.equal(sandboxIds.size, 1);
  assert.equal(r.rt.ops('runPodSandbox').length, 1);
});

test('an init container that fails under restartPolicy Never fails the pod and no container starts', async (t) => {
  const r = rig(t, makePod({ restartPolicy: 'Never', initContainers: [ctr('i1'), ctr('i2')], containers: [ctr('a')] }));
  await r.settle();
  r.rt.exit('i1', 3);
  await r.settle();
  await r.advance(600_000);
  r.w.kick();
  await r.settle();
  assert.deepEqual(r.rt.started(), ['i1']);
  assert.equal(r.rt.ops('createContainer').length, 1);
  const s = r.status();
  assert.equal(s.phase, 'Failed');
  assert.match(s.message ?? '', /init container i1 failed \(exit code 3\)/);
  assert.equal(r.cs('i1').state?.terminated?.exitCode, 3);
  assert.equal(cond(s, 'Initialized').status, 'False');
});

for (const policy of ['Always', 'OnFailure'] as const) {
  test(`a failed init container under restartPolicy ${policy} is restarted with backoff; the containers wait for it`, async (t) => {
    const r = rig(t, makePod({ restartPolicy: policy, initContainers: [ctr('i1')], containers: [ctr('a')] }));
    await r.settle();
    r.rt.exit('i1', 1);
    await r.settle();
    assert.deepEqual(r.rt.started(), ['i1', 'i1'], 'the first restart is immediate');
    r.rt.exit('i1', 1);
    await r.settle();
    assert.equal(r.cs('i1').state?.waiting?.reason, 'CrashLoopBackOff');
    assert.equal(r.cs('i1').restartCount, 1);
    await r.advance(9_999);
    assert.deepEqual(r.rt.started(), ['i1', 'i1']);
    await r.advance(1);
    assert.deepEqual(r.rt.started(), ['i1', 'i1', 'i1']);
    assert.equal(r.status().phase, 'Pending');
    r.rt.exit('i1', 0);
    await r.settle();
    assert.deepEqual(r.rt.started(), ['i1', 'i1', 'i1', 'a']);
    assert.equal(r.status().phase, 'Running');
  });
}

// --- Restart policy and phase -------------------------------------------------------------

for (const policy of ['Always', 'OnFailure', 'Never'] as const) {
  for (const code of [0, 1]) {
    const restarts = policy === 'Always' || (policy === 'OnFailure' && code !== 0);
    test(`restartPolicy ${policy}, exit ${code}: ${restarts ? 'restarted, phase Running' : `not restarted, phase ${code === 0 ? 'Succeeded' : 'Failed'}`}`, async (t) => {
      const r = rig(t, makePod({ restartPolicy: policy }));
      await r.settle();
      assert.equal(r.status().phase, 'Running');
      r.rt.exit('a', code);
      await r.settle();
      await r.advance(600_000);
      assert.equal(r.rt.created('a'), restarts ? 2 : 1);
      const s = r.status();
      if (restarts) {
        assert.equal(s.phase, 'Running');
        assertRunning(r, 'a');
        assert.equal(r.cs('a').restartCount, 1);
      } else {
        assert.equal(s.phase, code === 0 ? 'Succeeded' : 'Failed');
        assert.equal(r.cs('a').state?.terminated?.exitCode, code);
        assert.equal(r.cs('a').state?.terminated?.reason, code === 0 ? 'Completed' : 'Error');
        assert.equal(cond(s, 'Ready').reason, 'PodCompleted');
        assert.equal(r.cs('a').restartCount, 0);
      }
    });
  }
}

test('phase of several containers: Running while one runs, Succeeded once all exited 0, Failed when one failed', async (t) => {
  await t.test('all exit 0', async (t) => {
    const r = rig(t, makePod({ restartPolicy: 'Never', containers: [ctr('a'), ctr('b')] }));
    await r.settle();
    r.rt.exit('a', 0);
    await r.settle();
    assert.equal(r.status().phase, 'Running');
    r.rt.exit('b', 0);
    await r.settle();
    assert.equal(r.status().phase, 'Succeeded');
  });
  await t.test('one fails', async (t) => {
    const r = rig(t, makePod({ restartPolicy: 'Never', containers: [ctr('a'), ctr('b')] }));
    await r.settle();
    r.rt.exit('a', 2);
    await r.settle();
    assert.equal(r.status().phase, 'Running');
    r.rt.exit('b', 0);
    await r.settle();
    assert.equal(r.status().phase, 'Failed');
  });
  await t.test('OnFailure: a container that exited 0 stays done while the other restarts', async (t) => {
    const r = rig(t, makePod({ restartPolicy: 'OnFailure', containers: [ctr('a'), ctr('b')] }));
    await r.settle();
    r.rt.exit('a', 0);
    r.rt.exit('b', 1);
    await r.settle();
    assert.equal(r.rt.created('a'), 1);
    assert.equal(r.rt.created('b'), 2);
    assert.equal(r.status().phase, 'Running');
  });
});

// --- Backoff --------------------------------------------------------------------------------

test('CrashLoopBackOff: the first restart is immediate, then 10 s doubling to 5 min, with the kubelet status', async (t) => {
  const r = rig(t, makePod());
  await r.settle();
  r.rt.exit('a', 1);
  await r.settle();
  assert.equal(r.rt.created('a'), 2, 'first restart at once');
  assert.equal(r.cs('a').restartCount, 1);
  const expected: [number, string][] = [
    [10_000, '10s'],
    [20_000, '20s'],
    [40_000, '40s'],
    [80_000, '1m20s'],
    [160_000, '2m40s'],
    [300_000, '5m0s'],
    [300_000, '5m0s'],
  ];
  let runs = 2;
  for (const [delay, text] of expected) {
    const exited = r.rt.exit('a', 2, { reason: 'Error' });
    await r.settle();
    const st = r.cs('a');
    assert.equal(st.state?.waiting?.reason, 'CrashLoopBackOff');
    assert.equal(st.state?.waiting?.message, `back-off ${text} restarting failed container=a pod=web_default(uid-1)`);
    assert.equal(st.restartCount, runs - 1);
    assert.equal(st.lastState?.terminated?.exitCode, 2);
    assert.equal(st.lastState?.terminated?.reason, 'Error');
    assert.equal(st.lastState?.terminated?.containerID, exited.status.containerID);
    assert.equal(r.status().phase, 'Running');
    await r.advance(delay - 1);
    assert.equal(r.rt.created('a'), runs, `no restart before ${text}`);
    await r.advance(1);
    runs++;
    assert.equal(r.rt.created('a'), runs, `restarted after ${text}`);
    const now = r.cs('a');
    assert.ok(now.state?.running, 'now.state?.running');
    assert.equal(now.restartCount, runs - 1);
    assert.equal(now.lastState?.terminated?.exitCode, 2, 'lastState holds the previous exit');
    assert.equal(now.lastState?.terminated?.containerID, exited.status.containerID);
    assert.equal(r.rt.current('a')?.config.attempt, runs - 1);
  }
});

test('a run that lasted backoffResetMs starts the backoff over; a shorter one does not', async (t) => {
  const r = rig(t, makePod());
  await r.settle();
  r.rt.exit('a', 1);
  await r.settle();
  r.rt.exit('a', 1);
  await r.settle();
  await r.advance(10_000);
  assert.equal(r.rt.created('a'), 3);
  // 10 min minus 1 ms: the next delay is 20 s.
  await r.advance(defaultEdgedOptions.backoffResetMs - 1);
  r.rt.exit('a', 1);
  await r.settle();
  assert.match(r.cs('a').state?.waiting?.message ?? '', /^back-off 20s /);
  await r.advance(20_000);
  assert.equal(r.rt.created('a'), 4);
  // A full 10 min: restarted at once, and the next crash waits the base delay again.
  await r.advance(defaultEdgedOptions.backoffResetMs);
  r.rt.exit('a', 1);
  await r.settle();
  assert.equal(r.rt.created('a'), 5, 'restarted at once after a long run');
  r.rt.exit('a', 1);
  await r.settle();
  assert.match(r.cs('a').state?.waiting?.message ?? '', /^back-off 10s /);
});

// --- Start errors are statuses ------------------------------------------------------------

test('ErrImagePull, then ImagePullBackOff while backing off, then the container runs once the pull succeeds', async (t) => {
  const r = rig(t, makePod());
  let pulls = 0;
  r.rt.hooks.ensureImage = () => {
    pulls++;
    if (pulls <= 2) throw new RuntimeError('ErrImagePull', 'pull access denied for img/a');
  };
  await r.settle();
  assert.deepEqual(r.cs('a').state?.waiting, { reason: 'ErrImagePull', message: 'pull access denied for img/a' });
  assert.equal(r.status().phase, 'Pending');
  assert.equal(r.rt.ops('createContainer').length, 0);
  r.w.kick(); // a resync during the backoff
  await r.settle();
  assert.deepEqual(r.cs('a').state?.waiting, { reason: 'ImagePullBackOff', message: 'Back-off pulling image "img/a:1": pull access denied for img/a' });
  assert.equal(pulls, 1, 'no pull during the backoff');
  await r.advance(defaultEdgedOptions.backoffBaseMs);
  assert.equal(pulls, 2);
  assert.equal(r.cs('a').state?.waiting?.reason, 'ErrImagePull');
  await r.advance(999);
  assert.equal(pulls, 2, 'no hot retry loop');
  await r.advance(defaultEdgedOptions.backoffBaseMs);
  assert.equal(pulls, 3);
  assertRunning(r, 'a');
  assert.equal(r.cs('a').restartCount, 0);
  assert.equal(r.status().phase, 'Running');
});

test('CreateContainerError and RunContainerError wait in the status and are retried; nothing throws', async (t) => {
  await t.test('CreateContainerError', async (t) => {
    const r = rig(t, makePod());
    let fail = true;
    r.rt.hooks.createContainer = () => {
      if (fail) throw new RuntimeError('CreateContainerError', 'the process runtime needs a command');
    };
    await r.settle();
    assert.deepEqual(r.cs('a').state?.waiting, { reason: 'CreateContainerError', message: 'the process runtime needs a command' });
    assert.equal(r.rt.started().length, 0);
    assert.equal(r.status().phase, 'Pending');
    fail = false;
    await r.advance(defaultEdgedOptions.backoffBaseMs);
    assertRunning(r, 'a');
  });
  await t.test('RunContainerError', async (t) => {
    const r = rig(t, makePod());
    let fail = true;
    r.rt.hooks.startContainer = () => {
      if (fail) throw new RuntimeError('RunContainerError', 'exec: "/bin/a": no such file or directory');
    };
    await r.settle();
    assert.deepEqual(r.cs('a').state?.waiting, { reason: 'RunContainerError', message: 'exec: "/bin/a": no such file or directory' });
    assert.equal(r.rt.ops('removeContainer').length, 1, 'the container that could not start is removed');
    assert.equal(r.rt.containers.size, 0);
    fail = false;
    await r.advance(defaultEdgedOptions.backoffBaseMs);
    assertRunning(r, 'a');
  });
  await t.test('any other runtime failure: the sync is retried after 2 s', async (t) => {
    const r = rig(t, makePod());
    let fail = true;
    r.rt.hooks.listContainers = () => {
      if (fail) throw new Error('socket hang up');
    };
    await r.settle();
    assert.ok(
      r.logs.some((l) => l.includes('sync failed: socket hang up')),
      'r.logs.some((l) => l.includes("sync failed: socket hang up"))',
    );
    fail = false;
    await r.advance(1_999);
    assert.equal(r.rt.started().length, 0);
    await r.advance(1);
    assertRunning(r, 'a');
  });
});

test('a missing configmap referenced by env: CreateContainerConfigError, and a prompt start once refreshVolumes() follows its arrival', async (t) => {
  const r = rig(t, makePod({ containers: [ctr('a', { env: [{ name: 'MODE', valueFrom: { configMapKeyRef: { name: 'cfg', key: 'mode' } } }] })] }));
  await r.settle();
  assert.deepEqual(r.cs('a').state?.waiting, { reason: 'CreateContainerConfigError', message: 'configmap "cfg" not found' });
  assert.equal(r.rt.ops('createContainer').length, 0);
  // Retries meanwhile keep failing the same way.
  await r.advance(60_000);
  assert.equal(r.cs('a').state?.waiting?.reason, 'CreateContainerConfigError');
  r.configMaps.set('default/cfg', { data: { mode: 'fast' } });
  r.w.refreshVolumes();
  await r.settle(); // no time passes
  assertRunning(r, 'a');
  assert.equal(r.rt.current('a')?.config.env.MODE, 'fast');
  assert.equal(r.rt.current('a')?.config.env.KUBERNETES_SERVICE_HOST, '127.0.0.1', 'extraEnv reaches the container');
});

test('a sandbox that cannot be made: containers wait with its message, retried with backoff', async (t) => {
  const r = rig(t, makePod());
  let fail = true;
  r.rt.hooks.runPodSandbox = () => {
    if (fail) throw new Error('netns busy');
  };
  await r.settle();
  assert.deepEqual(r.cs('a').state?.waiting, { reason: 'ContainerCreating', message: 'failed to create the pod sandbox: netns busy' });
  assert.equal(cond(r.status(), 'PodReadyToStartContainers').status, 'False');
  assert.equal(r.rt.ops('createContainer').length, 0);
  fail = false;
  await r.advance(defaultEdgedOptions.backoffBaseMs);
  assertRunning(r, 'a');
  assert.equal(cond(r.status(), 'PodReadyToStartContainers').status, 'True');
});

// --- Probes ------------------------------------------------------------------------------

test('readiness: a failing probe makes the container and the pod not ready while the phase stays Running; no restart', async (t) => {
  const r = rig(t, makePod({ containers: [ctr('a', { readinessProbe: { exec: { command: ['ready'] }, periodSeconds: 1, failureThreshold: 1 } })] }));
  r.rt.setExec('ready', 0);
  await r.settle();
  assert.equal(r.cs('a').ready, false, 'not ready before the first probe');
  await r.advance(0);
  assert.equal(r.cs('a').ready, true);
  assert.equal(cond(r.status(), 'Ready').status, 'True');
  assert.equal(cond(r.status(), 'ContainersReady').status, 'True');
  r.rt.setExec('ready', 1);
  const reported = r.statusCalls;
  await r.advance(1_000);
  assert.ok(r.statusCalls > reported, 'the readiness change is reported to Edged');
  const s = r.status();
  assert.equal(r.cs('a').ready, false);
  assertRunning(r, 'a');
  assert.equal(s.phase, 'Running');
  assert.equal(cond(s, 'Ready').status, 'False');
  assert.equal(cond(s, 'Ready').reason, 'ContainersNotReady');
  assert.equal(cond(s, 'ContainersReady').status, 'False');
  assert.equal(r.rt.ops('stopContainer').length, 0);
  r.rt.setExec('ready', 0);
  await r.advance(1_000);
  assert.equal(r.cs('a').ready, true);
});

test('liveness: a failing probe stops the container with the grace period and the restart policy restarts it; lastState names the probe', async (t) => {
  const r = rig(
    t,
    makePod({ terminationGracePeriodSeconds: 7, containers: [ctr('a', { livenessProbe: { exec: { command: ['alive'] }, periodSeconds: 1, failureThreshold: 2 } })] }),
  );
  r.rt.setExec('alive', 1, 1, 0);
  await r.settle();
  await r.advance(0);
  assert.equal(r.rt.ops('stopContainer').length, 0, 'one failure is under the threshold');
  const first = r.rt.current('a');
  await r.advance(1_000);
  const stops = r.rt.calls.filter((c) => c.op === 'stopContainer');
  assert.equal(stops.length, 1);
  assert.equal(stops[0]?.args[0], first?.id);
  assert.equal(stops[0]?.args[1], 7);
  assert.equal(r.rt.created('a'), 2, 'restarted (first restart at once)');
  const st = r.cs('a');
  assert.ok(st.state?.running, 'st.state?.running');
  assert.equal(st.restartCount, 1);
  assert.equal(st.lastState?.terminated?.exitCode, 143);
  assert.match(st.lastState?.terminated?.message ?? '', /liveness probe/);
});

test('a container stopping after a liveness failure is not probed again while it stops', async (t) => {
  const r = rig(t, makePod({ containers: [ctr('a', { livenessProbe: { exec: { command: ['alive'] }, periodSeconds: 1, failureThreshold: 1 } })] }));
  r.rt.setExec('alive', 1, 0);
  await r.settle();
  assert.equal(r.cs('a').ready, true, 'ready without a readiness probe');
  r.rt.holdStops(); // it takes its grace period to stop
  await r.advance(0);
  assert.equal(r.rt.heldStopCount, 1);
  const execs = r.rt.ops('exec').length;
  // Resyncs while it stops.
  for (let i = 0; i < 5; i++) {
    r.w.kick();
    await r.advance(1_000);
  }
  assert.equal(r.rt.ops('exec').length, execs, 'no probe of a container being stopped');
  assert.equal(r.rt.ops('stopContainer').length, 1);
  r.rt.releaseStops();
  await r.settle();
  assert.equal(r.rt.created('a'), 2);
  assertRunning(r, 'a');
});

test('a liveness kill whose stop fails is logged, not thrown; probing starts again and the next failure stops it', async (t) => {
  const rejections: unknown[] = [];
  const onRejection = (err: unknown) => void rejections.push(err);
  process.on('unhandledRejection', onRejection);
  t.after(() => void process.off('unhandledRejection', onRejection));
  const r = rig(t, makePod({ containers: [ctr('a', { livenessProbe: { exec: { command: ['alive'] }, periodSeconds: 1, failureThreshold: 1 } })] }));
  r.rt.setExec('alive', 1, 1, 0);
  let stops = 0;
  r.rt.hooks.stopContainer = () => {
    if (++stops === 1) throw new Error('docker socket closed');
  };
  await r.settle();
  await r.advance(0); // fails; the stop fails
  await r.advance(0); // probed again: fails; stopped
  assert.deepEqual(rejections, []);
  assert.ok(
    r.logs.some((l) => l.includes('cannot stop container a: docker socket closed')),
    'r.logs.some((l) => l.includes("cannot stop container a: docker socket closed"))',
  );
  assert.equal(stops, 2);
  assert.equal(r.rt.created('a'), 2);
  assert.match(r.cs('a').lastState?.terminated?.message ?? '', /liveness probe/);
});

test('liveness under restartPolicy Never: the container is stopped and not restarted, the pod fails', async (t) => {
  const r = rig(t, makePod({ restartPolicy: 'Never', containers: [ctr('a', { livenessProbe: { exec: { command: ['alive'] }, periodSeconds: 1, failureThreshold: 1 } })] }));
  r.rt.setExec('alive', 1);
  await r.settle();
  await r.advance(0);
  await r.advance(60_000);
  assert.equal(r.rt.created('a'), 1);
  assert.equal(r.status().phase, 'Failed');
  assert.match(r.cs('a').state?.terminated?.message ?? '', /liveness probe/);
});

test('a startup probe holds the liveness and readiness probes until it succeeds', async (t) => {
  const probes = {
    startupProbe: { exec: { command: ['started'] }, periodSeconds: 1, failureThreshold: 5 },
    livenessProbe: { exec: { command: ['alive'] }, periodSeconds: 1 },
    readinessProbe: { exec: { command: ['ready'] }, periodSeconds: 1 },
  };
  const r = rig(t, makePod({ containers: [ctr('a', probes)] }));
  r.rt.setExec('started', 1, 1, 0);
  await r.settle();
  await r.advance(0);
  await r.advance(1_000);
  assert.deepEqual(r.rt.ops('exec'), ['exec:started', 'exec:started']);
  assert.equal(r.cs('a').started, false);
  assert.equal(r.cs('a').ready, false);
  await r.advance(1_000); // the startup probe succeeds
  assert.equal(r.cs('a').started, true);
  await r.advance(0); // liveness and readiness start now
  const execs = r.rt.ops('exec');
  assert.deepEqual(execs.slice(0, 3), ['exec:started', 'exec:started', 'exec:started']);
  assert.ok(execs.includes('exec:alive') && execs.includes('exec:ready'), 'execs.includes("exec:alive") && execs.includes("exec:ready")');
  assert.equal(r.cs('a').ready, true);
  await r.advance(1_000);
  assert.equal(r.rt.ops('exec').filter((x) => x === 'exec:started').length, 3, 'a started container is not startup-probed again');
});

test('a failing startup probe stops the container; its lastState names the probe', async (t) => {
  const r = rig(t, makePod({ containers: [ctr('a', { startupProbe: { exec: { command: ['started'] }, periodSeconds: 1, failureThreshold: 2 } })] }));
  r.rt.setExec('started', 1, 1, 0);
  await r.settle();
  await r.advance(0);
  await r.advance(1_000);
  assert.equal(r.rt.ops('stopContainer').length, 1);
  assert.equal(r.rt.created('a'), 2);
  assert.match(r.cs('a').lastState?.terminated?.message ?? '', /startup probe/);
});

// --- Spec change -------------------------------------------------------------------------

test('an update changing one container image restarts only that container, at once', async (t) => {
  const pod = makePod({ containers: [ctr('a'), ctr('b')] });
  const r = rig(t, pod);
  await r.settle();
  const oldA = r.rt.current('a');
  const b = r.rt.current('b');
  // An update that changes no container (labels) restarts nothing.
  r.w.update({ ...pod, metadata: { ...pod.metadata, labels: { v: '2' } } });
  await r.settle();
  assert.equal(r.rt.ops('stopContainer').length, 0);
  // Nor does the same container with its keys in another order (a list and a watch may differ so).
  const reordered = (c: Record<string, unknown>) => Object.fromEntries(Object.entries(c).reverse());
  r.w.update({ ...pod, spec: { ...pod.spec, containers: (pod.spec?.containers ?? []).map((c) => reordered(c as unknown as Record<string, unknown>) as unknown as V1Container) } });
  await r.settle();
  assert.equal(r.rt.ops('stopContainer').length, 0, 'key order is not a change');
  r.w.update({ ...pod, spec: { ...pod.spec, containers: [ctr('a', { image: 'img/a:2' }), ctr('b')] } });
  await r.settle();
  assert.deepEqual(r.rt.ops('stopContainer'), ['stopContainer:a']);
  assert.equal(r.rt.calls.find((c) => c.op === 'stopContainer')?.args[0], oldA?.id);
  assert.equal(r.rt.current('a')?.config.image, 'img/a:2');
  assertRunning(r, 'a');
  assert.equal(r.cs('a').image, 'img/a:2');
  assert.equal(r.cs('a').restartCount, 1);
  assert.match(r.cs('a').lastState?.terminated?.message ?? '', /spec changed/);
  assert.equal(r.rt.current('b')?.id, b?.id, 'b keeps running');
  assertRunning(r, 'b');
});

test('an image update of a container in CrashLoopBackOff starts the new image at once, without the backoff', async (t) => {
  const pod = makePod({ containers: [ctr('a'), ctr('b')] });
  const r = rig(t, pod);
  await r.settle();
  for (let i = 0; i < 3; i++) {
    r.rt.exit('a', 1);
    await r.settle();
    if (i === 1) await r.advance(10_000);
  }
  assert.equal(r.cs('a').state?.waiting?.reason, 'CrashLoopBackOff');
  assert.match(r.cs('a').state?.waiting?.message ?? '', /^back-off 20s /);
  const runs = r.rt.created('a');
  r.w.update({ ...pod, spec: { ...pod.spec, containers: [ctr('a', { image: 'img/a:2' }), ctr('b')] } });
  await r.settle(); // no time passes
  assert.equal(r.rt.created('a'), runs + 1);
  assert.equal(r.rt.current('a')?.config.image, 'img/a:2');
  assertRunning(r, 'a');
  assert.equal(r.rt.created('b'), 1);
});

// --- terminate() ---------------------------------------------------------------------------

test('terminate(): preStop first, then SIGTERM with the grace left, then the sandbox stopped and removed, the pod dir removed; idempotent', async (t) => {
  const r = rig(t, makePod({ terminationGracePeriodSeconds: 30, containers: [ctr('a', { lifecycle: { preStop: { exec: { command: ['drain'] } } } }), ctr('b')] }));
  await r.settle();
  r.rt.hooks.exec = (_c, command) => {
    if (command[0] !== 'drain') return undefined;
    t.mock.timers.tick(4_000); // the hook takes 4 s
    return { exitCode: 0, stdout: '', stderr: '', timedOut: false };
  };
  const podDir = r.w.podDir;
  const logDir = r.w.logDir;
  assert.ok(existsSync(podDir) && existsSync(logDir), 'existsSync(podDir) && existsSync(logDir)');
  const from = r.rt.calls.length;
  const p = r.w.terminate();
  assert.equal(r.w.terminate(), p, 'a second call is the same termination');
  await bounded(p, 'terminate() to resolve');
  const ops = r.rt.calls.slice(from).map((c) => `${c.op}:${c.target}`);
  const at = (op: string) => ops.indexOf(op);
  assert.ok(at('exec:drain') >= 0 && at('exec:drain') < at('stopContainer:a'), `preStop before the stop: ${ops.join(', ')}`);
  assert.ok(at('stopContainer:a') < at('stopPodSandbox:uid-1'), 'at("stopContainer:a") < at("stopPodSandbox:uid-1")');
  assert.ok(at('stopContainer:b') < at('stopPodSandbox:uid-1'), 'at("stopContainer:b") < at("stopPodSandbox:uid-1")');
  assert.ok(at('stopPodSandbox:uid-1') < at('removePodSandbox:uid-1'), 'at("stopPodSandbox:uid-1") < at("removePodSandbox:uid-1")');
  const stopA = r.rt.calls.slice(from).find((c) => c.op === 'stopContainer' && c.target === 'a');
  assert.equal(stopA?.args[1], 26, 'the grace the hook left');
  const stopB = r.rt.calls.slice(from).find((c) => c.op === 'stopContainer' && c.target === 'b');
  assert.equal(stopB?.args[1], 30);
  assert.equal(existsSync(podDir), false);
  assert.equal(existsSync(logDir), false);
  assert.equal(r.rt.sandboxes.size, 0);
  // Idempotent, and a stopped worker does nothing more.
  const after = r.rt.calls.length;
  await bounded(r.w.terminate(), 'the second terminate()');
  r.w.kick();
  await r.advance(600_000);
  assert.equal(r.rt.calls.length, after);
});

test('terminate() during a sync in flight: nothing starts afterwards and what started is stopped', async (t) => {
  const r = rig(t, makePod({ containers: [ctr('a'), ctr('b')] }));
  let releasePull: () => void = () => {};
  r.rt.hooks.ensureImage = (image) => {
    if (image === 'img/b:1') return new Promise<void>((resolve) => (releasePull = resolve));
  };
  await until(() => r.rt.ops('ensureImage').includes('ensureImage:img/b:1'), 'the pull of b to be in flight');
  assert.ok(r.rt.running('a'), 'r.rt.running("a")');
  const from = r.rt.calls.length;
  const done = r.w.terminate();
  releasePull();
  await bounded(done, 'terminate() to resolve');
  await r.advance(600_000);
  const later = r.rt.calls.slice(from).map((c) => `${c.op}:${c.target}`);
  assert.ok(!later.includes('createContainer:b') && !later.includes('startContainer:b'), `b was started after terminate(): ${later.join(', ')}`);
  assert.ok(later.includes('stopContainer:a'), 'later.includes("stopContainer:a")');
  assert.ok(later.includes('removePodSandbox:uid-1'), 'later.includes("removePodSandbox:uid-1")');
  assert.equal(r.rt.containers.size, 0);
  assert.equal(r.rt.sandboxes.size, 0);
});

test('terminate() during a start in flight waits for it: the container is stopped before the sandbox goes, and no further container is made', async (t) => {
  const r = rig(t, makePod({ containers: [ctr('a'), ctr('b'), ctr('c')] }));
  let releaseStart: () => void = () => {};
  r.rt.hooks.startContainer = (c) => {
    if (c.config.name === 'b') return new Promise<void>((resolve) => (releaseStart = resolve));
  };
  await until(() => r.rt.started().includes('b'), 'the start of b to be in flight');
  const from = r.rt.calls.length;
  const done = r.w.terminate();
  await settle(() => true);
  const during = r.rt.calls.slice(from).map((c) => `${c.op}:${c.target}`);
  assert.ok(!during.includes('stopPodSandbox:uid-1') && !during.includes('removePodSandbox:uid-1'), `the sandbox went while b was starting: ${during.join(', ')}`);
  releaseStart();
  await bounded(done, 'terminate() to resolve');
  const later = r.rt.calls.slice(from).map((c) => `${c.op}:${c.target}`);
  assert.ok(later.indexOf('stopContainer:b') >= 0 && later.indexOf('stopContainer:b') < later.indexOf('stopPodSandbox:uid-1'), `b stopped before its sandbox: ${later.join(', ')}`);
  assert.ok(!later.some((x) => x.endsWith(':c') || x === 'ensureImage:img/c:1'), `nothing of c after terminate(): ${later.join(', ')}`);
  assert.equal(r.rt.sandboxes.size, 0);
});

// --- Status ---------------------------------------------------------------------------------

test('conditions keep their lastTransitionTime while their status stays; only a change moves it', async (t) => {
  const r = rig(t, makePod({ containers: [ctr('a', { readinessProbe: { exec: { command: ['ready'] }, initialDelaySeconds: 10, periodSeconds: 10, failureThreshold: 1 } })] }));
  r.rt.setExec('ready', 0);
  await r.settle();
  const times = (s: V1PodStatus) => Object.fromEntries((s.conditions ?? []).map((c) => [c.type, new Date(c.lastTransitionTime ?? 0).getTime()]));
  const first = times(r.status());
  for (const v of Object.values(first)) assert.equal(v, T0);
  await r.advance(5_000);
  r.w.kick();
  await r.settle();
  assert.deepEqual(times(r.status()), first);
  await r.advance(5_000); // the readiness probe runs and succeeds
  const s = r.status();
  assert.equal(cond(s, 'Ready').status, 'True');
  const second = times(s);
  assert.equal(second.Ready, T0 + 10_000);
  assert.equal(second.ContainersReady, T0 + 10_000);
  assert.equal(second.Initialized, T0);
  assert.equal(second.PodScheduled, T0);
  assert.equal(second.PodReadyToStartContainers, T0);
  assert.deepEqual(times(r.status()), second, 'the same on the next report');
});

test('status: startTime kept from pod.status.startTime, podIP from the sandbox, hostIP from the node', async (t) => {
  await t.test('startTime kept', async (t) => {
    const r = rig(t, makePod({}, { status: { startTime: new Date('2024-06-01T10:00:00Z') } }));
    await r.settle();
    assert.equal(new Date(r.status().startTime ?? 0).toISOString(), '2024-06-01T10:00:00.000Z');
  });
  await t.test('startTime new', async (t) => {
    const r = rig(t, makePod());
    await r.advance(3_000);
    assert.equal(new Date(r.status().startTime ?? 0).getTime(), T0);
  });
  await t.test('IPs', async (t) => {
    const r = rig(t, makePod());
    await r.settle();
    const ip = r.rt.liveSandboxes()[0]?.ip;
    assert.ok(ip, 'ip');
    const s = r.status();
    assert.equal(s.podIP, ip);
    assert.deepEqual(s.podIPs, [{ ip }]);
    assert.equal(s.hostIP, HOST_IP);
  });
});

test('qosClass as Kubernetes computes it', () => {
  const withRes = (...res: V1Container['resources'][]) => makePod({ containers: res.map((resources, i) => ctr(`c${i}`, resources ? { resources } : {})) });
  assert.equal(qosClass(withRes(undefined, undefined)), 'BestEffort');
  assert.equal(qosClass(withRes({ limits: { cpu: '500m', memory: '64Mi' } })), 'Guaranteed', 'requests default to limits');
  assert.equal(qosClass(withRes({ limits: { cpu: '500m', memory: '64Mi' }, requests: { cpu: '500m', memory: '64Mi' } })), 'Guaranteed');
  assert.equal(qosClass(withRes({ limits: { cpu: '1', memory: '1Gi' }, requests: { cpu: '1000m', memory: '1024Mi' } })), 'Guaranteed', 'equal quantities in other units');
  assert.equal(qosClass(withRes({ requests: { cpu: '100m' } })), 'Burstable');
  assert.equal(qosClass(withRes({ limits: { cpu: '500m', memory: '64Mi' } }, undefined)), 'Burstable', 'one container without resources');
  assert.equal(qosClass(withRes({ limits: { cpu: '500m' } })), 'Burstable', 'no memory limit');
  assert.equal(qosClass(withRes({ limits: { cpu: '500m', memory: '64Mi' }, requests: { cpu: '250m' } })), 'Burstable');
});

test('a pod whose runtime class is unknown waits with the reason in its status and touches no runtime', async (t) => {
  const r = rig(t, makePod({ runtimeClassName: 'kata' }), { noRuntime: 'runtimeClassName "kata" is not available on node node-a; this node offers: process' });
  await r.settle();
  const s = r.status();
  assert.equal(s.phase, 'Pending');
  assert.equal(s.reason, 'UnknownRuntimeClass');
  assert.match(s.message ?? '', /this node offers: process/);
  assert.equal(r.rt.calls.length, 0);
});

test('a sandbox that died is made again and the pod starts over in it: init containers run again, the containers restart', async (t) => {
  const r = rig(t, makePod({ initContainers: [ctr('i1')], containers: [ctr('a')] }));
  await r.settle();
  r.rt.exit('i1', 0);
  await r.settle();
  assertRunning(r, 'a');
  // The infra container (or the runtime) went away: its containers died with it.
  await r.rt.stopPodSandbox('sb1');
  r.w.kick();
  await r.settle();
  assert.equal(r.rt.ops('runPodSandbox').length, 2, 'a second sandbox was made');
  assert.equal(r.rt.ops('removePodSandbox').length, 1, 'the dead one was removed');
  assert.deepEqual(r.rt.started(), ['i1', 'a', 'i1'], 'the init container runs again first');
  r.rt.exit('i1', 0);
  await r.settle();
  assertRunning(r, 'a');
  const live = r.rt.liveSandboxes();
  assert.equal(live.length, 1, 'one sandbox is left');
  assert.notEqual(live[0]!.id, 'sb1');
  assert.equal(r.rt.current('a')?.sandboxId, live[0]!.id, 'the container runs in the new sandbox');
  assert.equal(r.cs('a').restartCount, 1);
  assert.equal(r.cs('a').lastState?.terminated?.exitCode, 137);
});
