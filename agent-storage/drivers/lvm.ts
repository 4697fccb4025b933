import { access, realpath } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { invalidArgument, VcstorError } from '../../common/errors.js';
import { zeroFillPath } from '../../common/zero-fill.js';
import { CommandError, formatCommandLine, type CommandResult, type CommandRunner, type RunOptions } from '../../common/runner.js';
import { validateName, validateSize } from '../../common/validate.js';
import type { OperationContext, VolumeDriver, VolumeInfo, VolumeSpec } from './types.js';

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

/** The LVM tag that marks a logical volume as vcstor's. */
export const VCSTOR_LV_TAG = 'vcstor';
/**
 * Marks an LV whose zero-fill has not finished: an LV is handed out only once zeroed,
 * so a new tenant never reads a deleted volume's data. A create that finds the tag
 * (after a crash mid-fill) zeroes the LV again.
 */
export const ZEROING_LV_TAG = 'vcstor_zeroing';

/** LVM's default extent size (vgcreate -s), used by roundSize until the VG was read. */
export const LVM_DEFAULT_EXTENT_BYTES = 4 * 1024 * 1024;

/** How an {@link LvmVolumes} reaches its volume group. */
/** Writes zeros over a device: the real one opens and writes it; tests record the call. */
export type ZeroFiller = (device: string, sizeBytes: number, signal: AbortSignal, onProgress?: (done: number, total: number) => void) => Promise<void>;

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

/** Where a linear LV's data lies on its physical volume, as losetup needs it. */
export interface LoopMapping {
  /** The physical volume (a block device) holding the LV's one segment. */
  physicalVolume: string;
  /** Byte offset of the LV's first extent on the PV: pe_start + firstExtent * extent size. */
  offsetBytes: number;
  /** The LV's size: extent count * extent size. */
  sizeLimitBytes: number;
}

/**
 * An LV whose data is not one contiguous range (several segments, stripes, mirrors): no
 * loop device can map it, so none was ever mapped for it either.
 */
class UnmappableVolumeError extends VcstorError {
  constructor(message: string) {
    super('FAILED_PRECONDITION', message);
  }
}

/** A logical volume as `lvs` reports it. */
interface LogicalVolume {
  name: string;
  sizeBytes: number;
  tags: string[];
  createdUnixMs: number;
}

/** The numbers of the volume group `vgs` reports. */
interface VolumeGroupSize {
  extentBytes: number;
  totalBytes: number;
  freeBytes: number;
}

/** One loop device as `losetup --list` reports it. */
interface LoopDevice {
  name: string;
  backingFile: string;
  offsetBytes: number;
  sizeLimitBytes: number;
}

// --- Report formats of the tools, checked with zod so surprises fail loudly. ----------

const vgsReportSchema = z.object({
  report: z.array(z.object({ vg: z.array(z.object({ vg_extent_size: z.string(), vg_size: z.string(), vg_free: z.string() })) })),
});
const lvsReportSchema = z.object({
  report: z.array(z.object({ lv: z.array(z.object({ lv_name: z.string(), lv_size: z.string(), lv_tags: z.string(), lv_time: z.string() })) })),
});
const segmentReportSchema = z.object({
  report: z.array(z.object({ lv: z.array(z.object({ lv_name: z.string(), seg_pe_ranges: z.string() })) })),
});
const pvsReportSchema = z.object({
  report: z.array(z.object({ pv: z.array(z.object({ pv_name: z.string(), vg_name: z.string(), pe_start: z.string(), pv_size: z.string() })) })),
});
const losetupListSchema = z.object({
  loopdevices: z.array(
    z.object({
      name: z.string(),
      'back-file': z.string().nullable(),
      // util-linux 2.38 prints numbers; older versions printed strings.
      offset: z.union([z.number(), z.string()]),
      sizelimit: z.union([z.number(), z.string()]),
    }),
  ),
});

/** Report options shared by every LVM query: JSON, plain byte counts. */
const REPORT_FORMAT = ['--reportformat', 'json', '--units', 'b', '--nosuffix'] as const;
const LV_FIELDS = 'lv_name,lv_size,lv_tags,lv_time';
const SEGMENT_FIELDS = 'lv_name,seg_pe_ranges';
const VG_FIELDS = 'vg_extent_size,vg_size,vg_free';
const PV_FIELDS = 'pv_name,vg_name,pe_start,pv_size';
const LOSETUP_LIST = ['--json', '--list', '-O', 'NAME,BACK-FILE,OFFSET,SIZELIMIT'] as const;

