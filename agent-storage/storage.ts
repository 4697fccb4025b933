import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { VcstorError } from '../common/errors.js';
import { Filesystems } from '../common/filesystems.js';
import type { CreateVolumeRequest__Output } from '../common/generated/vcstor/v1/CreateVolumeRequest.js';
import type { DeleteVolumeRequest__Output } from '../common/generated/vcstor/v1/DeleteVolumeRequest.js';
import type { ExportIscsiRequest__Output } from '../common/generated/vcstor/v1/ExportIscsiRequest.js';
import type { ExportNfsRequest__Output } from '../common/generated/vcstor/v1/ExportNfsRequest.js';
import type { IscsiTarget } from '../common/generated/vcstor/v1/IscsiTarget.js';
import type { NfsClientRule__Output } from '../common/generated/vcstor/v1/NfsClientRule.js';
import type { NfsExport } from '../common/generated/vcstor/v1/NfsExport.js';
import type { UnexportIscsiRequest__Output } from '../common/generated/vcstor/v1/UnexportIscsiRequest.js';
import type { UnexportNfsRequest__Output } from '../common/generated/vcstor/v1/UnexportNfsRequest.js';
import type { Volume } from '../common/generated/vcstor/v1/Volume.js';
import { iscsiSessionParamsFromProto, iscsiSessionParamsToProto, sameIscsiSessionParams, setIscsiSessionParams, type IscsiSessionParamValues } from '../common/iscsi-params.js';
import { OperationLocks } from '../common/locks.js';
import type { Logger } from '../common/log.js';
import type { CommandRunner } from '../common/runner.js';
import type {
  IscsiExportSpec,
  IscsiTargetDriver,
  IscsiTargetState,
  NfsClientSpec,
  NfsExportSpec,
  NfsServerDriver,
  VolumeDriver,
  VolumeInfo,
} from './drivers/types.js';
import type { IscsiExportRecord, NfsExportRecord, StorageRecordStore } from './state.js';

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
}

/** "InitialR2T=Yes MaxBurstLength=65536", or "driver defaults". */
const describeParams = (values: IscsiSessionParamValues | undefined) => {
  const set = setIscsiSessionParams(values ?? {});
  return set.length === 0 ? 'driver defaults' : set.map(({ key, value }) => `${key.rfcKey}=${typeof value === 'boolean' ? (value ? 'Yes' : 'No') : value}`).join(' ');
};

const sorted = (values: readonly string[]) => [...values].sort();
const sameList = (a: readonly string[], b: readonly string[]) => JSON.stringify(sorted(a)) === JSON.stringify(sorted(b));

/**
 * The storage server: volumes from a pool, exported as iSCSI LUNs and over NFS. Every
 * mutating operation is idempotent, takes the volume's lock (ABORTED when busy), and
 * journals its intent in the agent's record before it changes a daemon, so that
 * `reconcile` can finish or repeat it after a crash or a daemon restart.
 */
