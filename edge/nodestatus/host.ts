/**
 * @module
 * What the node status says about the host: identity (nodeInfo), capacity and the
 * pressure signals kubelet's eviction manager watches, read from small files (/proc,
 * /etc) and one statfs of the data directory. Everything goes through a
 * {@link HostReader}, so tests feed fake /proc contents; the default reads the real host.
 *
 * Cost per report: /proc/meminfo, /proc/loadavg, pid_max and threads-max (each under a
 * few KiB, served from kernel memory) and one statfs(2). Identity and CPU/memory capacity
 * are read once, at start.
 */
import { readFileSync, statfsSync } from 'node:fs';
import os from 'node:os';

/** statfs(2) of a path, as fs.statfs gives it (block counts in `bsize` units). */
export interface FsStats {
  bsize: number;
  blocks: number;
  /** Blocks available to unprivileged users. */
  bavail: number;
  files: number;
  ffree: number;
}

/** The host as the node status reads it (the test seam). */
export interface HostReader {
  /** A small text file (/proc, /etc), or undefined when it is absent or unreadable. */
  readText(path: string): string | undefined;
  /** statfs of `path`, or undefined when it fails. */
  statfs(path: string): FsStats | undefined;
  cpuCount(): number;
  totalMemoryBytes(): number;
  /** Fallback when /proc/meminfo is absent (not Linux). */
  freeMemoryBytes(): number;
  hostname(): string;
  kernelRelease(): string;
  /** Node's process.platform (`linux`, `darwin`, …): Go's GOOS for the platforms both know. */
  platform(): string;
  /** Node's process.arch (`x64`, `arm64`, …). */
  arch(): string;
  endianness(): 'BE' | 'LE';
  networkInterfaces(): NodeJS.Dict<os.NetworkInterfaceInfo[]>;
}

/** The real host. */
export const systemHost: HostReader = {
  readText(path) {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return undefined;
    }
  },
  statfs(path) {
    try {
      const s = statfsSync(path);
      return { bsize: s.bsize, blocks: s.blocks, bavail: s.bavail, files: s.files, ffree: s.ffree };
    } catch {
      return undefined;
    }
  },
  // availableParallelism would count this process' affinity; capacity is the machine's (cAdvisor's NumCores).
  cpuCount: () => os.cpus().length || 1,
  totalMemoryBytes: () => os.totalmem(),
  freeMemoryBytes: () => os.freemem(),
  hostname: () => os.hostname(),
  kernelRelease: () => os.release(),
  platform: () => process.platform,
  arch: () => process.arch,
  endianness: () => os.endianness(),
  networkInterfaces: () => os.networkInterfaces(),
};

/** Node's process.arch → Go's GOARCH (what Kubernetes' `kubernetes.io/arch` and nodeInfo.architecture use). */
export function goArch(arch: string, endianness: 'BE' | 'LE' = 'LE'): string {
  switch (arch) {
    case 'x64':
      return 'amd64';
    case 'ia32':
      return '386';
    case 'ppc64':
      return endianness === 'LE' ? 'ppc64le' : 'ppc64';
    case 'mipsel':
      return 'mipsle';
    default:
      // arm, arm64, s390x, riscv64, loong64, mips: the same names.
      return arch;
  }
}

/** What does not change while EdgeCore runs: nodeInfo's identity and the CPU/memory capacity. */
export interface StaticHostInfo {
  osImage: string;
  kernelVersion: string;
  operatingSystem: string;
  architecture: string;
  /** The machine's boot (changes on reboot), from /proc/sys/kernel/random/boot_id. */
  bootID: string;
  machineID: string;
  systemUUID: string;
  cpu: number;
  memoryBytes: number;
}

