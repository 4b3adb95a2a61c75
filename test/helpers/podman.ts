/**
 * A private Podman API service for tests of the `container` runtime: `podman system service` on a
 * socket in a temporary directory, with its own storage (--root, --runroot, --tmpdir under that
 * directory, so the system's images and containers are neither used nor touched), its own
 * containers.conf (the one build/tools.mjs provisions, CONTAINERS_CONF) and its own bridge network
 * (a name, interface and /24 of its own, so two services on one machine do not share addresses).
 * Two images are imported into it, no registry needed: `localhost/local/busybox:latest` (a root
 * filesystem of Debian's busybox-static, one link per applet) and `localhost/local/pause:latest`
 * (catatonit in pause mode). Their tarballs are cached under .tools/podman/images.
 *
 * Needs root and the provisioning (.tools/podman/ready.json): {@link podmanSkipReason} says why
 * not, for a `describe(…, { skip })`. `stop()` removes every container, stops the service (its
 * process group), ends what it left behind (exec sessions' conmon processes, by pid, found by
 * this service's directory in their command line), unmounts and deletes the directory.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statfsSync,
  statSync,
  symlinkSync,
  writeFileSync,
  copyFileSync,
} from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { eventually, repoRoot } from './process.js';

export const BUSYBOX_IMAGE = 'localhost/local/busybox:latest';
export const PAUSE_IMAGE = 'localhost/local/pause:latest';

/** What build/tools.mjs records once Podman is provisioned. */
interface PodmanMarker {
  podman: string;
  version: string;
  containersConf: string;
  catatonit: string;
  busybox: string;
}

const markerFile = join(repoRoot, '.tools/podman/ready.json');
const imageCache = join(repoRoot, '.tools/podman/images');

function marker(): PodmanMarker | undefined {
  try {
    return JSON.parse(readFileSync(markerFile, 'utf8')) as PodmanMarker;
  } catch {
    return undefined;
  }
}

/** Why the Podman tests cannot run here (one sentence naming what to do), or undefined. */
export function podmanSkipReason(): string | undefined {
  if (process.platform !== 'linux') return 'the container runtime tests need Linux and Podman';
  if (process.getuid?.() !== 0) return 'the container runtime tests need root (they run a rootful Podman service); CI runs them as root';
  const m = marker();
  if (!m) return 'Podman is not provisioned (no .tools/podman/ready.json): run `sudo npm run tools` (it says why it could not)';
  for (const p of [m.podman, m.containersConf, m.catatonit, m.busybox])
    if (!existsSync(p)) return `Podman provisioning is incomplete (${p} is missing): run \`sudo npm run tools\``;
  return undefined;
}

export interface PodmanService {
  /** The Docker Engine API socket. */
  socketPath: string;
  /** `localhost/local/busybox:latest` (PATH set, CMD /bin/sh). */
  busyboxImage: string;
  /** `localhost/local/pause:latest` (catatonit -P), for the runtime's pauseImage. */
  pauseImage: string;
  /** The service's directory (storage, socket). */
  dir: string;
  /** The podman CLI on this service's storage; its stdout. Throws with stderr on failure. */
  podman(args: string[]): string;
  /** The service's output so far. */
  output(): string;
  /** Removes every container, stops the service and deletes its directory. Idempotent. */
  stop(): Promise<StopReport>;
}

export interface StopReport {
  /** Containers still there at stop() and removed by it. */
  removedContainers: number;
  /** Processes the service left (exec sessions' conmon) that were killed. */
  strayProcesses: number;
  /** Network namespaces of its containers still present after the cleanup (should be none). */
  netnsLeft: string[];
}

