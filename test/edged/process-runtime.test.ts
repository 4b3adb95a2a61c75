/**
 * The `process` runtime with real child processes (`node -e …` through process.execPath, no
 * shell): env from values, configmaps, secrets and the pod's fields; logs captured, bounded and
 * rotated once; restart policies with the backoff visible as CrashLoopBackOff; graceful stop
 * (SIGTERM, then SIGKILL for a process that ignores it); exit codes; and the reasons a container
 * that cannot run waits with.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { LogFile } from '../../edge/edged/process-runtime.js';
import { ProcessRuntime, resolveEnv, type ConfigLookup, type ContainerStatus, type KeyValueObject, type PodSandboxSpec } from '../../edge/edged/index.js';
import { ErrorCode } from '../../shared/errors/index.js';
import { eventually, within } from '../helpers/process.js';
import { tempDir } from '../helpers/files.js';

const WAIT_MS = 10_000;
const b64 = (s: string) => Buffer.from(s).toString('base64');

const dirs: { cleanup: () => void }[] = [];
const runtimes: ProcessRuntime[] = [];
after(async () => {
  for (const rt of runtimes) await within(rt.stopAll({ gracePeriodSeconds: 0 }), WAIT_MS, 'cleanup stop');
  for (const d of dirs) d.cleanup();
});

/** A store of configmaps and secrets keyed `ns/name`, mutable by the test. */
function lookupOf(configMaps: Record<string, KeyValueObject> = {}, secrets: Record<string, KeyValueObject> = {}): ConfigLookup {
  return { configMap: (ns, name) => configMaps[`${ns}/${name}`], secret: (ns, name) => secrets[`${ns}/${name}`] };
}

/** Every status the runtime reported for a pod, in order (through onChange). */
type History = Map<string, ContainerStatus[][]>;

function makeRuntime(opts: { lookup?: ConfigLookup; logMaxBytes?: number; backoffBaseMs?: number; backoffMaxMs?: number; path?: string } = {}) {
  const dir = tempDir('ledge-edged-');
  dirs.push(dir);
  const history: History = new Map();
  const rt: ProcessRuntime = new ProcessRuntime({
    dataDir: dir.path,
    lookup: opts.lookup ?? lookupOf(),
    backoffBaseMs: opts.backoffBaseMs ?? 50,
    backoffMaxMs: opts.backoffMaxMs ?? 200,
    ...(opts.logMaxBytes !== undefined ? { logMaxBytes: opts.logMaxBytes } : {}),
    ...(opts.path !== undefined ? { path: opts.path } : {}),
    onChange: (uid) => {
      const s = rt.status(uid);
      if (!s) return;
      const list = history.get(uid) ?? [];
      list.push(structuredClone(s.containerStatuses));
      history.set(uid, list);
    },
  });
  runtimes.push(rt);
  return { rt, history, dataDir: dir.path };
}

let seq = 0;
function pod(containers: PodSandboxSpec['containers'], extra: Partial<PodSandboxSpec> = {}): PodSandboxSpec {
  seq++;
  return { uid: `uid-${seq}`, name: `pod-${seq}`, namespace: 'default', nodeName: 'edge-1', restartPolicy: 'Never', containers, ...extra };
}

const node = (script: string) => [process.execPath, '-e', script];

function status(rt: ProcessRuntime, uid: string, name = 'c'): ContainerStatus {
  const s = rt.status(uid)?.containerStatuses.find((c) => c.name === name);
  assert.ok(s, `no status for ${uid}/${name}`);
  return s;
}

function until(rt: ProcessRuntime, uid: string, what: string, pred: (s: ContainerStatus) => boolean, name = 'c'): Promise<ContainerStatus> {
  return eventually(
    () => {
      const s = status(rt, uid, name);
      return pred(s) ? s : undefined;
    },
    WAIT_MS,
    `${what} (last: ${JSON.stringify(rt.status(uid)?.containerStatuses)})`,
  );
}

async function runPod(rt: ProcessRuntime, p: PodSandboxSpec): Promise<string> {
  await rt.create(p);
  await rt.start(p.uid);
  return p.uid;
}

