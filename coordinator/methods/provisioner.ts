import path from 'node:path';
import { unary } from '../../common/clients.js';
import { VcstorError } from '../../common/errors.js';
import type { CreateImageResponse__Output } from '../../common/generated/vcstor/v1/CreateImageResponse.js';
import type { ImageLocation } from '../../common/generated/vcstor/v1/ImageLocation.js';
import type { IscsiSessionParams__Output } from '../../common/generated/vcstor/v1/IscsiSessionParams.js';
import type { VbdSpec } from '../../common/generated/vcstor/v1/VbdSpec.js';
import { serverStream } from '../stream.js';
import type { BaselineName, MethodName } from './names.js';
import type { IscsiSessionFacts, MethodTarget, ProvisionedMethod, StepTiming } from './types.js';
import { runUndoSteps, type UndoStep } from './undo.js';

/** Where a provisioned method's benchmarks run: the guest's device and mount, and the directory. */
export interface Placement {
  /** The block device the guest formatted ('' when there is none: nfs, a dom0 baseline). */
  guestDevice: string;
  /** Where the guest mounted it ('' for a dom0 baseline). */
  guestMountpoint: string;
  benchmarkDirectory: string;
}

/**
 * The building blocks of every method's provisioning, for one setup: each step that
 * makes something journals its undo first (a crash in between leaves a no-op undo), is
 * timed, and says which step failed. A method's recipe (registry.ts) is a few of these.
 * Every remote call has the target's deadline and the setup's signal.
 */
export class Provisioner {
  /** Pending undo steps, oldest first. */
  readonly undo: UndoStep[] = [];
  readonly setup: StepTiming[] = [];
  /** Every name this setup makes: `<prefix>-<method>`. */
  readonly name: string;
  iscsiSession: IscsiSessionFacts | undefined;
  nfsClient: { client: string; options: string } | undefined;
  image: ImageLocation | undefined;
  private usesVolume = false;
  private offered: IscsiSessionParams__Output | undefined;
  private readonly opts: { timeoutMs: number; signal?: AbortSignal };

  constructor(
    readonly method: MethodName | BaselineName,
    readonly t: MethodTarget,
    private readonly signal: AbortSignal | undefined,
    /** Called with the pending undo steps before each change, to keep them durably. */
    private readonly journal: (pending: readonly UndoStep[]) => Promise<void>,
  ) {
    this.name = `${t.prefix}-${method}`;
    this.opts = { timeoutMs: t.timeoutMs, ...(signal ? { signal } : {}) };
  }

  private get provisioning(): 'PROVISIONING_SPARSE' | 'PROVISIONING_PREALLOCATED' {
    return this.t.sparse ? 'PROVISIONING_SPARSE' : 'PROVISIONING_PREALLOCATED';
  }

  private get sessionParams() {
    return this.t.iscsiSessionParams ? { sessionParams: this.t.iscsiSessionParams } : {};
  }

  /** Record how to undo a step before taking it. */
  async willUndo(u: UndoStep): Promise<void> {
    this.undo.push(u);
    await this.journal(this.undo);
  }

  /** Run `work` as the named step of the setup, timed; its error says which step failed. */
  async timed<T>(step: string, work: () => Promise<T>): Promise<T> {
    const started = performance.now();
    let result: T;
    try {
      result = await work();
    } catch (err) {
      // Say which step failed: a transport error alone does not say what was being done.
      if (err instanceof VcstorError) throw new VcstorError(err.code, `${step}: ${err.message}`, { cause: err });
      throw err;
    }
    this.setup.push({ step, ms: Math.round(performance.now() - started) });
    return result;
  }

  /** Undo `steps` in reverse, keeping the journal current. */
  runUndo(steps: UndoStep[]): Promise<StepTiming[]> {
    return runUndoSteps(steps, this.t, this.t.timeoutMs, this.journal);
  }

  /** The storage volume `name`, of the target's size and provisioning. */
  async volume(): Promise<void> {
    const { t, name } = this;
    await this.willUndo({ step: 'delete volume', agent: 'storage', rpc: 'DeleteVolume', request: { name, force: true }, data: true });
    await this.timed('create volume', () => unary(t.storage, t.storage.CreateVolume, { name, sizeBytes: t.sizeBytes, provisioning: this.provisioning }, this.opts));
    this.usesVolume = true;
  }

