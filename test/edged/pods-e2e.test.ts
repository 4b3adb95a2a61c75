// Pods on an edge node, end to end: the real kubectl applies them to the local control plane,
// a real CloudCore sends them over the link, the bundled EdgeCore runs them on the process runtime
// (real child processes), and their status comes back to the API.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { eventually, type Proc } from '../helpers/process.js';
import { KUBECTL_SKIP } from '../apiserver/helpers.js';
import { alive, kubectlFor, podWhere as podWhereIn } from '../helpers/pods.js';

const NODE = 'edge-pods';
let c: Cluster;
let edge: Proc;
let out: string;
let cache: string;
let k: (args: string[], input?: string) => Promise<string>;
const podWhere = (name: string, check: (p: V1Pod) => boolean, what: string, timeoutMs = 30_000) => podWhereIn(c, name, check, what, timeoutMs);

before(async () => {
  if (KUBECTL_SKIP) return;
  c = await startCluster();
  out = join(c.dir, 'out');
  cache = join(c.dir, 'kubectl-cache');
  k = kubectlFor(c, cache);
  mkdirSync(out, { recursive: true });
  const cloud = await c.startCloud('cloud-a');
  edge = c.startEdge(NODE, [cloud.url], ['--restart-backoff-base-ms', '400', '--pod-resync-ms', '500']);
  await edge.waitFor(/edged started/, 30_000);
  await eventually(
    async () => (await c.core.readNode({ name: NODE }).catch(() => undefined))?.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True'),
    30_000,
    'node Ready',
  );
});
after(async () => {
  await c?.close();
});

async function pod(name: string): Promise<V1Pod | undefined> {
  return c.core.readNamespacedPod({ name, namespace: 'default' }).catch(() => undefined);
}

/** Waits until the pod's status satisfies `check` (returns the pod), with the last status in the failure. */

const cond = (p: V1Pod, type: string) => p.status?.conditions?.find((x) => x.type === type)?.status;
const main = (p: V1Pod) => p.status?.containerStatuses?.find((s) => s.name === 'main');

