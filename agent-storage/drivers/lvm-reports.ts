import { z } from 'zod';
import { invalidArgument, VcstorError } from '../../common/errors.js';
import { formatCommandLine, type CommandResult } from '../../common/runner.js';
import { validateName } from '../../common/validate.js';

/**
 * What the LVM driver reads from LVM's JSON reports and losetup's listing, checked with
 * zod so surprises fail loudly, and the arithmetic of mapping an LV with a loop device.
 * Pure: nothing here runs a program.
 */

/** The LVM tag that marks a logical volume as vcstor's. */
export const VCSTOR_LV_TAG = 'vcstor';
/**
 * Marks an LV whose zero-fill has not finished: an LV is handed out only once zeroed,
 * so a new tenant never reads a deleted volume's data. A create that finds the tag
 * (after a crash mid-fill) zeroes the LV again.
 */
export const ZEROING_LV_TAG = 'vcstor_zeroing';

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
export class UnmappableVolumeError extends VcstorError {
  constructor(message: string) {
    super('FAILED_PRECONDITION', message);
  }
}

/** A logical volume as `lvs` reports it. */
export interface LogicalVolume {
  name: string;
  sizeBytes: number;
  tags: string[];
  createdUnixMs: number;
}

/** The numbers of the volume group `vgs` reports. */
export interface VolumeGroupSize {
  extentBytes: number;
  totalBytes: number;
  freeBytes: number;
}

/** One loop device as `losetup --list` reports it. */
export interface LoopDevice {
  name: string;
  backingFile: string;
  offsetBytes: number;
  sizeLimitBytes: number;
}

// --- Report formats of the tools, checked with zod so surprises fail loudly. ----------

export const vgsReportSchema = z.object({
  report: z.array(z.object({ vg: z.array(z.object({ vg_extent_size: z.string(), vg_size: z.string(), vg_free: z.string() })) })),
});
const lvsReportSchema = z.object({
  report: z.array(z.object({ lv: z.array(z.object({ lv_name: z.string(), lv_size: z.string(), lv_tags: z.string(), lv_time: z.string() })) })),
});
export const segmentReportSchema = z.object({
  report: z.array(z.object({ lv: z.array(z.object({ lv_name: z.string(), seg_pe_ranges: z.string() })) })),
});
export const pvsReportSchema = z.object({
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
export const REPORT_FORMAT = ['--reportformat', 'json', '--units', 'b', '--nosuffix'] as const;
export const LV_FIELDS = 'lv_name,lv_size,lv_tags,lv_time';
export const SEGMENT_FIELDS = 'lv_name,seg_pe_ranges';
export const VG_FIELDS = 'vg_extent_size,vg_size,vg_free';
export const PV_FIELDS = 'pv_name,vg_name,pe_start,pv_size';
export const LOSETUP_LIST = ['--json', '--list', '-O', 'NAME,BACK-FILE,OFFSET,SIZELIMIT'] as const;

// LVM names: letters, digits and + _ . - (not starting with '-'); see lvm(8) "VALID NAMES".
export const VOLUME_GROUP_NAME = /^[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}$/;
// Name parts LVM keeps for its own hidden LVs (lvm(8)); lvcreate refuses them.
const RESERVED_LV_NAME_PARTS = ['_cdata', '_cmeta', '_corig', '_cpool', '_cvol', '_imeta', '_iorig', '_mimage', '_mlog', '_pmspare', '_rimage', '_rmeta', '_tdata', '_tmeta', '_vdata', '_vorigin', '_wcorig'];
const RESERVED_LV_NAME_PREFIXES = ['snapshot', 'pvmove'];

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

/** A byte count as LVM prints it with --units b --nosuffix: digits only, never empty. */
export function byteCount(text: string, field: string, program: string): number {
  const value = /^\d+$/.test(text.trim()) ? Number(text.trim()) : Number.NaN;
  if (!Number.isSafeInteger(value)) throw new VcstorError('INTERNAL', `${program} reported ${field} as ${JSON.stringify(text)}, not a byte count`);
  return value;
}

/** The rows of an LVM JSON report (`{"report":[{"lv":[...]}]}`), checked against `schema`. */
export function parseReport<Section>(schema: z.ZodType<{ report: Section[] }>, result: CommandResult): Section[] {
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
export function validateLogicalVolumeName(field: string, value: string): string {
  validateName(field, value);
  if (RESERVED_LV_NAME_PREFIXES.some((prefix) => value.startsWith(prefix)) || RESERVED_LV_NAME_PARTS.some((part) => value.includes(part))) {
    throw invalidArgument(field, `${JSON.stringify(value)} is reserved by LVM for its own volumes (names starting with snapshot or pvmove, or containing parts like _tdata or _rimage)`);
  }
  return value;
}

/** `losetup --json --list` output ({@link LOSETUP_LIST}); nothing at all means no loop device is set up. */
export function parseLosetupList(stdout: string): LoopDevice[] {
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

/** The LVs of an `lvs -o LV_FIELDS` report. */
export function parseLogicalVolumes(result: CommandResult): LogicalVolume[] {
  return parseReport(lvsReportSchema, result)
    .flatMap((r) => r.lv)
    .map((row) => ({
      name: row.lv_name,
      sizeBytes: byteCount(row.lv_size, 'lv_size', 'lvs'),
      tags: row.lv_tags === '' ? [] : row.lv_tags.split(','),
      createdUnixMs: parseLvmTime(row.lv_time),
    }));
}

/** Whether vcstor made the LV: it carries {@link VCSTOR_LV_TAG}. */
export function isManaged(volume: LogicalVolume): boolean {
  return volume.tags.includes(VCSTOR_LV_TAG);
}
