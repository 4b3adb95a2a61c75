/**
 * @module
 * The durable mapper registry, `<dataDir>/devicetwin/mappers.json`: which mapper serves which
 * protocol at which socket, and what each was last sent (a fingerprint per device and model).
 * KubeEdge's mapper-framework mappers register once and never again, so after an EdgeCore restart
 * this file is the only way to find them; the fingerprints tell a device the mapper already holds
 * (RegisterDevice, a no-op there) from one whose spec changed while EdgeCore was down
 * (UpdateDevice: a framework mapper ignores RegisterDevice for a device it holds).
 *
 * Written whole and atomically (temporary file, fsync, rename, fsync of the directory): a crash
 * leaves the old file or the new one. Writes are serialized and coalesced: a save requested while
 * one runs is served by the next write, which takes the state as it is then.
 */
import { ErrorCode } from '../../../shared/errors/index.js';
import { mkdirSync, readFileSync, renameSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { StorageError, errorMessage } from '../../../shared/errors/index.js';
import type { Logger } from '../../../shared/log/index.js';
import type { OpenFile } from '../../../shared/wal/index.js';

/** One mapper, as recorded. */
export interface MapperRecord {
  /** The routing key: devices whose spec.protocol.protocolName equals it go to this mapper. */
  protocol: string;
  name: string;
  version: string;
  apiVersion: string;
  /** The mapper's unix socket path (from MapperInfo.address). */
  address: string;
  state: string;
  /** RFC 3339, of the last MapperRegister. */
  registeredAt: string;
  /** What the mapper was last sent successfully: device key (`ns/name`) → fingerprint. */
  devices: Record<string, string>;
  /** Same for device models. */
  models: Record<string, string>;
}

interface RegistryFile {
  version: 1;
  mappers: MapperRecord[];
}

function isStringMap(v: unknown): v is Record<string, string> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string');
}

function validRecord(r: unknown): r is MapperRecord {
  if (typeof r !== 'object' || r === null) return false;
  const o = r as Record<string, unknown>;
  return (
    typeof o.protocol === 'string' &&
    o.protocol !== '' &&
    typeof o.address === 'string' &&
    o.address !== '' &&
    ['name', 'version', 'apiVersion', 'state', 'registeredAt'].every((k) => typeof o[k] === 'string') &&
    isStringMap(o.devices) &&
    isStringMap(o.models)
  );
}

/** Reads the registry. Missing → empty; unreadable or malformed → empty, the bad file kept aside as `.bad`, one error line. */
export function loadRegistry(path: string, log: Logger): MapperRecord[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    log.error(`cannot read the DMI mapper registry ${path}; starting without recorded mappers`, { code: ErrorCode.Storage, error: errorMessage(err) });
    return [];
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    parsed = err;
  }
  const file = parsed as Partial<RegistryFile> | undefined;
  if (typeof file !== 'object' || file === null || file.version !== 1 || !Array.isArray(file.mappers)) {
    log.error(`the DMI mapper registry ${path} is not valid; kept as ${path}.bad, starting without recorded mappers (they are recorded again when they register)`, {
      code: ErrorCode.Storage,
    });
    try {
      renameSync(path, `${path}.bad`);
    } catch {
      // Keeping the bad copy is a courtesy; the next write replaces the file anyway.
    }
    return [];
  }
  const out: MapperRecord[] = [];
  let dropped = 0;
  for (const r of file.mappers) {
    if (validRecord(r)) out.push(r);
    else dropped++;
  }
  if (dropped > 0) log.error(`the DMI mapper registry ${path} has ${dropped} malformed record(s); they are ignored`, { code: ErrorCode.Storage });
  return out;
}

async function fsyncDir(dir: string): Promise<void> {
  try {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    // Some filesystems refuse fsync on a directory; the rename itself is still atomic.
  }
}

/** Writes the registry file atomically and durably; saves are serialized and coalesced. */
export class RegistryWriter {
  private writing = false;
  private waiters: { resolve: () => void; reject: (err: unknown) => void }[] = [];

  constructor(
    readonly path: string,
    /** The records to write, read when a write starts (so the newest state wins). */
    private readonly snapshot: () => MapperRecord[],
    private readonly openFile: OpenFile = (p, flags) => open(p, flags),
  ) {}

  /** Resolves once a write that started after this call is durable; rejects with StorageError. */
  save(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      if (!this.writing) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.writing = true;
    while (this.waiters.length > 0) {
      const batch = this.waiters.splice(0);
      try {
        await this.write(JSON.stringify({ version: 1, mappers: this.snapshot() } satisfies RegistryFile, null, 1));
        for (const w of batch) w.resolve();
      } catch (err) {
        for (const w of batch) w.reject(err);
      }
    }
    this.writing = false;
  }

  private async write(text: string): Promise<void> {
    const tmp = `${this.path}.tmp-${process.pid}`;
    try {
      mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
      const fh = await this.openFile(tmp, 'w');
      try {
        await fh.writeFile(text);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, this.path);
      await fsyncDir(dirname(this.path));
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => {});
      throw new StorageError(`cannot write the DMI mapper registry ${this.path}: ${errorMessage(err)}`, { cause: err });
    }
  }
}
