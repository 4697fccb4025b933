import type * as grpc from '@grpc/grpc-js';
import path from 'node:path';
import { unary, unaryByName, type Dom0Client, type GuestClient, type StorageClient } from '../common/clients.js';
import { fromGrpcError, VcstorError } from '../common/errors.js';
import type { CreateImageResponse__Output } from '../common/generated/vcstor/v1/CreateImageResponse.js';
import type { ImageLocation } from '../common/generated/vcstor/v1/ImageLocation.js';
import type { IscsiSessionParams, IscsiSessionParams__Output } from '../common/generated/vcstor/v1/IscsiSessionParams.js';
import type { VbdSpec } from '../common/generated/vcstor/v1/VbdSpec.js';

/** The paper's seven ways of giving a guest a disk (section 3). */
export const METHODS = ['file-local', 'phy-local', 'file-nfs', 'file-iscsi', 'phy-iscsi', 'nfs', 'iscsi'] as const;
export type MethodName = (typeof METHODS)[number];

/**
 * The paper's dom0 baselines (Fig. 3 and 5): the same benchmarks run by dom0 itself on
 * its local disk, over NFS and over iSCSI — the ceiling each method is compared with.
 * Their measurements carry these names where a method's name would be.
 */
export const DOM0_BASELINES = ['dom0-local', 'dom0-nfs', 'dom0-iscsi'] as const;
export type BaselineName = (typeof DOM0_BASELINES)[number];

/** Where a method is set up: the three agents and what they need to know of each other. */
export interface MethodTarget {
  storage: StorageClient;
  dom0: Dom0Client;
  guest: GuestClient;
  /** The storage server's address as dom0 and the guest reach it (portal, NFS server). */
  storageHost: string;
  dom0InitiatorIqn: string;
  guestInitiatorIqn: string;
  /** Who may mount NFS exports (dom0 for file-nfs, the guest for nfs): an IP or CIDR. */
  nfsClients: string;
  /** Extra options of the kernel NFS mounts (nfs, dom0-nfs), e.g. the paper's rsize/wsize of 32 KiB. */
  nfsMountOptions?: readonly string[];
  /** Directories on dom0 for images and mounts, and on the guest for its mount. */
  dom0ImageDir: string;
  dom0MountDir: string;
  guestMountDir: string;
  /** The guest's domain name on dom0. */
  domain: string;
  /** Prefix of every name this setup makes, so runs do not clash (e.g. "r12"). */
  prefix: string;
  sizeBytes: number;
  sparse: boolean;
  chap: { username: string; password: string };
  /** Table 2: what every export offers and every login proposes (absent: the drivers' defaults). */
  iscsiSessionParams?: IscsiSessionParams;
  /** Every remote call's deadline. */
  timeoutMs: number;
}

/** A method's iSCSI session as Table 2 reports it. */
export interface IscsiSessionFacts {
  /** "dom0 (qsd)", "guest (open-iscsi)". */
  initiator: string;
  target: string;
  /** What the target offers, read back from it after the export (defaults included). */
  offered: IscsiSessionParams__Output | undefined;
  /** What the session negotiated, where the initiator can read it (open-iscsi). */
  negotiated: IscsiSessionParams__Output | undefined;
  /** Why the initiator applied or reports less than asked, in its words. */
  detail: string;
}

export interface StepTiming {
  step: string;
  ms: number;
}

/** A method set up for a guest (or a baseline for dom0): its filesystem, and how to take it all down. */
export interface ProvisionedMethod {
  method: MethodName | BaselineName;
  /** The block device the guest formatted, and where it is mounted (empty for a dom0 baseline). */
  guestDevice: string;
  guestMountpoint: string;
  /** Who runs the benchmarks (the guest for a method, dom0 for a baseline), and where. */
  runsOn: 'guest' | 'dom0';
  benchmarkDirectory: string;
  /** How its data travels, for Table 2: its iSCSI session, the NFS client and its options. */
  iscsiSession?: IscsiSessionFacts;
  nfsClient?: { client: string; options: string };
  /** The storage volume behind it, if any (for verification and cleanup). */
  volume?: string;
  /** The image file on dom0 (or the export) behind it, if any. */
  image?: ImageLocation;
  setup: StepTiming[];
  /**
   * Undo every step in reverse order; collects failures and throws them together.
   * Idempotent. With keepData, the volume and image stay (to read back what was
   * written) until removeData.
   */
  teardown(options?: { keepData?: boolean }): Promise<StepTiming[]>;
  /** Delete what teardown({keepData}) kept. */
  removeData(): Promise<StepTiming[]>;
}

