// Pods on the container runtime, end to end: kubectl → local control plane → CloudCore → the
// bundled EdgeCore → real containers in a private Podman service (its Docker Engine API socket),
// with a locally built busybox image (no registry is reachable here). Skipped with one message
// where Podman cannot run (not root); `npm test` provisions it as root (build/tools.mjs).
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import type { V1Pod } from '@kubernetes/client-node';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { eventually } from '../helpers/process.js';
import { KUBECTL_SKIP } from '../apiserver/helpers.js';
import { freePort, kubectlFor, podWhere as podWhereIn } from '../helpers/pods.js';
import { podmanSkipReason, startPodman, type PodmanService } from '../helpers/podman.js';

const NODE = 'edge-containers';
const SKIP = KUBECTL_SKIP ?? podmanSkipReason();
let c: Cluster;
let podman: PodmanService;
let cache: string;
let k: (args: string[], input?: string) => Promise<string>;
const podWhere = (name: string, check: (p: V1Pod) => boolean, what: string, timeoutMs = 60_000) => podWhereIn(c, name, check, what, timeoutMs);

before(async () => {
  if (SKIP) return;
  podman = await startPodman();
  c = await startCluster();
  cache = `${c.dir}/kubectl-cache`;
  k = kubectlFor(c, cache);
  const cloud = await c.startCloud('cloud-a');
  const edge = c.startEdge(
    NODE,
    [cloud.url],
    ['--container-runtime-endpoint', podman.socketPath, '--pod-infra-container-image', podman.pauseImage, '--restart-backoff-base-ms', '500', '--pod-resync-ms', '500'],
  );
  await edge.waitFor(/edged started/, 30_000);
});
after(async () => {
  await c?.close();
  await podman?.stop();
});

function get(port: number, path: string): Promise<{ status: number; body: string } | undefined> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

const main = (p: V1Pod) => p.status?.containerStatuses?.find((s) => s.name === 'main');
const cond = (p: V1Pod, type: string) => p.status?.conditions?.find((x) => x.type === type)?.status;

describe('pods on the container runtime (Podman)', { skip: SKIP }, () => {
  test('apply → a real container serves the configmap on its hostPort, Ready by an httpGet probe; a crash restarts; graceful delete removes the containers', async () => {
    const port = await freePort();
    await k(
      ['apply', '-f', '-'],
      `apiVersion: v1
kind: ConfigMap
metadata: {name: web-content}
data: {index.html: served-from-a-configmap}
---
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  nodeName: ${NODE}
  runtimeClassName: container
  terminationGracePeriodSeconds: 5
  containers:
  - name: main
    image: ${podman.busyboxImage}
    imagePullPolicy: IfNotPresent
    command: [httpd, -f, -p, '8080', -h, /www]
    ports: [{containerPort: 8080, hostPort: ${port}}]
    volumeMounts: [{name: content, mountPath: /www}]
    readinessProbe: {httpGet: {path: /index.html, port: 8080}, periodSeconds: 1}
  volumes:
  - {name: content, configMap: {name: web-content}}
`,
    );
    const running = await podWhere('web', (p) => p.status?.phase === 'Running' && cond(p, 'Ready') === 'True', 'the web pod Running and Ready');
    assert.match(main(running)?.containerID ?? '', /^docker:\/\//);
    assert.ok(running.status?.podIP && running.status.podIP !== running.status.hostIP, `a pod IP of its own (${running.status?.podIP})`);
    const res = await eventually(() => get(port, '/index.html'), 20_000, 'the hostPort to answer');
    assert.equal(res.body, 'served-from-a-configmap');
    const containers = podman.podman(['ps', '--format', '{{.Names}}']);
    assert.match(containers, /web/);
    await k(['delete', 'pod', 'web', '--wait=true', '--timeout=60s']);
    await eventually(() => !/k8s_[^\n]*web/.test(podman.podman(['ps', '-a', '--format', '{{.Names}}'])), 30_000, 'the containers removed');
    assert.equal(await get(port, '/index.html'), undefined, 'nothing listens on the hostPort any more');
  });

  test('a crashing container restarts with backoff; its exit code is reported', async () => {
    await k(
      ['apply', '-f', '-'],
      `apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  nodeName: ${NODE}
  runtimeClassName: container
  containers:
  - {name: main, image: ${podman.busyboxImage}, imagePullPolicy: IfNotPresent, command: [sh, -c, 'echo boom; exit 2']}
`,
    );
    const p = await podWhere('crasher', (x) => (main(x)?.restartCount ?? 0) >= 2 && main(x)?.lastState?.terminated?.exitCode === 2, 'restarts with exit code 2');
    assert.equal(main(p)?.lastState?.terminated?.reason, 'Error');
    await k(['delete', 'pod', 'crasher', '--wait=true', '--timeout=60s']);
  });

  test('an image that cannot be pulled: ErrImagePull, then ImagePullBackOff, as a kubelet reports it', async () => {
    // Every status the API stores, through a watch (a poll could miss the short ErrImagePull).
    const seen = new Set<string>();
    const { Watch } = await import('@kubernetes/client-node');
    const req = await new Watch(c.kc).watch(
      '/api/v1/namespaces/default/pods',
      { fieldSelector: 'metadata.name=nopull' },
      (_type: string, obj: V1Pod) => {
        const r = main(obj)?.state?.waiting?.reason;
        if (r) seen.add(r);
      },
      () => {},
    );
    await k(
      ['apply', '-f', '-'],
      `apiVersion: v1
kind: Pod
metadata: {name: nopull}
spec:
  nodeName: ${NODE}
  runtimeClassName: container
  containers:
  - {name: main, image: '127.0.0.1:1/ledge/does-not-exist:1.0', command: ['true']}
`,
    );
    await eventually(() => seen.has('ErrImagePull') && seen.has('ImagePullBackOff'), 60_000, 'ErrImagePull and ImagePullBackOff').catch((err: Error) => {
      throw new Error(`${err.message}; seen: ${[...seen].join(', ')}`);
    });
    req.abort();
    const p = await podWhere('nopull', (x) => /Failed to pull image .*127\.0\.0\.1:1/.test(main(x)?.state?.waiting?.message ?? ''), 'the pull error in the message');
    assert.equal(p.status?.phase, 'Pending');
    await k(['delete', 'pod', 'nopull', '--wait=true', '--timeout=60s']);
  });
});