describe('env', () => {
  test('values, configMapKeyRef, secretKeyRef, fieldRef and envFrom reach the process, and nothing of EdgeCore’s own env', async () => {
    const lookup = lookupOf(
      { 'default/app': { data: { mode: 'fast', level: '3', 'bad=key': 'x' } } },
      { 'default/creds': { data: { password: b64('s3cr3t'), token: b64('tok') } } },
    );
    const { rt } = makeRuntime({ lookup });
    const p = pod([
      {
        name: 'c',
        command: node('console.log("ENV=" + JSON.stringify(process.env))'),
        envFrom: [{ configMapRef: { name: 'app' }, prefix: 'CM_' }, { secretRef: { name: 'creds' } }, { configMapRef: { name: 'absent', optional: true } }],
        env: [
          { name: 'PLAIN', value: 'v' },
          { name: 'MODE', valueFrom: { configMapKeyRef: { name: 'app', key: 'mode' } } },
          { name: 'PASS', valueFrom: { secretKeyRef: { name: 'creds', key: 'password' } } },
          { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
          { name: 'POD_NS', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
          { name: 'POD_UID', valueFrom: { fieldRef: { fieldPath: 'metadata.uid' } } },
          { name: 'NODE', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
          { name: 'OPT', valueFrom: { configMapKeyRef: { name: 'app', key: 'nope', optional: true } } },
          // env wins over envFrom
          { name: 'token', value: 'overridden' },
        ],
      },
    ]);
    const uid = await runPod(rt, p);
    await until(rt, uid, 'exit 0', (s) => s.state.terminated?.exitCode === 0);
    const out = await eventually(async () => (await rt.logs(uid, 'c')).match(/^ENV=(.*)$/m)?.[1], WAIT_MS, 'env line in the log');
    const env = JSON.parse(out) as Record<string, string>;
    delete env.PATH;
    assert.deepEqual(env, {
      HOSTNAME: p.name,
      CM_mode: 'fast',
      CM_level: '3',
      password: 's3cr3t',
      token: 'overridden',
      PLAIN: 'v',
      MODE: 'fast',
      PASS: 's3cr3t',
      POD_NAME: p.name,
      POD_NS: 'default',
      POD_UID: p.uid,
      NODE: 'edge-1',
    });
  });

  test('a missing key waits with CreateContainerConfigError naming it, and starts once the configmap has it', async () => {
    const cms: Record<string, KeyValueObject> = { 'default/app': { data: {} } };
    const { rt } = makeRuntime({ lookup: lookupOf(cms) });
    const uid = await runPod(
      rt,
      pod([{ name: 'c', command: node('console.log(process.env.MODE)'), env: [{ name: 'MODE', valueFrom: { configMapKeyRef: { name: 'app', key: 'mode' } } }] }]),
    );
    const s = await until(rt, uid, 'CreateContainerConfigError', (x) => x.state.waiting?.reason === 'CreateContainerConfigError');
    assert.match(s.state.waiting?.message ?? '', /couldn't find key mode in ConfigMap default\/app/);
    assert.equal(s.restartCount, 0);
    cms['default/app'] = { data: { mode: 'late' } };
    await until(rt, uid, 'exit 0 after the key appeared', (x) => x.state.terminated?.exitCode === 0);
    await eventually(async () => (await rt.logs(uid, 'c')).includes('late'), WAIT_MS, 'value in the log');
  });

  test('resolveEnv: a missing configmap, a missing secret and an unsupported fieldPath are clear errors', () => {
    const p = pod([]);
    const lookup = lookupOf();
    assert.throws(() => resolveEnv(p, { name: 'c', env: [{ name: 'A', valueFrom: { configMapKeyRef: { name: 'cm', key: 'k' } } }] }, lookup), /configmap "cm" not found \(env A\)/);
    assert.throws(() => resolveEnv(p, { name: 'c', envFrom: [{ secretRef: { name: 's' } }] }, lookup), /secret "s" not found \(envFrom of container c\)/);
    assert.throws(() => resolveEnv(p, { name: 'c', env: [{ name: 'IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } }] }, lookup), /unsupported fieldPath status\.podIP/);
  });
});

describe('containers that cannot run', () => {
  test('no command: waiting ContainerCommandMissing, saying the process runtime needs command', async () => {
    const { rt } = makeRuntime();
    const uid = await runPod(rt, pod([{ name: 'c', image: 'nginx:1.27' }]));
    const s = await until(rt, uid, 'ContainerCommandMissing', (x) => x.state.waiting?.reason === 'ContainerCommandMissing');
    assert.match(s.state.waiting?.message ?? '', /process runtime.*command/);
    assert.equal(s.image, 'nginx:1.27');
    assert.equal(s.ready, false);
  });

  test('a command not on PATH: waiting RunContainerError with the spawn error', async () => {
    const { rt } = makeRuntime();
    const uid = await runPod(rt, pod([{ name: 'c', command: ['ledge-no-such-command-xyz'] }]));
    const s = await until(rt, uid, 'RunContainerError', (x) => x.state.waiting?.reason === 'RunContainerError');
    assert.match(s.state.waiting?.message ?? '', /ledge-no-such-command-xyz.*ENOENT/);
  });

  test('the command is looked up on PATH (no shell)', async () => {
    const { rt } = makeRuntime({ path: dirname(process.execPath) });
    const uid = await runPod(rt, pod([{ name: 'c', command: ['node', '-e'], args: ['console.log("via-path", process.argv.length)'] }]));
    await until(rt, uid, 'exit 0', (s) => s.state.terminated?.exitCode === 0);
    await eventually(async () => (await rt.logs(uid, 'c')).includes('via-path 1'), WAIT_MS, 'output');
  });

  test('a pod the runtime cannot hold is refused with PodSpecError', async () => {
    const { rt } = makeRuntime();
    await assert.rejects(rt.create(pod([])), { code: ErrorCode.PodSpec });
    await assert.rejects(rt.create(pod([{ name: 'c' }, { name: 'c' }])), { code: ErrorCode.PodSpec, message: /duplicate container name c/ });
    const p = pod([{ name: 'c', command: node('') }]);
    await rt.create(p);
    await assert.rejects(rt.create(p), { code: ErrorCode.PodSpec, message: /already exists/ });
    await assert.rejects(rt.start('uid-unknown'), { code: ErrorCode.PodSpec });
  });
});

describe('exit codes and restart policy', () => {
  test('Never: exit 3 is terminated Error with exitCode 3, exit 0 is Completed; neither restarts', async () => {
    const { rt } = makeRuntime();
    const uid = await runPod(
      rt,
      pod([
        { name: 'c', command: node('process.exit(3)') },
        { name: 'ok', command: node('') },
      ]),
    );
    const failed = await until(rt, uid, 'exit 3', (s) => s.state.terminated !== undefined);
    assert.equal(failed.state.terminated?.exitCode, 3);
    assert.equal(failed.state.terminated?.reason, 'Error');
    assert.ok(failed.state.terminated?.startedAt && failed.state.terminated.finishedAt);
    assert.equal(failed.restartCount, 0);
    const ok = await until(rt, uid, 'exit 0', (s) => s.state.terminated !== undefined, 'ok');
    assert.equal(ok.state.terminated?.reason, 'Completed');
    assert.equal(ok.state.terminated?.exitCode, 0);
  });

  test('OnFailure: exit 0 stays Completed, exit 1 restarts with CrashLoopBackOff and lastState', async () => {
    const { rt, history } = makeRuntime();
    const uid = await runPod(
      rt,
      pod(
        [
          { name: 'c', command: node('process.exit(1)') },
          { name: 'ok', command: node('') },
        ],
        { restartPolicy: 'OnFailure' },
      ),
    );
    const s = await until(rt, uid, 'restartCount 2', (x) => x.restartCount >= 2);
    assert.equal(s.lastState.terminated?.exitCode, 1);
    const ok = await until(rt, uid, 'ok completed', (x) => x.state.terminated !== undefined, 'ok');
    assert.equal(ok.state.terminated?.reason, 'Completed');
    assert.equal(ok.restartCount, 0);
    const waits = (history.get(uid) ?? []).map((l) => l.find((c) => c.name === 'c')?.state.waiting?.reason).filter(Boolean);
    assert.ok(waits.includes('CrashLoopBackOff'), `CrashLoopBackOff seen: ${waits.join(',')}`);
  });

  test('Always: a container that exits is restarted with doubling delays up to the cap', async () => {
    const { rt, history } = makeRuntime({ backoffBaseMs: 50, backoffMaxMs: 200 });
    const uid = await runPod(rt, pod([{ name: 'c', command: node('') }], { restartPolicy: 'Always' }));
    await until(rt, uid, 'restartCount 4', (x) => x.restartCount >= 4);
    await within(rt.stop(uid, { gracePeriodSeconds: 0 }), WAIT_MS, 'stop');
    const messages = (history.get(uid) ?? [])
      .map((l) => l[0]?.state.waiting)
      .filter((w) => w?.reason === 'CrashLoopBackOff')
      .map((w) => w?.message?.match(/back-off (\S+)/)?.[1]);
    assert.deepEqual(messages.slice(0, 4), ['0.05s', '0.1s', '0.2s', '0.2s']);
  });
});

describe('graceful stop', () => {
  test('a process that handles SIGTERM exits with its own code within the grace period', async () => {
    const { rt } = makeRuntime();
    const uid = await runPod(
      rt,
      pod([{ name: 'c', command: node('process.on("SIGTERM",()=>{console.log("got-term");process.exit(0)});console.log("up");setInterval(()=>{},1000)') }], {
        restartPolicy: 'Always',
      }),
    );
    await eventually(async () => (await rt.logs(uid, 'c')).includes('up'), WAIT_MS, 'handler installed');
    assert.ok(status(rt, uid).state.running);
    await within(rt.stop(uid, { gracePeriodSeconds: 30 }), WAIT_MS, 'stop after SIGTERM');
    const s = status(rt, uid);
    assert.equal(s.state.terminated?.exitCode, 0);
    assert.equal(s.restartCount, 0, 'not restarted after stop');
    await eventually(async () => (await rt.logs(uid, 'c')).includes('got-term'), WAIT_MS, 'SIGTERM seen');
  });

  test('a process that ignores SIGTERM gets it, then SIGKILL after the grace period (137)', async () => {
    const { rt } = makeRuntime();
    const uid = await runPod(
      rt,
      pod([{ name: 'c', command: node('process.on("SIGTERM",()=>console.log("ignored-term"));console.log("up");setInterval(()=>{},1000)') }], {
        restartPolicy: 'Always',
        terminationGracePeriodSeconds: 0.3,
      }),
    );
    await eventually(async () => (await rt.logs(uid, 'c')).includes('up'), WAIT_MS, 'handler installed');
    await within(rt.stop(uid), WAIT_MS, 'stop with SIGKILL after the grace period');
    const s = status(rt, uid);
    assert.equal(s.state.terminated?.exitCode, 137);
    assert.equal(s.state.terminated?.signal, 9);
    assert.equal(s.restartCount, 0);
    await eventually(async () => (await rt.logs(uid, 'c')).includes('ignored-term'), WAIT_MS, 'SIGTERM sent first');
  });
  test('stop signals the whole process group: what the command started ends too', async () => {
    const { rt } = makeRuntime();
    const script = `const c=require("child_process").spawn(process.execPath,["-e","setInterval(()=>{},1000)"],{stdio:"ignore"});console.log("grandchild="+c.pid);setInterval(()=>{},1000)`;
    const uid = await runPod(rt, pod([{ name: 'c', command: node(script) }], { restartPolicy: 'Always' }));
    const pid = Number(await eventually(async () => (await rt.logs(uid, 'c')).match(/grandchild=(\d+)/)?.[1], WAIT_MS, 'grandchild pid'));
    const alive = () => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    try {
      assert.ok(alive());
      await within(rt.stop(uid, { gracePeriodSeconds: 5 }), WAIT_MS, 'stop');
      await eventually(() => !alive(), WAIT_MS, 'grandchild ended by the group SIGTERM');
    } finally {
      if (alive()) process.kill(pid, 'SIGKILL');
    }
  });
});

describe('logs', () => {
  test('stdout and stderr are both captured', async () => {
    const { rt } = makeRuntime();
    const uid = await runPod(rt, pod([{ name: 'c', command: node('console.log("to-out");console.error("to-err")') }]));
    await until(rt, uid, 'exit', (s) => s.state.terminated !== undefined);
    await eventually(
      async () => {
        const l = await rt.logs(uid, 'c');
        return l.includes('to-out') && l.includes('to-err');
      },
      WAIT_MS,
      'both streams',
    );
  });

  test('a log is bounded: whatever the pipe’s chunking, at most two files of logMaxBytes, the newest output kept', async () => {
    const { rt } = makeRuntime({ logMaxBytes: 1000 });
    // 100 lines of 100 bytes in 10 batches, then END: ten times the bound.
    const script =
      'let i=0;const t=setInterval(()=>{for(let j=0;j<10;j++)process.stdout.write(String(i++).padStart(99,"x")+"\\n");if(i>=100){clearInterval(t);process.stdout.write("END\\n")}},5)';
    const uid = await runPod(rt, pod([{ name: 'c', command: node(script) }]));
    await until(rt, uid, 'exit', (s) => s.state.terminated !== undefined);
    const path = rt.logPath(uid, 'c');
    assert.ok(path);
    const logs = await eventually(
      async () => {
        const l = await rt.logs(uid, 'c');
        return l.endsWith('END\n') ? l : undefined;
      },
      WAIT_MS,
      'END in the log',
    );
    assert.ok(!existsSync(`${path}.2`));
    assert.ok(statSync(path).size <= 1000, `current ${statSync(path).size}`);
    if (existsSync(`${path}.1`)) assert.ok(statSync(`${path}.1`).size <= 1000, `rotated ${statSync(`${path}.1`).size}`);
    assert.ok(logs.length <= 2000);
    assert.ok(!logs.includes(`${'0'.padStart(99, 'x')}\n`), 'the oldest output is gone');
    assert.equal((await rt.logs(uid, 'c', { limitBytes: 4 })).length, 4);
  });

  test('LogFile: rotates once past the bound, keeps one old file, keeps the tail of an oversized chunk', () => {
    const dir = tempDir('ledge-edged-log-');
    dirs.push(dir);
    const path = join(dir.path, 'c.log');
    const f = new LogFile(path, 10);
    f.write(Buffer.from('aaaaaa'));
    f.write(Buffer.from('bbbb'));
    assert.equal(readFileSync(path, 'utf8'), 'aaaaaabbbb');
    assert.equal(existsSync(`${path}.1`), false);
    f.write(Buffer.from('cc'));
    assert.equal(readFileSync(`${path}.1`, 'utf8'), 'aaaaaabbbb');
    assert.equal(readFileSync(path, 'utf8'), 'cc');
    f.write(Buffer.from('0123456789XYZ'));
    assert.equal(readFileSync(`${path}.1`, 'utf8'), 'cc', 'only one old file: the previous one replaced');
    assert.equal(readFileSync(path, 'utf8'), '3456789XYZ');
    assert.equal(existsSync(`${path}.2`), false);
    f.close();
  });

  test('remove deletes the pod’s directories and logs', async () => {
    const { rt } = makeRuntime();
    const uid = await runPod(rt, pod([{ name: 'c', command: node('console.log("x")') }]));
    await until(rt, uid, 'exit', (s) => s.state.terminated !== undefined);
    const path = rt.logPath(uid, 'c');
    assert.ok(path);
    await eventually(() => existsSync(path), WAIT_MS, 'log file');
    await rt.remove(uid);
    assert.equal(rt.status(uid), undefined);
    assert.equal(existsSync(dirname(path)), false);
    assert.deepEqual(rt.list(), []);
  });
});
