/**
 * The node status report, from a fake host (injected /proc, /etc and statfs contents):
 * capacity and allocatable, nodeInfo, the pressure conditions at each threshold with
 * kubelet's reasons and messages, the transition period, images capped like kubelet's,
 * the runtime callbacks (cached, failures keep the last answer), extra conditions, health
 * checks making Ready False, and what is read per report (small files only).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import type os from 'node:os';
import { Beehive, type ModuleContext } from '../../shared/beehive/index.js';
import type { Message } from '../../shared/protocol/index.js';
import {
  NodeStatusCollector,
  createNodeStatusReporter,
  goArch,
  prettyName,
  type FsStats,
  type HostReader,
  type NodeStatusOptions,
  type NodeStatusReport,
} from '../../edge/nodestatus/index.js';
import { captureLog } from '../helpers/cloud.js';
import { eventually } from '../helpers/process.js';

const Mi = 1024 * 1024;

/** A host whose files and statfs the test sets; records what was read. */
class FakeHost implements HostReader {
  files: Record<string, string> = {
    '/etc/os-release': 'NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n',
    '/proc/sys/kernel/random/boot_id': 'c8e1a19a-4243-4e17-8315-ab563bcc5285\n',
    '/etc/machine-id': '0123456789abcdef0123456789abcdef\n',
    '/proc/meminfo': meminfo({ MemTotal: 4096 * 1024, MemFree: 1000 * 1024, MemAvailable: 2048 * 1024, Buffers: 10 * 1024, Cached: 500 * 1024 }),
    '/proc/sys/kernel/pid_max': '4194304\n',
    '/proc/sys/kernel/threads-max': '30000\n',
    '/proc/loadavg': '0.18 0.34 0.82 1/127 30295\n',
  };
  fs: FsStats | undefined = { bsize: 4096, blocks: 25_000_000, bavail: 12_500_000, files: 6_000_000, ffree: 5_000_000 };
  arch_ = 'x64';
  reads: string[] = [];
  readText(path: string): string | undefined {
    this.reads.push(path);
    return this.files[path];
  }
  statfs(path: string): FsStats | undefined {
    this.reads.push(`statfs ${path}`);
    return this.fs;
  }
  cpuCount = () => 4;
  totalMemoryBytes = () => 4096 * Mi;
  freeMemoryBytes = () => 321 * Mi;
  hostname = () => 'edge-host';
  kernelRelease = () => '6.1.0-18-amd64';
  platform = () => 'linux';
  arch = () => this.arch_;
  endianness = () => 'LE' as const;
  networkInterfaces = (): NodeJS.Dict<os.NetworkInterfaceInfo[]> => ({
    lo: [{ address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' }],
    eth0: [{ address: '10.0.0.7', netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: '10.0.0.7/24' }],
  });
}

function meminfo(kb: Record<string, number>): string {
  return Object.entries(kb)
    .map(([k, v]) => `${k}:${' '.repeat(16 - k.length)}${Math.round(v)} kB`)
    .join('\n');
}
function setMemAvailable(h: FakeHost, bytes: number): void {
  h.files['/proc/meminfo'] = meminfo({ MemTotal: 4096 * 1024, MemFree: 100, MemAvailable: bytes / 1024, Buffers: 0, Cached: 0 });
}

function collector(h: FakeHost, o: Partial<NodeStatusOptions> = {}, clock = { now: Date.parse('2030-01-01T00:00:00Z') }) {
  return new NodeStatusCollector({ nodeName: 'n1', dataDir: '/var/lib/ledge', host: h, now: () => clock.now, ...o }, captureLog().logger);
}
const cond = (r: NodeStatusReport, type: string) => r.conditions.find((c) => c.type === type)!;
const statusOf = (r: NodeStatusReport) => Object.fromEntries(r.conditions.map((c) => [c.type, c.status]));

describe('node status report: capacity, allocatable, nodeInfo', () => {
  test('everything a kubelet reports, from the host', async () => {
    const h = new FakeHost();
    const r = await collector(h, { runtimeVersion: () => 'docker://4.3.1' }).collect(1, 'boot-1');
    assert.deepEqual(r.capacity, { cpu: '4', memory: `${4096 * 1024}Ki`, pods: '110', 'ephemeral-storage': `${(25_000_000 * 4096) / 1024}Ki` });
    assert.deepEqual(r.allocatable, {
      cpu: '4',
      memory: `${(4096 - 100) * 1024}Ki`, // capacity − memory.available<100Mi
      pods: '110',
      'ephemeral-storage': `${Math.floor((25_000_000 * 4096 * 0.9) / 1024)}Ki`, // − nodefs.available<10%
    });
    assert.deepEqual(r.nodeInfo, {
      operatingSystem: 'linux',
      architecture: 'amd64',
      kernelVersion: '6.1.0-18-amd64',
      osImage: 'Debian GNU/Linux 12 (bookworm)',
      containerRuntimeVersion: 'docker://4.3.1',
      kubeletVersion: 'v1.35.0-ledge',
      bootID: 'c8e1a19a-4243-4e17-8315-ab563bcc5285',
      machineID: '0123456789abcdef0123456789abcdef',
      systemUUID: '',
      hostname: 'edge-host',
      runtime: 'docker://4.3.1',
    });
    assert.deepEqual(r.addresses, [
      { type: 'Hostname', address: 'edge-host' },
      { type: 'InternalIP', address: '10.0.0.7' },
    ]);
    assert.deepEqual(r.images, []);
    assert.deepEqual(
      r.conditions.map(({ lastHeartbeatTime: _, ...c }) => c),
      [
        { type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'kubelet is posting ready status' },
        { type: 'MemoryPressure', status: 'False', reason: 'KubeletHasSufficientMemory', message: 'kubelet has sufficient memory available' },
        { type: 'DiskPressure', status: 'False', reason: 'KubeletHasNoDiskPressure', message: 'kubelet has no disk pressure' },
        { type: 'PIDPressure', status: 'False', reason: 'KubeletHasSufficientPID', message: 'kubelet has sufficient PID available' },
      ],
    );
    assert.equal(r.conditions[0]!.lastHeartbeatTime, '2030-01-01T00:00:00.000Z');
  });

  test('options: maxPods, kubeletVersion; no data dir: no ephemeral-storage; files that are absent give empty fields, not errors', async () => {
    const h = new FakeHost();
    delete h.files['/etc/os-release'];
    delete h.files['/etc/machine-id'];
    h.files['/usr/lib/os-release'] = "PRETTY_NAME='Alpine Linux v3.20'\n";
    const r = await collector(h, { maxPods: 32, kubeletVersion: 'v1.35.0-ledge-test', dataDir: undefined }).collect(1, 'b');
    assert.equal(r.capacity.pods, '32');
    assert.equal(r.allocatable.pods, '32');
    assert.equal(r.capacity['ephemeral-storage'], undefined);
    assert.equal(r.nodeInfo.kubeletVersion, 'v1.35.0-ledge-test');
    assert.equal(r.nodeInfo.osImage, 'Alpine Linux v3.20');
    assert.equal(r.nodeInfo.machineID, '');
    assert.equal(r.nodeInfo.containerRuntimeVersion, '', 'no runtime callback');
    assert.equal(cond(r, 'DiskPressure').status, 'False');
  });

  test('GOARCH names and os-release PRETTY_NAME parsing', () => {
    assert.deepEqual(
      ['x64', 'arm64', 'arm', 'ia32', 's390x', 'riscv64', 'mipsel'].map((a) => goArch(a)),
      ['amd64', 'arm64', 'arm', '386', 's390x', 'riscv64', 'mipsle'],
    );
    assert.equal(goArch('ppc64', 'LE'), 'ppc64le');
    assert.equal(goArch('ppc64', 'BE'), 'ppc64');
    assert.equal(prettyName('PRETTY_NAME=Plain\n'), 'Plain');
    assert.equal(prettyName('X=1\nPRETTY_NAME="Say \\"hi\\" \\$HOME"\n'), 'Say "hi" $HOME');
    assert.equal(prettyName('NAME=x\n'), undefined);
    assert.equal(prettyName(undefined), undefined);
  });
});

describe('node status report: pressure conditions at their thresholds', () => {
  test('MemoryPressure: MemAvailable just under 100Mi is pressure, at 100Mi it is not', async () => {
    const h = new FakeHost();
    setMemAvailable(h, 100 * Mi - 1024);
    const r = await collector(h).collect(1, 'b');
    assert.deepEqual(
      [cond(r, 'MemoryPressure').status, cond(r, 'MemoryPressure').reason, cond(r, 'MemoryPressure').message],
      ['True', 'KubeletHasInsufficientMemory', 'kubelet has insufficient memory available'],
    );
    setMemAvailable(h, 100 * Mi);
    assert.equal(cond(await collector(h).collect(1, 'b'), 'MemoryPressure').status, 'False');
    setMemAvailable(h, 300 * Mi);
    assert.equal(cond(await collector(h, { memoryAvailableMinBytes: 400 * Mi }).collect(1, 'b'), 'MemoryPressure').status, 'True', 'a configured threshold');
  });

  test('MemoryPressure without MemAvailable (old kernels): MemFree + Buffers + Cached; without /proc/meminfo: os.freemem()', async () => {
    const h = new FakeHost();
    h.files['/proc/meminfo'] = meminfo({ MemTotal: 4096 * 1024, MemFree: 40 * 1024, Buffers: 10 * 1024, Cached: 40 * 1024 });
    assert.equal(cond(await collector(h).collect(1, 'b'), 'MemoryPressure').status, 'True', '90Mi');
    h.files['/proc/meminfo'] = meminfo({ MemTotal: 4096 * 1024, MemFree: 40 * 1024, Buffers: 10 * 1024, Cached: 60 * 1024 });
    assert.equal(cond(await collector(h).collect(1, 'b'), 'MemoryPressure').status, 'False', '110Mi');
    delete h.files['/proc/meminfo'];
    assert.equal(cond(await collector(h, { memoryAvailableMinBytes: 322 * Mi }).collect(1, 'b'), 'MemoryPressure').status, 'True', 'freemem 321Mi');
  });

  test('DiskPressure: available space under 10%, or free inodes under 5%; the data directory is what is measured', async () => {
    const h = new FakeHost();
    h.fs = { bsize: 4096, blocks: 1000, bavail: 99, files: 1000, ffree: 500 };
    let r = await collector(h).collect(1, 'b');
    assert.deepEqual(
      [cond(r, 'DiskPressure').status, cond(r, 'DiskPressure').reason, cond(r, 'DiskPressure').message],
      ['True', 'KubeletHasDiskPressure', 'kubelet has disk pressure'],
    );
    assert.ok(h.reads.includes('statfs /var/lib/ledge'));
    h.fs = { bsize: 4096, blocks: 1000, bavail: 100, files: 1000, ffree: 500 };
    assert.equal(cond(await collector(h).collect(1, 'b'), 'DiskPressure').status, 'False', 'exactly 10%');
    h.fs = { bsize: 4096, blocks: 1000, bavail: 900, files: 1000, ffree: 49 };
    assert.equal(cond(await collector(h).collect(1, 'b'), 'DiskPressure').status, 'True', 'inodes 4.9%');
    h.fs = { bsize: 4096, blocks: 1000, bavail: 900, files: 0, ffree: 0 };
    assert.equal(cond(await collector(h).collect(1, 'b'), 'DiskPressure').status, 'False', 'a filesystem without an inode count');
    h.fs = { bsize: 4096, blocks: 1000, bavail: 250, files: 1000, ffree: 500 };
    r = await collector(h, { nodefsAvailableMinPercent: 30 }).collect(1, 'b');
    assert.equal(cond(r, 'DiskPressure').status, 'True', 'a configured threshold');
    h.fs = undefined;
    assert.equal(cond(await collector(h).collect(1, 'b'), 'DiskPressure').status, 'False', 'statfs failed: no signal');
  });

  test('PIDPressure: min(pid_max, threads-max) against /proc/loadavg’s task count', async () => {
    const h = new FakeHost();
    h.files['/proc/sys/kernel/pid_max'] = '1000\n';
    h.files['/proc/sys/kernel/threads-max'] = '500\n';
    h.files['/proc/loadavg'] = '0.10 0.20 0.30 2/451 999\n'; // 49 of 500 available: 9.8%
    let r = await collector(h).collect(1, 'b');
    assert.deepEqual(
      [cond(r, 'PIDPressure').status, cond(r, 'PIDPressure').reason, cond(r, 'PIDPressure').message],
      ['True', 'KubeletHasInsufficientPID', 'kubelet has insufficient PID available'],
    );
    h.files['/proc/loadavg'] = '0.10 0.20 0.30 2/450 999\n'; // exactly 10%
    assert.equal(cond(await collector(h).collect(1, 'b'), 'PIDPressure').status, 'False');
    h.files['/proc/loadavg'] = '0.10 0.20 0.30 2/300 999\n';
    r = await collector(h, { pidAvailableMinPercent: 50 }).collect(1, 'b');
    assert.equal(cond(r, 'PIDPressure').status, 'True', 'a configured threshold');
    delete h.files['/proc/loadavg'];
    assert.equal(cond(await collector(h).collect(1, 'b'), 'PIDPressure').status, 'False', 'unreadable: no signal');
  });

  test('a pressure stays True for the transition period after its signal recovered, with a log line each way', async () => {
    const h = new FakeHost();
    const clock = { now: Date.parse('2030-01-01T00:00:00Z') };
    const log = captureLog();
    const c = new NodeStatusCollector({ nodeName: 'n1', host: h, now: () => clock.now, pressureTransitionPeriodMs: 60_000 }, log.logger);
    setMemAvailable(h, 50 * Mi);
    assert.equal(cond(await c.collect(1, 'b'), 'MemoryPressure').status, 'True');
    assert.ok(log.has(/node reports MemoryPressure: memory\.available 50Mi < 100Mi/));
    setMemAvailable(h, 500 * Mi);
    clock.now += 10_000;
    assert.equal(cond(await c.collect(2, 'b'), 'MemoryPressure').status, 'True', '10 s after: still within the period');
    clock.now += 49_999;
    assert.equal(cond(await c.collect(3, 'b'), 'MemoryPressure').status, 'True', 'just under the period');
    clock.now += 1;
    const r = await c.collect(4, 'b');
    assert.equal(cond(r, 'MemoryPressure').status, 'False', 'the period passed without pressure');
    assert.equal(cond(r, 'MemoryPressure').reason, 'KubeletHasSufficientMemory');
    assert.ok(log.has(/no longer reports MemoryPressure/));
  });
});

describe('node status report: runtime callbacks, images, health and extra conditions', () => {
  test('images: the 50 largest, 5 names each, from the callback', async () => {
    const h = new FakeHost();
    const images = Array.from({ length: 60 }, (_, i) => ({ names: Array.from({ length: 7 }, (_, n) => `img${i}:${n}`), sizeBytes: (i * 7919) % 1000 }));
    const r = await collector(h, { images: async () => images }).collect(1, 'b');
    assert.equal(r.images.length, 50);
    const sizes = r.images.map((i) => i.sizeBytes);
    assert.deepEqual(sizes, [...images.map((i) => i.sizeBytes)].sort((a, b) => b - a).slice(0, 50));
    assert.ok(r.images.every((i) => i.names.length === 5));
  });

  test('the callbacks are asked once per refresh period; a failure keeps the last answer and logs once', async () => {
    const h = new FakeHost();
    const clock = { now: 0 };
    const log = captureLog();
    let calls = 0;
    let fail = false;
    const c = new NodeStatusCollector(
      {
        nodeName: 'n1',
        host: h,
        now: () => clock.now,
        runtimeInfoRefreshMs: 60_000,
        runtimeVersion: () => {
          calls++;
          if (fail) throw new Error('docker.sock: connection refused');
          return `docker://4.3.${calls}`;
        },
      },
      log.logger,
    );
    assert.equal((await c.collect(1, 'b')).nodeInfo.containerRuntimeVersion, 'docker://4.3.1');
    clock.now += 59_999;
    assert.equal((await c.collect(2, 'b')).nodeInfo.containerRuntimeVersion, 'docker://4.3.1');
    assert.equal(calls, 1, 'not asked again within the period');
    fail = true;
    for (let i = 0; i < 3; i++) {
      clock.now += 60_000;
      assert.equal((await c.collect(3 + i, 'b')).nodeInfo.containerRuntimeVersion, 'docker://4.3.1', 'the last answer is kept');
    }
    assert.equal(log.lines.filter((l) => /container runtime version unavailable/.test(String(l.msg))).length, 1);
    fail = false;
    clock.now += 60_000;
    assert.equal((await c.collect(9, 'b')).nodeInfo.containerRuntimeVersion, 'docker://4.3.5');
  });

  test('a health problem makes Ready False with its reason; extra conditions follow the kubelet ones', async () => {
    const h = new FakeHost();
    const r = await collector(h, {
      conditions: [() => ({ type: 'EdgeStoreFull', status: 'True', reason: 'EdgeStoreLimitReached', message: 'full' }), () => undefined],
    }).collect(1, 'b', { reason: 'EdgeStoreUnwritable', message: 'disk full' });
    assert.deepEqual(
      r.conditions.map((c) => [c.type, c.status, c.reason]),
      [
        ['Ready', 'False', 'EdgeStoreUnwritable'],
        ['MemoryPressure', 'False', 'KubeletHasSufficientMemory'],
        ['DiskPressure', 'False', 'KubeletHasNoDiskPressure'],
        ['PIDPressure', 'False', 'KubeletHasSufficientPID'],
        ['EdgeStoreFull', 'True', 'EdgeStoreLimitReached'],
      ],
    );
    assert.equal(cond(r, 'Ready').message, 'disk full');
  });

  test('per report only the small /proc files and one statfs are read; identity once', async () => {
    const h = new FakeHost();
    const c = collector(h);
    await c.collect(1, 'b');
    assert.ok(h.reads.includes('/etc/os-release') && h.reads.includes('/proc/sys/kernel/random/boot_id'));
    h.reads = [];
    await c.collect(2, 'b');
    assert.deepEqual(h.reads.sort(), ['/proc/loadavg', '/proc/meminfo', '/proc/sys/kernel/pid_max', '/proc/sys/kernel/threads-max', 'statfs /var/lib/ledge']);
  });
});

describe('node status reporter module', () => {
  test('sends the full report to EdgeHub, and reports at once when an extra condition changes', async () => {
    const h = new FakeHost();
    const received: Message[] = [];
    const bee = new Beehive({ log: captureLog().logger });
    let full = false;
    bee.register(
      createNodeStatusReporter({
        nodeName: 'n1',
        intervalMs: 600_000,
        healthPollMs: 20,
        dataDir: '/data',
        host: h,
        runtimeVersion: () => 'process://ledge',
        conditions: [() => ({ type: 'EdgeStoreFull', status: full ? 'True' : 'False', reason: full ? 'EdgeStoreLimitReached' : 'EdgeStoreHasRoom', message: '' })],
      }),
    );
    bee.register({
      name: 'websocket',
      group: 'hub',
      async start(ctx: ModuleContext, signal: AbortSignal) {
        for await (const m of ctx.messages(signal)) {
          received.push(m);
          await ctx.respond(m, null);
        }
      },
    });
    bee.start();
    try {
      await eventually(() => received.length >= 1, 10_000, 'the first report');
      const first = received[0]!;
      assert.equal(first.route.resource, 'default/nodestatus/n1');
      const r = first.content as NodeStatusReport;
      assert.equal(r.nodeInfo.containerRuntimeVersion, 'process://ledge');
      assert.equal(r.capacity['ephemeral-storage'], `${(25_000_000 * 4096) / 1024}Ki`);
      assert.equal(cond(r, 'EdgeStoreFull').status, 'False');
      full = true;
      const second = await eventually(() => received[1], 10_000, 'a report when EdgeStoreFull changes (the interval is 10 minutes)');
      assert.equal(statusOf(second.content as NodeStatusReport).EdgeStoreFull, 'True');
    } finally {
      await bee.stop();
    }
  });
});
