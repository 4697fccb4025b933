import type * as grpc from '@grpc/grpc-js';
import path from 'node:path';
import { unary } from '../common/clients.js';
import { fromGrpcError, VcstorError } from '../common/errors.js';
import type { Dom0AgentClient } from '../common/generated/vcstor/v1/Dom0Agent.js';
import type { CreateImageResponse__Output } from '../common/generated/vcstor/v1/CreateImageResponse.js';
import type { GuestAgentClient } from '../common/generated/vcstor/v1/GuestAgent.js';
import type { ImageLocation } from '../common/generated/vcstor/v1/ImageLocation.js';
import type { StorageAgentClient } from '../common/generated/vcstor/v1/StorageAgent.js';
import type { VbdSpec } from '../common/generated/vcstor/v1/VbdSpec.js';

/** The paper's seven ways of giving a guest a disk (section 3). */
export const METHODS = ['file-local', 'phy-local', 'file-nfs', 'file-iscsi', 'phy-iscsi', 'nfs', 'iscsi'] as const;
export type MethodName = (typeof METHODS)[number];

/** Where a method is set up: the three agents and what they need to know of each other. */
export interface MethodTarget {
  storage: StorageAgentClient;
  dom0: Dom0AgentClient;
  guest: GuestAgentClient;
  /** The storage server's address as dom0 and the guest reach it (portal, NFS server). */
  storageHost: string;
  dom0InitiatorIqn: string;
  guestInitiatorIqn: string;
  /** Who may mount NFS exports (dom0 for file-nfs, the guest for nfs): an IP or CIDR. */
  nfsClients: string;
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
  /** Every remote call's deadline. */
  timeoutMs: number;
}

export interface StepTiming {
  step: string;
  ms: number;
}

