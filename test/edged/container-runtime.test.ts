/**
 * The `container` runtime (edge/edged/container-runtime.ts).
 *
 * With real containers, through a private Podman service's Docker Engine API (test/helpers/podman.ts;
 * skipped with one message where there is no root or no Podman): sandbox and container lifecycle
 * with exit codes, reasons and removal; output copied into the CRI log file; a hostPort reachable
 * on 127.0.0.1; read-only and writable bind mounts; two containers of a pod sharing localhost;
 * memory and CPU limits passed through; a graceful stop of a process trapping SIGTERM and a kill
 * of one ignoring it; exec output, exit code and timeout; the image errors (ErrImagePull from an
 * unreachable registry within a few seconds, ErrImageNeverPull, InvalidImageName) and the create and
 * start errors; a second runtime on the same socket finding the sandbox and containers by their
 * labels and continuing the log where it ended, without a gap or a duplicate; events on exit;
 * listImages.
 *
 * Without a daemon (a fake one on a unix socket): the event stream reconnected with backoff and
 * `since` the last event; a pull whose stream reports an error, or no progress; version() for Docker
 * and Podman; the log cursor read from a CRI file; image reference validation.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { DockerEngineRuntime, LABELS, logCursor, parseImageReference } from '../../edge/edged/container-runtime.js';
import { DockerClient } from '../../edge/edged/docker-api.js';
import { CriLogWriter, readCriLog } from '../../edge/edged/logs.js';
import type { ContainerConfig, RuntimeEvent, SandboxConfig } from '../../edge/edged/runtime.js';
import { RuntimeError } from '../../edge/edged/runtime.js';
import { createLogger } from '../../shared/log/index.js';
import { eventually, within } from '../helpers/process.js';
import { podmanSkipReason, startPodman, type PodmanService } from '../helpers/podman.js';
import { containerRig } from './container-rig.js';

const WAIT_MS = 20_000;
const { dir, sandboxConfig, containerConfig, fakeDaemon } = containerRig('ledge-crt-');

/** A TCP port nothing listens on right now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** GET http://127.0.0.1:port/path → body (throws on failure, for eventually()). */
function httpGet(port: number, path = '/'): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, timeout: 2000 }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`status ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

const podmanSkip = podmanSkipReason();

describe('container runtime over Podman (Docker Engine API)', { skip: podmanSkip, concurrency: 2 }, () => {
  let pm: PodmanService;
  let rt: DockerEngineRuntime;
  let api: DockerClient;
  let busybox = '';
  const runtimes: DockerEngineRuntime[] = [];
  const newRuntime = () => {
    const r = new DockerEngineRuntime({ socketPath: pm.socketPath, pauseImage: pm.pauseImage, requestTimeoutMs: 30_000, pullProgressDeadlineMs: 15_000 });
    runtimes.push(r);
    return r;
  };

  before(async () => {
    pm = await startPodman();
    busybox = pm.busyboxImage;
    rt = newRuntime();
    api = new DockerClient({ socketPath: pm.socketPath, requestTimeoutMs: 30_000 });
  });
  after(async () => {
    for (const r of runtimes) await within(r.close(), WAIT_MS, 'runtime close');
    api?.close();
    const report = await pm?.stop();
    assert.deepEqual(report?.netnsLeft ?? [], [], 'no network namespace left behind');
  });

  /** Runs `script` with sh in a new pod; resolves once it exited. */
  async function runToExit(script: string, extra: Partial<ContainerConfig> = {}, sandbox: Partial<SandboxConfig> = {}) {
    const sb = await rt.runPodSandbox(sandboxConfig(sandbox));
    const cfg = containerConfig('main', busybox, { command: ['sh', '-c', script], ...extra });
    const id = await rt.createContainer(sb.id, cfg);
    await rt.startContainer(id);
    const status = await eventually(
      async () => {
        const s = await rt.containerStatus(id);
        return s?.state === 'exited' ? s : undefined;
      },
      WAIT_MS,
      `container ${cfg.name} to exit`,
    );
    return { sb, id, cfg, status };
  }

  /** The log file's text (readCriLog), once `re` matches it. */
  async function logMatching(path: string, re: RegExp): Promise<string> {
    return eventually(
      async () => {
        const text = existsSync(path) ? await readCriLog(path) : '';
        return re.test(text) ? text : undefined;
      },
      WAIT_MS,
      `log ${path} to match ${re}`,
    );
  }

  test('version names Podman', async () => {
    assert.match(await rt.version(), /^podman:\/\/\d+\.\d+/);
  });

  test('sandbox and container lifecycle: created, exited with its code and reason, labels, listed, removed (idempotent)', async () => {
    const cfgSb = sandboxConfig({ labels: { app: 'demo' } });
    const sb = await rt.runPodSandbox(cfgSb);
    assert.equal(sb.state, 'ready');
    assert.equal(sb.uid, cfgSb.uid);
    assert.equal(sb.name, cfgSb.name);
    assert.equal(sb.namespace, 'default');
    assert.match(sb.ip ?? '', /^10\.\d+\.\d+\.\d+$/);
    assert.ok((await rt.listPodSandboxes()).some((s) => s.id === sb.id && s.state === 'ready' && s.ip === sb.ip));

    const cfg = containerConfig('worker', busybox, { command: ['sh', '-c', 'echo hello; echo oops >&2; exit 3'], attempt: 2, labels: { extra: 'yes' } });
    const id = await rt.createContainer(sb.id, cfg);
    const created = await rt.containerStatus(id);
    assert.equal(created?.state, 'created');
    await rt.startContainer(id);
    const s = await eventually(
      async () => {
        const st = await rt.containerStatus(id);
        return st?.state === 'exited' ? st : undefined;
      },
      WAIT_MS,
      'the container to exit',
    );
    assert.equal(s.exitCode, 3);
    assert.equal(s.reason, 'Error');
    assert.equal(s.sandboxId, sb.id);
    assert.equal(s.uid, cfgSb.uid);
    assert.equal(s.name, 'worker');
    assert.equal(s.attempt, 2);
    assert.equal(s.containerID, `docker://${id}`);
    assert.match(s.imageID, /^sha256:[0-9a-f]{64}$/);
    assert.equal(s.image, busybox);
    assert.equal(s.logPath, cfg.logPath);
    assert.ok(s.startedAt && s.finishedAt && s.finishedAt >= s.startedAt, `${s.startedAt} … ${s.finishedAt}`);
    const listed = await rt.listContainers(sb.id);
    assert.deepEqual(
      listed.map((c) => c.id),
      [id],
    );
    assert.ok((await rt.listContainers()).some((c) => c.id === id));

    // Output in the CRI file: one F record per line, on its stream.
    await logMatching(cfg.logPath, /hello\n/);
    await logMatching(cfg.logPath, /oops\n/);
    const raw = readFileSync(cfg.logPath, 'utf8');
    assert.match(raw, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z stdout F hello$/m);
    assert.match(raw, /^\S+ stderr F oops$/m);

    // Exit 0 is Completed.
    const ok = await runToExit('exit 0');
    assert.equal(ok.status.exitCode, 0);
    assert.equal(ok.status.reason, 'Completed');

    await rt.removeContainer(id);
    assert.equal(await rt.containerStatus(id), undefined);
    await rt.removeContainer(id); // idempotent
    await rt.stopPodSandbox(sb.id);
    assert.ok((await rt.listPodSandboxes()).some((x) => x.id === sb.id && x.state === 'notready'));
    await rt.removePodSandbox(sb.id);
    assert.ok(!(await rt.listPodSandboxes()).some((x) => x.id === sb.id));
    await rt.removePodSandbox(sb.id);
    await rt.stopPodSandbox(sb.id);
    await rt.removePodSandbox(ok.sb.id);
  });

  test('a hostPort is reachable on 127.0.0.1, and a second container of the pod reaches the first on localhost', async () => {
    const port = await freePort();
    const sb = await rt.runPodSandbox(sandboxConfig({ ports: [{ containerPort: 8080, hostPort: port, hostIP: '127.0.0.1' }] }));
    const server = containerConfig('web', busybox, { command: ['sh', '-c', 'mkdir -p /www && echo "hello from the pod" > /www/index.html && exec httpd -f -p 8080 -h /www'] });
    const web = await rt.createContainer(sb.id, server);
    await rt.startContainer(web);
    assert.equal(await eventually(() => httpGet(port), WAIT_MS, `http://127.0.0.1:${port}/`), 'hello from the pod\n');

    const client = containerConfig('client', busybox, { command: ['sh', '-c', 'wget -q -O - http://127.0.0.1:8080/ && hostname'] });
    const c = await rt.createContainer(sb.id, client);
    await rt.startContainer(c);
    const s = await eventually(
      async () => {
        const st = await rt.containerStatus(c);
        return st?.state === 'exited' ? st : undefined;
      },
      WAIT_MS,
      'the client to exit',
    );
    assert.equal(s.exitCode, 0);
    // Both lines: the exit can be seen before the log copier wrote the last one.
    const text = await logMatching(client.logPath, /hello from the pod\n[^\n]+\n/);
    assert.ok(text.includes(`\n${sb.name}\n`), `the pod's hostname in every container: ${text}`);
    await rt.removePodSandbox(sb.id);
    assert.equal(await rt.containerStatus(web), undefined, 'the sandbox removal removed its containers');
  });

  test('bind mounts (read-only and writable), env, workingDir, command without args runs without the image CMD', async () => {
    const host = dir();
    mkdirSync(join(host, 'ro'));
    mkdirSync(join(host, 'rw'));
    writeFileSync(join(host, 'ro/data.txt'), 'from the host\n');
    const { status, cfg, sb } = await runToExit(
      'cat /data/data.txt; if touch /data/x 2>/dev/null; then echo writable; else echo read-only; fi; echo "$GREETING" > /out/result; pwd',
      {
        mounts: [
          { hostPath: join(host, 'ro'), containerPath: '/data', readOnly: true },
          { hostPath: join(host, 'rw'), containerPath: '/out', readOnly: false },
        ],
        env: { GREETING: 'hi there' },
        workingDir: '/tmp',
      },
    );
    assert.equal(status.exitCode, 0);
    assert.equal(await logMatching(cfg.logPath, /\/tmp\n/), 'from the host\nread-only\n/tmp\n');
    assert.equal(existsSync(join(host, 'ro/x')), false);
    assert.equal(readFileSync(join(host, 'rw/result'), 'utf8'), 'hi there\n');

    const only = await rt.createContainer(sb.id, containerConfig('only', busybox, { command: ['echo', 'only'] }));
    await rt.startContainer(only);
    const st = await eventually(
      async () => {
        const x = await rt.containerStatus(only);
        return x?.state === 'exited' ? x : undefined;
      },
      WAIT_MS,
      'echo to exit',
    );
    assert.equal(await logMatching(st.logPath, /only\n/), 'only\n', 'not "only /bin/sh"');
    await rt.removePodSandbox(sb.id);
  });

  test('memory and CPU limits reach the container (inspect), memory without swap', async () => {
    const sb = await rt.runPodSandbox(sandboxConfig());
    const id = await rt.createContainer(sb.id, containerConfig('limited', busybox, { command: ['sleep', '30'], resources: { memoryBytes: 64 * 1024 * 1024, cpuMillis: 250 } }));
    const inspect = await api.request<{ HostConfig: { Memory: number; MemorySwap: number; NanoCpus: number } }>('GET', `/containers/${id}/json`);
    assert.equal(inspect.body?.HostConfig.Memory, 64 * 1024 * 1024);
    assert.equal(inspect.body?.HostConfig.MemorySwap, 64 * 1024 * 1024);
    assert.equal(inspect.body?.HostConfig.NanoCpus, 250_000_000);
    await rt.startContainer(id);
    assert.equal((await rt.containerStatus(id))?.state, 'running');
    await rt.removePodSandbox(sb.id);
  });

  test('stop: a process trapping SIGTERM exits by itself within the grace; one ignoring it is killed at the end of it', async () => {
    const sb = await rt.runPodSandbox(sandboxConfig());
    const graceful = containerConfig('graceful', busybox, { command: ['sh', '-c', 'trap "echo got TERM; exit 0" TERM; echo ready; while true; do sleep 0.1; done'] });
    const stubborn = containerConfig('stubborn', busybox, { command: ['sh', '-c', 'trap "" TERM; echo ready; while true; do sleep 0.1; done'] });
    const g = await rt.createContainer(sb.id, graceful);
    const s = await rt.createContainer(sb.id, stubborn);
    await rt.startContainer(g);
    await rt.startContainer(s);
    await logMatching(graceful.logPath, /ready\n/);
    await logMatching(stubborn.logPath, /ready\n/);
    await Promise.all([rt.stopContainer(g, 20), rt.stopContainer(s, 1)]);
    const [gs, ss] = [await rt.containerStatus(g), await rt.containerStatus(s)];
    assert.equal(gs?.state, 'exited');
    assert.equal(gs?.exitCode, 0, 'exited by its trap, not killed');
    assert.equal(await logMatching(graceful.logPath, /got TERM\n/), 'ready\ngot TERM\n');
    assert.equal(ss?.state, 'exited');
    assert.equal(ss?.exitCode, 137, 'SIGKILLed');
    await rt.stopContainer(g, 1); // idempotent
    await rt.removePodSandbox(sb.id);
  });

  test('exec: output per stream and exit code; a missing command; a timeout', async () => {
    const sb = await rt.runPodSandbox(sandboxConfig());
    const id = await rt.createContainer(sb.id, containerConfig('sleeper', busybox, { command: ['sleep', '60'] }));
    await rt.startContainer(id);
    assert.deepEqual(await rt.exec(id, ['sh', '-c', 'echo out; echo err >&2; exit 7'], { timeoutMs: 10_000 }), { exitCode: 7, stdout: 'out\n', stderr: 'err\n', timedOut: false });
    const missing = await rt.exec(id, ['no-such-command'], { timeoutMs: 10_000 });
    assert.ok([126, 127].includes(missing.exitCode), `exit code ${missing.exitCode}: 127 from Podman, 126 from Docker`);
    assert.match(missing.stdout + missing.stderr, /no-such-command/, 'the daemon says why (Podman on stderr, Docker on stdout)');
    const slow = await rt.exec(id, ['sleep', '10'], { timeoutMs: 300 });
    assert.equal(slow.timedOut, true);
    await rt.removePodSandbox(sb.id);
  });

  test('image errors: ErrImagePull (the daemon reason, no long network wait), ErrImageNeverPull, InvalidImageName; present images pass', async () => {
    // Nothing listens on 127.0.0.1:1: refused at once (Podman retries three times, ~3 s); bounded by the 15 s progress deadline anyway.
    await within(
      assert.rejects(rt.ensureImage('127.0.0.1:1/ledge/missing:1', 'IfNotPresent'), (e: unknown) => {
        assert.ok(e instanceof RuntimeError);
        assert.equal(e.reason, 'ErrImagePull');
        assert.match(e.message, /^Failed to pull image "127\.0\.0\.1:1\/ledge\/missing:1": .*connection refused/);
        return true;
      }),
      30_000,
      'the pull to fail',
    );
    await assert.rejects(
      rt.ensureImage('localhost/local/absent:1', 'Never'),
      (e: unknown) => e instanceof RuntimeError && e.reason === 'ErrImageNeverPull' && /not present with pull policy of Never/.test(e.message),
    );
    for (const bad of ['Bad/Image', 'busybox:', 'a b', '', 'busybox@sha256:short']) {
      await assert.rejects(rt.ensureImage(bad, 'IfNotPresent'), (e: unknown) => e instanceof RuntimeError && e.reason === 'InvalidImageName', bad);
    }
    await rt.ensureImage(busybox, 'Never');
    await rt.ensureImage('local/busybox', 'IfNotPresent');
  });

  test('create and start errors: CreateContainerError (no such image), RunContainerError (executable not found)', async () => {
    const sb = await rt.runPodSandbox(sandboxConfig());
    await assert.rejects(
      rt.createContainer(sb.id, containerConfig('noimage', 'localhost/local/absent:1')),
      (e: unknown) => e instanceof RuntimeError && e.reason === 'CreateContainerError' && /absent/.test(e.message),
    );
    await assert.rejects(
      rt.createContainer('0123456789ab', containerConfig('nosandbox', busybox)),
      (e: unknown) => e instanceof RuntimeError && e.reason === 'CreateContainerError',
    );
    const id = await rt.createContainer(sb.id, containerConfig('nobin', busybox, { command: ['/no/such/binary'] }));
    await assert.rejects(rt.startContainer(id), (e: unknown) => e instanceof RuntimeError && e.reason === 'RunContainerError' && /\/no\/such\/binary/.test(e.message));
    await rt.removePodSandbox(sb.id);
  });

  test('a new runtime on the same socket finds the sandbox and containers by label and continues the log without a gap or a duplicate', async () => {
    const first = newRuntime();
    const cfgSb = sandboxConfig();
    const sb = await first.runPodSandbox(cfgSb);
    const cfg = containerConfig('ticker', busybox, { command: ['sh', '-c', 'i=0; while true; do echo "line $i"; i=$((i+1)); sleep 0.05; done'], attempt: 1 });
    const id = await first.createContainer(sb.id, cfg);
    await first.startContainer(id);
    await logMatching(cfg.logPath, /line 5\n/);
    await first.close(); // EdgeCore stops; the container runs on
    const before = (await readCriLog(cfg.logPath)).split('\n').filter(Boolean).length;

    const second = newRuntime();
    const sandboxes = await second.listPodSandboxes();
    const found = sandboxes.find((s) => s.id === sb.id);
    assert.deepEqual(found && { uid: found.uid, name: found.name, namespace: found.namespace, state: found.state }, {
      uid: cfgSb.uid,
      name: cfgSb.name,
      namespace: 'default',
      state: 'ready',
    });
    const containers = await second.listContainers(sb.id); // re-attaches the log copy
    assert.deepEqual(
      containers.map((c) => ({ id: c.id, name: c.name, attempt: c.attempt, state: c.state, uid: c.uid, logPath: c.logPath })),
      [{ id, name: 'ticker', attempt: 1, state: 'running', uid: cfgSb.uid, logPath: cfg.logPath }],
    );
    await eventually(async () => (await readCriLog(cfg.logPath)).split('\n').filter(Boolean).length > before + 20, WAIT_MS, 'the log to continue');
    await second.stopContainer(id, 0);
    // Every line once, in order, none missing (those written while no runtime copied included).
    const lines = (await readCriLog(cfg.logPath)).split('\n').filter(Boolean);
    for (const [i, l] of lines.entries()) assert.equal(l, `line ${i}`, `record ${i} of ${lines.length}: ${lines.slice(Math.max(0, i - 3), i + 3).join(' | ')}`);
    await second.removePodSandbox(sb.id);
  });

  test('events: a listener hears a container of a pod start and exit; unsubscribed, it hears nothing more', async () => {
    const heard: RuntimeEvent[] = [];
    const off = rt.onEvent((e) => heard.push(e));
    const { id, sb, cfg } = await runToExit('exit 0');
    await eventually(() => heard.some((e) => e.containerId === id && e.uid !== undefined && e.sandboxId === sb.id), WAIT_MS, 'an event for the container');
    assert.ok(heard.every((e) => e.uid !== undefined));
    off();
    const n = heard.length;
    const again = await rt.createContainer(sb.id, containerConfig('again', busybox, { command: ['true'] }));
    await rt.startContainer(again);
    await eventually(async () => (await rt.containerStatus(again))?.state === 'exited', WAIT_MS, 'the second container to exit');
    assert.equal(heard.length, n);
    assert.ok(cfg.logPath);
    await rt.removePodSandbox(sb.id);
  });

  test('host network: the sandbox has no pod IP, its containers see the host name; a TTY container logs its raw output', async () => {
    const { status, cfg, sb } = await runToExit('hostname', {}, { hostNetwork: true });
    assert.equal(sb.ip, undefined);
    assert.equal(sb.state, 'ready');
    assert.equal(status.exitCode, 0);
    assert.equal((await logMatching(cfg.logPath, /\n/)).trim(), hostname());
    const tty = await rt.createContainer(sb.id, containerConfig('tty', busybox, { command: ['sh', '-c', 'echo tty-out; echo tty-err >&2'], tty: true, stdin: true }));
    await rt.startContainer(tty);
    const st = await eventually(
      async () => {
        const x = await rt.containerStatus(tty);
        return x?.state === 'exited' ? x : undefined;
      },
      WAIT_MS,
      'the TTY container to exit',
    );
    const text = await logMatching(st.logPath, /tty-err/);
    assert.match(text, /tty-out\r?\ntty-err/, 'one stream, as the terminal showed it');
    await rt.removePodSandbox(sb.id);
  });

  test('a container over its memory limit is killed (the limit is enforced)', async () => {
    // OOMKilled itself comes from the daemon's State.OOMKilled (mapped in a fake-daemon test below): Podman 4.3 on this
    // kind of machine (cgroup v1 memory controller, kernel without v1 OOM notifications) sees no OOM event and says Error.
    const { status, sb } = await runToExit('dd if=/dev/zero of=/dev/null bs=256M count=1', { resources: { memoryBytes: 32 * 1024 * 1024 } });
    assert.equal(status.exitCode, 137, JSON.stringify(status));
    await rt.removePodSandbox(sb.id);
  });

  test('listImages has the local images with their sizes', async () => {
    const images = await rt.listImages();
    const bb = images.find((i) => i.names.includes(busybox));
    assert.ok(bb, JSON.stringify(images));
    assert.ok(bb.sizeBytes > 100_000);
    assert.ok(images.some((i) => i.names.includes(pm.pauseImage)));
  });

  test('the labels on what the runtime made', async () => {
    const { id, sb } = await runToExit('true');
    const info = await api.request<{ Config: { Labels: Record<string, string> } }>('GET', `/containers/${id}/json`);
    const labels = info.body?.Config.Labels ?? {};
    assert.equal(labels[LABELS.sandboxId], sb.id);
    assert.equal(labels[LABELS.containerName], 'main');
    assert.equal(labels[LABELS.attempt], '0');
    assert.equal(labels[LABELS.podName], sb.name);
    const infra = await api.request<{ Config: { Labels: Record<string, string> } }>('GET', `/containers/${sb.id}/json`);
    assert.equal(infra.body?.Config.Labels[LABELS.sandbox], 'true');
    assert.equal(infra.body?.Config.Labels[LABELS.podUid], sb.uid);
    await rt.removePodSandbox(sb.id);
  });
});

