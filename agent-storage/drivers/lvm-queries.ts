import { realpath } from 'node:fs/promises';
import { VcstorError } from '../../common/errors.js';
import { CommandError, formatCommandLine, type CommandResult, type CommandRunner, type RunOptions } from '../../common/runner.js';
import {
  byteCount,
  computeLoopMapping,
  LOSETUP_LIST,
  LV_FIELDS,
  parseExtentRange,
  parseLogicalVolumes,
  parseLosetupList,
  parseReport,
  PV_FIELDS,
  pvsReportSchema,
  REPORT_FORMAT,
  SEGMENT_FIELDS,
  segmentReportSchema,
  UnmappableVolumeError,
  VG_FIELDS,
  vgsReportSchema,
  type LogicalVolume,
  type LoopDevice,
  type LoopMapping,
  type VolumeGroupSize,
} from './lvm-reports.js';

/**
 * What the LVM driver asks the host: LVM's reports of one volume group (through a
 * private LVM_SYSTEM_DIR when given), where an LV's extents lie, and the loop devices
 * set up. Queries only, except {@link LvmQueries.run}, through which the driver runs
 * its LVM changes too (for the same environment and the same failure explanations).
 */
export class LvmQueries {
  /** The VG's extent size once read: LvmVolumes.roundSize is synchronous, so it is remembered. */
  knownExtentBytes: number | undefined;
  private readonly lvmEnvironment: Readonly<Record<string, string>> | undefined;

  /** @param lvmSystemDir an absolute path, checked by the caller. */
  constructor(
    private readonly runner: CommandRunner,
    private readonly pool: string,
    lvmSystemDir: string | undefined,
  ) {
    this.lvmEnvironment = lvmSystemDir === undefined ? undefined : { LVM_SYSTEM_DIR: lvmSystemDir };
  }

  async readVolumeGroup(signal: AbortSignal): Promise<VolumeGroupSize> {
    const args = [...REPORT_FORMAT, '-o', VG_FIELDS, this.pool];
    const result = await this.run('vgs', args, signal);
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
  async readLogicalVolumes(signal: AbortSignal): Promise<LogicalVolume[]> {
    return parseLogicalVolumes(await this.run('lvs', [...REPORT_FORMAT, '-o', LV_FIELDS, this.pool], signal));
  }

  async findLogicalVolume(name: string, signal: AbortSignal): Promise<LogicalVolume | undefined> {
    return (await this.readLogicalVolumes(signal)).find((lv) => lv.name === name);
  }


  /**
   * Where the LV's one segment lies on its PV. Every value LVM reports is checked before
   * it reaches losetup: an empty or wrong offset would map the start of the PV (LVM's
   * metadata) or another LV, and writing there destroys the volume group.
   */
  async loopMappingOf(volume: LogicalVolume, signal: AbortSignal): Promise<LoopMapping> {
    const lvPath = `${this.pool}/${volume.name}`;
    // lvs refuses PV fields (pe_start) together with LV fields, hence three queries.
    const segments = parseReport(segmentReportSchema, await this.run('lvs', [...REPORT_FORMAT, '-o', SEGMENT_FIELDS, lvPath], signal))
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
    const physicalVolumes = parseReport(pvsReportSchema, await this.run('pvs', pvArgs, signal)).flatMap((r) => r.pv);
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

  /** Every loop device set up now. */
  async listLoopDevices(signal: AbortSignal): Promise<LoopDevice[]> {
    return parseLosetupList((await this.runner.run('losetup', [...LOSETUP_LIST], { signal })).stdout);
  }

  /** Loop devices mapping exactly this range. */
  async loopDevicesMapping(mapping: LoopMapping, signal: AbortSignal): Promise<LoopDevice[]> {
    const isMapping = await mappingMatcher(mapping);
    return (await this.listLoopDevices(signal)).filter(isMapping);
  }

  /** The LV's loop mapping, or undefined for an LV no loop device can map. */
  async loopMappingIfMappable(volume: LogicalVolume, signal: AbortSignal): Promise<LoopMapping | undefined> {
    try {
      return await this.loopMappingOf(volume, signal);
    } catch (err) {
      if (err instanceof UnmappableVolumeError) return undefined;
      throw err;
    }
  }

  /** Run an LVM program with the private configuration, explaining host-level failures. */
  async run(program: string, args: readonly string[], signal: AbortSignal): Promise<CommandResult> {
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
}

/**
 * A test for loop devices that map exactly `mapping`. The kernel records the backing
 * device by its real path, LVM may name the PV by a symbolic link: both count.
 */
export async function mappingMatcher(mapping: LoopMapping): Promise<(device: LoopDevice) => boolean> {
  const names = new Set([mapping.physicalVolume, await realpath(mapping.physicalVolume).catch(() => mapping.physicalVolume)]);
  return (device) => names.has(device.backingFile) && device.offsetBytes === mapping.offsetBytes && device.sizeLimitBytes === mapping.sizeLimitBytes;
}
