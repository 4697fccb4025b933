import { access } from 'node:fs/promises';
import path from 'node:path';
import { invalidArgument, VcstorError } from '../../common/errors.js';
import { zeroFillPath } from '../../common/zero-fill.js';
import { CommandError, type CommandRunner } from '../../common/runner.js';
import { validateName, validateSize } from '../../common/validate.js';
import { LvmQueries, mappingMatcher } from './lvm-queries.js';
import { isManaged, validateLogicalVolumeName, VCSTOR_LV_TAG, VOLUME_GROUP_NAME, ZEROING_LV_TAG, type LogicalVolume } from './lvm-reports.js';
import type { OperationContext, VolumeDriver, VolumeInfo, VolumeSpec } from './types.js';

export { computeLoopMapping, parseExtentRange, parseLvmTime, VCSTOR_LV_TAG, ZEROING_LV_TAG, type LoopMapping } from './lvm-reports.js';

/**
 * The LVM volume driver: one linear logical volume per vcstor volume, in one volume
 * group, marked with the LVM tag {@link VCSTOR_LV_TAG} so that vcstor never lists, maps
 * or removes a logical volume someone else made.
 *
 * Two ways to get a block device for a volume:
 * - activation on (a host with device-mapper): LVM activates the LV and the device is
 *   `/dev/VG/NAME`.
 * - activation off (a kernel without device-mapper, like the lab machines): LVM only
 *   edits metadata, and the driver maps the LV's extents itself with a loop device at
 *   the right offset of the physical volume (LAB.md, "LVM without device-mapper").
 */

/** LVM's default extent size (vgcreate -s), used by roundSize until the VG was read. */
export const LVM_DEFAULT_EXTENT_BYTES = 4 * 1024 * 1024;

/** Writes zeros over a device: the real one opens and writes it; tests record the call. */
export type ZeroFiller = (device: string, sizeBytes: number, signal: AbortSignal, onProgress?: (done: number, total: number) => void) => Promise<void>;

/** How an {@link LvmVolumes} reaches its volume group. */
export interface LvmVolumesOptions {
  /** How new LVs are zeroed; default: write zeros through the block device. */
  zeroFill?: ZeroFiller;
  /** Runs lvcreate, lvs, losetup, ...: argument arrays, never a shell. */
  runner: CommandRunner;
  /** The volume group that holds vcstor's volumes (it must exist; vcstor never creates it). */
  volumeGroup: string;
  /**
   * A directory with a private lvm.conf, passed to every LVM command as LVM_SYSTEM_DIR.
   * Without device-mapper it must say `global { activation = 0 }`: LVM refuses even
   * `lvcreate --activate n` otherwise.
   */
  lvmSystemDir?: string;
  /**
   * True on hosts with device-mapper: LVs are activated and used as /dev/VG/NAME. False
   * where there is none: LVs are created inactive and mapped through loop devices.
   */
  activation: boolean;
  /** Where LVM makes the VG's device directory (default /dev); tests point it elsewhere. */
  deviceDirectory?: string;
}

/**
 * Volumes as linear LVM logical volumes in one volume group.
 *
 * Every method runs programs only through the injected runner and passes the caller's
 * AbortSignal to it. Errors are VcstorErrors: FAILED_PRECONDITION when the host is not
 * set up for what is asked (no such VG, LVM wants device-mapper, a device still in use),
 * and INTERNAL when a tool reports something that makes no sense (an empty offset).
 */
export class LvmVolumes implements VolumeDriver {
  /** Always 'lvm'. */
  readonly driver = 'lvm' as const;
  /** The volume group's name. */
  readonly pool: string;

  private readonly runner: CommandRunner;
  private readonly lvm: LvmQueries;
  private readonly activation: boolean;
  private readonly deviceDirectory: string;

