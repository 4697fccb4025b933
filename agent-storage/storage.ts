import { VcstorError } from '../common/errors.js';
import { Filesystems } from '../common/filesystems.js';
import type { CreateVolumeRequest__Output } from '../common/generated/vcstor/v1/CreateVolumeRequest.js';
import type { DeleteVolumeRequest__Output } from '../common/generated/vcstor/v1/DeleteVolumeRequest.js';
import type { ExportIscsiRequest__Output } from '../common/generated/vcstor/v1/ExportIscsiRequest.js';
import type { ExportNfsRequest__Output } from '../common/generated/vcstor/v1/ExportNfsRequest.js';
import type { IscsiTarget } from '../common/generated/vcstor/v1/IscsiTarget.js';
import type { NfsExport } from '../common/generated/vcstor/v1/NfsExport.js';
import type { UnexportIscsiRequest__Output } from '../common/generated/vcstor/v1/UnexportIscsiRequest.js';
import type { UnexportNfsRequest__Output } from '../common/generated/vcstor/v1/UnexportNfsRequest.js';
import type { Volume } from '../common/generated/vcstor/v1/Volume.js';
import type { IscsiSessionParamValues } from '../common/iscsi-params.js';
import { OperationLocks } from '../common/locks.js';
import type { Logger } from '../common/log.js';
import type { CommandRunner } from '../common/runner.js';
import type { IscsiExportSpec, IscsiTargetDriver, NfsServerDriver, ParallelFsDriver, VolumeDriver, VolumeInfo } from './drivers/types.js';
import { NfsExports } from './nfs-exports.js';
import { ParallelFsServer } from './parallel-fs.js';
import type { IscsiExportRecord, StorageRecordStore } from './state.js';
import {
  checkChapAccounts,
  describeParams,
  iscsiRecordOf,
  newTargetState,
  requireVolume,
  sameIscsiExport,
  targetMatches,
  targetSpecOf,
  toIscsiTarget,
} from './storage-records.js';

export interface StorageServerOptions {
  volumes: VolumeDriver;
  target: IscsiTargetDriver;
  nfs: NfsServerDriver;
  record: StorageRecordStore;
  runner: CommandRunner;
  log: Logger;
  /** Targets are named <iqnPrefix>:<volume> unless a request names one. */
  iqnPrefix: string;
  /** Volume filesystems are mounted, and directories exported, under here. */
  exportRoot: string;
  /** The parallel file system's daemon, where this server runs one. */
  parallelFs?: ParallelFsDriver;
  /** Volume filesystems given as bricks of a parallel file system are mounted under here (default /srv/vcstor-bricks). */
  brickRoot?: string;
}

/**
 * The storage server: volumes from a pool, exported as iSCSI LUNs and over NFS. Every
 * mutating operation is idempotent, takes the volume's lock (ABORTED when busy), and
 * journals its intent in the agent's record before it changes a daemon, so that
 * `reconcile` can finish or repeat it after a crash or a daemon restart.
 */
export class StorageServer {
  private readonly locks = new OperationLocks();
  private readonly nfs: NfsExports;
  /** Bricks and the parallel file systems over them (parallel-fs.ts). */
  readonly parallelFs: ParallelFsServer;

  constructor(private readonly o: StorageServerOptions) {
    const filesystems = new Filesystems(o.runner);
    this.nfs = new NfsExports({ ...o, locks: this.locks, filesystems });
    this.parallelFs = new ParallelFsServer({ volumes: o.volumes, ...(o.parallelFs ? { driver: o.parallelFs } : {}), filesystems, locks: this.locks, log: o.log, brickRoot: o.brickRoot ?? '/srv/vcstor-bricks' });
  }

  // ---- volumes ----

  private checkPool(pool: string): void {
    if (pool !== '' && pool !== this.o.volumes.pool) {
      throw new VcstorError('NOT_FOUND', `no pool ${pool} on this agent (it has ${this.o.volumes.pool})`);
    }
  }

