import { mkdir, open, readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import type { IscsiSessionParamValues } from '../common/iscsi-params.js';
import type { ChapCredentials, NfsClientSpec } from './drivers/types.js';

/**
 * The storage agent's own record of what it exported. It is the truth the agent
 * re-applies when it or a daemon restarts, so it is written before the change it
 * describes (an intent), and a removal is marked before it is carried out. The file
 * holds CHAP secrets: mode 0600, never logged.
 */

/** Lifecycle of a record: `removing` survives a crash mid-removal and is finished later. */
export type RecordState = 'active' | 'removing';

export interface IscsiExportRecord {
  state: RecordState;
  volume: string;
  pool: string;
  iqn: string;
  lun: number;
  allowedInitiators: string[];
  allowedAddresses: string[];
  allowAnyInitiator: boolean;
  chap?: ChapCredentials;
  /** What the target offers at login, as requested (absent keys: the driver's defaults). */
  sessionParams?: IscsiSessionParamValues;
  createdUnixMs: number;
}

export interface NfsExportRecord {
  state: RecordState;
  exportId: number;
  path: string;
  pseudoPath: string;
  /** Set when the export is a volume's filesystem, mounted at `path`. */
  volume?: string;
  pool?: string;
  fsType?: string;
  clients: NfsClientSpec[];
  createdUnixMs: number;
}

export interface StorageRecord {
  version: 1;
  iscsi: IscsiExportRecord[];
  nfs: NfsExportRecord[];
  /** Export ids are never reused, so a client never meets an old id on a new export. */
  nextExportId: number;
}

const EMPTY: StorageRecord = { version: 1, iscsi: [], nfs: [], nextExportId: 1 };

/** Reads and writes the record atomically (temp file, fsync, rename). */
export class StorageRecordStore {
  private readonly file: string;
  /** Writes are serialised so two concurrent changes never interleave. */
  private writing: Promise<unknown> = Promise.resolve();
  private current: StorageRecord | undefined;

  constructor(stateDir: string) {
    this.file = path.join(stateDir, 'storage-record.json');
  }

  get location(): string {
    return this.file;
  }

  async load(): Promise<StorageRecord> {
    if (this.current) return this.current;
    try {
      const parsed = JSON.parse(await readFile(this.file, 'utf8')) as StorageRecord;
      this.current = { ...EMPTY, ...parsed };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      this.current = structuredClone(EMPTY);
    }
    return this.current;
  }

  /** Apply `change` to the record and persist it before returning. */
  update<T>(change: (record: StorageRecord) => T): Promise<T> {
    const next = this.writing.then(async () => {
      const record = await this.load();
      const result = change(record);
      await this.persist(record);
      return result;
    });
    this.writing = next.catch(() => undefined);
    return next;
  }

  private async persist(record: StorageRecord): Promise<void> {
    await mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.tmp`;
    const handle = await open(tmp, 'w', 0o600);
    try {
      await handle.writeFile(`${JSON.stringify(record, null, 2)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, this.file);
  }
}