  /**
   * @throws VcstorError INVALID_ARGUMENT for a volume group name LVM would refuse, or a
   *   relative lvmSystemDir.
   */
  constructor(options: LvmVolumesOptions) {
    if (!VOLUME_GROUP_NAME.test(options.volumeGroup) || options.volumeGroup === '.' || options.volumeGroup === '..') {
      throw invalidArgument('volumeGroup', `${JSON.stringify(options.volumeGroup)} is not an LVM volume group name (letters, digits, + _ . -, not starting with -)`);
    }
    if (options.lvmSystemDir !== undefined && !path.isAbsolute(options.lvmSystemDir)) {
      throw invalidArgument('lvmSystemDir', `${JSON.stringify(options.lvmSystemDir)} is not an absolute path`);
    }
    this.runner = options.runner;
    this.pool = options.volumeGroup;
    this.activation = options.activation;
    this.lvm = new LvmQueries(options.runner, options.volumeGroup, options.lvmSystemDir);
    this.deviceDirectory = options.deviceDirectory ?? '/dev';
    this.zeroFill = options.zeroFill ?? zeroFillPath;
  }

  private readonly zeroFill: ZeroFiller;

  /**
   * `sizeBytes` rounded up to whole extents of the volume group. Exact once any method
   * has read the volume group; before that it assumes LVM's default extent (4 MiB).
   */
  roundSize(sizeBytes: number): number {
    return roundUp(sizeBytes, this.lvm.knownExtentBytes ?? LVM_DEFAULT_EXTENT_BYTES);
  }

  /**
   * The volume group's size and free space.
   * @throws VcstorError FAILED_PRECONDITION when the volume group does not exist.
   */
  async capacity(signal: AbortSignal): Promise<{ totalBytes: number; freeBytes: number }> {
    const group = await this.lvm.readVolumeGroup(signal);
    return { totalBytes: group.totalBytes, freeBytes: group.freeBytes };
  }

  /**
   * Create a linear LV of `spec.sizeBytes` rounded up to whole extents, tagged
   * {@link VCSTOR_LV_TAG}. Without activation it is created inactive and not zeroed
   * (zeroing needs an active device).
   *
   * Idempotent: a vcstor LV of the same name and rounded size is returned with
   * created=false. A create cancelled while lvcreate ran removes the LV if it was made.
   * @throws VcstorError INVALID_ARGUMENT (name, size), FAILED_PRECONDITION ('sparse':
   *   thin pools need device-mapper; no such VG), ALREADY_EXISTS (another size, or an LV
   *   of that name vcstor does not manage), RESOURCE_EXHAUSTED (not enough free extents),
   *   CANCELLED.
   */
  async create(spec: VolumeSpec, ctx: OperationContext): Promise<{ volume: VolumeInfo; created: boolean }> {
    const { signal } = ctx;
    const name = validateLogicalVolumeName('name', spec.name);
    validateSize('sizeBytes', spec.sizeBytes);
    if (spec.provisioning !== 'preallocated') {
      throw new VcstorError(
        'FAILED_PRECONDITION',
        `the lvm driver makes only preallocated (linear) volumes: sparse volumes need an LVM thin pool, which needs device-mapper; ask for provisioning 'preallocated' or use the filepool driver for sparse volumes`,
      );
    }
    const group = await this.lvm.readVolumeGroup(signal);
    const sizeBytes = roundUp(spec.sizeBytes, group.extentBytes);
    const existing = await this.lvm.findLogicalVolume(name, signal);
    if (existing) {
      const same = this.requireSameVolume(existing, sizeBytes);
      if (same.tags.includes(ZEROING_LV_TAG)) {
        await this.zeroAndRelease(name, sizeBytes, ctx);
        return { volume: await this.describeOne((await this.lvm.findLogicalVolume(name, signal)) ?? same, signal), created: true };
      }
      return { volume: await this.describeOne(same, signal), created: false };
    }
    if (sizeBytes > group.freeBytes) throw this.noSpace(name, sizeBytes, group.freeBytes);

    const args = ['--yes', '--name', name, '--size', `${sizeBytes}b`, '--addtag', VCSTOR_LV_TAG, '--addtag', ZEROING_LV_TAG];
    // Without device-mapper the LV cannot be activated, and zeroing its start needs an
    // active device: ask for neither, so lvcreate does not try.
    if (!this.activation) args.push('-Zn', '--activate', 'n');
    args.push(this.pool);
    try {
      await this.lvm.run('lvcreate', args, signal);
    } catch (err) {
      if (err instanceof CommandError && /insufficient free space/.test(err.stderr)) {
        throw this.noSpace(name, sizeBytes, group.freeBytes, err);
      }
      if (err instanceof CommandError && /already exists in volume group/.test(err.stderr)) {
        // Someone made it between our lvs and lvcreate: judge it like any existing one.
        const raced = await this.lvm.findLogicalVolume(name, signal);
        if (raced) return { volume: await this.describeOne(this.requireSameVolume(raced, sizeBytes), signal), created: false };
      }
      if (err instanceof VcstorError && (err.code === 'CANCELLED' || err.code === 'DEADLINE_EXCEEDED')) {
        await this.removeInterruptedCreate(name, sizeBytes);
      }
      throw err;
    }
    try {
      await this.zeroAndRelease(name, sizeBytes, ctx);
    } catch (err) {
      if (err instanceof VcstorError && (err.code === 'CANCELLED' || err.code === 'DEADLINE_EXCEEDED')) {
        await this.removeInterruptedCreate(name, sizeBytes);
      }
      throw err;
    }
    const created = await this.lvm.findLogicalVolume(name, signal);
    if (!created) {
      throw new VcstorError('INTERNAL', `lvcreate reported success but logical volume ${this.pool}/${name} is not listed by lvs`);
    }
    return { volume: await this.describeOne(created, signal), created: true };
  }