// ---- Without a daemon -------------------------------------------------------------------------------

describe('container runtime against a fake daemon', () => {
  test('the event stream is reconnected after it drops, since the last event; only Ledge containers are reported', async () => {
    const sinces: (string | null)[] = [];
    const d = await fakeDaemon((req, res) => {
      const url = new URL(req.url ?? '', 'http://x');
      assert.equal(url.pathname, '/v1.41/events');
      assert.deepEqual(JSON.parse(url.searchParams.get('filters') ?? ''), { type: ['container'] });
      sinces.push(url.searchParams.get('since'));
      res.writeHead(200, { 'Content-Type': 'application/json' });
      const ev = (id: string, action: string, attrs: Record<string, string>, time: number) =>
        `${JSON.stringify({ Type: 'container', Action: action, Actor: { ID: id, Attributes: attrs }, time })}\n`;
      if (sinces.length === 1) {
        res.write(ev('c1', 'die', { [LABELS.podUid]: 'u1', [LABELS.sandboxId]: 's1' }, 1700000001));
        res.write(ev('x', 'die', { name: 'not ours' }, 1700000002));
        res.write(ev('c1', 'exec_die', { [LABELS.podUid]: 'u1' }, 1700000003));
        setTimeout(() => res.socket?.destroy(), 20); // the daemon goes away
      } else {
        res.write(ev('s1', 'start', { [LABELS.podUid]: 'u1', [LABELS.sandbox]: 'true' }, 1700000010));
      }
    });
    const rt = new DockerEngineRuntime({ socketPath: d.socketPath, eventBackoffBaseMs: 10, eventBackoffMaxMs: 50 });
    try {
      const heard: RuntimeEvent[] = [];
      const off = rt.onEvent((e) => heard.push(e));
      await eventually(() => heard.length >= 2, WAIT_MS, 'two events');
      assert.deepEqual(heard, [
        { containerId: 'c1', uid: 'u1', sandboxId: 's1' },
        { sandboxId: 's1', uid: 'u1' },
      ]);
      assert.equal(sinces[0], null);
      assert.equal(sinces[1], '1700000003', 'resumed from the last event seen');
      off();
    } finally {
      await rt.close();
      await d.close();
    }
  });

  test('a container found running is re-attached to its log once; a log stream that fails is not retried at every list', async () => {
    const logPath = join(dir(), 'c', '0.log');
    const logRequests: string[] = [];
    const info = {
      Id: 'c1',
      Created: '2024-05-01T10:00:00Z',
      Image: 'sha256:abc',
      Config: {
        Image: 'busybox',
        Labels: { [LABELS.sandboxId]: 's1', [LABELS.podUid]: 'u', [LABELS.containerName]: 'c', [LABELS.logPath]: logPath, [LABELS.logMaxBytes]: '4096' },
      },
      State: { Status: 'running', StartedAt: '2024-05-01T10:00:00Z' },
    };
    const d = await fakeDaemon((req, res) => {
      const url = req.url ?? '';
      res.setHeader('Content-Type', 'application/json');
      if (url.startsWith('/v1.41/containers/json')) return res.end(JSON.stringify([{ Id: 'c1', Labels: info.Config.Labels, State: 'running' }]));
      if (url.startsWith('/v1.41/containers/c1/json')) return res.end(JSON.stringify(info));
      if (url.startsWith('/v1.41/containers/c1/logs')) {
        logRequests.push(url);
        res.statusCode = 501;
        return res.end('{"message":"configured logging driver does not support reading"}');
      }
      res.statusCode = 404;
      res.end('{"message":"not found"}');
    });
    const lines: string[] = [];
    const log = createLogger({ level: 'debug', format: 'json', write: (l) => lines.push(l) });
    const rt = new DockerEngineRuntime({ socketPath: d.socketPath, log });
    try {
      for (let i = 0; i < 3; i++) assert.equal((await rt.listContainers()).length, 1);
      await eventually(() => lines.some((l) => l.includes('container log copy failed')), 10_000, 'the failure to be logged');
      for (let i = 0; i < 3; i++) await rt.listContainers();
      await rt.containerStatus('c1');
      assert.equal(logRequests.length, 1, 'one attempt, then a pause before the next');
      assert.match(logRequests[0] ?? '', /follow=1/);
      assert.equal(lines.filter((l) => l.includes('container log copy failed') && l.includes('"level":"warn"')).length, 1);
    } finally {
      await rt.close();
      await d.close();
    }
  });

  test('close() ends an event stream still waiting for the daemon to answer (not at the request timeout)', async () => {
    let asked = false;
    const d = await fakeDaemon(() => {
      asked = true; // never answered
    });
    const rt = new DockerEngineRuntime({ socketPath: d.socketPath, requestTimeoutMs: 120_000 });
    try {
      rt.onEvent(() => {});
      await eventually(() => asked, 10_000, 'the event request');
      await within(rt.close(), 5000, 'close() with an unanswered event request');
    } finally {
      await rt.close();
      await d.close();
    }
  });

  test('a pull whose stream reports an error is ErrImagePull with that error; a pull with no progress fails at the deadline', async () => {
    const d = await fakeDaemon((req, res) => {
      const url = new URL(req.url ?? '', 'http://x');
      if (url.pathname.startsWith('/v1.41/images/') && url.pathname.endsWith('/json')) {
        res.writeHead(404, { 'Content-Type': 'application/json' });
        return res.end('{"message":"no such image"}');
      }
      if (url.pathname === '/v1.41/images/create') {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        if (url.searchParams.get('fromImage') === 'example.com/stuck') return res.write('{"status":"Pulling"}\n'); // then silence
        assert.equal(url.searchParams.get('fromImage'), 'example.com/app');
        assert.equal(url.searchParams.get('tag'), 'latest');
        res.write('{"status":"Pulling from app"}\r\n');
        return res.end('{"errorDetail":{"message":"manifest unknown"},"error":"manifest unknown"}\r\n');
      }
      res.writeHead(500).end();
    });
    const rt = new DockerEngineRuntime({ socketPath: d.socketPath, pullProgressDeadlineMs: 200 });
    try {
      await assert.rejects(
        rt.ensureImage('example.com/app', 'IfNotPresent'),
        (e: unknown) => e instanceof RuntimeError && e.reason === 'ErrImagePull' && e.message === 'Failed to pull image "example.com/app": manifest unknown',
      );
      await within(
        assert.rejects(
          rt.ensureImage('example.com/stuck:1', 'Always'),
          (e: unknown) => e instanceof RuntimeError && e.reason === 'ErrImagePull' && /no progress for 200 ms/.test(e.message),
        ),
        10_000,
        'the pull deadline',
      );
    } finally {
      await rt.close();
      await d.close();
    }
  });

  test('container status from inspect: OOMKilled, Completed, Error; Podman states; no zero times; no finish before the start', async () => {
    const states: Record<string, unknown> = {
      oom: { Status: 'exited', OOMKilled: true, ExitCode: 137, StartedAt: '2024-05-01T10:00:00.5Z', FinishedAt: '2024-05-01T10:00:01Z' },
      done: { Status: 'stopped', OOMKilled: false, ExitCode: 0, StartedAt: '2024-05-01T10:00:00.5Z', FinishedAt: '2024-05-01T10:00:00.4Z' },
      fail: { Status: 'exited', ExitCode: 2, Error: 'boom', StartedAt: '2024-05-01T10:00:00Z', FinishedAt: '2024-05-01T10:00:01Z' },
      fresh: { Status: 'configured', ExitCode: 0, StartedAt: '0001-01-01T00:00:00Z', FinishedAt: '0001-01-01T00:00:00Z' },
      up: { Status: 'running', ExitCode: 0, StartedAt: '2024-05-01T10:00:00Z', FinishedAt: '0001-01-01T00:00:00Z' },
    };
    const d = await fakeDaemon((req, res) => {
      const id = /\/containers\/([^/]+)\/json/.exec(req.url ?? '')?.[1] ?? '';
      if (!(id in states)) {
        res.writeHead(404, { 'Content-Type': 'application/json' });
        return res.end('{"message":"no such container"}');
      }
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(
        JSON.stringify({
          Id: id,
          Created: '2024-05-01T09:59:59Z',
          Image: 'sha256:abc',
          Config: { Image: 'busybox', Labels: { [LABELS.sandboxId]: 's', [LABELS.podUid]: 'u', [LABELS.containerName]: id, [LABELS.attempt]: '3' } },
          State: states[id],
        }),
      );
    });
    const rt = new DockerEngineRuntime({ socketPath: d.socketPath });
    try {
      const st = async (id: string) => {
        const s = await rt.containerStatus(id);
        return s && { state: s.state, exitCode: s.exitCode, reason: s.reason, message: s.message, startedAt: s.startedAt, finishedAt: s.finishedAt, attempt: s.attempt };
      };
      assert.deepEqual(await st('oom'), {
        state: 'exited',
        exitCode: 137,
        reason: 'OOMKilled',
        message: undefined,
        startedAt: '2024-05-01T10:00:00.500Z',
        finishedAt: '2024-05-01T10:00:01.000Z',
        attempt: 3,
      });
      assert.deepEqual(await st('done'), {
        state: 'exited',
        exitCode: 0,
        reason: 'Completed',
        message: undefined,
        startedAt: '2024-05-01T10:00:00.500Z',
        finishedAt: '2024-05-01T10:00:00.500Z',
        attempt: 3,
      });
      assert.deepEqual(await st('fail'), {
        state: 'exited',
        exitCode: 2,
        reason: 'Error',
        message: 'boom',
        startedAt: '2024-05-01T10:00:00.000Z',
        finishedAt: '2024-05-01T10:00:01.000Z',
        attempt: 3,
      });
      assert.deepEqual(await st('fresh'), {
        state: 'created',
        exitCode: undefined,
        reason: undefined,
        message: undefined,
        startedAt: undefined,
        finishedAt: undefined,
        attempt: 3,
      });
      assert.deepEqual(await st('up'), {
        state: 'running',
        exitCode: undefined,
        reason: undefined,
        message: undefined,
        startedAt: '2024-05-01T10:00:00.000Z',
        finishedAt: undefined,
        attempt: 3,
      });
      assert.equal(await rt.containerStatus('gone'), undefined);
    } finally {
      await rt.close();
      await d.close();
    }
  });

  test('version(): docker://<Version>, or podman://<Version> when a component is Podman; unreachable socket throws', async () => {
    for (const [body, want] of [
      [{ Version: '24.0.7', Components: [{ Name: 'Engine', Version: '24.0.7' }] }, 'docker://24.0.7'],
      [{ Version: '4.3.1', Components: [{ Name: 'Podman Engine', Version: '4.3.1' }] }, 'podman://4.3.1'],
    ] as const) {
      const d = await fakeDaemon((_req, res) => {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(body));
      });
      const rt = new DockerEngineRuntime({ socketPath: d.socketPath });
      try {
        assert.equal(await rt.version(), want);
      } finally {
        await rt.close();
        await d.close();
      }
    }
    const rt = new DockerEngineRuntime({ socketPath: join(dir(), 'none.sock') });
    await assert.rejects(rt.version(), /is not reachable \(ENOENT\).*podman system service/);
    await rt.close();
  });
});

