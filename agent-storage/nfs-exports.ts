import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { VcstorError } from '../common/errors.js';
import type { Filesystems } from '../common/filesystems.js';
import type { ExportNfsRequest__Output } from '../common/generated/vcstor/v1/ExportNfsRequest.js';
import type { NfsExport } from '../common/generated/vcstor/v1/NfsExport.js';
import type { UnexportNfsRequest__Output } from '../common/generated/vcstor/v1/UnexportNfsRequest.js';
import { SerialQueue, type OperationLocks } from '../common/locks.js';
import type { Logger } from '../common/log.js';
import type { NfsExportSpec, NfsServerDriver, VolumeDriver } from './drivers/types.js';
import type { NfsExportRecord, StorageRecord, StorageRecordStore } from './state.js';
import { nfsClientSpec, requireVolume, toNfsExport } from './storage-records.js';

/** What the NFS exports share with the rest of the storage server. */
export interface NfsExportsOptions {
  volumes: VolumeDriver;
  nfs: NfsServerDriver;
  record: StorageRecordStore;
  log: Logger;
  /** Volume filesystems are mounted, and so exported, under here. */
  exportRoot: string;
  /** The server's per-volume locks: a volume is exported one way at a time. */
  locks: OperationLocks;
  filesystems: Filesystems;
}

/**
 * The storage server's NFS exports: a directory, or a volume's filesystem mounted under
 * the export root. Like the iSCSI side, each change is idempotent, takes the volume's
 * (or the path's) lock, and is journaled in the record before the NFS server changes.
 */
export class NfsExports {
  /** NFS changes rewrite the server's whole export table: one at a time. */
  private readonly queue = new SerialQueue();

  constructor(private readonly o: NfsExportsOptions) {}

  /** Push the record's active exports to the NFS server. */
  private async apply(signal: AbortSignal): Promise<void> {
    await this.queue.run(async () => {
      const record = await this.o.record.load();
      const specs: NfsExportSpec[] = record.nfs
        .filter((e) => e.state === 'active')
        .map((e) => ({ exportId: e.exportId, path: e.path, pseudoPath: e.pseudoPath, clients: e.clients }));
      await this.o.nfs.apply(specs, signal);
    });
  }

  /** Attach the volume's block device, make its filesystem if asked, mount it at `mountpoint`. */
  private async mountVolume(volume: string, mountpoint: string, makeFilesystem: string, signal: AbortSignal): Promise<string> {
    const device = await this.o.volumes.attachBlockDevice(volume, signal);
    let fsType = await this.o.filesystems.probe(device, signal);
    if (fsType === '') {
      if (makeFilesystem === '') {
        throw new VcstorError('FAILED_PRECONDITION', `volume ${volume} has no filesystem; set make_filesystem (e.g. ext4) to make one`);
      }
      await this.o.filesystems.ensure(device, makeFilesystem, { signal });
      fsType = makeFilesystem;
    }
    await this.o.filesystems.mount(device, mountpoint, { fsType, signal });
    return fsType;
  }

