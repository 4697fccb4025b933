import { readFile, realpath, statfs } from 'node:fs/promises';
import { VcstorError } from '../common/errors.js';
import { Filesystems } from '../common/filesystems.js';
import type { FilesystemMount } from '../common/generated/vcstor/v1/FilesystemMount.js';
import type { FilesystemUsage } from '../common/generated/vcstor/v1/FilesystemUsage.js';
import type { IscsiLoginRequest__Output } from '../common/generated/vcstor/v1/IscsiLoginRequest.js';
import type { IscsiLoginResponse } from '../common/generated/vcstor/v1/IscsiLoginResponse.js';
import type { IscsiLogoutRequest__Output } from '../common/generated/vcstor/v1/IscsiLogoutRequest.js';
import type { IscsiSession } from '../common/generated/vcstor/v1/IscsiSession.js';
import type { MakeFilesystemRequest__Output } from '../common/generated/vcstor/v1/MakeFilesystemRequest.js';
import type { MakeFilesystemResponse } from '../common/generated/vcstor/v1/MakeFilesystemResponse.js';
import type { MountFilesystemRequest__Output } from '../common/generated/vcstor/v1/MountFilesystemRequest.js';
import type { NfsMount } from '../common/generated/vcstor/v1/NfsMount.js';
import type { NfsMountRequest__Output } from '../common/generated/vcstor/v1/NfsMountRequest.js';
import type { ParallelFsMount } from '../common/generated/vcstor/v1/ParallelFsMount.js';
import type { ParallelFsMountRequest__Output } from '../common/generated/vcstor/v1/ParallelFsMountRequest.js';
import { iscsiSessionParamsFromProto, iscsiSessionParamsToProto, setIscsiSessionParams } from '../common/iscsi-params.js';
import { OperationLocks } from '../common/locks.js';
import type { Logger } from '../common/log.js';
import type { CommandRunner } from '../common/runner.js';
import { isWithin, validateHostPort } from '../common/validate.js';
import type { IscsiInitiatorDriver, IscsiSessionInfo, NfsClientDriver, ParallelFsClientDriver } from './types.js';

/**
 * What dom0 hosts and guests do alike with storage: iSCSI sessions, NFS mounts and
 * filesystems. Requests arrive validated; every mutating call is idempotent.
 */
export class HostStorage {
  private readonly filesystems: Filesystems;
  private readonly locks = new OperationLocks();

  constructor(
    private readonly o: {
      runner: CommandRunner;
      log: Logger;
      initiator: IscsiInitiatorDriver;
      nfsClient: NfsClientDriver;
      /** The client of a parallel file system, where the host has one configured. */
      parallelFsClient?: ParallelFsClientDriver;
      /** The initiator IQN used when a request names none. */
      defaultInitiatorIqn?: string;
      /** Filesystems are mounted only under these. */
      mountRoots: readonly string[];
    },
  ) {
    this.filesystems = new Filesystems(o.runner);
  }

  private initiatorIqn(requested: string): string {
    const iqn = requested || this.o.defaultInitiatorIqn;
    if (!iqn) throw new VcstorError('FAILED_PRECONDITION', 'no initiator_iqn in the request and none configured (iscsiInitiator.initiatorIqn)');
    return iqn;
  }

  private toSession(s: IscsiSessionInfo): IscsiSession {
    return {
      target: { portal: `${s.host}:${s.port}`, iqn: s.targetIqn, lun: s.lun },
      initiatorIqn: s.initiatorIqn,
      devicePath: s.devicePath,
      state: s.state === 'logged-in' ? 'ISCSI_SESSION_STATE_LOGGED_IN' : s.state === 'broken' ? 'ISCSI_SESSION_STATE_BROKEN' : 'ISCSI_SESSION_STATE_UNCERTAIN',
      sizeBytes: s.sizeBytes,
      driver: this.o.initiator.driver,
      detail: s.detail,
      ...(s.negotiated ? { negotiated: iscsiSessionParamsToProto(s.negotiated) } : {}),
      negotiatedDetail: s.negotiatedDetail ?? '',
    };
  }

  private targetOf(request: { target: IscsiLoginRequest__Output['target']; initiatorIqn: string }) {
    const target = request.target!;
    const { host, port } = validateHostPort('target.portal', target.portal, 3260);
    return { host, port, targetIqn: target.iqn, lun: target.lun, initiatorIqn: this.initiatorIqn(request.initiatorIqn) };
  }