describe('pods on the process runtime', { skip: KUBECTL_SKIP }, () => {
  test('apply → init container, env and volumes visible, Running and Ready; configmap update reaches the volume; graceful delete', async () => {
    const dir = join(out, 'life');
    mkdirSync(dir);
    await k(
      ['apply', '-f', '-'],
      `apiVersion: v1
kind: ConfigMap
metadata: {name: life-cfg}
data: {greeting: hello-from-cm}
---
apiVersion: v1
kind: Pod
metadata: {name: life}
spec:
  nodeName: ${NODE}
  terminationGracePeriodSeconds: 20
  initContainers:
  - name: init
    image: busybox
    command: [sh, -c, 'echo init-done > "$LEDGE_VOLUME_WORK/init"']
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: main
    image: busybox
    command: [sh, -c]
    args:
    - |
      echo "$GREETING $POD_NAME $(cat "$LEDGE_VOLUME_WORK/init")" > "$LEDGE_VOLUME_OUT/env"
      echo "$LEDGE_VOLUME_CFG" > "$LEDGE_VOLUME_OUT/cfgdir"
      echo $$$$ > "$LEDGE_VOLUME_OUT/pid"
      trap 'echo bye > "$LEDGE_VOLUME_OUT/term"; exit 0' TERM
      while true; do sleep 0.2; done
    env:
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: life-cfg, key: greeting}}}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    volumeMounts: [{name: work, mountPath: /work}, {name: cfg, mountPath: /cfg}, {name: out, mountPath: /out}]
    readinessProbe: {exec: {command: [sh, -c, 'test -s "$LEDGE_VOLUME_OUT/pid"']}, periodSeconds: 1}
  volumes:
  - {name: work, emptyDir: {}}
  - {name: cfg, configMap: {name: life-cfg}}
  - {name: out, hostPath: {path: ${dir}, type: Directory}}
`,
    );
    const running = await podWhere('life', (p) => p.status?.phase === 'Running' && cond(p, 'Ready') === 'True', 'pod Running and Ready');
    assert.equal(cond(running, 'Initialized'), 'True');
    assert.equal(running.status?.initContainerStatuses?.[0]?.state?.terminated?.reason, 'Completed');
    assert.ok(running.status?.podIP, 'podIP reported');
    assert.equal(running.status?.qosClass, 'BestEffort');
    assert.equal(readFileSync(join(dir, 'env'), 'utf8').trim(), 'hello-from-cm life init-done');
    const cfgDir = readFileSync(join(dir, 'cfgdir'), 'utf8').trim();
    assert.equal(readFileSync(join(cfgDir, 'greeting'), 'utf8'), 'hello-from-cm');
    // The configmap changes: the volume follows (env does not, as in Kubernetes).
    await k(['patch', 'configmap', 'life-cfg', '--type', 'merge', '-p', '{"data":{"greeting":"updated"}}']);
    await eventually(() => readFileSync(join(cfgDir, 'greeting'), 'utf8') === 'updated', 20_000, 'volume file updated');
    const pid = Number(readFileSync(join(dir, 'pid'), 'utf8'));
    assert.ok(alive(pid), `pid ${pid} not alive`);
    // Graceful delete: the process gets SIGTERM (its trap runs), then the API completes the deletion.
    await k(['delete', 'pod', 'life', '--wait=true', '--timeout=60s']);
    assert.equal(readFileSync(join(dir, 'term'), 'utf8').trim(), 'bye');
    assert.equal(await pod('life'), undefined);
    await eventually(() => !alive(pid), 10_000, 'the process to be gone');
  });

  test('a crashing container restarts at once, then backs off: restartCount grows, CrashLoopBackOff and the exit code are reported', async () => {
    await k(
      ['apply', '-f', '-'],
      `apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  nodeName: ${NODE}
  containers:
  - {name: main, image: busybox, command: [sh, -c, 'echo crashing; exit 3']}
`,
    );
    const p = await podWhere('crash', (x) => (main(x)?.restartCount ?? 0) >= 2 && main(x)?.state?.waiting?.reason === 'CrashLoopBackOff', 'CrashLoopBackOff with restarts');
    const s = main(p)!;
    assert.equal(s.lastState?.terminated?.exitCode, 3);
    assert.equal(s.lastState?.terminated?.reason, 'Error');
    assert.match(s.state?.waiting?.message ?? '', /back-off .* restarting failed container=main pod=crash_default/);
    assert.equal(cond(p, 'Ready'), 'False');
    await k(['delete', 'pod', 'crash', '--wait=true', '--timeout=60s']);
  });

  test('a failing liveness probe restarts the container; readiness follows its probe', async () => {
    const dir = join(out, 'probe');
    mkdirSync(dir);
    writeFileSync(join(dir, 'healthy'), '');
    writeFileSync(join(dir, 'ready'), '');
    await k(
      ['apply', '-f', '-'],
      `apiVersion: v1
kind: Pod
metadata: {name: probed}
spec:
  nodeName: ${NODE}
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'trap "exit 0" TERM; while true; do sleep 0.2; done']
    volumeMounts: [{name: out, mountPath: /out}]
    livenessProbe: {exec: {command: [sh, -c, 'test -f "$LEDGE_VOLUME_OUT/healthy"']}, periodSeconds: 1, failureThreshold: 1}
    readinessProbe: {exec: {command: [sh, -c, 'test -f "$LEDGE_VOLUME_OUT/ready"']}, periodSeconds: 1, failureThreshold: 1}
  volumes:
  - {name: out, hostPath: {path: ${dir}}}
`,
    );
    await podWhere('probed', (x) => cond(x, 'Ready') === 'True' && main(x)?.restartCount === 0, 'Ready');
    rmSync(join(dir, 'ready'));
    await podWhere('probed', (x) => cond(x, 'Ready') === 'False' && cond(x, 'ContainersReady') === 'False' && x.status?.phase === 'Running', 'not Ready after readiness fails');
    writeFileSync(join(dir, 'ready'), '');
    await podWhere('probed', (x) => cond(x, 'Ready') === 'True', 'Ready again');
    rmSync(join(dir, 'healthy'));
    const restarted = await podWhere('probed', (x) => (main(x)?.restartCount ?? 0) >= 1, 'restarted by its liveness probe');
    assert.match(main(restarted)?.lastState?.terminated?.message ?? '', /liveness probe/);
    writeFileSync(join(dir, 'healthy'), '');
    await podWhere('probed', (x) => main(x)?.state?.running !== undefined && cond(x, 'Ready') === 'True', 'running again');
    await k(['delete', 'pod', 'probed', '--wait=true', '--timeout=60s']);
  });

  test('restartPolicy Never: exit 0 → Succeeded, exit 1 → Failed; no command → a clear reason; an unknown runtimeClassName is reported', async () => {
    await k(
      ['apply', '-f', '-'],
      `apiVersion: v1
kind: Pod
metadata: {name: done-ok}
spec:
  nodeName: ${NODE}
  restartPolicy: Never
  containers: [{name: main, image: busybox, command: ['true']}]
---
apiVersion: v1
kind: Pod
metadata: {name: done-bad}
spec:
  nodeName: ${NODE}
  restartPolicy: Never
  containers: [{name: main, image: busybox, command: ['false']}]
---
apiVersion: v1
kind: Pod
metadata: {name: no-command}
spec:
  nodeName: ${NODE}
  containers: [{name: main, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: odd-class}
spec:
  nodeName: ${NODE}
  runtimeClassName: gvisor
  containers: [{name: main, image: busybox, command: ['true']}]
`,
    );
    await podWhere('done-ok', (x) => x.status?.phase === 'Succeeded', 'Succeeded');
    const bad = await podWhere('done-bad', (x) => x.status?.phase === 'Failed', 'Failed');
    assert.equal(main(bad)?.state?.terminated?.exitCode, 1);
    const nc = await podWhere('no-command', (x) => main(x)?.state?.waiting?.reason === 'CreateContainerError', 'CreateContainerError');
    assert.match(main(nc)?.state?.waiting?.message ?? '', /command/);
    const odd = await podWhere('odd-class', (x) => x.status?.reason === 'UnknownRuntimeClass', 'UnknownRuntimeClass');
    assert.match(odd.status?.message ?? '', /gvisor/);
    assert.equal(odd.status?.phase, 'Pending');
    await k(['delete', 'pod', 'done-ok', 'done-bad', 'no-command', 'odd-class', '--wait=true', '--timeout=60s']);
  });

  test('the node reports its runtime and no pod directory is left behind', async () => {
    const node = await c.core.readNode({ name: NODE });
    assert.equal(node.status?.nodeInfo?.containerRuntimeVersion, 'process://ledge');
    await eventually(() => !existsSync(join(c.dataDir(NODE), 'edged', 'pods')) || readdirSync(join(c.dataDir(NODE), 'edged', 'pods')).length === 0, 20_000, 'pod dirs removed');
  });
});