  /** ExportNfs, the pool already checked. */
  async export(request: ExportNfsRequest__Output, signal: AbortSignal): Promise<{ export: NfsExport; created: boolean }> {
    const volumeName = request.source === 'volume' ? (request.volume ?? '') : undefined;
    const exportPath = volumeName !== undefined ? path.join(this.o.exportRoot, volumeName) : (request.directory ?? '');
    const key = volumeName !== undefined ? `volume:${volumeName}` : `nfs:${exportPath}`;
    return this.o.locks.with(key, volumeName !== undefined ? `volume ${volumeName}` : `export ${exportPath}`, async () => {
      if (volumeName !== undefined) await requireVolume(this.o.volumes, volumeName, signal);
      const clients = request.clients.map((c) => nfsClientSpec(c));
      const pseudoPath = request.pseudoPath || exportPath;
      const record = await this.o.record.load();
      const existing = record.nfs.find((e) => e.path === exportPath && e.state === 'active');
      if (existing) {
        if (existing.pseudoPath !== pseudoPath || JSON.stringify(existing.clients) !== JSON.stringify(clients)) {
          throw new VcstorError('ALREADY_EXISTS', `${exportPath} is already exported to other clients; unexport it first`);
        }
        if (existing.volume) await this.mountVolume(existing.volume, existing.path, existing.fsType ?? '', signal);
        await this.apply(signal);
        return { export: toNfsExport(existing, this.o.nfs.driver), created: false };
      }
      if (record.nfs.some((e) => e.pseudoPath === pseudoPath)) throw new VcstorError('ALREADY_EXISTS', `pseudo path ${pseudoPath} is taken by another export`);
      let fsType: string | undefined;
      if (volumeName !== undefined) fsType = await this.mountVolume(volumeName, exportPath, request.makeFilesystem, signal);
      else await mkdir(exportPath, { recursive: true });
      const entry = await this.o.record.update((r) => {
        const e: NfsExportRecord = {
          state: 'active',
          exportId: r.nextExportId++,
          path: exportPath,
          pseudoPath,
          ...(volumeName !== undefined ? { volume: volumeName, pool: this.o.volumes.pool, fsType } : {}),
          clients,
          createdUnixMs: Date.now(),
        };
        r.nfs.push(e);
        return e;
      });
      try {
        await this.apply(signal);
      } catch (err) {
        await this.o.record.update((r) => (r.nfs = r.nfs.filter((x) => x !== entry)));
        throw err;
      }
      this.o.log.info({ path: exportPath, volume: volumeName }, 'exported over NFS');
      return { export: toNfsExport(entry, this.o.nfs.driver), created: true };
    });
  }

  /** Remove an export: mark it, drop it from the NFS server, unmount the volume, forget it. The caller holds the lock. */
  async remove(e: NfsExportRecord, signal: AbortSignal): Promise<boolean> {
    await this.o.record.update(() => {
      e.state = 'removing';
    });
    await this.apply(signal);
    if (e.volume) {
      await this.o.filesystems.unmount(e.path, signal);
      await this.o.volumes.detachBlockDevice(e.volume, signal);
    }
    await this.o.record.update((r) => (r.nfs = r.nfs.filter((x) => x !== e)));
    this.o.log.info({ path: e.path }, 'NFS export removed');
    return true;
  }

  /** UnexportNfs, the pool already checked: false when there is no such export. */
  async unexport(request: UnexportNfsRequest__Output, signal: AbortSignal): Promise<boolean> {
    const record = await this.o.record.load();
    const e = record.nfs.find((x) => (request.source === 'volume' ? x.volume === request.volume : x.path === request.exportPath));
    if (!e) return false;
    const key = e.volume ? `volume:${e.volume}` : `nfs:${e.path}`;
    return this.o.locks.with(key, e.volume ? `volume ${e.volume}` : `export ${e.path}`, () => this.remove(e, signal));
  }

  /** The active exports, from the record. */
  async list(): Promise<NfsExport[]> {
    return (await this.o.record.load()).nfs.filter((e) => e.state === 'active').map((e) => toNfsExport(e, this.o.nfs.driver));
  }

  /**
   * The NFS half of the server's reconcile, on the record it loaded: finish removals,
   * remount volume filesystems, and apply the exports again. Returns what it repaired.
   */
  async reconcile(record: StorageRecord, signal: AbortSignal): Promise<string[]> {
    const repaired: string[] = [];
    for (const e of [...record.nfs]) {
      if (e.state === 'removing') {
        await this.remove(e, signal).catch((err: unknown) => this.o.log.error({ err, path: e.path }, 'reconcile: NFS removal not finished'));
        repaired.push(`finished removing export ${e.path}`);
      } else if (e.volume) {
        const device = await this.o.filesystems.mountedAt(e.path);
        if (!device) {
          await this.mountVolume(e.volume, e.path, '', signal).catch((err: unknown) => this.o.log.error({ err, path: e.path }, 'reconcile: volume not remounted'));
          repaired.push(`remounted ${e.volume} at ${e.path}`);
        }
      }
    }
    // The driver's apply is cheap when nothing differs, so it always runs: it also
    // repairs what a path comparison cannot see (a stale or hand-edited export).
    const exported = new Set(await this.o.nfs.listExportedPaths(signal));
    const active = record.nfs.filter((x) => x.state === 'active');
    await this.apply(signal);
    if (active.some((x) => !exported.has(x.path)) || exported.size !== active.length) repaired.push('re-applied NFS exports');
    return repaired;
  }
}