  /**
   * Zero the whole LV through its block device (lvcreate zeroes at most its first 4 KiB,
   * and nothing without activation), unmap the device again, then drop the zeroing tag.
   */
  private async zeroAndRelease(name: string, sizeBytes: number, ctx: OperationContext): Promise<void> {
    const device = await this.attachBlockDevice(name, ctx.signal);
    try {
      await this.zeroFill(device, sizeBytes, ctx.signal, ctx.onProgress);
    } finally {
      await this.detachBlockDevice(name, new AbortController().signal);
    }
    await this.lvm.run('lvchange', ['--deltag', ZEROING_LV_TAG, `${this.pool}/${name}`], ctx.signal);
  }

  /**
   * Unmap the volume's block device, then remove the LV. Returns false when there was
   * no such LV (idempotent).
   * @throws VcstorError FAILED_PRECONDITION when the LV is not vcstor's, or its block
   *   device is still open (an iSCSI target using it): nothing is removed then.
   */
  async delete(name: string, signal: AbortSignal): Promise<boolean> {
    validateName('name', name);
    const volume = await this.lvm.findLogicalVolume(name, signal);
    if (!volume) return false;
    if (!isManaged(volume)) {
      throw new VcstorError('FAILED_PRECONDITION', `logical volume ${this.pool}/${name} is not managed by vcstor (it has no "${VCSTOR_LV_TAG}" tag); vcstor will not remove it`);
    }
    // Removing the LV while a loop device still maps its extents would let the next LV
    // given those extents be written through the old device.
    if (!this.activation) await this.detachLoopDevices(volume, signal);
    try {
      await this.lvm.run('lvremove', ['--yes', `${this.pool}/${name}`], signal);
    } catch (err) {
      if (err instanceof CommandError && /Failed to find logical volume/.test(err.stderr)) return false;
      if (err instanceof CommandError && /\bin use\b/.test(err.stderr)) throw this.inUse(`${this.pool}/${name}`, err);
      throw err;
    }
    return true;
  }

  /** The vcstor volume called `name`, or undefined (also for an LV vcstor does not manage). */
  async get(name: string, signal: AbortSignal): Promise<VolumeInfo | undefined> {
    validateName('name', name);
    const volume = await this.lvm.findLogicalVolume(name, signal);
    if (!volume || !isManaged(volume)) return undefined;
    return this.describeOne(volume, signal);
  }

  /** Every vcstor volume of the volume group (LVs without the vcstor tag are left out). */
  async list(signal: AbortSignal): Promise<VolumeInfo[]> {
    const volumes = (await this.lvm.readLogicalVolumes(signal)).filter(isManaged);
    return this.describe(volumes, signal);
  }

  /** The block device an iSCSI target should use: the same as {@link attachBlockDevice}. */
  async backingPath(name: string, signal: AbortSignal): Promise<string> {
    return this.attachBlockDevice(name, signal);
  }