/**
 * An undo step as data, so it can be journaled and replayed by another process (cleanup
 * after a crash). Every one is idempotent: undoing what was never done succeeds.
 * `data` steps delete what holds the guest's data (volume, image).
 */
export interface UndoStep {
  step: string;
  agent: 'storage' | 'dom0' | 'guest';
  rpc: 'DeleteVolume' | 'UnexportIscsi' | 'IscsiLogout' | 'DeleteImage' | 'StopDomain' | 'UnmountFilesystem' | 'UnexportNfs' | 'UnmountNfs' | 'DetachVbd';
  request: Record<string, unknown>;
  data?: boolean;
}

export interface AgentSet {
  storage: StorageClient;
  dom0: Dom0Client;
  guest: GuestClient;
}

/** Carry out one undo step. */
export function runUndoStep(step: UndoStep, agents: AgentSet, timeoutMs: number): Promise<unknown> {
  return unaryByName(step.agent, agents[step.agent], step.rpc, step.request, { timeoutMs });
}

/**
 * Set up `method` for the target's guest through agent calls only, ending with an ext4
 * filesystem mounted in the guest. Each step that makes something pushes its undo; on a
 * failure the undos run in reverse and the error is rethrown, so nothing is left.
 */
export async function provisionMethod(
  method: MethodName | BaselineName,
  t: MethodTarget,
  signal?: AbortSignal,
  /** Called with the pending undo steps before each change, to keep them durably. */
  journal: (pending: readonly UndoStep[]) => Promise<void> = async () => undefined,
): Promise<ProvisionedMethod> {
  const opts = { timeoutMs: t.timeoutMs, ...(signal ? { signal } : {}) };
  const undo: UndoStep[] = [];
  /** Record how to undo a step before taking it: a crash in between leaves a no-op undo. */
  const willUndo = async (u: UndoStep) => {
    undo.push(u);
    await journal(undo);
  };
  const runUndo = (steps: UndoStep[]) => runUndoSteps(steps, t, t.timeoutMs, journal);
  const setup: StepTiming[] = [];
  const name = `${t.prefix}-${method}`;
  const timed = async <T>(step: string, work: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    let result: T;
    try {
      result = await work();
    } catch (err) {
      // Say which step failed: a transport error alone does not say what was being done.
      if (err instanceof VcstorError) throw new VcstorError(err.code, `${step}: ${err.message}`, { cause: err });
      throw err;
    }
    setup.push({ step, ms: Math.round(performance.now() - started) });
    return result;
  };
  const provisioning = t.sparse ? ('PROVISIONING_SPARSE' as const) : ('PROVISIONING_PREALLOCATED' as const);
  const chap = t.chap;

  const volume = async () => {
    await willUndo({ step: 'delete volume', agent: 'storage', rpc: 'DeleteVolume', request: { name, force: true }, data: true });
    await timed('create volume', () => unary(t.storage, t.storage.CreateVolume, { name, sizeBytes: t.sizeBytes, provisioning }, opts));
  };
  let iscsiSession: IscsiSessionFacts | undefined;
  let offered: IscsiSessionParams__Output | undefined;
  let nfsClient: { client: string; options: string } | undefined;
  const sessionParams = t.iscsiSessionParams ? { sessionParams: t.iscsiSessionParams } : {};
  const exportIscsi = async (initiator: string) => {
    await willUndo({ step: 'unexport iscsi', agent: 'storage', rpc: 'UnexportIscsi', request: { volume: name, force: true } });
    const { target } = await timed('export iscsi', () => unary(t.storage, t.storage.ExportIscsi, { volume: name, allowedInitiators: [initiator], chap, ...sessionParams }, opts));
    offered = target!.sessionParams ?? undefined;
    return target!.iqn;
  };
  /** A kernel NFS mount on the guest or dom0, with the plan's options; records what the kernel reports. */
  const mountNfs = async (who: 'dom0' | 'guest', exportPath: string, mountpoint: string) => {
    const client = t[who];
    await willUndo({ step: `${who} nfs unmount`, agent: who, rpc: 'UnmountNfs', request: { mountpoint } });
    const { mount } = await timed(`${who} nfs mount`, () => unary(client, client.MountNfs, { server: t.storageHost, exportPath, mountpoint, nfsVersion: 3, options: [...(t.nfsMountOptions ?? [])] }, opts));
    nfsClient = { client: `${who} kernel NFSv${mount?.nfsVersion ?? 3}`, options: (mount?.options ?? []).join(',') };
  };
  const login = async (who: 'dom0' | 'guest', iqn: string, initiatorIqn: string) => {
    const client = t[who];
    const ref = { portal: `${t.storageHost}:3260`, iqn, lun: 0 };
    await willUndo({ step: `${who} iscsi logout`, agent: who, rpc: 'IscsiLogout', request: { target: ref, initiatorIqn } });
    const response = await timed(`${who} iscsi login`, () => unary(client, client.IscsiLogin, { target: ref, initiatorIqn, chap, ...sessionParams }, opts));
    const session = response.session!;
    iscsiSession = {
      initiator: `${who} (${session.driver || 'initiator'})`,
      target: iqn,
      offered,
      negotiated: session.negotiated ?? undefined,
      detail: [response.sessionParamsDetail, session.negotiatedDetail].filter(Boolean).join('; '),
    };
    return session.devicePath;
  };
  /** An image inside another filesystem must leave it room: 3/4 of the volume. */
  const nestedImageBytes = Math.floor((t.sizeBytes * 3) / 4 / (1024 * 1024)) * 1024 * 1024;
  const createImage = async (location: ImageLocation, sizeBytes = t.sizeBytes) => {
    if (location.path) await willUndo({ step: 'delete image', agent: 'dom0', rpc: 'DeleteImage', request: { location }, data: true });
    await timed('create image', () => streamImage(t.dom0, location, sizeBytes, provisioning, t.timeoutMs, signal));
  };
  const startDomain = async (disks: VbdSpec[]) => {
    await timed('write domain config', () =>
      unary(t.dom0, t.dom0.WriteDomainConfig, { config: { name: t.domain, memoryMib: 256, vcpus: 1, bootloader: 'pygrub', vifs: [{ bridge: 'xenbr0' }], disks } }, opts),
    );
    await willUndo({ step: 'stop domain', agent: 'dom0', rpc: 'StopDomain', request: { name: t.domain, force: true } });
    await timed('start domain', () => unary(t.dom0, t.dom0.StartDomain, { name: t.domain }, opts));
  };
  const guestVbd = async (vdev: string) => {
    const { devices } = await timed('guest finds vbd', () => unary(t.guest, t.guest.ListBlockDevices, {}, opts));
    const found = devices.find((d) => d.origin === `vbd:${vdev}`);
    if (!found) throw new VcstorError('FAILED_PRECONDITION', `the guest does not see ${vdev}`);
    return found.path;
  };
  const mountOnDom0 = async (device: string) => {
    const mountpoint = path.join(t.dom0MountDir, name);
    await timed('dom0 mkfs', () => unary(t.dom0, t.dom0.MakeFilesystem, { device, fsType: 'ext4' }, opts));
    await willUndo({ step: 'dom0 unmount', agent: 'dom0', rpc: 'UnmountFilesystem', request: { mountpoint } });
    await timed('dom0 mount', () => unary(t.dom0, t.dom0.MountFilesystem, { device, mountpoint }, opts));
    return mountpoint;
  };

  let guestDevice = '';
  let image: ImageLocation | undefined;
  let usesVolume = false;
  try {
    switch (method) {
      case 'file-local':
      case 'phy-local': {
        // phy-local's "local volume" here is a zero-filled file given to the guest as a
        // block device (phy); on a real host it is an LV given as phy:/dev/VG/LV.
        image = { path: path.join(t.dom0ImageDir, `${name}.img`) };
        await createImage(image);
        await startDomain([{ source: { image }, vdev: 'xvdb', kind: method === 'phy-local' ? 'VBD_KIND_PHY' : 'VBD_KIND_FILE' }]);
        guestDevice = await guestVbd('xvdb');
        break;
      }
      case 'phy-iscsi': {
        await volume();
        usesVolume = true;
        const device = await login('dom0', await exportIscsi(t.dom0InitiatorIqn), t.dom0InitiatorIqn);
        await startDomain([{ source: { blockDevice: device }, vdev: 'xvdb', kind: 'VBD_KIND_PHY' }]);
        guestDevice = await guestVbd('xvdb');
        break;
      }
      case 'file-iscsi': {
        await volume();
        usesVolume = true;
        const device = await login('dom0', await exportIscsi(t.dom0InitiatorIqn), t.dom0InitiatorIqn);
        const mountpoint = await mountOnDom0(device);
        image = { path: path.join(mountpoint, 'guest.img') };
        await createImage(image, nestedImageBytes);
        await startDomain([{ source: { image }, vdev: 'xvdb', kind: 'VBD_KIND_FILE' }]);
        guestDevice = await guestVbd('xvdb');
        break;
      }
      case 'file-nfs': {
        // The image reached through qemu's libnfs driver: no directory mount on dom0.
        await volume();
        usesVolume = true;
        await willUndo({ step: 'unexport nfs', agent: 'storage', rpc: 'UnexportNfs', request: { volume: name } });
        const { export: exported } = await timed('export nfs', () =>
          unary(t.storage, t.storage.ExportNfs, { volume: name, makeFilesystem: 'ext4', clients: [{ match: t.nfsClients, squash: 'NFS_SQUASH_NONE' }] }, opts),
        );
        image = { nfsFile: { server: t.storageHost, exportPath: exported!.exportPath, fileName: 'guest.img' } };
        // qemu's NFS driver takes no rsize/wsize: libnfs asks the server (FSINFO).
        nfsClient = { client: 'dom0 libnfs (qemu NFS driver), NFSv3 over TCP', options: 'rsize/wsize as the server offers them (the plan\'s NFS mount options do not apply)' };
        await createImage(image, nestedImageBytes);
        await startDomain([]);
        await willUndo({ step: 'detach vbd', agent: 'dom0', rpc: 'DetachVbd', request: { domain: t.domain, vdev: 'xvdb' } });
        const { vbd } = await timed('attach vbd', () => unary(t.dom0, t.dom0.AttachVbd, { domain: t.domain, spec: { source: { image }, vdev: 'xvdb' } }, opts));
        guestDevice = vbd!.guestDevice;
        break;
      }
      case 'nfs': {
        await volume();
        usesVolume = true;
        await willUndo({ step: 'unexport nfs', agent: 'storage', rpc: 'UnexportNfs', request: { volume: name } });
        const { export: exported } = await timed('export nfs', () =>
          unary(t.storage, t.storage.ExportNfs, { volume: name, makeFilesystem: 'ext4', clients: [{ match: t.nfsClients, squash: 'NFS_SQUASH_NONE' }] }, opts),
        );
        const mountpoint = path.join(t.guestMountDir, name);
        await mountNfs('guest', exported!.exportPath, mountpoint);
        return finish(method, '', mountpoint, { runsOn: 'guest', directory: mountpoint });
      }
      case 'iscsi': {
        await volume();
        usesVolume = true;
        guestDevice = await login('guest', await exportIscsi(t.guestInitiatorIqn), t.guestInitiatorIqn);
        break;
      }
      // The dom0 baselines: no guest, dom0 runs the benchmarks itself.
      case 'dom0-local':
        // dom0's own local disk: the filesystem its images live on, as it is.
        return finish(method, '', '', { runsOn: 'dom0', directory: t.dom0ImageDir });
      case 'dom0-iscsi': {
        await volume();
        usesVolume = true;
        const device = await login('dom0', await exportIscsi(t.dom0InitiatorIqn), t.dom0InitiatorIqn);
        return finish(method, '', '', { runsOn: 'dom0', directory: await mountOnDom0(device) });
      }
      case 'dom0-nfs': {
        await volume();
        usesVolume = true;
        await willUndo({ step: 'unexport nfs', agent: 'storage', rpc: 'UnexportNfs', request: { volume: name } });
        const { export: exported } = await timed('export nfs', () =>
          unary(t.storage, t.storage.ExportNfs, { volume: name, makeFilesystem: 'ext4', clients: [{ match: t.nfsClients, squash: 'NFS_SQUASH_NONE' }] }, opts),
        );
        const mountpoint = path.join(t.dom0MountDir, name);
        await mountNfs('dom0', exported!.exportPath, mountpoint);
        return finish(method, '', '', { runsOn: 'dom0', directory: mountpoint });
      }
    }
    const mountpoint = path.join(t.guestMountDir, name);
    await timed('guest mkfs', () => unary(t.guest, t.guest.MakeFilesystem, { device: guestDevice, fsType: 'ext4' }, opts));
    await willUndo({ step: 'guest unmount', agent: 'guest', rpc: 'UnmountFilesystem', request: { mountpoint } });
    await timed('guest mount', () => unary(t.guest, t.guest.MountFilesystem, { device: guestDevice, mountpoint }, opts));
    return finish(method, guestDevice, mountpoint, { runsOn: 'guest', directory: mountpoint });
  } catch (err) {
    await runUndo(undo).catch(() => undefined);
    throw err;
  }

  function finish(m: MethodName | BaselineName, device: string, mountpoint: string, bench: { runsOn: 'guest' | 'dom0'; directory: string }): ProvisionedMethod {
    let done: Promise<StepTiming[]> | undefined;
    const kept: UndoStep[] = [];
    return {
      method: m,
      guestDevice: device,
      guestMountpoint: mountpoint,
      runsOn: bench.runsOn,
      benchmarkDirectory: bench.directory,
      ...(iscsiSession ? { iscsiSession } : {}),
      ...(nfsClient ? { nfsClient } : {}),
      ...(usesVolume ? { volume: name } : {}),
      ...(image ? { image } : {}),
      setup,
      teardown: (options = {}) =>
        (done ??= (async () => {
          if (options.keepData) {
            // Dropping the data steps keeps the rest in order: they come first anyway.
            kept.push(...undo.filter((u) => u.data));
            undo.splice(0, undo.length, ...undo.filter((u) => !u.data));
          }
          return runUndo(undo);
        })()),
      removeData: () => runUndo(kept),
    };
  }
}

