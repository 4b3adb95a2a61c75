/**
 * @module
 * A whole Ledge installation for the edge-pod benchmarks (issue 10), every part a real process:
 * the local control plane (`ledge.js apiserver`), CloudCore (`ledge.js cloud --kubeconfig …`) and
 * EdgeCores (`edgecore.js`), all on 127.0.0.1, plus a @kubernetes/client-node client and a pod
 * watch that timestamps every pod event as it reaches the benchmark.
 *
 * The bundles are copied at start ({@link snapshotBundles}) so a rebuild of dist/ by someone else
 * during a long run cannot change what a later-started process runs; the copy's size and hash go
 * into the results.
 *
 * Cleanup, on every path: {@link onCleanup} registers async steps run by {@link runCleanup} (the
 * benchmark's `finally`) and on SIGINT/SIGTERM/SIGHUP or a crash (bounded to 30 s); on process
 * exit every child still running is SIGKILLed and every process carrying this run's marker in its
 * environment (`LEDGE_BENCH_RUN=<id>`, set on each pod container: pods outlive a SIGKILLed
 * EdgeCore) is SIGKILLed too.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';
import { withKeepAlive } from '../../cloud/kube/index.js';
import { EDGE_PROCESS } from '../../shared/runtime/index.js';
import { percentile } from './rss.js';

export const root = fileURLToPath(new URL('../..', import.meta.url));

/** This run's id: pod names and the environment marker of pod processes carry it. */
export const RUN_ID = randomBytes(3).toString('hex');
export const MARKER_ENV = 'LEDGE_BENCH_RUN';

/** Milliseconds on the wall clock, at sub-millisecond resolution (comparable with `date +%s%N` in a pod). */
export const nowMs = (): number => performance.timeOrigin + performance.now();
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// --- cleanup ------------------------------------------------------------------

const children = new Set<ChildProcess>();
const cleanups: (() => Promise<unknown> | unknown)[] = [];
let hooked = false;

/** Registers an async cleanup step (run last-registered first). */
export function onCleanup(fn: () => Promise<unknown> | unknown): void {
  hook();
  cleanups.push(fn);
}

let cleaning: Promise<void> | undefined;
/** Runs every cleanup step once (later calls wait for the first), then kills what is left. */
export function runCleanup(): Promise<void> {
  cleaning ??= (async () => {
    while (cleanups.length) {
      const fn = cleanups.pop()!;
      try {
        await fn();
      } catch (err) {
        process.stderr.write(`cleanup step failed: ${(err as Error).message}\n`);
      }
    }
    killEverything();
  })();
  return cleaning;
}

/** Pids of processes whose environment holds `LEDGE_BENCH_RUN=<RUN_ID>` (pods of this run). */
export function markedPids(): number[] {
  const want = Buffer.from(`${MARKER_ENV}=${RUN_ID}\0`);
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      const env = readFileSync(`/proc/${d}/environ`);
      if (env.includes(want)) out.push(Number(d));
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}

/** SIGKILLs every tracked child and every marked process; returns how many marked ones were found. */
export function killEverything(): number {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null && c.pid) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
  const marked = markedPids();
  for (const pid of marked) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  return marked.length;
}

function hook(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => void killEverything());
  const bail = (why: string, code: number) => {
    process.stderr.write(`${why}; cleaning up\n`);
    const hard = setTimeout(() => {
      killEverything();
      process.exit(code);
    }, 30_000);
    hard.unref();
    void runCleanup().finally(() => process.exit(code));
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(sig, () => bail(`got ${sig}`, 130));
  process.on('uncaughtException', (err) => bail(`benchmark crashed: ${err.stack ?? err.message}`, 1));
  process.on('unhandledRejection', (err) => bail(`benchmark crashed: ${(err as Error)?.stack ?? String(err)}`, 1));
}

// --- processes ----------------------------------------------------------------