  /**
   * A block device for the volume. With activation, /dev/VG/NAME (activated with
   * `lvchange -ay` when its node is missing); without, a loop device over the LV's
   * extents on its physical volume. Idempotent: a mapping that exists is returned again.
   * @throws VcstorError NOT_FOUND (no such vcstor volume), FAILED_PRECONDITION (an LV of
   *   several segments or areas, which one loop device cannot map), INTERNAL (LVM
   *   reported values that do not add up; nothing is mapped then).
   */
  async attachBlockDevice(name: string, signal: AbortSignal): Promise<string> {
    validateName('name', name);
    const volume = await this.requireVolume(name, signal);
    if (this.activation) {
      const device = this.activatedDevicePath(name);
      if (await pathExists(device)) return device;
      await this.lvm.run('lvchange', ['-ay', `${this.pool}/${name}`], signal);
      if (!(await pathExists(device))) {
        throw new VcstorError('FAILED_PRECONDITION', `lvchange -ay ${this.pool}/${name} succeeded but ${device} did not appear; check that device-mapper and udev work on this host`);
      }
      return device;
    }
    const mapping = await this.lvm.loopMappingOf(volume, signal);
    const [mapped] = await this.lvm.loopDevicesMapping(mapping, signal);
    if (mapped) return mapped.name;
    const { stdout } = await this.runner.run(
      'losetup',
      ['--find', '--show', '--offset', String(mapping.offsetBytes), '--sizelimit', String(mapping.sizeLimitBytes), mapping.physicalVolume],
      { signal },
    );
    const device = stdout.trim();
    if (!/^\/dev\/loop\d+$/.test(device)) {
      throw new VcstorError('INTERNAL', `losetup --find --show printed ${JSON.stringify(device)} instead of a loop device for ${this.pool}/${name}`);
    }
    return device;
  }

  /**
   * Unmap what attachBlockDevice mapped: detach the loop devices over the LV, or (with
   * activation) deactivate it. Idempotent; a volume that does not exist has nothing mapped.
   * @throws VcstorError FAILED_PRECONDITION when the device is still open elsewhere.
   */
  async detachBlockDevice(name: string, signal: AbortSignal): Promise<void> {
    validateName('name', name);
    const volume = await this.lvm.findLogicalVolume(name, signal);
    if (!volume || !isManaged(volume)) return;
    if (!this.activation) {
      await this.detachLoopDevices(volume, signal);
      return;
    }
    if (!(await pathExists(this.activatedDevicePath(name)))) return;
    try {
      await this.lvm.run('lvchange', ['-an', `${this.pool}/${name}`], signal);
    } catch (err) {
      if (err instanceof CommandError && /\bin use\b/.test(err.stderr)) throw this.inUse(this.activatedDevicePath(name), err);
      throw err;
    }
  }

  private async requireVolume(name: string, signal: AbortSignal): Promise<LogicalVolume> {
    const volume = await this.lvm.findLogicalVolume(name, signal);
    if (!volume || !isManaged(volume)) {
      throw new VcstorError('NOT_FOUND', `volume ${name} does not exist in LVM volume group ${this.pool}`);
    }
    return volume;
  }

  /** An existing LV for a create of `sizeBytes`: fine when it is vcstor's and that size. */
  private requireSameVolume(existing: LogicalVolume, sizeBytes: number): LogicalVolume {
    if (!isManaged(existing)) {
      throw new VcstorError(
        'ALREADY_EXISTS',
        `a logical volume named ${existing.name} already exists in volume group ${this.pool} but is not managed by vcstor (it has no "${VCSTOR_LV_TAG}" tag); choose another name`,
      );
    }
    if (existing.sizeBytes !== sizeBytes) {
      throw new VcstorError(
        'ALREADY_EXISTS',
        `volume ${existing.name} already exists with ${existing.sizeBytes} bytes; this request asks for ${sizeBytes} bytes (after rounding to whole extents); delete it first or ask for its size`,
      );
    }
    return existing;
  }

  // --- loop devices --------------------------------------------------------------------

