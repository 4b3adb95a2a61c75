/**
 * Test helpers for reading the real files EdgeCore and the harness write.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readRecords } from '../../shared/wal/index.js';
import { decodeRecord } from '../../edge/metamanager/store.js';

export function tempDir(prefix = 'ledge-test-'): { path: string; cleanup: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

export interface MetaRecord {
  t: 'put' | 'del' | 'ids';
  k?: string;
  rv?: string;
  v?: unknown;
  id?: string;
}

/** Every record of an edge metadata store log (meta.log), in order (either record format). */
export function readMetaLog(dataDir: string): MetaRecord[] {
  const file = join(dataDir, 'meta.log');
  if (!existsSync(file)) return [];
  return readRecords(readFileSync(file)).records.map((r) => decodeRecord(r) as MetaRecord);
}

/** JSON lines of a file (the harness's logs of ACKed and received messages). */
export function readJsonLines<T>(file: string): T[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as T);
}