/** A method set up for a guest: its filesystem, and how to take it all down. */
export interface ProvisionedMethod {
  method: MethodName;
  /** The block device the guest formatted, and where it is mounted. */
  guestDevice: string;
  guestMountpoint: string;
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

/** An undo step; `data` ones delete what holds the guest's data (volume, image). */
type Undo = { step: string; run: () => Promise<unknown>; data?: boolean };

/**
 * Set up `method` for the target's guest through agent calls only, ending with an ext4
 * filesystem mounted in the guest. Each step that makes something pushes its undo; on a
 * failure the undos run in reverse and the error is rethrown, so nothing is left.
 */
export async function provisionMethod(method: MethodName, t: MethodTarget, signal?: AbortSignal): Promise<ProvisionedMethod> {
  const opts = { timeoutMs: t.timeoutMs, ...(signal ? { signal } : {}) };
  const undo: Undo[] = [];
  const setup: StepTiming[] = [];
  const name = `${t.prefix}-${method}`;
  const timed = async <T>(step: string, work: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    const result = await work();
    setup.push({ step, ms: Math.round(performance.now() - started) });
    return result;
  };
  const provisioning = t.sparse ? ('PROVISIONING_SPARSE' as const) : ('PROVISIONING_PREALLOCATED' as const);
  const chap = t.chap;

  const volume = async () => {
    await timed('create volume', () => unary(t.storage, t.storage.CreateVolume, { name, sizeBytes: t.sizeBytes, provisioning }, opts));
    undo.push({ step: 'delete volume', run: () => unary(t.storage, t.storage.DeleteVolume, { name, force: true }, opts), data: true });
  };
  const exportIscsi = async (initiator: string) => {
    const { target } = await timed('export iscsi', () => unary(t.storage, t.storage.ExportIscsi, { volume: name, allowedInitiators: [initiator], chap }, opts));
    undo.push({ step: 'unexport iscsi', run: () => unary(t.storage, t.storage.UnexportIscsi, { volume: name, force: true }, opts) });
    return target!.iqn;
  };
  const login = async (client: Dom0AgentClient | GuestAgentClient, who: string, iqn: string, initiatorIqn: string) => {
    const ref = { portal: `${t.storageHost}:3260`, iqn, lun: 0 };
    const { session } = await timed(`${who} iscsi login`, () => unary(client, client.IscsiLogin, { target: ref, initiatorIqn, chap }, opts));
    undo.push({ step: `${who} iscsi logout`, run: () => unary(client, client.IscsiLogout, { target: ref, initiatorIqn }, opts) });
    return session!.devicePath;
  };
  /** An image inside another filesystem must leave it room: 3/4 of the volume. */
  const nestedImageBytes = Math.floor((t.sizeBytes * 3) / 4 / (1024 * 1024)) * 1024 * 1024;
  const createImage = async (location: ImageLocation, sizeBytes = t.sizeBytes) => {
    await timed('create image', () => streamImage(t.dom0, location, sizeBytes, provisioning, t.timeoutMs, signal));
    if (location.path) undo.push({ step: 'delete image', run: () => unary(t.dom0, t.dom0.DeleteImage, { location }, opts), data: true });
  };
  const startDomain = async (disks: VbdSpec[]) => {
    await timed('write domain config', () =>
      unary(t.dom0, t.dom0.WriteDomainConfig, { config: { name: t.domain, memoryMib: 256, vcpus: 1, bootloader: 'pygrub', vifs: [{ bridge: 'xenbr0' }], disks } }, opts),
    );
    await timed('start domain', () => unary(t.dom0, t.dom0.StartDomain, { name: t.domain }, opts));
    undo.push({ step: 'stop domain', run: () => unary(t.dom0, t.dom0.StopDomain, { name: t.domain, force: true }, opts) });
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
    await timed('dom0 mount', () => unary(t.dom0, t.dom0.MountFilesystem, { device, mountpoint }, opts));
    undo.push({ step: 'dom0 unmount', run: () => unary(t.dom0, t.dom0.UnmountFilesystem, { mountpoint }, opts) });
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
        const device = await login(t.dom0, 'dom0', await exportIscsi(t.dom0InitiatorIqn), t.dom0InitiatorIqn);
        await startDomain([{ source: { blockDevice: device }, vdev: 'xvdb', kind: 'VBD_KIND_PHY' }]);
        guestDevice = await guestVbd('xvdb');
        break;
      }
      case 'file-iscsi': {
        await volume();
        usesVolume = true;
        const device = await login(t.dom0, 'dom0', await exportIscsi(t.dom0InitiatorIqn), t.dom0InitiatorIqn);
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
        const { export: exported } = await timed('export nfs', () =>
          unary(t.storage, t.storage.ExportNfs, { volume: name, makeFilesystem: 'ext4', clients: [{ match: t.nfsClients, squash: 'NFS_SQUASH_NONE' }] }, opts),
        );
        undo.push({ step: 'unexport nfs', run: () => unary(t.storage, t.storage.UnexportNfs, { volume: name }, opts) });
        image = { nfsFile: { server: t.storageHost, exportPath: exported!.exportPath, fileName: 'guest.img' } };
        await createImage(image, nestedImageBytes);
        await startDomain([]);
        const { vbd } = await timed('attach vbd', () => unary(t.dom0, t.dom0.AttachVbd, { domain: t.domain, spec: { source: { image }, vdev: 'xvdb' } }, opts));
        undo.push({ step: 'detach vbd', run: () => unary(t.dom0, t.dom0.DetachVbd, { domain: t.domain, vdev: 'xvdb' }, opts) });
        guestDevice = vbd!.guestDevice;
        break;
      }
      case 'nfs': {
        await volume();
        usesVolume = true;
        const { export: exported } = await timed('export nfs', () =>
          unary(t.storage, t.storage.ExportNfs, { volume: name, makeFilesystem: 'ext4', clients: [{ match: t.nfsClients, squash: 'NFS_SQUASH_NONE' }] }, opts),
        );
        undo.push({ step: 'unexport nfs', run: () => unary(t.storage, t.storage.UnexportNfs, { volume: name }, opts) });
        const mountpoint = path.join(t.guestMountDir, name);
        await timed('guest nfs mount', () => unary(t.guest, t.guest.MountNfs, { server: t.storageHost, exportPath: exported!.exportPath, mountpoint, nfsVersion: 3 }, opts));
        undo.push({ step: 'guest nfs unmount', run: () => unary(t.guest, t.guest.UnmountNfs, { mountpoint }, opts) });
        return finish(method, '', mountpoint);
      }
      case 'iscsi': {
        await volume();
        usesVolume = true;
        guestDevice = await login(t.guest, 'guest', await exportIscsi(t.guestInitiatorIqn), t.guestInitiatorIqn);
        break;
      }
    }
    const mountpoint = path.join(t.guestMountDir, name);
    await timed('guest mkfs', () => unary(t.guest, t.guest.MakeFilesystem, { device: guestDevice, fsType: 'ext4' }, opts));
    await timed('guest mount', () => unary(t.guest, t.guest.MountFilesystem, { device: guestDevice, mountpoint }, opts));
    undo.push({ step: 'guest unmount', run: () => unary(t.guest, t.guest.UnmountFilesystem, { mountpoint }, opts) });
    return finish(method, guestDevice, mountpoint);
  } catch (err) {
    await runUndo(undo).catch(() => undefined);
    throw err;
  }

  function finish(m: MethodName, device: string, mountpoint: string): ProvisionedMethod {
    let done: Promise<StepTiming[]> | undefined;
    const kept: Undo[] = [];
    return {
      method: m,
      guestDevice: device,
      guestMountpoint: mountpoint,
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

/** Run undos in reverse; every one runs even when one fails; failures are thrown together. */
async function runUndo(undo: Undo[]): Promise<StepTiming[]> {
  const timings: StepTiming[] = [];
  const failures: string[] = [];
  for (const u of [...undo].reverse()) {
    const started = performance.now();
    try {
      await u.run();
    } catch (err) {
      failures.push(`${u.step}: ${err instanceof Error ? err.message : String(err)}`);
    }
    timings.push({ step: u.step, ms: Math.round(performance.now() - started) });
  }
  undo.length = 0;
  if (failures.length > 0) throw new VcstorError('INTERNAL', `teardown left things behind: ${failures.join('; ')}`);
  return timings;
}

/** CreateImage is a stream: read progress to the end, fail on an error status. */
function streamImage(dom0: Dom0AgentClient, location: ImageLocation, sizeBytes: number, provisioning: 'PROVISIONING_SPARSE' | 'PROVISIONING_PREALLOCATED', timeoutMs: number, signal?: AbortSignal): Promise<void> {
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