  private async detachLoopDevices(volume: LogicalVolume, signal: AbortSignal): Promise<void> {
    const mapping = await this.lvm.loopMappingIfMappable(volume, signal);
    if (!mapping) return;
    const mapped = await this.lvm.loopDevicesMapping(mapping, signal);
    if (mapped.length === 0) return;
    for (const device of mapped) await this.runner.run('losetup', ['--detach', device.name], { signal });
    // losetup --detach of an open device succeeds but only marks it for removal when the
    // last user closes it (autoclear): the device, and its view of the extents, stay.
    const remaining = await this.lvm.loopDevicesMapping(mapping, signal);
    if (remaining.length > 0) throw this.inUse(remaining.map((d) => d.name).join(', '));
  }

  // --- describing volumes --------------------------------------------------------------

  private async describeOne(volume: LogicalVolume, signal: AbortSignal): Promise<VolumeInfo> {
    const [info] = await this.describe([volume], signal);
    if (!info) throw new VcstorError('INTERNAL', `could not describe volume ${volume.name}`);
    return info;
  }

  private async describe(volumes: LogicalVolume[], signal: AbortSignal): Promise<VolumeInfo[]> {
    const devices = await this.blockDevicesOf(volumes, signal);
    return volumes.map((volume) => ({
      name: volume.name,
      pool: this.pool,
      sizeBytes: volume.sizeBytes,
      provisioning: 'preallocated',
      allocatedBytes: volume.sizeBytes,
      blockDevice: devices.get(volume.name) ?? '',
      createdUnixMs: volume.createdUnixMs,
      driver: this.driver,
    }));
  }

  /** The block device mapped for each volume now (absent: none). */
  private async blockDevicesOf(volumes: LogicalVolume[], signal: AbortSignal): Promise<Map<string, string>> {
    const devices = new Map<string, string>();
    if (volumes.length === 0) return devices;
    if (this.activation) {
      for (const volume of volumes) {
        const device = this.activatedDevicePath(volume.name);
        if (await pathExists(device)) devices.set(volume.name, device);
      }
      return devices;
    }
    // An LV's loop device always has an offset (pe_start is past the PV's metadata):
    // with none such, nothing is mapped and the extent queries are not needed.
    const loops = await this.lvm.listLoopDevices(signal);
    if (!loops.some((d) => d.offsetBytes > 0 && d.sizeLimitBytes > 0)) return devices;
    for (const volume of volumes) {
      const mapping = await this.lvm.loopMappingIfMappable(volume, signal);
      if (!mapping) continue;
      const mapped = loops.find(await mappingMatcher(mapping));
      if (mapped) devices.set(volume.name, mapped.name);
    }
    return devices;
  }

  // --- helpers ---------------------------------------------------------------------------

  private activatedDevicePath(name: string): string {
    return path.join(this.deviceDirectory, this.pool, name);
  }

  /** After lvcreate was cancelled or timed out, remove the LV if it was made after all. */
  private async removeInterruptedCreate(name: string, sizeBytes: number): Promise<void> {
    // The caller's signal is aborted already; the clean-up gets its own short deadline.
    const cleanupSignal = AbortSignal.timeout(30_000);
    try {
      const made = await this.lvm.findLogicalVolume(name, cleanupSignal);
      if (made && isManaged(made) && made.sizeBytes === sizeBytes) {
        await this.lvm.run('lvremove', ['--yes', `${this.pool}/${name}`], cleanupSignal);
      }
    } catch {
      // Best effort: the caller sees the cancellation; a later create or delete of the
      // same name finds a leftover LV and handles it idempotently.
    }
  }

  private noSpace(name: string, sizeBytes: number, freeBytes: number, cause?: unknown): VcstorError {
    return new VcstorError(
      'RESOURCE_EXHAUSTED',
      `volume group ${this.pool} has ${freeBytes} bytes free, volume ${name} needs ${sizeBytes}: delete volumes or add a physical volume to the group`,
      { cause },
    );
  }

  private inUse(what: string, cause?: unknown): VcstorError {
    return new VcstorError(
      'FAILED_PRECONDITION',
      `${what} is still in use (open by another program, such as an iSCSI target exporting it); stop using it, then try again`,
      { cause, retryable: true },
    );
  }
}

function roundUp(value: number, unit: number): number {
  return Math.ceil(value / unit) * unit;
}

async function pathExists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}