/**
 * Run undo steps in reverse; each done step leaves the journal. Stops at the first
 * failure, leaving it and every step below it in the journal (for `vcstor cleanup`):
 * the steps are layers, each resting on the ones undone after it, and removing a lower
 * layer under one still in place (a session under a mounted filesystem, a VBD under a
 * guest's mount) leaves I/O that never completes — the fault suite saw umount and
 * blockdev hang in D state, and qemu-storage-daemon unkillable, after a guest agent
 * was killed mid-teardown and the steps below its unmount went on.
 * @throws VcstorError naming the step that failed, why, and what was not attempted.
 */
export async function runUndoSteps(
  undo: UndoStep[],
  agents: AgentSet,
  timeoutMs: number,
  journal: (pending: readonly UndoStep[]) => Promise<void> = async () => undefined,
): Promise<StepTiming[]> {
  const timings: StepTiming[] = [];
  for (const u of [...undo].reverse()) {
    const started = performance.now();
    try {
      await runUndoStep(u, agents, timeoutMs);
    } catch (err) {
      const below = undo.slice(0, undo.indexOf(u)).reverse().map((x) => x.step);
      const why = err instanceof Error ? err.message : String(err);
      throw new VcstorError(err instanceof VcstorError && err.retryable ? err.code : 'INTERNAL', `teardown stopped at ${u.step}: ${why}${below.length > 0 ? `; not attempted, to keep the layers below it intact: ${below.join(', ')}` : ''}`, { cause: err });
    }
    undo.splice(undo.indexOf(u), 1);
    await journal(undo);
    timings.push({ step: u.step, ms: Math.round(performance.now() - started) });
  }
  return timings;
}

/** CreateImage is a stream: read progress to the end, fail on an error status. */
function streamImage(dom0: Dom0Client, location: ImageLocation, sizeBytes: number, provisioning: 'PROVISIONING_SPARSE' | 'PROVISIONING_PREALLOCATED', timeoutMs: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const call = dom0.CreateImage({ location, sizeBytes, provisioning }, { deadline: Date.now() + timeoutMs });
    let result = false;
    signal?.addEventListener('abort', () => call.cancel(), { once: true });
    call.on('data', (m: CreateImageResponse__Output) => {
      if (m.result) result = true;
    });
    call.on('error', (err: grpc.ServiceError) => reject(fromGrpcError(err, 'create image')));
    call.on('end', () => (result ? resolve() : reject(new VcstorError('INTERNAL', 'create image: the stream ended without a result'))));
  });
}