  /** Who uses a volume, per the record and the mounted bricks: "iscsi:<iqn>", "nfs:<path>", "brick:<path>". */
  private async usersOf(name: string): Promise<string[]> {
    const record = await this.o.record.load();
    const brick = await this.parallelFs.brickOf(name);
    return [
      ...record.iscsi.filter((e) => e.volume === name).map((e) => `iscsi:${e.iqn}`),
      ...record.nfs.filter((e) => e.volume === name).map((e) => `nfs:${e.path}`),
      ...(brick ? [`brick:${brick}`] : []),
    ];
  }

  private async toVolume(volume: VolumeInfo): Promise<Volume> {
    const record = await this.o.record.load();
    const nfs = record.nfs.find((e) => e.volume === volume.name);
    return {
      ...volume,
      provisioning: volume.provisioning === 'sparse' ? 'PROVISIONING_SPARSE' : 'PROVISIONING_PREALLOCATED',
      inUseBy: await this.usersOf(volume.name),
      fsType: nfs?.fsType ?? '',
    };
  }

  async createVolume(request: CreateVolumeRequest__Output, signal: AbortSignal): Promise<{ volume: Volume; created: boolean }> {
    this.checkPool(request.pool);
    const { totalBytes } = await this.o.volumes.capacity(signal);
    const sizeBytes = this.o.volumes.roundSize(request.sizeBytes);
    if (sizeBytes > totalBytes) {
      throw new VcstorError('INVALID_ARGUMENT', `size_bytes: ${request.sizeBytes} bytes is more than pool ${this.o.volumes.pool} holds (${totalBytes} bytes)`);
    }
    return this.locks.with(`volume:${request.name}`, `volume ${request.name}`, async () => {
      const started = performance.now();
      let lastLog = 0;
      const { volume, created } = await this.o.volumes.create(
        { name: request.name, sizeBytes, provisioning: request.provisioning === 'PROVISIONING_SPARSE' ? 'sparse' : 'preallocated' },
        {
          signal,
          onProgress: (done, total) => {
            if (performance.now() - lastLog > 1000) {
              lastLog = performance.now();
              this.o.log.info({ volume: request.name, done, total }, 'zero-filling');
            }
          },
        },
      );
      if (created) this.o.log.info({ volume: volume.name, bytes: volume.sizeBytes, ms: Math.round(performance.now() - started) }, 'volume created');
      return { volume: await this.toVolume(volume), created };
    });
  }

  async deleteVolume(request: DeleteVolumeRequest__Output, signal: AbortSignal): Promise<boolean> {
    this.checkPool(request.pool);
    return this.locks.with(`volume:${request.name}`, `volume ${request.name}`, async () => {
      const users = await this.usersOf(request.name);
      if (users.length > 0 && !request.force) {
        throw new VcstorError('FAILED_PRECONDITION', `volume ${request.name} is in use (${users.join(', ')}); unexport it first or set force`);
      }
      const record = await this.o.record.load();
      for (const e of record.iscsi.filter((r) => r.volume === request.name)) await this.removeIscsi(e, true, signal);
      for (const e of record.nfs.filter((r) => r.volume === request.name)) await this.nfs.remove(e, signal);
      await this.parallelFs.removeBrick(request.name, signal);
      return this.o.volumes.delete(request.name, signal);
    });
  }

  async getVolume(name: string, pool: string, signal: AbortSignal): Promise<Volume> {
    this.checkPool(pool);
    return this.toVolume(await requireVolume(this.o.volumes, name, signal));
  }

  async listVolumes(pool: string, signal: AbortSignal): Promise<Volume[]> {
    this.checkPool(pool);
    return Promise.all((await this.o.volumes.list(signal)).map((v) => this.toVolume(v)));
  }

  // ---- iSCSI ----

  private async exportSpec(e: IscsiExportRecord, signal: AbortSignal): Promise<IscsiExportSpec> {
    return { ...targetSpecOf(e), backingPath: await this.o.volumes.backingPath(e.volume, signal) };
  }