  async iscsiLogin(request: IscsiLoginRequest__Output, signal: AbortSignal): Promise<IscsiLoginResponse> {
    const t = this.targetOf(request);
    // LUN 0 is "the first data LUN": each initiator driver finds (or assumes) which that is.
    const lun = t.lun;
    return this.locks.with(`iscsi:${t.host}:${t.port}/${t.targetIqn}/${lun}/${t.initiatorIqn}`, `the session to ${t.targetIqn}`, async () => {
      const chap = request.chap && request.chap.username !== '' ? request.chap : undefined;
      const sessionParams = iscsiSessionParamsFromProto(request.sessionParams);
      const { session, alreadyLoggedIn, sessionParamsApplied, sessionParamsDetail } = await this.o.initiator.login(
        {
          ...t,
          lun,
          ...(setIscsiSessionParams(sessionParams).length > 0 ? { sessionParams } : {}),
          headerDigest: request.headerDigest,
          timeoutMs: request.timeoutMs || 30_000,
          ...(chap ? { chap: { username: chap.username, password: chap.password, ...(chap.mutualUsername ? { mutualUsername: chap.mutualUsername, mutualPassword: chap.mutualPassword } : {}) } } : {}),
        },
        signal,
      );
      if (!alreadyLoggedIn) this.o.log.info({ target: t.targetIqn, device: session.devicePath, sessionParamsApplied }, 'iSCSI login');
      if (sessionParamsDetail !== '') this.o.log.warn({ target: t.targetIqn, requested: sessionParams }, sessionParamsDetail);
      return {
        session: this.toSession(session),
        alreadyLoggedIn,
        sessionParamsApplied: iscsiSessionParamsToProto(sessionParamsApplied),
        sessionParamsDetail,
      };
    });
  }

  async iscsiLogout(request: IscsiLogoutRequest__Output, signal: AbortSignal): Promise<boolean> {
    const t = this.targetOf(request);
    const lun = t.lun;
    return this.locks.with(`iscsi:${t.host}:${t.port}/${t.targetIqn}/${lun}/${t.initiatorIqn}`, `the session to ${t.targetIqn}`, () => this.o.initiator.logout({ ...t, lun }, signal));
  }

  async listSessions(signal: AbortSignal): Promise<IscsiSession[]> {
    return (await this.o.initiator.list(signal)).map((s) => this.toSession(s));
  }

  private async kernelHasNfs(): Promise<boolean> {
    return /\bnfs\b/.test(await readFile('/proc/filesystems', 'utf8').catch(() => ''));
  }

