import { VcstorError } from '../../common/errors.js';
import type { DomainRunState, DomainStatus } from '../hypervisor.js';

/**
 * What the Xen driver reads from xl: `xl list`, `xl block-list`, the libxl JSON of
 * `xl -N create` and `xl list -l`, and xl's complaints on stderr. Pure functions,
 * unit-tested on captured outputs.
 */

/** One row of `xl block-list`. */
export interface XlBlockDevice {
  /** The VBD's device number in xenstore (see {@link vbdDeviceNumber}). */
  deviceNumber: number;
  /** The domain serving it (0: dom0). */
  backendDomid: number;
  /** The guest's domain id (xl labels it "handle"). */
  frontendDomid: number;
  /** The backend's XenbusState: 1 initialising, 3 initialised, 4 connected, 5 closing, 6 closed. */
  state: number;
  /** The backend's xenstore directory, e.g. /local/domain/0/backend/vbd/5/51728. */
  backendPath: string;
}

/**
 * The domains in `xl list` output. Columns: Name, ID, Mem (MiB), VCPUs, State, Time(s).
 * xl pads the name to 40 columns but a longer name pushes the rest right, so a row is
 * read from its end: the last five fields are the numbers and the state. The state is
 * six flags, `-` when unset: r(unning) b(locked) p(aused) s(hut down), the shutdown
 * reason (- poweroff, r reboot, s suspend, c crash, w watchdog, S soft reset) and
 * d(ying). Domain-0 is included; XenHypervisor.list leaves it out.
 * @throws VcstorError INTERNAL for a row that is not in this form.
 */
export function parseXlList(output: string): DomainStatus[] {
  const domains: DomainStatus[] = [];
  for (const line of output.split('\n')) {
    if (line.trim() === '' || /^Name\s+ID\s/.test(line)) continue;
    const fields = line.trim().split(/\s+/);
    const [id, memory, vcpus, flags] = fields.slice(-5);
    if (fields.length < 6 || !isWholeNumber(id) || !isWholeNumber(memory) || !isWholeNumber(vcpus) || !/^[-a-zA-Z?]{6}$/.test(flags ?? '')) {
      throw new VcstorError('INTERNAL', `unexpected line in xl list output: ${JSON.stringify(line)}`);
    }
    domains.push({
      name: fields.slice(0, -5).join(' '),
      id: Number(id),
      state: runStateOf(flags ?? '------'),
      memoryMib: Number(memory),
      vcpus: Number(vcpus),
    });
  }
  return domains;
}

/**
 * The state a six-flag `xl list` state string stands for; the most final flag wins.
 * No flag at all (`------`) is a domain whose vCPUs wait for a physical CPU: running.
 */
function runStateOf(flags: string): DomainRunState {
  if (flags[5] === 'd') return 'dying';
  if (flags[4] === 'c') return 'crashed';
  if (flags[3] === 's') return 'shutdown';
  if (flags[2] === 'p') return 'paused';
  if (flags[1] === 'b' && flags[0] !== 'r') return 'blocked';
  return 'running';
}

/**
 * The disks in `xl block-list DOMAIN` output: a header (Vdev BE handle state evt-ch
 * ring-ref BE-path), then one row per VBD with its device number, the backend domain,
 * the frontend domain, the backend's xenbus state, the event channel and ring reference
 * (-1 before the guest connected) and the backend's xenstore path (…/vbd/… for blkback,
 * …/qdisk/… for QEMU). xl block-list shows no backing path.
 * @throws VcstorError INTERNAL for a row that is not in this form.
 */
export function parseXlBlockList(output: string): XlBlockDevice[] {
  const devices: XlBlockDevice[] = [];
  for (const line of output.split('\n')) {
    if (line.trim() === '' || /^Vdev\s+BE\s/.test(line)) continue;
    const match = /^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(-?\d+)\s+(-?\d+)\s+(\S+)\s*$/.exec(line);
    if (!match) throw new VcstorError('INTERNAL', `unexpected line in xl block-list output: ${JSON.stringify(line)}`);
    devices.push({
      deviceNumber: Number(match[1]),
      backendDomid: Number(match[2]),
      frontendDomid: Number(match[3]),
      state: Number(match[4]),
      backendPath: match[7] ?? '',
    });
  }
  return devices;
}

/** True when xl's stderr says the named domain does not exist. */
export function isNoSuchDomain(stderr: string): boolean {
  return /is an invalid domain identifier|does not exist/.test(stderr);
}

/** xl's stderr without the "Parsing config from" line, one line, for messages. */
export function xlComplaint(stderr: string): string {
  return stderr
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('Parsing config from '))
    .join(' | ')
    .slice(0, 2000);
}

/**
 * The dom0 files a dry-run config names: each disk's target, the kernel and the ramdisk,
 * as [what, path]. Empty when the output is not libxl's JSON.
 */
export function pathsOfDryRun(stdout: string): Array<[string, string]> {
  const config = libxlConfigOf(parseJson(stdout));
  const paths: Array<[string, string]> = [];
  for (const disk of disksOfLibxlConfig(config)) {
    if (disk.pdevPath !== undefined && disk.pdevPath !== '') paths.push([`disk ${disk.vdev ?? '?'}`, disk.pdevPath]);
  }
  const buildInfo = config?.b_info;
  if (isRecord(buildInfo)) {
    for (const key of ['kernel', 'ramdisk'] as const) {
      const file = buildInfo[key];
      if (typeof file === 'string' && file !== '') paths.push([key, file]);
    }
  }
  return paths;
}

/**
 * A libxl domain config in xl's JSON: `xl -N create` prints the config itself (c_info,
 * b_info, disks …), `xl list -l` an array of `{"domid": N, "config": {…}}`.
 */
export function libxlConfigOf(value: unknown): Record<string, unknown> | undefined {
  if (!isRecord(value)) return undefined;
  if (isRecord(value.config)) return value.config;
  return isRecord(value.c_info) ? value : undefined;
}

/** The disks of a libxl domain config (vdev and pdev_path, as libxl names them). */
export function disksOfLibxlConfig(config: Record<string, unknown> | undefined): Array<{ vdev: string | undefined; pdevPath: string | undefined }> {
  const disks = config?.disks;
  if (!Array.isArray(disks)) return [];
  return disks.filter(isRecord).map((disk) => ({
    vdev: typeof disk.vdev === 'string' ? disk.vdev : undefined,
    pdevPath: typeof disk.pdev_path === 'string' ? disk.pdev_path : undefined,
  }));
}

export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isWholeNumber(text: string | undefined): boolean {
  return text !== undefined && /^\d+$/.test(text);
}