  /** Export the volume over iSCSI to `initiator` (CHAP, the plan's session parameters); its IQN. */
  async exportIscsi(initiator: string): Promise<string> {
    const { t, name } = this;
    await this.willUndo({ step: 'unexport iscsi', agent: 'storage', rpc: 'UnexportIscsi', request: { volume: name, force: true } });
    const { target } = await this.timed('export iscsi', () => unary(t.storage, t.storage.ExportIscsi, { volume: name, allowedInitiators: [initiator], chap: t.chap, ...this.sessionParams }, this.opts));
    this.offered = target!.sessionParams ?? undefined;
    return target!.iqn;
  }

  /** Log `who` in to the target; records the session for Table 2; the device path. */
  async login(who: 'dom0' | 'guest', iqn: string, initiatorIqn: string): Promise<string> {
    const { t } = this;
    const client = t[who];
    const ref = { portal: `${t.storageHost}:3260`, iqn, lun: 0 };
    await this.willUndo({ step: `${who} iscsi logout`, agent: who, rpc: 'IscsiLogout', request: { target: ref, initiatorIqn } });
    const response = await this.timed(`${who} iscsi login`, () => unary(client, client.IscsiLogin, { target: ref, initiatorIqn, chap: t.chap, ...this.sessionParams }, this.opts));
    const session = response.session!;
    this.iscsiSession = {
      initiator: `${who} (${session.driver || 'initiator'})`,
      target: iqn,
      offered: this.offered,
      negotiated: session.negotiated ?? undefined,
      detail: [response.sessionParamsDetail, session.negotiatedDetail].filter(Boolean).join('; '),
    };
    return session.devicePath;
  }

  /** The volume exported over iSCSI to `who` and logged in to from there: the device path. */
  async iscsiDisk(who: 'dom0' | 'guest'): Promise<string> {
    const initiatorIqn = who === 'dom0' ? this.t.dom0InitiatorIqn : this.t.guestInitiatorIqn;
    return this.login(who, await this.exportIscsi(initiatorIqn), initiatorIqn);
  }

  /** Export the volume over NFS (ext4 made on it) to the plan's NFS clients; the export path. */
  async exportNfs(): Promise<string> {
    const { t, name } = this;
    await this.willUndo({ step: 'unexport nfs', agent: 'storage', rpc: 'UnexportNfs', request: { volume: name } });
    const { export: exported } = await this.timed('export nfs', () =>
      unary(t.storage, t.storage.ExportNfs, { volume: name, makeFilesystem: 'ext4', clients: [{ match: t.nfsClients, squash: 'NFS_SQUASH_NONE' }] }, this.opts),
    );
    return exported!.exportPath;
  }

  /** A kernel NFS mount of `exportPath` on the guest or dom0, under its mount directory, with the plan's options; records what the kernel reports; the mountpoint. */
  async nfsMount(who: 'dom0' | 'guest', exportPath: string): Promise<string> {
    const { t } = this;
    const client = t[who];
    const mountpoint = path.join(who === 'dom0' ? t.dom0MountDir : t.guestMountDir, this.name);
    await this.willUndo({ step: `${who} nfs unmount`, agent: who, rpc: 'UnmountNfs', request: { mountpoint } });
    const { mount } = await this.timed(`${who} nfs mount`, () => unary(client, client.MountNfs, { server: t.storageHost, exportPath, mountpoint, nfsVersion: 3, options: [...(t.nfsMountOptions ?? [])] }, this.opts));
    this.nfsClient = { client: `${who} kernel NFSv${mount?.nfsVersion ?? 3}`, options: (mount?.options ?? []).join(',') };
    return mountpoint;
  }

  /** An image inside another filesystem must leave it room: 3/4 of the volume. */
  get nestedImageBytes(): number {
    return Math.floor((this.t.sizeBytes * 3) / 4 / (1024 * 1024)) * 1024 * 1024;
  }

  /** The image the guest's disk is, created by dom0 (CreateImage streams its progress). */
  async createImage(location: ImageLocation, sizeBytes = this.t.sizeBytes): Promise<void> {
    const { t } = this;
    this.image = location;
    if (location.path) await this.willUndo({ step: 'delete image', agent: 'dom0', rpc: 'DeleteImage', request: { location }, data: true });
    await this.timed('create image', () =>
      serverStream((options) => t.dom0.CreateImage({ location, sizeBytes, provisioning: this.provisioning }, options), {
        what: 'create image',
        timeoutMs: t.timeoutMs,
        signal: this.signal,
        onMessage: (m: CreateImageResponse__Output) => (m.result ? true : undefined),
      }),
    );
  }