  async mountNfs(request: NfsMountRequest__Output, signal: AbortSignal): Promise<{ mount: NfsMount; alreadyMounted: boolean }> {
    // Only the kernel client needs the kernel's; fuse-nfs is a program of its own.
    if (this.o.nfsClient.driver === 'kernel' && !(await this.kernelHasNfs())) {
      throw new VcstorError('UNAVAILABLE', 'this kernel has no NFS client (a namespace guest shares the host kernel: run the nfs method in the VM tier, or select the fuse-nfs client)');
    }
    const version = request.nfsVersion || 3;
    const spec = { server: request.server, exportPath: request.exportPath, mountpoint: request.mountpoint, version, options: request.options };
    // An export made a moment ago may not be in force yet: ganesha takes a new export list
    // on SIGHUP, after ExportNfs has answered (seen: one of four guests mounting at once
    // right after the export was refused, MNT3ERR_ACCES). A refusal is asked again for 3 s.
    let mounted: boolean;
    for (let attempt = 1; ; attempt++) {
      try {
        mounted = await this.o.nfsClient.mount(spec, signal);
        break;
      } catch (err) {
        if (!(err instanceof VcstorError && err.code === 'PERMISSION_DENIED') || attempt >= 4 || signal.aborted) throw err;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
    return {
      mount: { server: request.server, exportPath: request.exportPath, mountpoint: request.mountpoint, nfsVersion: version, options: request.options, driver: this.o.nfsClient.driver },
      alreadyMounted: !mounted,
    };
  }

  unmountNfs(mountpoint: string, signal: AbortSignal): Promise<boolean> {
    return this.o.nfsClient.unmount(mountpoint, signal);
  }

  async listNfsMounts(): Promise<NfsMount[]> {
    return (await this.o.nfsClient.list(this.o.mountRoots)).map((m) => ({ server: m.server, exportPath: m.exportPath, mountpoint: m.mountpoint, nfsVersion: m.version, options: m.options, driver: this.o.nfsClient.driver }));
  }

  private parallelFs(): ParallelFsClientDriver {
    if (!this.o.parallelFsClient) throw new VcstorError('FAILED_PRECONDITION', 'this agent has no parallel file system client configured (parallelFsClient.driver: glusterfs)');
    return this.o.parallelFsClient;
  }

  async mountParallelFs(request: ParallelFsMountRequest__Output, signal: AbortSignal): Promise<{ mount: ParallelFsMount; alreadyMounted: boolean }> {
    const client = this.parallelFs();
    const spec = { server: request.server, volume: request.name, mountpoint: request.mountpoint };
    const mounted = await this.locks.with(`mount:${request.mountpoint}`, request.mountpoint, () => client.mount(spec, signal));
    return { mount: { server: request.server, name: request.name, mountpoint: request.mountpoint, driver: client.driver }, alreadyMounted: !mounted };
  }

  async unmountParallelFs(mountpoint: string, signal: AbortSignal): Promise<boolean> {
    if (!this.o.parallelFsClient) return false;
    const client = this.o.parallelFsClient;
    return this.locks.with(`mount:${mountpoint}`, mountpoint, () => client.unmount(mountpoint, signal));
  }

  async listParallelFsMounts(): Promise<ParallelFsMount[]> {
    const client = this.o.parallelFsClient;
    return client ? (await client.list(this.o.mountRoots)).map((m) => ({ server: m.server, name: m.volume, mountpoint: m.mountpoint, driver: client.driver })) : [];
  }

  async makeFilesystem(request: MakeFilesystemRequest__Output, signal: AbortSignal): Promise<MakeFilesystemResponse> {
    const fsType = request.fsType || 'ext4';
    return this.locks.with(`device:${request.device}`, request.device, async () => {
      const made = await this.filesystems.ensure(request.device, fsType, {
        force: request.force,
        mkfsOptions: request.mkfsOptions,
        ...(request.label ? { label: request.label } : {}),
        signal,
      });
      return { device: request.device, fsType, uuid: await this.filesystems.uuid(request.device, signal), alreadyExisted: !made };
    });
  }

  async usage(mountpoint: string): Promise<FilesystemUsage> {
    const fs = await statfs(mountpoint).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') throw new VcstorError('NOT_FOUND', `${mountpoint} does not exist`);
      throw err;
    });
    return {
      sizeBytes: fs.blocks * fs.bsize,
      usedBytes: (fs.blocks - fs.bfree) * fs.bsize,
      availableBytes: fs.bavail * fs.bsize,
      inodesTotal: fs.files,
      inodesFree: fs.ffree,
    };
  }

  async mountFilesystem(request: MountFilesystemRequest__Output, signal: AbortSignal): Promise<{ mount: FilesystemMount; alreadyMounted: boolean }> {
    return this.locks.with(`mount:${request.mountpoint}`, request.mountpoint, async () => {
      const fsType = request.fsType || (await this.filesystems.probe(request.device, signal));
      if (fsType === '') throw new VcstorError('FAILED_PRECONDITION', `${request.device} has no filesystem; make one first`);
      // A symlinked device name (a sandbox VBD) is mounted by its real node, which is what mountinfo shows.
      const device = await realpath(request.device).catch(() => request.device);
      const mounted = await this.filesystems.mount(device, request.mountpoint, { fsType, mountOptions: request.options, signal });
      return {
        mount: { device, mountpoint: request.mountpoint, fsType, options: request.options, usage: await this.usage(request.mountpoint) },
        alreadyMounted: !mounted,
      };
    });
  }

  unmountFilesystem(mountpoint: string, signal: AbortSignal): Promise<boolean> {
    return this.locks.with(`mount:${mountpoint}`, mountpoint, () => this.filesystems.unmount(mountpoint, signal));
  }

  /** Filesystems mounted under the mount roots (NFS excluded). */
  async listFilesystems(): Promise<FilesystemMount[]> {
    const mounts = (await this.filesystems.mounts()).filter((m) => !m.fsType.startsWith('nfs') && !m.fsType.startsWith('fuse') && this.o.mountRoots.some((r) => isWithin(r, m.mountpoint)));
    return Promise.all(mounts.map(async (m) => ({ device: m.device, mountpoint: m.mountpoint, fsType: m.fsType, options: m.options, usage: await this.usage(m.mountpoint) })));
  }
}