// LVM names: letters, digits and + _ . - (not starting with '-'); see lvm(8) "VALID NAMES".
const VOLUME_GROUP_NAME = /^[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}$/;
// Name parts LVM keeps for its own hidden LVs (lvm(8)); lvcreate refuses them.
const RESERVED_LV_NAME_PARTS = ['_cdata', '_cmeta', '_corig', '_cpool', '_cvol', '_imeta', '_iorig', '_mimage', '_mlog', '_pmspare', '_rimage', '_rmeta', '_tdata', '_tmeta', '_vdata', '_vorigin', '_wcorig'];
const RESERVED_LV_NAME_PREFIXES = ['snapshot', 'pvmove'];

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
  private readonly lvmEnvironment: Readonly<Record<string, string>> | undefined;
  private readonly activation: boolean;
  private readonly deviceDirectory: string;
  /** The VG's extent size once read; roundSize is synchronous, so it remembers it. */
  private knownExtentBytes: number | undefined;

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
    this.lvmEnvironment = options.lvmSystemDir === undefined ? undefined : { LVM_SYSTEM_DIR: options.lvmSystemDir };
    this.deviceDirectory = options.deviceDirectory ?? '/dev';
    this.zeroFill = options.zeroFill ?? zeroFillPath;
  }

  private readonly zeroFill: ZeroFiller;

  /**
   * `sizeBytes` rounded up to whole extents of the volume group. Exact once any method
   * has read the volume group; before that it assumes LVM's default extent (4 MiB).
   */
  roundSize(sizeBytes: number): number {
    return roundUp(sizeBytes, this.knownExtentBytes ?? LVM_DEFAULT_EXTENT_BYTES);
  }

  /**
   * The volume group's size and free space.
   * @throws VcstorError FAILED_PRECONDITION when the volume group does not exist.
   */
  async capacity(signal: AbortSignal): Promise<{ totalBytes: number; freeBytes: number }> {
    const group = await this.readVolumeGroup(signal);
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
    const group = await this.readVolumeGroup(signal);
    const sizeBytes = roundUp(spec.sizeBytes, group.extentBytes);
    const existing = await this.findLogicalVolume(name, signal);
    if (existing) {
      const same = this.requireSameVolume(existing, sizeBytes);
      if (same.tags.includes(ZEROING_LV_TAG)) {
        await this.zeroAndRelease(name, sizeBytes, ctx);
        return { volume: await this.describeOne((await this.findLogicalVolume(name, signal)) ?? same, signal), created: true };
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
      await this.runLvm('lvcreate', args, signal);
    } catch (err) {
      if (err instanceof CommandError && /insufficient free space/.test(err.stderr)) {
        throw this.noSpace(name, sizeBytes, group.freeBytes, err);
      }
      if (err instanceof CommandError && /already exists in volume group/.test(err.stderr)) {
        // Someone made it between our lvs and lvcreate: judge it like any existing one.
        const raced = await this.findLogicalVolume(name, signal);
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
    const created = await this.findLogicalVolume(name, signal);
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
    await this.runLvm('lvchange', ['--deltag', ZEROING_LV_TAG, `${this.pool}/${name}`], ctx.signal);
  }

  /**
   * Unmap the volume's block device, then remove the LV. Returns false when there was
   * no such LV (idempotent).
   * @throws VcstorError FAILED_PRECONDITION when the LV is not vcstor's, or its block
   *   device is still open (an iSCSI target using it): nothing is removed then.
   */
  async delete(name: string, signal: AbortSignal): Promise<boolean> {
    validateName('name', name);
    const volume = await this.findLogicalVolume(name, signal);
    if (!volume) return false;
    if (!isManaged(volume)) {
      throw new VcstorError('FAILED_PRECONDITION', `logical volume ${this.pool}/${name} is not managed by vcstor (it has no "${VCSTOR_LV_TAG}" tag); vcstor will not remove it`);
    }
    // Removing the LV while a loop device still maps its extents would let the next LV
    // given those extents be written through the old device.
    if (!this.activation) await this.detachLoopDevices(volume, signal);
    try {
      await this.runLvm('lvremove', ['--yes', `${this.pool}/${name}`], signal);
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
    const volume = await this.findLogicalVolume(name, signal);
    if (!volume || !isManaged(volume)) return undefined;
    return this.describeOne(volume, signal);
  }

  /** Every vcstor volume of the volume group (LVs without the vcstor tag are left out). */
  async list(signal: AbortSignal): Promise<VolumeInfo[]> {
    const volumes = (await this.readLogicalVolumes(signal)).filter(isManaged);
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
      await this.runLvm('lvchange', ['-ay', `${this.pool}/${name}`], signal);
      if (!(await pathExists(device))) {
        throw new VcstorError('FAILED_PRECONDITION', `lvchange -ay ${this.pool}/${name} succeeded but ${device} did not appear; check that device-mapper and udev work on this host`);
      }
      return device;
    }
    const mapping = await this.loopMappingOf(volume, signal);
    const [mapped] = await this.loopDevicesMapping(mapping, signal);
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
    const volume = await this.findLogicalVolume(name, signal);
    if (!volume || !isManaged(volume)) return;
    if (!this.activation) {
      await this.detachLoopDevices(volume, signal);
      return;
    }
    if (!(await pathExists(this.activatedDevicePath(name)))) return;
    try {
      await this.runLvm('lvchange', ['-an', `${this.pool}/${name}`], signal);
    } catch (err) {
      if (err instanceof CommandError && /\bin use\b/.test(err.stderr)) throw this.inUse(this.activatedDevicePath(name), err);
      throw err;
    }
  }

  // --- LVM queries ---------------------------------------------------------------------

  private async readVolumeGroup(signal: AbortSignal): Promise<VolumeGroupSize> {
    const args = [...REPORT_FORMAT, '-o', VG_FIELDS, this.pool];
    const result = await this.runLvm('vgs', args, signal);
    const rows = parseReport(vgsReportSchema, result).flatMap((r) => r.vg);
    const [row] = rows;
    if (!row || rows.length !== 1) {
      throw new VcstorError('INTERNAL', `${formatCommandLine('vgs', args)} reported ${rows.length} volume groups instead of 1`);
    }
    const extentBytes = byteCount(row.vg_extent_size, 'vg_extent_size', 'vgs');
    if (extentBytes === 0 || extentBytes % 512 !== 0) {
      throw new VcstorError('INTERNAL', `vgs reported an extent size of ${extentBytes} bytes for ${this.pool}; expected a positive multiple of 512`);
    }
    this.knownExtentBytes = extentBytes;
    return { extentBytes, totalBytes: byteCount(row.vg_size, 'vg_size', 'vgs'), freeBytes: byteCount(row.vg_free, 'vg_free', 'vgs') };
  }

  /** Every LV of the group, vcstor's or not. */
  private async readLogicalVolumes(signal: AbortSignal): Promise<LogicalVolume[]> {
    const result = await this.runLvm('lvs', [...REPORT_FORMAT, '-o', LV_FIELDS, this.pool], signal);
    return parseReport(lvsReportSchema, result)
      .flatMap((r) => r.lv)
      .map((row) => ({
        name: row.lv_name,
        sizeBytes: byteCount(row.lv_size, 'lv_size', 'lvs'),
        tags: row.lv_tags === '' ? [] : row.lv_tags.split(','),
        createdUnixMs: parseLvmTime(row.lv_time),
      }));
  }

  private async findLogicalVolume(name: string, signal: AbortSignal): Promise<LogicalVolume | undefined> {
    return (await this.readLogicalVolumes(signal)).find((lv) => lv.name === name);
  }

  private async requireVolume(name: string, signal: AbortSignal): Promise<LogicalVolume> {
    const volume = await this.findLogicalVolume(name, signal);
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

  /**
   * Where the LV's one segment lies on its PV. Every value LVM reports is checked before
   * it reaches losetup: an empty or wrong offset would map the start of the PV (LVM's
   * metadata) or another LV, and writing there destroys the volume group.
   */
  private async loopMappingOf(volume: LogicalVolume, signal: AbortSignal): Promise<LoopMapping> {
    const lvPath = `${this.pool}/${volume.name}`;
    // lvs refuses PV fields (pe_start) together with LV fields, hence three queries.
    const segments = parseReport(segmentReportSchema, await this.runLvm('lvs', [...REPORT_FORMAT, '-o', SEGMENT_FIELDS, lvPath], signal))
      .flatMap((r) => r.lv)
      .filter((row) => row.lv_name === volume.name);
    const [segment] = segments;
    if (!segment) throw new VcstorError('NOT_FOUND', `volume ${volume.name} does not exist in LVM volume group ${this.pool}`);
    if (segments.length > 1) {
      throw new UnmappableVolumeError(
        `logical volume ${lvPath} has ${segments.length} segments (it was extended into non-adjacent extents); a loop device can map only one contiguous range: move it into one range with pvmove, or use a host with device-mapper`,
      );
    }
    const range = parseExtentRange(segment.seg_pe_ranges, lvPath);
    const group = await this.readVolumeGroup(signal);
    const pvArgs = [...REPORT_FORMAT, '-o', PV_FIELDS, range.physicalVolume];
    const physicalVolumes = parseReport(pvsReportSchema, await this.runLvm('pvs', pvArgs, signal)).flatMap((r) => r.pv);
    const pv = physicalVolumes.find((row) => row.pv_name === range.physicalVolume);
    if (!pv) throw new VcstorError('INTERNAL', `${formatCommandLine('pvs', pvArgs)} did not report physical volume ${range.physicalVolume} of ${lvPath}`);
    if (pv.vg_name !== this.pool) {
      throw new VcstorError('INTERNAL', `pvs says physical volume ${range.physicalVolume} belongs to volume group ${JSON.stringify(pv.vg_name)}, but ${lvPath} lies on it`);
    }
    return computeLoopMapping({
      lvPath,
      physicalVolume: range.physicalVolume,
      firstExtent: range.firstExtent,
      lastExtent: range.lastExtent,
      extentBytes: group.extentBytes,
      peStartBytes: byteCount(pv.pe_start, 'pe_start', 'pvs'),
      pvSizeBytes: byteCount(pv.pv_size, 'pv_size', 'pvs'),
      lvSizeBytes: volume.sizeBytes,
    });
  }

  // --- loop devices --------------------------------------------------------------------

  private async listLoopDevices(signal: AbortSignal): Promise<LoopDevice[]> {
    const { stdout } = await this.runner.run('losetup', [...LOSETUP_LIST], { signal });
    // losetup prints nothing at all when no loop device is set up.
    if (stdout.trim() === '') return [];
    let parsed: z.output<typeof losetupListSchema>;
    try {
      parsed = losetupListSchema.parse(JSON.parse(stdout));
    } catch (err) {
      throw new VcstorError('INTERNAL', `cannot read the output of ${formatCommandLine('losetup', LOSETUP_LIST)}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    return parsed.loopdevices.map((device) => ({
      name: device.name,
      backingFile: (device['back-file'] ?? '').replace(/ \(deleted\)$/, ''),
      offsetBytes: Number(device.offset),
      sizeLimitBytes: Number(device.sizelimit),
    }));
  }

  /** Loop devices mapping exactly this range. */
  private async loopDevicesMapping(mapping: LoopMapping, signal: AbortSignal): Promise<LoopDevice[]> {
    const isMapping = await mappingMatcher(mapping);
    return (await this.listLoopDevices(signal)).filter(isMapping);
  }

  /** The LV's loop mapping, or undefined for an LV no loop device can map. */
  private async loopMappingIfMappable(volume: LogicalVolume, signal: AbortSignal): Promise<LoopMapping | undefined> {
    try {
      return await this.loopMappingOf(volume, signal);
    } catch (err) {
      if (err instanceof UnmappableVolumeError) return undefined;
      throw err;
    }
  }

  private async detachLoopDevices(volume: LogicalVolume, signal: AbortSignal): Promise<void> {
    const mapping = await this.loopMappingIfMappable(volume, signal);
    if (!mapping) return;
    const mapped = await this.loopDevicesMapping(mapping, signal);
    if (mapped.length === 0) return;
    for (const device of mapped) await this.runner.run('losetup', ['--detach', device.name], { signal });
    // losetup --detach of an open device succeeds but only marks it for removal when the
    // last user closes it (autoclear): the device, and its view of the extents, stay.
    const remaining = await this.loopDevicesMapping(mapping, signal);
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
    const loops = await this.listLoopDevices(signal);
    if (!loops.some((d) => d.offsetBytes > 0 && d.sizeLimitBytes > 0)) return devices;
    for (const volume of volumes) {
      const mapping = await this.loopMappingIfMappable(volume, signal);
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

  /** Run an LVM program with the private configuration, explaining host-level failures. */
  private async runLvm(program: string, args: readonly string[], signal: AbortSignal): Promise<CommandResult> {
    const options: RunOptions = this.lvmEnvironment ? { signal, env: this.lvmEnvironment } : { signal };
    try {
      return await this.runner.run(program, args, options);
    } catch (err) {
      throw this.explainLvmFailure(err);
    }
  }

  private explainLvmFailure(err: unknown): unknown {
    if (!(err instanceof CommandError) || err.code !== 'INTERNAL') return err;
    if (/Volume group "[^"]*" not found/.test(err.stderr)) {
      return new VcstorError(
        'FAILED_PRECONDITION',
        `LVM volume group ${this.pool} does not exist on this host${this.lvmEnvironment ? ` (as seen with LVM_SYSTEM_DIR=${this.lvmEnvironment.LVM_SYSTEM_DIR})` : ''}: create it with vgcreate, or fix the agent's volume group setting`,
        { cause: err },
      );
    }
    // Not every mention of device-mapper: with activation = 0 LVM always warns that it
    // will not use it. These are the lines of a command that tried and failed.
    if (/Failure to communicate with kernel device-mapper driver|Required device-mapper target\(s\) not detected/.test(err.stderr)) {
      return new VcstorError(
        'FAILED_PRECONDITION',
        `LVM tried to use device-mapper, which this kernel does not have: set "global { activation = 0 }" in the lvm.conf of the driver's lvmSystemDir (and run it with activation off), or use a host with device-mapper`,
        { cause: err },
      );
    }
    return err;
  }

  /** After lvcreate was cancelled or timed out, remove the LV if it was made after all. */
  private async removeInterruptedCreate(name: string, sizeBytes: number): Promise<void> {
    // The caller's signal is aborted already; the clean-up gets its own short deadline.
    const cleanupSignal = AbortSignal.timeout(30_000);
    try {
      const made = await this.findLogicalVolume(name, cleanupSignal);
      if (made && isManaged(made) && made.sizeBytes === sizeBytes) {
        await this.runLvm('lvremove', ['--yes', `${this.pool}/${name}`], cleanupSignal);
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

// --- pure functions (exported for tests) ---------------------------------------------

/**
 * The loop mapping of one linear segment, with every value checked. Throws INTERNAL
 * (and so maps nothing) when a value is missing or does not add up.
 */
export function computeLoopMapping(input: {
  lvPath: string;
  physicalVolume: string;
  firstExtent: number;
  lastExtent: number;
  extentBytes: number;
  peStartBytes: number;
  pvSizeBytes: number;
  lvSizeBytes: number;
}): LoopMapping {
  const { lvPath, firstExtent, lastExtent, extentBytes, peStartBytes, pvSizeBytes, lvSizeBytes } = input;
  const refuse = (why: string) => new VcstorError('INTERNAL', `refusing to map ${lvPath} with a loop device: ${why}`);
  const counts = { firstExtent, lastExtent, extentBytes, peStartBytes, pvSizeBytes, lvSizeBytes };
  for (const [field, value] of Object.entries(counts)) {
    if (!Number.isSafeInteger(value) || value < 0) throw refuse(`${field} is ${value}, not a byte or extent count`);
  }
  if (!input.physicalVolume.startsWith('/')) throw refuse(`the physical volume ${JSON.stringify(input.physicalVolume)} is not a device path`);
  if (extentBytes === 0 || extentBytes % 512 !== 0) throw refuse(`extent size ${extentBytes} is not a positive multiple of 512`);
  // The PV's first bytes hold its label and LVM metadata; data always starts after them.
  if (peStartBytes === 0 || peStartBytes % 512 !== 0) throw refuse(`pe_start ${peStartBytes} is not a positive multiple of 512`);
  if (lastExtent < firstExtent) throw refuse(`its extent range ${firstExtent}-${lastExtent} is backwards`);
  const offsetBytes = peStartBytes + firstExtent * extentBytes;
  const sizeLimitBytes = (lastExtent - firstExtent + 1) * extentBytes;
  if (sizeLimitBytes !== lvSizeBytes) throw refuse(`its extents ${firstExtent}-${lastExtent} hold ${sizeLimitBytes} bytes but lvs says the LV has ${lvSizeBytes}`);
  if (offsetBytes + sizeLimitBytes > peStartBytes + pvSizeBytes) {
    throw refuse(`bytes ${offsetBytes}-${offsetBytes + sizeLimitBytes} lie beyond the physical volume's data area (which ends at ${peStartBytes + pvSizeBytes})`);
  }
  if (!Number.isSafeInteger(offsetBytes + sizeLimitBytes)) throw refuse('the offset is too large');
  return { physicalVolume: input.physicalVolume, offsetBytes, sizeLimitBytes };
}

/**
 * `seg_pe_ranges` of one segment: `PV:FIRST-LAST`. Several space-separated ranges mean a
 * striped or mirrored segment (FAILED_PRECONDITION); anything else is INTERNAL.
 */
export function parseExtentRange(text: string, lvPath: string): { physicalVolume: string; firstExtent: number; lastExtent: number } {
  const trimmed = text.trim();
  if (trimmed === '') {
    throw new VcstorError('INTERNAL', `refusing to map ${lvPath} with a loop device: lvs reported no physical extents for it (empty seg_pe_ranges)`);
  }
  if (/\s/.test(trimmed)) {
    throw new UnmappableVolumeError(`logical volume ${lvPath} is striped or mirrored (${trimmed}); a loop device can map only one contiguous range: use a host with device-mapper`);
  }
  const match = /^(\/\S+):(\d+)-(\d+)$/.exec(trimmed);
  if (!match) throw new VcstorError('INTERNAL', `refusing to map ${lvPath} with a loop device: cannot read its extent range ${JSON.stringify(trimmed)}`);
  return { physicalVolume: match[1] ?? '', firstExtent: Number(match[2]), lastExtent: Number(match[3]) };
}

/**
 * LVM's `lv_time` (`2026-11-24 22:59:17 +0000`, the default report/time_format) as Unix
 * milliseconds; 0 when it has another form (unknown is better than a failed listing).
 */
export function parseLvmTime(text: string): number {
  const match = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}) ([+-]\d{2})(\d{2})$/.exec(text.trim());
  if (!match) return 0;
  const parsed = Date.parse(`${match[1]}T${match[2]}${match[3]}:${match[4]}`);
  return Number.isNaN(parsed) ? 0 : parsed;
}

/**
 * A test for loop devices that map exactly `mapping`. The kernel records the backing
 * device by its real path, LVM may name the PV by a symbolic link: both count.
 */
async function mappingMatcher(mapping: LoopMapping): Promise<(device: LoopDevice) => boolean> {
  const names = new Set([mapping.physicalVolume, await realpath(mapping.physicalVolume).catch(() => mapping.physicalVolume)]);
  return (device) => names.has(device.backingFile) && device.offsetBytes === mapping.offsetBytes && device.sizeLimitBytes === mapping.sizeLimitBytes;
}

function isManaged(volume: LogicalVolume): boolean {
  return volume.tags.includes(VCSTOR_LV_TAG);
}

function roundUp(value: number, unit: number): number {
  return Math.ceil(value / unit) * unit;
}

/** A byte count as LVM prints it with --units b --nosuffix: digits only, never empty. */
function byteCount(text: string, field: string, program: string): number {
  const value = /^\d+$/.test(text.trim()) ? Number(text.trim()) : Number.NaN;
  if (!Number.isSafeInteger(value)) throw new VcstorError('INTERNAL', `${program} reported ${field} as ${JSON.stringify(text)}, not a byte count`);
  return value;
}

/** The rows of an LVM JSON report (`{"report":[{"lv":[...]}]}`), checked against `schema`. */
function parseReport<Section>(schema: z.ZodType<{ report: Section[] }>, result: CommandResult): Section[] {
  const commandLine = formatCommandLine(result.command, result.args);
  let parsed: unknown;
  try {
    parsed = JSON.parse(result.stdout);
  } catch (err) {
    throw new VcstorError('INTERNAL', `${commandLine} printed something that is not JSON: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const checked = schema.safeParse(parsed);
  if (!checked.success) {
    throw new VcstorError('INTERNAL', `${commandLine} printed a report of an unexpected form: ${checked.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return checked.data.report;
}

/** validateName, plus the names LVM keeps for itself. */
function validateLogicalVolumeName(field: string, value: string): string {
  validateName(field, value);
  if (RESERVED_LV_NAME_PREFIXES.some((prefix) => value.startsWith(prefix)) || RESERVED_LV_NAME_PARTS.some((part) => value.includes(part))) {
    throw invalidArgument(field, `${JSON.stringify(value)} is reserved by LVM for its own volumes (names starting with snapshot or pvmove, or containing parts like _tdata or _rimage)`);
  }
  return value;
}

async function pathExists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}