export class StorageServer {
  private readonly locks = new OperationLocks();
  private readonly filesystems: Filesystems;
  /** NFS changes rewrite the server's whole export table: one at a time. */
  private nfsQueue: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: StorageServerOptions) {
    this.filesystems = new Filesystems(o.runner);
  }

  // ---- volumes ----

  private checkPool(pool: string): void {
    if (pool !== '' && pool !== this.o.volumes.pool) {
      throw new VcstorError('NOT_FOUND', `no pool ${pool} on this agent (it has ${this.o.volumes.pool})`);
    }
  }

  private async volumeOrThrow(name: string, signal: AbortSignal): Promise<VolumeInfo> {
    const volume = await this.o.volumes.get(name, signal);
    if (!volume) throw new VcstorError('NOT_FOUND', `no volume ${name} in pool ${this.o.volumes.pool}`);
    return volume;
  }

  /** Who uses a volume, per the record: "iscsi:<iqn>", "nfs:<path>". */
  private async usersOf(name: string): Promise<string[]> {
    const record = await this.o.record.load();
    return [
      ...record.iscsi.filter((e) => e.volume === name).map((e) => `iscsi:${e.iqn}`),
      ...record.nfs.filter((e) => e.volume === name).map((e) => `nfs:${e.path}`),
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
      for (const e of record.nfs.filter((r) => r.volume === request.name)) await this.removeNfs(e, signal);
      return this.o.volumes.delete(request.name, signal);
    });
  }

  async getVolume(name: string, pool: string, signal: AbortSignal): Promise<Volume> {
    this.checkPool(pool);
    return this.toVolume(await this.volumeOrThrow(name, signal));
  }

  async listVolumes(pool: string, signal: AbortSignal): Promise<Volume[]> {
    this.checkPool(pool);
    return Promise.all((await this.o.volumes.list(signal)).map((v) => this.toVolume(v)));
  }

  // ---- iSCSI ----

  /** The target spec of a record, less its backing path. */
  private specOf(e: IscsiExportRecord): Omit<IscsiExportSpec, 'backingPath'> {
    return {
      iqn: e.iqn,
      lun: e.lun,
      allowedInitiators: e.allowedInitiators,
      allowedAddresses: e.allowedAddresses,
      allowAnyInitiator: e.allowAnyInitiator,
      ...(e.chap ? { chap: e.chap } : {}),
      ...(e.sessionParams ? { sessionParams: e.sessionParams } : {}),
    };
  }

  private async exportSpec(e: IscsiExportRecord, signal: AbortSignal): Promise<IscsiExportSpec> {
    return { ...this.specOf(e), backingPath: await this.o.volumes.backingPath(e.volume, signal) };
  }

  private sameIscsi(a: IscsiExportRecord, b: IscsiExportRecord): boolean {
    return (
      a.iqn === b.iqn &&
      a.lun === b.lun &&
      a.allowAnyInitiator === b.allowAnyInitiator &&
      sameList(a.allowedInitiators, b.allowedInitiators) &&
      sameList(a.allowedAddresses, b.allowedAddresses) &&
      JSON.stringify(a.chap ?? null) === JSON.stringify(b.chap ?? null) &&
      sameIscsiSessionParams(a.sessionParams, b.sessionParams)
    );
  }

  async exportIscsi(request: ExportIscsiRequest__Output, signal: AbortSignal): Promise<{ target: IscsiTarget; created: boolean }> {
    this.checkPool(request.pool);
    return this.locks.with(`volume:${request.volume}`, `volume ${request.volume}`, async () => {
      const volume = await this.volumeOrThrow(request.volume, signal);
      const chap = request.chap && request.chap.username !== '' ? request.chap : undefined;
      const sessionParams = iscsiSessionParamsFromProto(request.sessionParams);
      const wanted: IscsiExportRecord = {
        state: 'active',
        volume: volume.name,
        pool: volume.pool,
        iqn: request.targetIqn || `${this.o.iqnPrefix}:${volume.name}`,
        lun: request.lun || this.o.target.defaultLun,
        allowedInitiators: sorted(request.allowedInitiators),
        allowedAddresses: sorted(request.allowedAddresses),
        allowAnyInitiator: request.allowAnyInitiator,
        ...(chap
          ? { chap: { username: chap.username, password: chap.password, ...(chap.mutualUsername ? { mutualUsername: chap.mutualUsername, mutualPassword: chap.mutualPassword } : {}) } }
          : {}),
        ...(setIscsiSessionParams(sessionParams).length > 0 ? { sessionParams } : {}),
        createdUnixMs: Date.now(),
      };
      const record = await this.o.record.load();
      const existing = record.iscsi.find((e) => e.volume === volume.name && e.state === 'active');
      if (existing) {
        if (!this.sameIscsi(existing, wanted)) {
          // Other session parameters are "another spec" too, although tgt could update a
          // target's parameters in place (LIO too): both copy them into a session at
          // login, so the sessions already logged in would keep the old values while the
          // export reported the new ones, and a benchmark would run under parameters its
          // report does not show. Unexporting (which drops the sessions) and exporting
          // again makes the change visible to every initiator.
          const what = this.sameIscsi({ ...existing, sessionParams: wanted.sessionParams }, wanted)
            ? `other session_params (${describeParams(existing.sessionParams)} now, ${describeParams(wanted.sessionParams)} asked); sessions keep what they negotiated at login, so unexport it (dropping its sessions) and export it again`
            : 'other settings; unexport it first';
          throw new VcstorError('ALREADY_EXISTS', `volume ${volume.name} is already exported as ${existing.iqn} with ${what}`);
        }
        await this.o.target.ensureExport(await this.exportSpec(existing, signal), signal);
        return { target: await this.describeTarget(existing.iqn, signal), created: false };
      }
      const clash = record.iscsi.find((e) => e.iqn === wanted.iqn);
      if (clash) throw new VcstorError('ALREADY_EXISTS', `target ${wanted.iqn} already exports volume ${clash.volume}`);
      for (const user of [wanted.chap?.username, wanted.chap?.mutualUsername].filter((u): u is string => !!u)) {
        const other = record.iscsi.find((e) => e.chap && (e.chap.username === user || e.chap.mutualUsername === user));
        const password = user === wanted.chap?.username ? wanted.chap?.password : wanted.chap?.mutualPassword;
        const otherPassword = other?.chap?.username === user ? other.chap.password : other?.chap?.mutualPassword;
        if (other && otherPassword !== password) {
          throw new VcstorError('FAILED_PRECONDITION', `CHAP user ${user} is used by target ${other.iqn} with another password; CHAP accounts are shared by the target server`);
        }
      }
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
      const state: IscsiTargetState = {
        iqn: spec.iqn,
        luns: [{ lun: spec.lun, backingPath: spec.backingPath }],
        allowedInitiators: spec.allowedInitiators,
        allowedAddresses: spec.allowedAddresses,
        allowAnyInitiator: spec.allowAnyInitiator,
        chapUsers: spec.chap ? [spec.chap.username] : [],
        ...(spec.chap?.mutualUsername ? { mutualChapUser: spec.chap.mutualUsername } : {}),
        sessions: [],
      };
      // Read back what the target offers now (one command for this target, not a listing).
      const offered = await this.offeredParams(spec.iqn, signal);
      return { target: this.toTarget(state, wanted, wanted.iqn, new Map([[volume.name, volume]]), offered), created: true };
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

  /**
   * @param offered the target's session parameters as read from the target server;
   *   without them, the export's requested ones are shown (absent keys unset).
   */
  private toTarget(state: IscsiTargetState | undefined, e: IscsiExportRecord | undefined, iqn: string, volumes: Map<string, VolumeInfo>, offered?: IscsiSessionParamValues): IscsiTarget {
    const sessionParams = offered ?? e?.sessionParams;
    return {
      iqn,
      luns: (state?.luns ?? []).map((l) => ({
        lun: l.lun,
        volume: e?.volume ?? '',
        backingPath: l.backingPath,
        sizeBytes: e ? (volumes.get(e.volume)?.sizeBytes ?? 0) : 0,
      })),
      allowedInitiators: state?.allowedInitiators ?? e?.allowedInitiators ?? [],
      allowedAddresses: state?.allowedAddresses ?? e?.allowedAddresses ?? [],
      allowAnyInitiator: state?.allowAnyInitiator ?? e?.allowAnyInitiator ?? false,
      chap: (state?.chapUsers.length ?? 0) > 0 || !!e?.chap,
      mutualChap: !!state?.mutualChapUser || !!e?.chap?.mutualUsername,
      chapUsername: e?.chap?.username ?? state?.chapUsers[0] ?? '',
      portals: this.o.target.portals(),
      sessions: (state?.sessions ?? []).map((s) => ({
        initiatorIqn: s.initiatorIqn,
        address: s.address,
        ...(s.negotiated ? { negotiated: iscsiSessionParamsToProto(s.negotiated) } : {}),
        negotiatedDetail: s.negotiatedDetail ?? '',
      })),
      driver: this.o.target.driver,
      ...(sessionParams ? { sessionParams: iscsiSessionParamsToProto(sessionParams) } : {}),
    };
  }

  private async describeTarget(iqn: string, signal: AbortSignal): Promise<IscsiTarget> {
    const [states, record] = await Promise.all([this.o.target.listTargets(signal), this.o.record.load()]);
    const e = record.iscsi.find((x) => x.iqn === iqn);
    const volume = e ? await this.o.volumes.get(e.volume, signal) : undefined;
    const offered = await this.offeredParams(iqn, signal);
    return this.toTarget(states.find((s) => s.iqn === iqn), e, iqn, new Map(volume ? [[volume.name, volume]] : []), offered);
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
      targets.push(this.toTarget(s, record.iscsi.find((e) => e.iqn === s.iqn), s.iqn, byName, offered));
    }
    return targets;
  }

  // ---- NFS ----

  private serialNfs<T>(work: () => Promise<T>): Promise<T> {
    const next = this.nfsQueue.then(work, work);
    this.nfsQueue = next.catch(() => undefined);
    return next;
  }

  /** Push the record's active exports to the NFS server. */
  private async applyNfs(signal: AbortSignal): Promise<void> {
    await this.serialNfs(async () => {
      const record = await this.o.record.load();
      const specs: NfsExportSpec[] = record.nfs
        .filter((e) => e.state === 'active')
        .map((e) => ({ exportId: e.exportId, path: e.path, pseudoPath: e.pseudoPath, clients: e.clients }));
      await this.o.nfs.apply(specs, signal);
    });
  }

  private clientSpec(rule: NfsClientRule__Output): NfsClientSpec {
    return {
      match: rule.match,
      access: rule.access === 'NFS_ACCESS_READ_ONLY' ? 'ro' : 'rw',
      sync: rule.sync !== 'NFS_SYNC_ASYNC',
      squash: rule.squash === 'NFS_SQUASH_NONE' ? 'none' : rule.squash === 'NFS_SQUASH_ALL' ? 'all' : 'root',
    };
  }

  private toNfsExport(e: NfsExportRecord): NfsExport {
    return {
      exportPath: e.path,
      pseudoPath: e.pseudoPath,
      volume: e.volume ?? '',
      pool: e.pool ?? '',
      clients: e.clients.map((c) => ({
        match: c.match,
        access: c.access === 'ro' ? 'NFS_ACCESS_READ_ONLY' : 'NFS_ACCESS_READ_WRITE',
        sync: c.sync ? 'NFS_SYNC_SYNC' : 'NFS_SYNC_ASYNC',
        squash: c.squash === 'none' ? 'NFS_SQUASH_NONE' : c.squash === 'all' ? 'NFS_SQUASH_ALL' : 'NFS_SQUASH_ROOT',
      })),
      driver: this.o.nfs.driver,
      exportId: e.exportId,
    };
  }

  /** Attach the volume's block device, make its filesystem if asked, mount it at `mountpoint`. */
  private async mountVolume(volume: string, mountpoint: string, makeFilesystem: string, signal: AbortSignal): Promise<string> {
    const device = await this.o.volumes.attachBlockDevice(volume, signal);
    let fsType = await this.filesystems.probe(device, signal);
    if (fsType === '') {
      if (makeFilesystem === '') {
        throw new VcstorError('FAILED_PRECONDITION', `volume ${volume} has no filesystem; set make_filesystem (e.g. ext4) to make one`);
      }
      await this.filesystems.ensure(device, makeFilesystem, { signal });
      fsType = makeFilesystem;
    }
    await this.filesystems.mount(device, mountpoint, { fsType, signal });
    return fsType;
  }

  async exportNfs(request: ExportNfsRequest__Output, signal: AbortSignal): Promise<{ export: NfsExport; created: boolean }> {
    this.checkPool(request.pool);
    const volumeName = request.source === 'volume' ? (request.volume ?? '') : undefined;
    const exportPath = volumeName !== undefined ? path.join(this.o.exportRoot, volumeName) : (request.directory ?? '');
    const key = volumeName !== undefined ? `volume:${volumeName}` : `nfs:${exportPath}`;
    return this.locks.with(key, volumeName !== undefined ? `volume ${volumeName}` : `export ${exportPath}`, async () => {
      if (volumeName !== undefined) await this.volumeOrThrow(volumeName, signal);
      const clients = request.clients.map((c) => this.clientSpec(c));
      const pseudoPath = request.pseudoPath || exportPath;
      const record = await this.o.record.load();
      const existing = record.nfs.find((e) => e.path === exportPath && e.state === 'active');
      if (existing) {
        if (existing.pseudoPath !== pseudoPath || JSON.stringify(existing.clients) !== JSON.stringify(clients)) {
          throw new VcstorError('ALREADY_EXISTS', `${exportPath} is already exported to other clients; unexport it first`);
        }
        if (existing.volume) await this.mountVolume(existing.volume, existing.path, existing.fsType ?? '', signal);
        await this.applyNfs(signal);
        return { export: this.toNfsExport(existing), created: false };
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
        await this.applyNfs(signal);
      } catch (err) {
        await this.o.record.update((r) => (r.nfs = r.nfs.filter((x) => x !== entry)));
        throw err;
      }
      this.o.log.info({ path: exportPath, volume: volumeName }, 'exported over NFS');
      return { export: this.toNfsExport(entry), created: true };
    });
  }

  private async removeNfs(e: NfsExportRecord, signal: AbortSignal): Promise<boolean> {
    await this.o.record.update(() => {
      e.state = 'removing';
    });
    await this.applyNfs(signal);
    if (e.volume) {
      await this.filesystems.unmount(e.path, signal);
      await this.o.volumes.detachBlockDevice(e.volume, signal);
    }
    await this.o.record.update((r) => (r.nfs = r.nfs.filter((x) => x !== e)));
    this.o.log.info({ path: e.path }, 'NFS export removed');
    return true;
  }

  async unexportNfs(request: UnexportNfsRequest__Output, signal: AbortSignal): Promise<boolean> {
    this.checkPool(request.pool);
    const record = await this.o.record.load();
    const e = record.nfs.find((x) => (request.source === 'volume' ? x.volume === request.volume : x.path === request.exportPath));
    if (!e) return false;
    const key = e.volume ? `volume:${e.volume}` : `nfs:${e.path}`;
    return this.locks.with(key, e.volume ? `volume ${e.volume}` : `export ${e.path}`, () => this.removeNfs(e, signal));
  }

  async listNfsExports(): Promise<NfsExport[]> {
    return (await this.o.record.load()).nfs.filter((e) => e.state === 'active').map((e) => this.toNfsExport(e));
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
        if (backing && this.targetMatches(targets.get(e.iqn), { ...this.specOf(e), backingPath: backing })) continue;
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
    for (const e of [...record.nfs]) {
      if (e.state === 'removing') {
        await this.removeNfs(e, signal).catch((err: unknown) => this.o.log.error({ err, path: e.path }, 'reconcile: NFS removal not finished'));
        repaired.push(`finished removing export ${e.path}`);
      } else if (e.volume) {
        const device = await this.filesystems.mountedAt(e.path);
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
    await this.applyNfs(signal);
    if (active.some((x) => !exported.has(x.path)) || exported.size !== active.length) repaired.push('re-applied NFS exports');
    if (repaired.length > 0) this.o.log.warn({ repaired }, 'reconciled with the record');
    return repaired;
  }

  private targetMatches(state: IscsiTargetState | undefined, spec: IscsiExportSpec): boolean {
    if (!state) return false;
    const lun = state.luns.find((l) => l.lun === spec.lun);
    return (
      lun?.backingPath === spec.backingPath &&
      state.allowAnyInitiator === spec.allowAnyInitiator &&
      sameList(state.allowedInitiators, spec.allowAnyInitiator ? [] : spec.allowedInitiators) &&
      sameList(state.allowedAddresses, spec.allowAnyInitiator ? [] : spec.allowedAddresses) &&
      sameList(state.chapUsers, spec.chap ? [spec.chap.username] : []) &&
      (state.mutualChapUser ?? '') === (spec.chap?.mutualUsername ?? '')
    );
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