describe('log cursor and image references', () => {
  test('logCursor: the last record time and the bytes per stream the file holds at that time; the rotated file when the current is empty', () => {
    const path = join(dir(), 'c.log');
    const w = new CriLogWriter(path, 1024 * 1024);
    const t1 = new Date('2024-05-01T10:00:00.100Z');
    const t2 = new Date('2024-05-01T10:00:01.000Z');
    w.write('stdout', Buffer.from('early\n'), t1);
    w.write('stdout', Buffer.from('a\nbb\n'), t2);
    w.write('stderr', Buffer.from('err\n'), t2);
    w.close();
    const c = logCursor(path);
    assert.deepEqual(c, { ms: t2.getTime(), since: `${t2.getTime() / 1000}.000000000`, skip: { stdout: 5, stderr: 4 } });
    writeFileSync(`${path}.1`, readFileSync(path));
    writeFileSync(path, '');
    assert.deepEqual(logCursor(path), c);
    assert.equal(logCursor(join(dir(), 'absent.log')), undefined);
  });

  test('parseImageReference: Docker reference grammar', () => {
    assert.deepEqual(parseImageReference('busybox'), { name: 'busybox' });
    assert.deepEqual(parseImageReference('busybox:1.36'), { name: 'busybox', tag: '1.36' });
    assert.deepEqual(parseImageReference('localhost:5000/a/b:v1'), { name: 'localhost:5000/a/b', tag: 'v1' });
    assert.deepEqual(parseImageReference('registry.k8s.io/pause:3.10'), { name: 'registry.k8s.io/pause', tag: '3.10' });
    const digest = `sha256:${'a'.repeat(64)}`;
    assert.deepEqual(parseImageReference(`quay.io/x/y@${digest}`), { name: 'quay.io/x/y', digest });
    assert.deepEqual(parseImageReference(`x/y:t@${digest}`), { name: 'x/y', tag: 't', digest });
    for (const bad of ['', 'a/UPPER', 'a:b:c', 'a b', 'a/', '/a', 'a//b', 'a:', `a@sha256:${'z'.repeat(64)}`, `a:${'t'.repeat(129)}`, `${'a'.repeat(256)}`]) {
      assert.equal(parseImageReference(bad), undefined, bad);
    }
  });
});