  /** Write the guest's domain config with `disks` and start it. */
  async startDomain(disks: VbdSpec[]): Promise<void> {
    const { t } = this;
    await this.timed('write domain config', () =>
      unary(t.dom0, t.dom0.WriteDomainConfig, { config: { name: t.domain, memoryMib: 256, vcpus: 1, bootloader: 'pygrub', vifs: [{ bridge: 'xenbr0' }], disks } }, this.opts),
    );
    await this.willUndo({ step: 'stop domain', agent: 'dom0', rpc: 'StopDomain', request: { name: t.domain, force: true } });
    await this.timed('start domain', () => unary(t.dom0, t.dom0.StartDomain, { name: t.domain }, this.opts));
  }

  /** Attach `image` to the running guest as xvdb; the device the guest sees. */
  async attachImage(image: ImageLocation): Promise<string> {
    const { t } = this;
    await this.willUndo({ step: 'detach vbd', agent: 'dom0', rpc: 'DetachVbd', request: { domain: t.domain, vdev: 'xvdb' } });
    const { vbd } = await this.timed('attach vbd', () => unary(t.dom0, t.dom0.AttachVbd, { domain: t.domain, spec: { source: { image }, vdev: 'xvdb' } }, this.opts));
    return vbd!.guestDevice;
  }

  /** The guest's block device behind VBD `vdev`. */
  async guestVbd(vdev: string): Promise<string> {
    const { t } = this;
    const { devices } = await this.timed('guest finds vbd', () => unary(t.guest, t.guest.ListBlockDevices, {}, this.opts));
    const found = devices.find((d) => d.origin === `vbd:${vdev}`);
    if (!found) throw new VcstorError('FAILED_PRECONDITION', `the guest does not see ${vdev}`);
    return found.path;
  }

  /** ext4 on `device` in dom0, mounted under its mount directory; the mountpoint. */
  mountOnDom0(device: string): Promise<string> {
    return this.filesystem('dom0', device, this.t.dom0MountDir);
  }

  /** ext4 on the guest's `device`, mounted under its mount directory: where the benchmarks run. */
  async guestFilesystem(device: string): Promise<Placement> {
    const mountpoint = await this.filesystem('guest', device, this.t.guestMountDir);
    return { guestDevice: device, guestMountpoint: mountpoint, benchmarkDirectory: mountpoint };
  }

  /** ext4 made on `device` by `who` and mounted at `<mountDir>/<name>`; the mountpoint. */
  private async filesystem(who: 'dom0' | 'guest', device: string, mountDir: string): Promise<string> {
    const client = this.t[who];
    const mountpoint = path.join(mountDir, this.name);
    await this.timed(`${who} mkfs`, () => unary(client, client.MakeFilesystem, { device, fsType: 'ext4' }, this.opts));
    await this.willUndo({ step: `${who} unmount`, agent: who, rpc: 'UnmountFilesystem', request: { mountpoint } });
    await this.timed(`${who} mount`, () => unary(client, client.MountFilesystem, { device, mountpoint }, this.opts));
    return mountpoint;
  }

  /** What was set up, and how to take it down. */
  finish(runsOn: 'guest' | 'dom0', placement: Placement): ProvisionedMethod {
    let done: Promise<StepTiming[]> | undefined;
    const kept: UndoStep[] = [];
    const undo = this.undo;
    return {
      method: this.method,
      guestDevice: placement.guestDevice,
      guestMountpoint: placement.guestMountpoint,
      runsOn,
      benchmarkDirectory: placement.benchmarkDirectory,
      ...(this.iscsiSession ? { iscsiSession: this.iscsiSession } : {}),
      ...(this.nfsClient ? { nfsClient: this.nfsClient } : {}),
      ...(this.usesVolume ? { volume: this.name } : {}),
      ...(this.image ? { image: this.image } : {}),
      setup: this.setup,
      teardown: (options = {}) =>
        (done ??= (async () => {
          if (options.keepData) {
            // Dropping the data steps keeps the rest in order: they come first anyway.
            kept.push(...undo.filter((u) => u.data));
            undo.splice(0, undo.length, ...undo.filter((u) => !u.data));
          }
          return this.runUndo(undo);
        })()),
      removeData: () => this.runUndo(kept),
    };
  }
}