export interface Service {
  name: string;
  child: ChildProcess;
  pid: number;
  /** Wall-clock ms at spawn. */
  spawnedAt: number;
  /** Resolves with the exit code (or signal name). */
  exited: Promise<number | string>;
  /** Output lines so far (stdout and stderr), each with its receipt time (wall-clock ms). */
  lines: { t: number; line: string }[];
  /** The first line matching `re` (searching what arrived already too), with its receipt time. */
  waitLine(re: RegExp, timeoutMs: number): Promise<{ t: number; match: RegExpMatchArray }>;
  tail(n?: number): string;
  kill9(): Promise<void>;
  /** SIGTERM, then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
  alive(): boolean;
}

/** Spawns `command args` (default this Node), tracked for cleanup; output kept line by line (bounded). */
export function startService(name: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; command?: string; keepLines?: number } = {}): Service {
  hook();
  const child = spawn(options.command ?? process.execPath, args, { cwd: options.cwd ?? root, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  const spawnedAt = nowMs();
  children.add(child);
  const exited = new Promise<number | string>((r) =>
    child.once('exit', (code, sig) => {
      children.delete(child);
      r(code ?? sig ?? 'unknown');
    }),
  );
  const lines: { t: number; line: string }[] = [];
  const keep = options.keepLines ?? 5000;
  const waiters = new Set<() => void>();
  let dropped = 0;
  const onData = () => {
    let buf = '';
    return (d: Buffer) => {
      const t = nowMs();
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        lines.push({ t, line: buf.slice(0, i) });
        buf = buf.slice(i + 1);
        if (lines.length > keep) {
          lines.shift();
          dropped++;
        }
      }
      for (const w of waiters) w();
    };
  };
  child.stdout!.on('data', onData());
  child.stderr!.on('data', onData());
  const alive = () => child.exitCode === null && child.signalCode === null;
  const svc: Service = {
    name,
    child,
    pid: child.pid ?? -1,
    spawnedAt,
    exited,
    lines,
    tail: (n = 15) =>
      lines
        .slice(-n)
        .map((l) => l.line)
        .join('\n'),
    alive,
    waitLine(re, timeoutMs) {
      return new Promise((resolve, reject) => {
        let scanned = 0;
        let base = dropped;
        const check = () => {
          // Lines shifted out since the last scan move the index back.
          scanned = Math.max(0, scanned - (dropped - base));
          base = dropped;
          for (; scanned < lines.length; scanned++) {
            const l = lines[scanned]!;
            const m = l.line.match(re);
            if (m) {
              done();
              resolve({ t: l.t, match: m });
              return;
            }
          }
        };
        const onExit = () => {
          check();
          done();
          reject(new Error(`${name} exited while waiting for ${re}:\n${svc.tail()}`));
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`${name}: no line matching ${re} within ${timeoutMs} ms:\n${svc.tail()}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
          child.off('exit', onExit);
        };
        waiters.add(check);
        child.once('exit', onExit);
        check();
      });
    },
    async kill9() {
      if (!alive()) return;
      child.kill('SIGKILL');
      await exited;
    },
    async stop(graceMs = 10_000) {
      if (!alive()) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(t);
    },
  };
  return svc;
}

// --- bundles ------------------------------------------------------------------

export interface Bundles {
  edgecore: string;
  ledge: string;
  edgecoreBytes: number;
  edgecoreSha256: string;
  /** mtime of dist/edgecore.js (when it was built). */
  edgecoreBuiltAt: string;
}

/**
 * Copies dist/edgecore.js (self-contained) and dist/ledge.js (its packages resolve from the
 * project's node_modules, so the copy stays under it) to a directory of this run.
 */
export function snapshotBundles(): Bundles {
  const edge = join(root, 'dist', 'edgecore.js');
  const ledge = join(root, 'dist', 'ledge.js');
  if (!existsSync(edge) || !existsSync(ledge)) throw new Error('dist/edgecore.js or dist/ledge.js not found: run `npm run build` first');
  const dir = join(root, 'node_modules', '.cache', 'ledge-bench', `snap-${RUN_ID}`);
  mkdirSync(dir, { recursive: true });
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const out = { edgecore: join(dir, 'edgecore.js'), ledge: join(dir, 'ledge.js') };
  copyFileSync(edge, out.edgecore);
  copyFileSync(ledge, out.ledge);
  const bytes = readFileSync(out.edgecore);
  return {
    ...out,
    edgecoreBytes: bytes.length,
    edgecoreSha256: createHash('sha256').update(bytes).digest('hex').slice(0, 16),
    edgecoreBuiltAt: statSync(edge).mtime.toISOString(),
  };
}

/** A clean environment for measured processes (nothing of the benchmark's own). */
/**
 * What every pods benchmark starts with: the bundles copied (`snapshotBundles`), a temp directory
 * named `<prefix>…` with an `out/` directory for the pods' markers, both removed at cleanup.
 */
export function benchWorkspace(prefix: string): { bundles: Bundles; tmp: string; out: string } {
  const bundles = snapshotBundles();
  const tmp = mkdtempSync(join(os.tmpdir(), prefix));
  onCleanup(() => rmSync(tmp, { recursive: true, force: true }));
  const out = join(tmp, 'out');
  mkdirSync(out);
  return { bundles, tmp, out };
}

export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', LEDGE_LOG_FORMAT: 'json', ...extra };
}

// --- cluster ------------------------------------------------------------------

export interface ControlPlane {
  svc: Service;
  kubeconfig: string;
  kc: k8s.KubeConfig;
  core: k8s.CoreV1Api;
}

/** `ledge.js apiserver` in `dir`, port 0; resolves once its kubeconfig answers. */
export async function startControlPlane(bundles: Bundles, dir: string): Promise<ControlPlane> {
  const kubeconfig = join(dir, 'kubeconfig');
  const svc = startService('apiserver', [bundles.ledge, 'apiserver', '--data-dir', join(dir, 'api'), '--port', '0', '--write-kubeconfig', kubeconfig, '--log-level', 'warn'], {
    env: { ...process.env, LEDGE_LOG_FORMAT: 'json' },
  });
  onCleanup(() => svc.stop(5000));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (!svc.alive()) throw new Error(`apiserver exited:\n${svc.tail()}`);
    if (existsSync(kubeconfig)) {
      try {
        const kc = withKeepAlive(new k8s.KubeConfig());
        kc.loadFromFile(kubeconfig);
        const core = kc.makeApiClient(k8s.CoreV1Api);
        await core.listNamespace();
        return { svc, kubeconfig, kc, core };
      } catch {
        // written but not serving yet
      }
    }
    if (Date.now() > deadline) throw new Error(`apiserver did not start within 60 s:\n${svc.tail()}`);
    await sleep(100);
  }
}

/** `ledge.js cloud --kubeconfig …` on 127.0.0.1, port 0 (or `port`), default settings otherwise. */
export async function startCloudCore(bundles: Bundles, cp: ControlPlane, identity: string, extra: string[] = []): Promise<{ svc: Service; url: string }> {
  const svc = startService(
    identity,
    [
      bundles.ledge,
      'cloud',
      '--kubeconfig',
      cp.kubeconfig,
      '--bind-address',
      '127.0.0.1',
      '--insecure-plain-websocket',
      '--port',
      '0',
      '--identity',
      identity,
      '--log-level',
      'info',
      ...extra,
    ],
    { env: { ...process.env, LEDGE_LOG_FORMAT: 'json' }, keepLines: 2000 },
  );
  onCleanup(() => svc.stop(5000));
  const { match } = await svc.waitLine(/"msg":"cloudcore started","url":"([^"]+)"/, 60_000);
  return { svc, url: match[1]! };
}

export interface EdgeOptions {
  node: string;
  cloud: string[];
  dataDir: string;
  /** Extra flags (after the benchmark's). */
  extra?: string[];
  logLevel?: string;
  nodeFlags?: string[];
  /** Run as shipped (EDGE_PROCESS: its environment and Node flags; default true), or as a plain `node edgecore.js`. */
  shipped?: boolean;
}

/**
 * `node edgecore.js` with its default configuration, except what several EdgeCores on one machine
 * need: its own data directory and a free MetaServer port (the default, 10550, can be held once).
 */
export function startEdgeCore(bundles: Bundles, o: EdgeOptions): Service {
  const shipped = o.shipped ?? true;
  const args = [
    ...(shipped ? EDGE_PROCESS.nodeFlags : []),
    ...(o.nodeFlags ?? []),
    bundles.edgecore,
    '--cloud',
    o.cloud.join(','),
    '--node-name',
    o.node,
    '--data-dir',
    o.dataDir,
    '--metaserver-port',
    '0',
    '--log-level',
    o.logLevel ?? 'info',
    ...(o.extra ?? []),
  ];
  const svc = startService(o.node, args, { env: cleanEnv(shipped ? EDGE_PROCESS.env : {}), cwd: os.tmpdir(), keepLines: 2000 });
  onCleanup(() => svc.stop(15_000));
  return svc;
}

/** Waits until the Node exists with Ready=True. */
export async function waitNodeReady(core: k8s.CoreV1Api, node: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const n = await core.readNode({ name: node }).catch(() => undefined);
    if (n?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) return;
    if (Date.now() > deadline) throw new Error(`node ${node} not Ready within ${timeoutMs} ms`);
    await sleep(200);
  }
}

// --- pods ---------------------------------------------------------------------

/**
 * A trivial long-running pod. When `outDir` is given, its container appends a start record to
 * `<outDir>/starts` at every start (hostPath volume `out`; the process runtime names it in
 * $LEDGE_VOLUME_OUT, a container sees it at /out): `<pod name> <ns since the epoch>`, or in a
 * container `<pod name> up:<s of /proc/uptime>` ({@link readStarts} reads both). Then it sleeps
 * forever, exiting
 * at once on SIGTERM. Every container carries the run marker in its environment.
 */
export function benchPod(o: { name: string; node: string; runtimeClassName?: string; image?: string; outDir?: string; labels?: Record<string, string> }): k8s.V1Pod {
  const container = o.runtimeClassName === 'container';
  const outPath = container ? '/out' : '$LEDGE_VOLUME_OUT';
  // The process runtime runs the host's sh and date (GNU: nanoseconds); busybox's date has no %N, so a
  // container records the uptime clock (10 ms resolution), which readStarts converts.
  const stamp = container ? 'read up rest < /proc/uptime; echo "$POD_NAME up:$up"' : 'echo "$POD_NAME $(date +%s%N)"';
  const record = o.outDir ? `${stamp} >> "${outPath}/starts"; ` : '';
  const script = `${record}trap 'exit 0' TERM; while true; do sleep 10 & wait $!; done`;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: o.name, namespace: 'default', labels: { 'bench.ledge.io/run': RUN_ID, ...(o.labels ?? {}) } },
    spec: {
      nodeName: o.node,
      ...(o.runtimeClassName ? { runtimeClassName: o.runtimeClassName } : {}),
      terminationGracePeriodSeconds: 5,
      containers: [
        {
          name: 'main',
          image: o.image ?? 'busybox',
          // A `:latest` image defaults to Always, and no registry is reachable here: use what the runtime holds.
          imagePullPolicy: 'IfNotPresent',
          command: ['sh', '-c', script],
          env: [
            { name: MARKER_ENV, value: RUN_ID },
            { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
          ],
          ...(o.outDir ? { volumeMounts: [{ name: 'out', mountPath: '/out' }] } : {}),
        },
      ],
      ...(o.outDir ? { volumes: [{ name: 'out', hostPath: { path: o.outDir, type: 'Directory' } }] } : {}),
    },
  };
}

/** Wall-clock ms minus the kernel's uptime clock (/proc/uptime), to convert the containers' records. */
function uptimeOffsetMs(): number {
  const up = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  return nowMs() - up * 1000;
}

/** The lines of `<dir>/starts`: pod name → start times (wall-clock ms), in file order. */
export function readStarts(dir: string): Map<string, number[]> {
  const out = new Map<string, number[]>();
  let text = '';
  try {
    text = readFileSync(join(dir, 'starts'), 'utf8');
  } catch {
    return out;
  }
  let offset: number | undefined;
  for (const line of text.split('\n')) {
    const [name, stamp] = line.trim().split(' ');
    if (!name || !stamp) continue;
    let t: number;
    if (stamp.startsWith('up:')) {
      offset ??= uptimeOffsetMs();
      t = offset + Number(stamp.slice(3)) * 1000;
    } else if (/^\d+$/.test(stamp)) {
      t = Number(BigInt(stamp) / 1000n) / 1000;
    } else continue;
    const list = out.get(name) ?? [];
    list.push(t);
    out.set(name, list);
  }
  return out;
}

export const isRunning = (p: k8s.V1Pod | undefined): boolean => p?.status?.phase === 'Running';
export const containerIds = (p: k8s.V1Pod | undefined): string[] => (p?.status?.containerStatuses ?? []).map((s) => s.containerID ?? '').filter(Boolean);

interface PodEvent {
  t: number;
  type: string;
  pod: k8s.V1Pod;
}

/**
 * A watch on the pods of this run (label `bench.ledge.io/run`), list-then-watch so nothing is
 * missed, re-established from the last resourceVersion if it ends. Every event is kept with the
 * time it reached the benchmark.
 */
export class PodWatch {
  private readonly events = new Map<string, PodEvent[]>();
  private readonly waiters = new Set<() => void>();
  private abort: AbortController | undefined;
  private closed = false;
  private rv = '';
  restarts = 0;

  constructor(
    private readonly kc: k8s.KubeConfig,
    private readonly core: k8s.CoreV1Api,
  ) {}

  async start(): Promise<void> {
    const list = await this.core.listNamespacedPod({ namespace: 'default', labelSelector: `bench.ledge.io/run=${RUN_ID}` });
    const t = nowMs();
    for (const p of list.items) this.record(t, 'LIST', p);
    this.rv = list.metadata?.resourceVersion ?? '';
    await this.connect();
  }

  private async connect(): Promise<void> {
    const w = new k8s.Watch(this.kc);
    this.abort = await w.watch(
      '/api/v1/namespaces/default/pods',
      { labelSelector: `bench.ledge.io/run=${RUN_ID}`, ...(this.rv ? { resourceVersion: this.rv } : {}) },
      (type: string, obj: k8s.V1Pod) => {
        if (type === 'BOOKMARK' || type === 'ERROR') return;
        this.rv = obj.metadata?.resourceVersion ?? this.rv;
        this.record(nowMs(), type, obj);
      },
      () => {
        if (this.closed) return;
        this.restarts++;
        setTimeout(() => {
          if (!this.closed) this.start().catch((err: Error) => process.stderr.write(`pod watch restart failed: ${err.message}\n`));
        }, 100);
      },
    );
  }

  private record(t: number, type: string, pod: k8s.V1Pod): void {
    const name = pod.metadata?.name ?? '';
    const list = this.events.get(name) ?? [];
    list.push({ t, type, pod });
    if (list.length > 200) list.splice(0, list.length - 200);
    this.events.set(name, list);
    for (const w of this.waiters) w();
  }

  /** The first time at or after `since` when `name` satisfied `pred` (a DELETED event counts as gone). */
  when(name: string, pred: (p: k8s.V1Pod | undefined) => boolean, since = 0): number | undefined {
    for (const e of this.events.get(name) ?? []) {
      if (e.t < since) continue;
      if (pred(e.type === 'DELETED' ? undefined : e.pod)) return e.t;
    }
    return undefined;
  }

  /** The last state seen of `name` (undefined: never seen, or deleted). */
  last(name: string): k8s.V1Pod | undefined {
    const e = this.events.get(name)?.at(-1);
    return e && e.type !== 'DELETED' ? e.pod : undefined;
  }

  /** Resolves with name → first time each of `names` satisfied `pred` at or after `since`; rejects after `timeoutMs`. */
  until(names: string[], pred: (p: k8s.V1Pod | undefined) => boolean, since: number, timeoutMs: number, what: string): Promise<Map<string, number>> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const out = new Map<string, number>();
        for (const n of names) {
          const t = this.when(n, pred, since);
          if (t === undefined) return;
          out.set(n, t);
        }
        done();
        resolve(out);
      };
      const timer = setTimeout(() => {
        done();
        const missing = names.filter((n) => this.when(n, pred, since) === undefined);
        const sample = missing[0] ? JSON.stringify(this.last(missing[0])?.status ?? null).slice(0, 600) : '';
        reject(new Error(`${what}: ${missing.length} of ${names.length} pods not there within ${timeoutMs} ms (e.g. ${missing[0]}: ${sample})`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Forgets the events of `names` (pods deleted and done with). */
  forget(names: string[]): void {
    for (const n of names) this.events.delete(n);
  }

  close(): void {
    this.closed = true;
    this.abort?.abort();
  }
}

/** Deletes `names` and waits until the watch saw every one gone. */
export async function deletePods(core: k8s.CoreV1Api, watch: PodWatch, names: string[], timeoutMs = 120_000): Promise<void> {
  const since = 0;
  await Promise.all(
    names.map((name) =>
      core.deleteNamespacedPod({ name, namespace: 'default' }).catch((err: { code?: number }) => {
        if (err.code !== 404) throw err;
      }),
    ),
  );
  await watch.until(names, (p) => p === undefined, since, timeoutMs, 'pods deleted');
  watch.forget(names);
}

/** Creates pods with at most `concurrency` create calls in flight; returns name → wall-clock ms just before its create call. */
export async function createPods(core: k8s.CoreV1Api, pods: k8s.V1Pod[], concurrency = pods.length): Promise<Map<string, number>> {
  const t0 = new Map<string, number>();
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.max(1, Math.min(concurrency, pods.length)) }, async () => {
      while (next < pods.length) {
        const pod = pods[next++]!;
        t0.set(pod.metadata!.name!, nowMs());
        await core.createNamespacedPod({ namespace: 'default', body: pod });
      }
    }),
  );
  return t0;
}

// --- statistics and results ---------------------------------------------------

/** Nearest-rank percentile (p in 0..100) of unsorted values. */
export const pct = (values: number[], p: number): number =>
  percentile(
    [...values].sort((a, b) => a - b),
    p,
  );

export const round = (v: number, digits = 1): number => (Number.isFinite(v) ? +v.toFixed(digits) : v);

/** The machine, for the results file. */
export function machine(): Record<string, unknown> {
  return {
    cores: os.cpus().length,
    cpu: os.cpus()[0]?.model,
    node: process.version,
    kernel: os.release(),
    memTotalMiB: Math.round(os.totalmem() / 1048576),
    loadAvg1: os.loadavg()[0],
  };
}

/** Writes bench/results/<name>.json. */
export function writeResult(name: string, body: Record<string, unknown>): string {
  const dir = join(root, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.json`);
  writeFileSync(file, `${JSON.stringify({ bench: name, date: new Date().toISOString(), machine: machine(), ...body }, null, 2)}\n`);
  return `bench/results/${name}.json`;
}

/** A load-average sampler: call `sample()` now and then, `summary()` at the end. */
export function loadTracker(): { sample(): void; summary(): { min: number; max: number; mean: number } } {
  const v: number[] = [];
  return {
    sample: () => void v.push(os.loadavg()[0]!),
    summary: () => ({ min: round(Math.min(...v), 2), max: round(Math.max(...v), 2), mean: round(v.reduce((a, b) => a + b, 0) / Math.max(1, v.length), 2) }),
  };
}