/** PRETTY_NAME of an os-release file (shell-style quoting), or undefined. */
export function prettyName(osRelease: string | undefined): string | undefined {
  if (!osRelease) return undefined;
  for (const line of osRelease.split('\n')) {
    const m = /^\s*PRETTY_NAME\s*=\s*(.*?)\s*$/.exec(line);
    if (!m) continue;
    let v = m[1]!;
    if ((v.startsWith('"') && v.endsWith('"')) || (v.startsWith("'") && v.endsWith("'"))) v = v.slice(1, -1);
    v = v.replace(/\\(["'$`\\])/g, '$1');
    return v || undefined;
  }
  return undefined;
}

const firstLine = (s: string | undefined): string => (s ?? '').split('\n')[0]!.trim();

export function readStaticInfo(h: HostReader): StaticHostInfo {
  const platform = h.platform();
  return {
    // os-release(5): /etc/os-release, else /usr/lib/os-release; cAdvisor falls back to "Linux".
    osImage: prettyName(h.readText('/etc/os-release')) ?? prettyName(h.readText('/usr/lib/os-release')) ?? (platform === 'linux' ? 'Linux' : platform),
    kernelVersion: h.kernelRelease(),
    operatingSystem: platform,
    architecture: goArch(h.arch(), h.endianness()),
    bootID: firstLine(h.readText('/proc/sys/kernel/random/boot_id')),
    machineID: firstLine(h.readText('/etc/machine-id') ?? h.readText('/var/lib/dbus/machine-id')),
    // Readable by root only on most machines: empty otherwise, as a kubelet without access reports it.
    systemUUID: firstLine(h.readText('/sys/class/dmi/id/product_uuid')),
    cpu: h.cpuCount(),
    memoryBytes: h.totalMemoryBytes(),
  };
}

/** One observation of the signals the pressure conditions are computed from; a field is undefined when it cannot be read. */
export interface HostSample {
  memoryAvailableBytes?: number;
  fs?: { capacityBytes: number; availableBytes: number; inodes: number; inodesFree: number };
  pids?: { max: number; running: number };
}

/** A `Key:  <n> kB` field of /proc/meminfo, in bytes. */
function meminfoField(text: string, key: string): number | undefined {
  const m = new RegExp(`^${key}:\\s+(\\d+)(?:\\s+kB)?\\s*$`, 'm').exec(text);
  return m ? Number(m[1]) * 1024 : undefined;
}

/** Reads the pressure signals (see the module's cost note). `dataDir` undefined: no filesystem signal. */
export function sampleHost(h: HostReader, dataDir: string | undefined): HostSample {
  const out: HostSample = {};
  const meminfo = h.readText('/proc/meminfo');
  if (meminfo !== undefined) {
    // MemAvailable (Linux ≥ 3.14): the kernel's estimate of what can be allocated without swapping.
    const avail = meminfoField(meminfo, 'MemAvailable');
    if (avail !== undefined) out.memoryAvailableBytes = avail;
    else {
      const parts = ['MemFree', 'Buffers', 'Cached'].map((k) => meminfoField(meminfo, k));
      if (parts.every((p) => p !== undefined)) out.memoryAvailableBytes = parts.reduce((a, b) => a! + b!, 0);
    }
  } else {
    out.memoryAvailableBytes = h.freeMemoryBytes();
  }
  if (dataDir !== undefined) {
    const s = h.statfs(dataDir);
    if (s && s.blocks > 0) out.fs = { capacityBytes: s.blocks * s.bsize, availableBytes: s.bavail * s.bsize, inodes: s.files, inodesFree: s.ffree };
  }
  // pid.available as kubelet computes it: min(pid_max, threads-max) − the scheduling entities in use (/proc/loadavg's 4th field, "running/total").
  const limits = ['/proc/sys/kernel/pid_max', '/proc/sys/kernel/threads-max'].map((p) => Number.parseInt(firstLine(h.readText(p)), 10)).filter((n) => Number.isFinite(n) && n > 0);
  const total = /^\S+\s+\S+\s+\S+\s+\d+\/(\d+)/.exec(h.readText('/proc/loadavg') ?? '');
  if (limits.length > 0 && total) out.pids = { max: Math.min(...limits), running: Number(total[1]) };
  return out;
}

/** The thresholds of the pressure conditions (kubelet's hard eviction signals). */
export interface PressureThresholds {
  /** MemoryPressure while MemAvailable is below this (kubelet: memory.available<100Mi). */
  memoryAvailableMinBytes: number;
  /** DiskPressure while the data directory's filesystem has less than this % available (kubelet: nodefs.available<10%). */
  nodefsAvailableMinPercent: number;
  /** DiskPressure while it has less than this % of its inodes free (kubelet: nodefs.inodesFree<5%). */
  nodefsInodesFreeMinPercent: number;
  /** PIDPressure while fewer than this % of the PIDs are available (kubelet has no default; pid.available<10%). */
  pidAvailableMinPercent: number;
}

export type PressureType = 'MemoryPressure' | 'DiskPressure' | 'PIDPressure';

/** Which thresholds `s` crosses, with a one-line description of each (for the log). */
export function pressures(s: HostSample, t: PressureThresholds): Map<PressureType, string> {
  const out = new Map<PressureType, string>();
  const mi = (b: number) => `${Math.round(b / 1024 / 1024)}Mi`;
  const pct = (a: number, b: number) => (b > 0 ? (100 * a) / b : 100);
  if (s.memoryAvailableBytes !== undefined && s.memoryAvailableBytes < t.memoryAvailableMinBytes) {
    out.set('MemoryPressure', `memory.available ${mi(s.memoryAvailableBytes)} < ${mi(t.memoryAvailableMinBytes)}`);
  }
  if (s.fs) {
    const avail = pct(s.fs.availableBytes, s.fs.capacityBytes);
    const inodes = s.fs.inodes > 0 ? pct(s.fs.inodesFree, s.fs.inodes) : 100; // some filesystems (btrfs) report no inode count
    if (avail < t.nodefsAvailableMinPercent) out.set('DiskPressure', `nodefs.available ${avail.toFixed(1)}% < ${t.nodefsAvailableMinPercent}%`);
    else if (inodes < t.nodefsInodesFreeMinPercent) out.set('DiskPressure', `nodefs.inodesFree ${inodes.toFixed(1)}% < ${t.nodefsInodesFreeMinPercent}%`);
  }
  if (s.pids) {
    const avail = pct(s.pids.max - s.pids.running, s.pids.max);
    if (avail < t.pidAvailableMinPercent)
      out.set('PIDPressure', `pid.available ${s.pids.max - s.pids.running} of ${s.pids.max} (${avail.toFixed(1)}%) < ${t.pidAvailableMinPercent}%`);
  }
  return out;
}

/** Kubelet's reasons and messages of the pressure conditions (pkg/kubelet/nodestatus), without and with pressure. */
export const pressureTexts: Record<PressureType, { ok: [string, string]; pressure: [string, string] }> = {
  MemoryPressure: {
    ok: ['KubeletHasSufficientMemory', 'kubelet has sufficient memory available'],
    pressure: ['KubeletHasInsufficientMemory', 'kubelet has insufficient memory available'],
  },
  DiskPressure: {
    ok: ['KubeletHasNoDiskPressure', 'kubelet has no disk pressure'],
    pressure: ['KubeletHasDiskPressure', 'kubelet has disk pressure'],
  },
  PIDPressure: {
    ok: ['KubeletHasSufficientPID', 'kubelet has sufficient PID available'],
    pressure: ['KubeletHasInsufficientPID', 'kubelet has insufficient PID available'],
  },
};

/** Quantity of bytes in Ki, as a kubelet writes memory and ephemeral-storage. */
export const kib = (bytes: number): string => `${Math.max(0, Math.floor(bytes / 1024))}Ki`;