function run(cmd: string, args: string[], env?: NodeJS.ProcessEnv): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, timeout: 60_000, maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${(r.stderr || r.error?.message || '').trim().slice(-2000)}`);
  return r.stdout;
}

/** A root filesystem tarball, built once per source binary (its size and mtime) and cached. */
function cachedTarball(name: string, source: string, build: (rootfs: string) => void): string {
  mkdirSync(imageCache, { recursive: true });
  const st = statSync(source);
  const key = `${name}-${st.size}-${Math.floor(st.mtimeMs)}.tar`;
  const tar = join(imageCache, key);
  if (existsSync(tar)) return tar;
  const tmp = mkdtempSync(join(imageCache, `${name}-`));
  try {
    const rootfs = join(tmp, 'rootfs');
    mkdirSync(rootfs);
    build(rootfs);
    run('tar', ['-C', rootfs, '--numeric-owner', '--owner=0', '--group=0', '-cf', join(tmp, 'image.tar'), '.']);
    renameSync(join(tmp, 'image.tar'), tar);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  for (const f of readdirSync(imageCache)) if (f.startsWith(`${name}-`) && f.endsWith('.tar') && f !== key) rmSync(join(imageCache, f), { force: true });
  return tar;
}

function busyboxTarball(busybox: string): string {
  return cachedTarball('busybox', busybox, (rootfs) => {
    for (const d of ['bin', 'etc', 'tmp', 'root']) mkdirSync(join(rootfs, d));
    chmodSync(join(rootfs, 'tmp'), 0o1777);
    copyFileSync(busybox, join(rootfs, 'bin/busybox'));
    chmodSync(join(rootfs, 'bin/busybox'), 0o755);
    for (const applet of run(busybox, ['--list'])
      .split('\n')
      .map((s) => s.trim())) {
      if (applet && applet !== 'busybox' && !applet.includes('/')) symlinkSync('busybox', join(rootfs, 'bin', applet));
    }
    writeFileSync(join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
    writeFileSync(join(rootfs, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
  });
}

function pauseTarball(catatonit: string): string {
  return cachedTarball('pause', catatonit, (rootfs) => {
    copyFileSync(catatonit, join(rootfs, 'catatonit'));
    chmodSync(join(rootfs, 'catatonit'), 0o755);
  });
}

/** A /24 in 10.0.0.0/8 no route of this host uses (the service's bridge network). */
function freeSubnet(): string {
  const used = new Set<string>();
  try {
    for (const line of readFileSync('/proc/net/route', 'utf8').split('\n').slice(1)) {
      const dest = line.split('\t')[1];
      if (dest && dest.length === 8) {
        const b = Buffer.from(dest, 'hex'); // little-endian
        used.add(`${b[0]}.${b[1]}.${b[2]}`);
      }
    }
  } catch {
    // no routes readable: take a random one
  }
  for (;;) {
    const r = randomBytes(2);
    const prefix = `10.${100 + ((r[0] ?? 0) % 100)}.${r[1] ?? 0}`;
    if (!used.has(prefix)) return `${prefix}.0/24`;
  }
}

const OVERLAYFS_MAGIC = 0x794c7630;

function ping(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path: '/_ping', timeout: 2000 }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve(res.statusCode === 200 && body.trim() === 'OK'));
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
  });
}

function api<T>(socketPath: string, method: string, path: string): Promise<{ status: number; body: T | undefined }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method, path: `/v1.41${path}`, timeout: 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let body: T | undefined;
        try {
          body = text ? (JSON.parse(text) as T) : undefined;
        } catch {
          body = undefined;
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out`)));
    req.end();
  });
}