  async exportIscsi(request: ExportIscsiRequest__Output, signal: AbortSignal): Promise<{ target: IscsiTarget; created: boolean }> {
    this.checkPool(request.pool);
    return this.locks.with(`volume:${request.volume}`, `volume ${request.volume}`, async () => {
      const volume = await requireVolume(this.o.volumes, request.volume, signal);
      const wanted = iscsiRecordOf(request, volume, this.o.iqnPrefix, this.o.target.defaultLun);
      const record = await this.o.record.load();
      const existing = record.iscsi.find((e) => e.volume === volume.name && e.state === 'active');
      if (existing) {
        if (!sameIscsiExport(existing, wanted)) {
          // Other session parameters are "another spec" too, although tgt could update a
          // target's parameters in place (LIO too): both copy them into a session at
          // login, so the sessions already logged in would keep the old values while the
          // export reported the new ones, and a benchmark would run under parameters its
          // report does not show. Unexporting (which drops the sessions) and exporting
          // again makes the change visible to every initiator.
          const what = sameIscsiExport({ ...existing, sessionParams: wanted.sessionParams }, wanted)
            ? `other session_params (${describeParams(existing.sessionParams)} now, ${describeParams(wanted.sessionParams)} asked); sessions keep what they negotiated at login, so unexport it (dropping its sessions) and export it again`
            : 'other settings; unexport it first';
          throw new VcstorError('ALREADY_EXISTS', `volume ${volume.name} is already exported as ${existing.iqn} with ${what}`);
        }
        await this.o.target.ensureExport(await this.exportSpec(existing, signal), signal);
        return { target: await this.describeTarget(existing.iqn, signal), created: false };
      }
      const clash = record.iscsi.find((e) => e.iqn === wanted.iqn);
      if (clash) throw new VcstorError('ALREADY_EXISTS', `target ${wanted.iqn} already exports volume ${clash.volume}`);
      checkChapAccounts(record.iscsi, wanted);
      await this.o.record.update((r) => r.iscsi.push(wanted));
      let spec: IscsiExportSpec;
      try {
        spec = await this.exportSpec(wanted, signal);
        await this.o.target.ensureExport(spec, signal);
      } catch (err) {
        await this.o.target.removeTarget(wanted.iqn, true, new AbortController().signal).catch(() => undefined);
        await this.o.record.update((r) => (r.iscsi = r.iscsi.filter((e) => e !== wanted && e.iqn !== wanted.iqn)));
        throw err;
      }
      this.o.log.info({ volume: volume.name, iqn: wanted.iqn }, 'exported over iSCSI');
      // A target ensureExport just made is exactly `spec`, with no session yet: answering
      // from it spares listing every target on the server (O(N) per export).
      const state = newTargetState(spec);
      // Read back what the target offers now (one command for this target, not a listing).
      const offered = await this.offeredParams(spec.iqn, signal);
      return { target: toIscsiTarget(this.o.target, state, wanted, wanted.iqn, new Map([[volume.name, volume]]), offered), created: true };
    });
  }

  /** Remove an export: mark it, remove the target, then forget it. */
  private async removeIscsi(e: IscsiExportRecord, force: boolean, signal: AbortSignal): Promise<boolean> {
    await this.o.record.update(() => {
      e.state = 'removing';
    });
    try {
      await this.o.target.removeTarget(e.iqn, force, signal);
    } catch (err) {
      await this.o.record.update(() => {
        e.state = 'active';
      });
      throw err;
    }
    await this.o.record.update((r) => (r.iscsi = r.iscsi.filter((x) => x !== e)));
    this.o.log.info({ volume: e.volume, iqn: e.iqn }, 'iSCSI export removed');
    return true;
  }

  async unexportIscsi(request: UnexportIscsiRequest__Output, signal: AbortSignal): Promise<boolean> {
    this.checkPool(request.pool);
    const record = await this.o.record.load();
    const e = record.iscsi.find((x) => (request.targetIqn !== '' ? x.iqn === request.targetIqn : x.volume === request.volume));
    if (!e) return false;
    return this.locks.with(`volume:${e.volume}`, `volume ${e.volume}`, () => this.removeIscsi(e, request.force, signal));
  }

  private async describeTarget(iqn: string, signal: AbortSignal): Promise<IscsiTarget> {
    const [states, record] = await Promise.all([this.o.target.listTargets(signal), this.o.record.load()]);
    const e = record.iscsi.find((x) => x.iqn === iqn);
    const volume = e ? await this.o.volumes.get(e.volume, signal) : undefined;
    const offered = await this.offeredParams(iqn, signal);
    return toIscsiTarget(this.o.target, states.find((s) => s.iqn === iqn), e, iqn, new Map(volume ? [[volume.name, volume]] : []), offered);
  }