/** Pids of processes whose command line mentions `dir/` (what a service started from it left behind). */
function processesUnder(dir: string): number[] {
  const needle = Buffer.from(`${dir}/`);
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`).includes(needle)) out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out.filter((pid) => pid !== process.pid);
}

/** Mount points at or under `dir`, deepest first. */
function mountsUnder(dir: string): string[] {
  const unoctal = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => unoctal(l.split(' ')[4] ?? ''))
    .filter((mp) => mp === dir || mp.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

/** Starts a private Podman service and imports the test images; call `stop()` in an `after` hook. */
export async function startPodman(options: { readyTimeoutMs?: number } = {}): Promise<PodmanService> {
  const why = podmanSkipReason();
  const m = marker();
  if (why || !m) throw new Error(why ?? 'Podman is not provisioned');
  const dir = mkdtempSync('/tmp/ledge-podman-'); // short: a unix socket path has at most 107 bytes
  const socketPath = join(dir, 'podman.sock');
  const netDir = join(dir, 'net');
  mkdirSync(netDir);
  // Its own network: a name, bridge and /24 of its own, as the default network of this service.
  const network = `ledge-${randomBytes(4).toString('hex')}`;
  const subnet = freeSubnet();
  const gateway = subnet.replace(/\.0\/24$/, '.1');
  writeFileSync(
    join(netDir, `${network}.json`),
    JSON.stringify({
      name: network,
      id: randomBytes(32).toString('hex'),
      driver: 'bridge',
      network_interface: network,
      created: new Date().toISOString(),
      subnets: [{ subnet, gateway }],
      ipv6_enabled: false,
      internal: false,
      dns_enabled: false,
      ipam_options: { driver: 'host-local' },
    }),
  );
  const conf = readFileSync(m.containersConf, 'utf8');
  const networkLines = `default_network = "${network}"\ndefault_subnet = "${subnet}"\n`;
  writeFileSync(join(dir, 'containers.conf'), conf.includes('[network]\n') ? conf.replace('[network]\n', `[network]\n${networkLines}`) : `${conf}\n[network]\n${networkLines}`);
  let driver = 'overlay';
  try {
    if (statfsSync(dir).type === OVERLAYFS_MAGIC) driver = 'vfs'; // overlay on overlayfs does not mount
  } catch {
    // keep overlay
  }
  writeFileSync(join(dir, 'storage.conf'), `[storage]\ndriver = "${driver}"\nrunroot = "${dir}/run"\ngraphroot = "${dir}/root"\n`);
  const env = { ...process.env, CONTAINERS_CONF: join(dir, 'containers.conf'), CONTAINERS_STORAGE_CONF: join(dir, 'storage.conf') };
  const global = ['--root', join(dir, 'root'), '--runroot', join(dir, 'run'), '--tmpdir', join(dir, 'tmp'), '--network-config-dir', netDir];
  const podman = (args: string[]) => run(m.podman, [...global, ...args], env);

  let child: ChildProcess | undefined;
  let out = '';
  let stopped: Promise<StopReport> | undefined;
  const stop = (): Promise<StopReport> => {
    stopped ??= cleanup();
    return stopped;
  };

  const cleanup = async (): Promise<StopReport> => {
    const report: StopReport = { removedContainers: 0, strayProcesses: 0, netnsLeft: [] };
    const netns = new Set<string>();
    if (child && child.exitCode === null && child.signalCode === null) {
      try {
        const list = await api<{ Id: string }[]>(socketPath, 'GET', '/containers/json?all=1');
        for (const c of list.body ?? []) {
          const info = await api<{ NetworkSettings?: { SandboxKey?: string } }>(socketPath, 'GET', `/containers/${c.Id}/json`);
          const key = info.body?.NetworkSettings?.SandboxKey;
          if (key) netns.add(key);
          await api(socketPath, 'POST', `/containers/${c.Id}/stop?t=0`);
          const del = await api(socketPath, 'DELETE', `/containers/${c.Id}?force=1&v=1`);
          if (del.status === 204 || del.status === 200) report.removedContainers++;
        }
      } catch {
        // the service is gone: the CLI below removes what is left
      }
    }
    try {
      podman(['rm', '--all', '--force', '--time', '0']);
    } catch {
      // nothing left, or storage unusable: the directory goes anyway
    }
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child?.once('exit', r));
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        // already gone
      }
      let timer: NodeJS.Timeout | undefined;
      const late = await Promise.race([exited.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), 10_000)))]);
      clearTimeout(timer);
      if (late) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // gone
        }
        await exited;
      }
    }
    for (const pid of processesUnder(dir)) {
      try {
        process.kill(pid, 'SIGKILL');
        report.strayProcesses++;
      } catch {
        // gone
      }
    }
    for (const mp of mountsUnder(dir)) {
      if (spawnSync('umount', [mp], { stdio: 'ignore' }).status !== 0) spawnSync('umount', ['-l', mp], { stdio: 'ignore' });
    }
    rmSync(dir, { recursive: true, force: true });
    report.netnsLeft = [...netns].filter((p) => existsSync(p));
    return report;
  };

  try {
    podman(['import', '--change', 'CMD ["/bin/sh"]', '--change', 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin', busyboxTarball(m.busybox), 'local/busybox']);
    podman(['import', '--change', 'ENTRYPOINT ["/catatonit","-P"]', pauseTarball(m.catatonit), 'local/pause']);
    child = spawn(m.podman, [...global, 'system', 'service', '--time=0', `unix://${socketPath}`], { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const onData = (d: Buffer) => {
      out += d.toString();
      if (process.env.LEDGE_TEST_VERBOSE) process.stderr.write(`[podman] ${d}`);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    const proc = child;
    await eventually(
      async () => {
        if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`podman system service exited (${proc.exitCode ?? proc.signalCode}): ${out.slice(-2000)}`);
        return ping(socketPath);
      },
      options.readyTimeoutMs ?? 20_000,
      `podman system service on ${socketPath}`,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { socketPath, busyboxImage: BUSYBOX_IMAGE, pauseImage: PAUSE_IMAGE, dir, podman, output: () => out, stop };
}