  /**
   * What a target offers, read from the target server; a target whose parameters cannot
   * be read is still described (with the export's requested ones), and the reason logged.
   */
  private async offeredParams(iqn: string, signal: AbortSignal): Promise<IscsiSessionParamValues | undefined> {
    try {
      return await this.o.target.readSessionParams(iqn, signal);
    } catch (err) {
      if (signal.aborted) throw err;
      this.o.log.warn({ err, iqn }, 'could not read the target session parameters');
      return undefined;
    }
  }

  /** Every target on the target server, with the agent's knowledge of its volume. */
  async listIscsiTargets(signal: AbortSignal): Promise<IscsiTarget[]> {
    // One after the other: with Promise.all a failing target listing would answer the
    // call while the volume listing still ran its commands in the background.
    const states = await this.o.target.listTargets(signal);
    const [record, volumes] = await Promise.all([this.o.record.load(), this.o.volumes.list(signal)]);
    const byName = new Map(volumes.map((v) => [v.name, v]));
    const targets: IscsiTarget[] = [];
    // One target at a time: tgtd serves its control socket one request at a time, and
    // a burst of N shows is no faster than N in turn.
    for (const s of states) {
      const offered = await this.offeredParams(s.iqn, signal);
      targets.push(toIscsiTarget(this.o.target, s, record.iscsi.find((e) => e.iqn === s.iqn), s.iqn, byName, offered));
    }
    return targets;
  }

  // ---- NFS ----

  async exportNfs(request: ExportNfsRequest__Output, signal: AbortSignal): Promise<{ export: NfsExport; created: boolean }> {
    this.checkPool(request.pool);
    return this.nfs.export(request, signal);
  }

  async unexportNfs(request: UnexportNfsRequest__Output, signal: AbortSignal): Promise<boolean> {
    this.checkPool(request.pool);
    return this.nfs.unexport(request, signal);
  }

  async listNfsExports(): Promise<NfsExport[]> {
    return this.nfs.list();
  }

  // ---- convergence ----

  /**
   * Make the daemons match the record: finish removals a crash interrupted, re-create
   * targets and exports a restarted tgtd or ganesha lost, remount volume filesystems.
   * Records busy with an operation are skipped this round. Returns what it repaired.
   */
  async reconcile(signal: AbortSignal): Promise<string[]> {
    const repaired: string[] = [];
    const record = await this.o.record.load();
    const targets = new Map((await this.o.target.listTargets(signal)).map((t) => [t.iqn, t]));
    for (const e of [...record.iscsi]) {
      // Only what needs repair takes a lock; a volume busy with a client call is skipped
      // this round (and the client never waits on a no-op check).
      if (e.state === 'active') {
        const backing = await this.o.volumes.backingPath(e.volume, signal).catch(() => undefined);
        if (backing && targetMatches(targets.get(e.iqn), { ...targetSpecOf(e), backingPath: backing })) continue;
      }
      await this.locks
        .tryBackground(`volume:${e.volume}`, async () => {
          if (!record.iscsi.includes(e)) return;
          if (e.state === 'removing') {
            await this.removeIscsi(e, true, signal);
            repaired.push(`finished removing target ${e.iqn}`);
            return;
          }
          await this.o.target.ensureExport(await this.exportSpec(e, signal), signal);
          repaired.push(`re-applied target ${e.iqn}`);
        })
        .catch((err: unknown) => this.o.log.error({ err, iqn: e.iqn }, 'reconcile: target not repaired'));
    }
    repaired.push(...(await this.nfs.reconcile(record, signal)));
    if (repaired.length > 0) this.o.log.warn({ repaired }, 'reconciled with the record');
    return repaired;
  }

  /** Reconcile now, then every `intervalMs` until `stop` aborts. */
  startReconcileLoop(intervalMs: number, stop: AbortSignal): void {
    const tick = async () => {
      if (stop.aborted) return;
      try {
        await this.reconcile(stop);
      } catch (err) {
        if (!stop.aborted) this.o.log.error({ err }, 'reconcile failed; will retry');
      }
      if (!stop.aborted) setTimeout(tick, intervalMs).unref();
    };
    setTimeout(tick, intervalMs).unref();
  }
}
