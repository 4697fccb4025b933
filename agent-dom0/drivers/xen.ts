import { stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import { VcstorError, invalidArgument } from '../../common/errors.js';
import type {
  AttachedDisk,
  DomainDisk,
  DomainRunState,
  DomainSpec,
  DomainStatus,
  HypervisorDriver,
  VbdBackendKind,
} from '../hypervisor.js';
import { CommandError, type CommandResult, type CommandRunner } from '../../common/runner.js';
import { validateName } from '../../common/validate.js';

/**
 * The Xen hypervisor driven through xl (libxl's command line tool) on a real dom0.
 * Domains are described by xl config files (xl.cfg(5)); their disks use the keyword
 * syntax of xl-disk-configuration(5). Every program runs through the injected
 * CommandRunner, so a host without xl gets the runner's UNAVAILABLE error.
 *
 * How the three ways vcstor hands a disk to a guest map onto xl's disk syntax. The old
 * xend prefixes (`phy:`, `file:`, `tap:aio:`) are "stripped and ignored" by today's
 * parser (xl-disk-configuration(5), "deprecated-prefix"; libxlu_disk_l.l), which would
 * leave the choice of backend to libxl, so the backend is always named explicitly:
 *
 * - `phy` (a block device: an iSCSI LUN, a loop device) → `backendtype=phy`: the dom0
 *   kernel's blkback serves the device itself.
 * - `file` (an image file) → `backendtype=phy` as well. xend's `file:` meant "put the
 *   image on a loop device and serve that with blkback"; libxl on Linux accepts regular
 *   files for the phy backend (libxl__try_phy_backend in libxl_linux.c), and the
 *   `block` hotplug script looks at what the path really is and, for a regular file,
 *   runs losetup and hands the loop device to blkback (and detaches it on removal).
 *   Same data path as xend's `file:`, kernel all the way.
 * - `tap-aio` (an image file through a user-space backend) → `backendtype=qdisk`.
 *   `tap:aio:` meant blktap2's user-space aio driver. blktap2 is gone from Xen (4.13),
 *   and `backendtype=tap` now needs blktap3's tapback daemon, which Debian does not
 *   package. qdisk is QEMU's Xen PV block backend in dom0, the user-space backend libxl
 *   itself falls back to; it opens the image with asynchronous I/O, which is what
 *   tap:aio: gave. libxl starts the QEMU (qemu-system-xen) for PV guests that need it.
 *
 * `target=` is always the last parameter of a disk spec: the parser takes everything
 * after it, commas, colons and spaces included (xl-disk-configuration(5), "target"),
 * so paths such as /dev/disk/by-path/ip-192.0.2.10:3260-iscsi-iqn...:vol0-lun-1 need
 * no quoting.
 */

/** xl's own file name of domain 0 in `xl list`. */
const DOMAIN0_NAME = 'Domain-0';

/**
 * Characters that end a quoted xl.cfg string early (' and "), start an escape in one (\)
 * or break its line (control characters): no value containing them is written.
 * Refusing them is simpler and safer than escaping: no path or name vcstor makes has them.
 */
// eslint-disable-next-line no-control-regex
const UNSAFE_IN_XL_STRING = /['"\\\u0000-\u001f\u007f]/;

/** MAX_GUEST_CMDLINE of Xen's public headers: the hypervisor keeps 1024 bytes of it. */
const MAX_KERNEL_CMDLINE_BYTES = 1024;

/** Linux IFNAMSIZ is 16 with the NUL; bridge names are plain characters. */
const BRIDGE_NAME = /^[A-Za-z0-9_.-]{1,15}$/;

const MAC_ADDRESS = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;

/** A bootloader: `pygrub` (looked up in Xen's bin directory) or an absolute path. */
const BOOTLOADER = /^(?:[A-Za-z0-9._-]+|\/[A-Za-z0-9._/-]+)$/;

/** The backendtype= each way of providing a disk gets (see the comment at the top). */
const BACKEND_TYPE: Readonly<Record<VbdBackendKind, 'phy' | 'qdisk'>> = {
  phy: 'phy',
  file: 'phy',
  'tap-aio': 'qdisk',
};

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
 * The number xenstore knows a virtual disk by, from its name as written in a disk spec,
 * per xen-vbd-interface(7):
 *
 *     202 << 8 | disk << 4 | partition   xvd, disks and partitions up to 15
 *     1 << 28 | disk << 8 | partition    xvd, disks from 16 (up to 2^20-1), partitions up to 255
 *     8 << 8 | disk << 4 | partition     sd, disks and partitions up to 15
 *     3 << 8 | disk << 6 | partition     hd, disks 0-1, partitions up to 63
 *     22 << 8 | (disk-2) << 6 | partition  hd, disks 2-3
 *
 * The disk letters count like spreadsheet columns (a=0 … z=25, aa=26, ab=27 …), as in
 * libxl's device_virtdisk_matches, and a partition number has no leading zero (no
 * partition: the whole disk). So xvda=51712, xvdb=51728, xvdb1=51729, xvdq=268439552.
 * @throws VcstorError INVALID_ARGUMENT for names libxl would not accept (numbers and the
 *   d<N>p<M> form are not used by vcstor and are refused too).
 */
export function vbdDeviceNumber(vdev: string): number {
  const match = /^(xvd|sd|hd)([a-z]{1,6})([1-9][0-9]{0,2})?$/.exec(vdev);
  if (!match) {
    throw invalidArgument('vdev', `${JSON.stringify(vdev)} is not a virtual disk name (xvdX, sdX or hdX, optionally with a partition number)`);
  }
  const [, kind = '', letters = '', partitionText] = match;
  let diskPlusOne = 0;
  for (const letter of letters) diskPlusOne = diskPlusOne * 26 + (letter.charCodeAt(0) - 96);
  const disk = diskPlusOne - 1;
  const partition = partitionText === undefined ? 0 : Number(partitionText);
  const outOfRange = (maxDisk: number, maxPartition: number) =>
    invalidArgument('vdev', `${vdev} is out of range (${kind} disks 0-${maxDisk}, partitions up to ${maxPartition})`);
  switch (kind) {
    case 'xvd':
      if (disk < 16 && partition < 16) return (202 << 8) | (disk << 4) | partition;
      if (disk < 2 ** 20 && partition < 256) return 2 ** 28 + disk * 256 + partition;
      throw outOfRange(2 ** 20 - 1, 255);
    case 'sd':
      if (disk < 16 && partition < 16) return (8 << 8) | (disk << 4) | partition;
      throw outOfRange(15, 15);
    default:
      if (disk > 3 || partition > 63) throw outOfRange(3, 63);
      return disk < 2 ? (3 << 8) | (disk << 6) | partition : (22 << 8) | ((disk - 2) << 6) | partition;
  }
}

/**
 * A domain name as vcstor uses it with xl: a resource name ({@link validateName}) that is
 * not all digits, because xl reads an all-digit argument as a domain id.
 * @throws VcstorError INVALID_ARGUMENT otherwise.
 */
export function validateDomainName(field: string, name: string): string {
  validateName(field, name);
  if (/^[0-9]+$/.test(name)) throw invalidArgument(field, `${name} is all digits, which xl would read as a domain id`);
  return name;
}

/**
 * The xl-disk-configuration(5) spec of one disk, keyword form, `target=` last:
 * `format=raw, vdev=xvdb, access=rw, backendtype=phy, target=/dev/sdb`. The same text
 * goes into a config file's disk list and, as one argument, to `xl block-attach`.
 * @throws VcstorError INVALID_ARGUMENT for a bad vdev, or a target that is not an
 *   absolute path in normal form, holds a quote, backslash or control character, ends
 *   with a comma (the parser strips one trailing comma), or does not fit the kind:
 *   `phy` targets are block devices under /dev, `file` and `tap-aio` targets image files
 *   outside it.
 */
export function renderDiskSpec(disk: DomainDisk, field = 'disk'): string {
  vbdDeviceNumber(disk.vdev);
  checkAbsolutePath(`${field}.target`, disk.target);
  if (disk.target.endsWith(',')) throw invalidArgument(`${field}.target`, 'ends with a comma, which the xl disk parser would drop');
  const underDev = disk.target.startsWith('/dev/');
  if (disk.kind === 'phy' && !underDev) {
    throw invalidArgument(`${field}.target`, `${disk.target} is not under /dev: a phy disk is a block device`);
  }
  if (disk.kind !== 'phy' && underDev) {
    throw invalidArgument(`${field}.target`, `${disk.target} is under /dev: a ${disk.kind} disk is an image file (use kind phy for block devices)`);
  }
  const backendType = BACKEND_TYPE[disk.kind];
  if (backendType === undefined) throw invalidArgument(`${field}.kind`, `${String(disk.kind)} is not phy, file or tap-aio`);
  const access = disk.readOnly ? 'ro' : 'rw';
  return `format=raw, vdev=${disk.vdev}, access=${access}, backendtype=${backendType}, target=${disk.target}`;
}

/**
 * The xl config file text of a domain: one `key = value` per line in a fixed order, so
 * the same spec always gives the same bytes. Strings are double-quoted and list items
 * single-quoted, as in xl.cfg(5); no value can contain a quote, so none is escaped.
 *
 * PV and PVH guests boot a kernel from dom0 (`kernel`, `ramdisk`, `cmdline`, the key
 * xl prefers over the older `extra`/`root`) or run a `bootloader` such as pygrub; HVM
 * guests boot their firmware and may name a kernel for a direct boot, but not a
 * bootloader. Checks the config xl itself would accept without complaint but get
 * wrong: vdev names, vdevs used twice, MAC addresses (xl exits 0 on all three).
 * @throws VcstorError INVALID_ARGUMENT naming the first field that cannot be written.
 */
export function renderXlConfig(spec: DomainSpec): string {
  validateDomainName('name', spec.name);
  if (spec.type !== 'pv' && spec.type !== 'pvh' && spec.type !== 'hvm') {
    throw invalidArgument('type', `${JSON.stringify(spec.type)} is not pv, pvh or hvm`);
  }
  if (!Number.isInteger(spec.memoryMib) || spec.memoryMib < 1) throw invalidArgument('memoryMib', `${spec.memoryMib} is not a positive whole number of MiB`);
  if (!Number.isInteger(spec.vcpus) || spec.vcpus < 1) throw invalidArgument('vcpus', `${spec.vcpus} is not a positive whole number`);

  const lines = [`name = "${spec.name}"`, `type = "${spec.type}"`, `memory = ${spec.memoryMib}`, `vcpus = ${spec.vcpus}`];

  // Unset strings may arrive empty rather than absent (proto3 defaults): both mean "none".
  const kernel = spec.kernel !== undefined && (spec.kernel.kernel !== '' || spec.kernel.ramdisk !== '' || spec.kernel.cmdline !== '') ? spec.kernel : undefined;
  const bootloader = spec.bootloader === '' ? undefined : spec.bootloader;
  if (kernel && bootloader !== undefined) throw invalidArgument('bootloader', 'give either a kernel or a bootloader, not both');
  if (spec.type !== 'hvm' && !kernel && bootloader === undefined) {
    throw invalidArgument('kernel', `a ${spec.type} guest needs a kernel or a bootloader to boot`);
  }
  if (kernel) {
    checkAbsolutePath('kernel.kernel', kernel.kernel);
    lines.push(`kernel = "${kernel.kernel}"`);
    if (kernel.ramdisk !== '') {
      checkAbsolutePath('kernel.ramdisk', kernel.ramdisk);
      lines.push(`ramdisk = "${kernel.ramdisk}"`);
    }
    if (kernel.cmdline !== '') {
      checkXlString('kernel.cmdline', kernel.cmdline);
      if (Buffer.byteLength(kernel.cmdline) >= MAX_KERNEL_CMDLINE_BYTES) {
        throw invalidArgument('kernel.cmdline', `is longer than ${MAX_KERNEL_CMDLINE_BYTES - 1} bytes (Xen's limit)`);
      }
      lines.push(`cmdline = "${kernel.cmdline}"`);
    }
  }
  if (bootloader !== undefined) {
    if (spec.type === 'hvm') throw invalidArgument('bootloader', 'HVM guests boot their own firmware: a bootloader is for pv and pvh guests');
    if (!BOOTLOADER.test(bootloader) || bootloader.split('/').some((segment) => segment === '.' || segment === '..')) {
      throw invalidArgument('bootloader', `${JSON.stringify(bootloader)} is not a program name (such as pygrub) or an absolute path`);
    }
    lines.push(`bootloader = "${bootloader}"`);
  }

  if (spec.vifs.length > 0) {
    const vifs = spec.vifs.map((vif, i) => `'${renderVifSpec(vif, `vifs[${i}]`)}'`);
    lines.push(`vif = [ ${vifs.join(', ')} ]`);
  }

  if (spec.disks.length > 0) {
    const seen = new Map<number, string>();
    const disks = spec.disks.map((disk, i) => {
      const field = `disks[${i}]`;
      const text = renderDiskSpec(disk, field);
      const number = vbdDeviceNumber(disk.vdev);
      const earlier = seen.get(number);
      if (earlier !== undefined) throw invalidArgument(`${field}.vdev`, `${disk.vdev} is the same virtual disk as ${earlier}`);
      seen.set(number, disk.vdev);
      return `'${text}'`;
    });
    lines.push(`disk = [ ${disks.join(', ')} ]`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * A vif spec (xl-network-configuration(5)): `bridge=…,mac=…,ip=…`, empty keys left out
 * (an all-empty vif gets xl's defaults: the default bridge and a random MAC).
 * @throws VcstorError INVALID_ARGUMENT for a bridge that is not an interface name, a MAC
 *   that is not a unicast address in aa:bb:cc:dd:ee:ff form, or an ip that is not one
 *   IPv4 or IPv6 address.
 */
export function renderVifSpec(vif: { bridge: string; mac: string; ip: string }, field = 'vif'): string {
  const parts: string[] = [];
  if (vif.bridge !== '') {
    if (!BRIDGE_NAME.test(vif.bridge) || vif.bridge === '.' || vif.bridge === '..') {
      throw invalidArgument(`${field}.bridge`, `${JSON.stringify(vif.bridge)} is not a network interface name (1-15 of A-Z a-z 0-9 _ . -)`);
    }
    parts.push(`bridge=${vif.bridge}`);
  }
  if (vif.mac !== '') {
    const mac = vif.mac.toLowerCase();
    if (!MAC_ADDRESS.test(mac)) throw invalidArgument(`${field}.mac`, `${JSON.stringify(vif.mac)} is not a MAC address (aa:bb:cc:dd:ee:ff)`);
    // Bit 0 of the first octet marks a multicast address, which no NIC may own.
    if (parseInt(mac.slice(0, 2), 16) & 1) throw invalidArgument(`${field}.mac`, `${vif.mac} is a multicast address`);
    if (mac === '00:00:00:00:00:00') throw invalidArgument(`${field}.mac`, 'is all zeros');
    parts.push(`mac=${mac}`);
  }
  if (vif.ip !== '') {
    if (isIP(vif.ip) === 0) throw invalidArgument(`${field}.ip`, `${JSON.stringify(vif.ip)} is not an IP address`);
    parts.push(`ip=${vif.ip}`);
  }
  return parts.join(',');
}

/**
 * The domains in `xl list` output. Columns: Name, ID, Mem (MiB), VCPUs, State, Time(s).
 * xl pads the name to 40 columns but a longer name pushes the rest right, so a row is
 * read from its end: the last five fields are the numbers and the state. The state is
 * six flags, `-` when unset: r(unning) b(locked) p(aused) s(hut down), the shutdown
 * reason (- poweroff, r reboot, s suspend, c crash, w watchdog, S soft reset) and
 * d(ying). Domain-0 is included; {@link XenHypervisor.list} leaves it out.
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

/** The Xen hypervisor, through xl. See the comment at the top of this file for the disk mapping. */
/** How long a domain whose destroy failed may take to disappear by itself (see stop). */
const DESTROY_SETTLE_MS = 5_000;

export class XenHypervisor implements HypervisorDriver {
  /** Always 'xen'. */
  readonly driver = 'xen' as const;
  private readonly runner: CommandRunner;
  private readonly xl: string;

  /**
   * @param options.runner runs xl.
   * @param options.xl the xl program (default `xl`, found on PATH; Debian's is a wrapper
   *   around /usr/lib/xen-<version>/bin/xl).
   */
  constructor(options: { runner: CommandRunner; xl?: string }) {
    this.runner = options.runner;
    this.xl = options.xl ?? 'xl';
  }

  /**
   * The xl config text of `spec` ({@link renderXlConfig}). Pure: the same spec gives the
   * same text.
   * @throws VcstorError INVALID_ARGUMENT for a value xl's syntax cannot carry safely.
   */
  renderConfig(spec: DomainSpec): string {
    return renderXlConfig(spec);
  }

  /**
   * Let xl parse a config file without creating anything: `xl -N create PATH`. xl prints
   * "Parsing config from PATH" on stderr and the resulting libxl domain config as JSON on
   * stdout. It fails (exit 1) on syntax errors and bad disk parameters but only warns on
   * stderr, exit 0, about unknown keys and some bad values, so any stderr line besides
   * the "Parsing config" one counts as a complaint. xl does not check that files exist:
   * the disk targets, kernel and ramdisk of the parsed config are checked here.
   * Idempotent and read-only.
   * @throws VcstorError INVALID_ARGUMENT with xl's complaint or naming the missing path;
   *   UNAVAILABLE when xl is not installed or cannot reach the hypervisor ("cannot init
   *   xl context": no /dev/xen/privcmd or xenstored); CANCELLED, DEADLINE_EXCEEDED.
   */
  async checkConfig(configPath: string, signal: AbortSignal): Promise<void> {
    checkAbsolutePath('configPath', configPath);
    let result: CommandResult;
    try {
      result = await this.runner.run(this.xl, ['-N', 'create', configPath], { signal });
    } catch (err) {
      if (err instanceof CommandError && err.code === 'INTERNAL' && err.exitCode !== undefined) {
        if (/cannot init xl context/.test(err.stderr)) {
          throw new VcstorError('UNAVAILABLE', `xl cannot reach the Xen hypervisor on this host: ${xlComplaint(err.stderr)}`, { cause: err });
        }
        const complaint = xlComplaint(err.stderr) || xlComplaint(err.stdout) || `exit code ${err.exitCode}`;
        throw new VcstorError('INVALID_ARGUMENT', `xl rejects ${configPath}: ${complaint}`, { cause: err });
      }
      throw err;
    }
    const complaint = xlComplaint(result.stderr);
    if (complaint !== '') throw new VcstorError('INVALID_ARGUMENT', `xl complains about ${configPath}: ${complaint}`);
    for (const [what, file] of pathsOfDryRun(result.stdout)) {
      try {
        await stat(file);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const why = code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? String(err)})`;
        throw new VcstorError('INVALID_ARGUMENT', `${configPath}: ${what} ${file} ${why}`);
      }
    }
  }

  /**
   * Start a domain: `xl create PATH`, unless `xl list NAME` shows a domain of that name.
   * Idempotent: a running, blocked or paused domain is left as it is (false).
   * @throws VcstorError FAILED_PRECONDITION when the domain exists but has shut down,
   *   crashed or is dying (stop it with force to clear it first); INVALID_ARGUMENT for a
   *   bad name or path; the runner's CommandErrors for xl failures (INTERNAL with xl's
   *   stderr, UNAVAILABLE without xl, CANCELLED, DEADLINE_EXCEEDED).
   */
  async start(name: string, configPath: string, signal: AbortSignal): Promise<boolean> {
    validateDomainName('name', name);
    checkAbsolutePath('configPath', configPath);
    const current = await this.domainState(name, signal);
    if (current !== undefined) {
      if (current === 'shutdown' || current === 'crashed' || current === 'dying') {
        throw new VcstorError('FAILED_PRECONDITION', `domain ${name} exists but is ${current}: stop it with force before starting it again`);
      }
      return false;
    }
    try {
      await this.runner.run(this.xl, ['create', configPath], { signal });
    } catch (err) {
      // Another caller created it between our look and our create.
      if (err instanceof CommandError && /already exists/i.test(err.stderr)) return false;
      throw err;
    }
    return true;
  }

  /**
   * Stop a domain: `xl shutdown -w -F NAME` (ask the guest to power off and wait until it
   * has; -F falls back to the ACPI power button for HVM guests without PV drivers), killed
   * after `timeoutMs`; or `xl destroy NAME` when `force`. A domain that has already shut
   * down or crashed but still exists is destroyed to clear it, and counts as not running.
   * Idempotent: false when no such domain runs (including one that vanished meanwhile).
   * @throws VcstorError FAILED_PRECONDITION when the guest offers no way to ask it to shut
   *   down (use force); DEADLINE_EXCEEDED when it did not shut down within `timeoutMs`
   *   (it may still do so); the runner's other CommandErrors.
   */
  async stop(name: string, force: boolean, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
    validateDomainName('name', name);
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1) throw invalidArgument('timeoutMs', `${timeoutMs} is not a positive whole number of ms`);
    const current = await this.domainState(name, signal);
    if (current === undefined || current === 'dying') return false;
    const stillRunning = current !== 'shutdown' && current !== 'crashed';
    try {
      if (force || !stillRunning) {
        await this.runner.run(this.xl, ['destroy', name], { signal, timeoutMs });
      } else {
        await this.runner.run(this.xl, ['shutdown', '-w', '-F', name], { signal, timeoutMs });
      }
    } catch (err) {
      if (err instanceof CommandError && isNoSuchDomain(err.stderr)) return false;
      // Right after a shutdown, xl's own clean-up (the block scripts) may still hold the
      // domain: a destroy then fails ("Unable to destroy guest") and the domain is gone a
      // moment later (seen under Xen 4.17). Gone soon is stopped; still there is a failure.
      if (err instanceof CommandError && /Unable to destroy guest/.test(err.stderr) && (await this.goneWithin(name, DESTROY_SETTLE_MS, signal))) return false;
      if (err instanceof CommandError && /PV control interface not available/.test(err.stderr)) {
        throw new VcstorError(
          'FAILED_PRECONDITION',
          `domain ${name} cannot be asked to shut down (no PV drivers running in it yet, and no ACPI): stop it with force`,
          { cause: err },
        );
      }
      throw err;
    }
    return stillRunning;
  }

  /**
   * The domains `xl list` shows, without Domain-0.
   * @throws the runner's CommandErrors; VcstorError INTERNAL for output not understood.
   */
  async list(signal: AbortSignal): Promise<DomainStatus[]> {
    const result = await this.runner.run(this.xl, ['list'], { signal });
    return parseXlList(result.stdout).filter((domain) => domain.id !== 0 && domain.name !== DOMAIN0_NAME);
  }

  /**
   * Hot-plug a disk: `xl block-attach DOMAIN 'format=raw, vdev=…, access=…,
   * backendtype=…, target=…'`. Idempotent: when `xl block-list DOMAIN` already has the
   * vdev's device number and the domain's config (`xl list -l DOMAIN`) gives it the same
   * target, nothing runs. When the config cannot be read as JSON (xl.conf's
   * output_format=sxp) the vdev alone decides. The guest sees the disk as /dev/<vdev>
   * (Linux blkfront names xvd disks after the vdev).
   * @throws VcstorError INVALID_ARGUMENT for a disk that cannot be written
   *   ({@link renderDiskSpec}); NOT_FOUND when the domain does not exist;
   *   FAILED_PRECONDITION when the vdev holds another target; the runner's CommandErrors
   *   for xl failures (INTERNAL with xl's stderr, e.g. a hotplug script that failed).
   */
  async attachDisk(domain: string, disk: DomainDisk, signal: AbortSignal): Promise<AttachedDisk> {
    validateDomainName('domain', domain);
    const spec = renderDiskSpec(disk);
    const attached: AttachedDisk = { guestDevice: `/dev/${disk.vdev}` };
    const devices = await this.blockDevices(domain, signal);
    if (devices === undefined) throw new VcstorError('NOT_FOUND', `domain ${domain} does not exist`);
    if (devices.some((device) => device.deviceNumber === vbdDeviceNumber(disk.vdev))) {
      const target = await this.configuredTarget(domain, disk.vdev, signal);
      if (target !== undefined && target !== disk.target) {
        throw new VcstorError('FAILED_PRECONDITION', `${disk.vdev} of domain ${domain} already holds ${target}, not ${disk.target}`);
      }
      return attached;
    }
    await this.runner.run(this.xl, ['block-attach', domain, spec], { signal });
    return attached;
  }

  /**
   * Unplug a disk: `xl block-detach DOMAIN VDEV` (xl waits for the guest to release it).
   * Idempotent: false when `xl block-list` has no disk with that vdev, or the domain
   * does not exist (any more).
   * @throws VcstorError INVALID_ARGUMENT for a bad vdev or name; the runner's
   *   CommandErrors for xl failures (INTERNAL with xl's stderr).
   */
  async detachDisk(domain: string, vdev: string, signal: AbortSignal): Promise<boolean> {
    validateDomainName('domain', domain);
    const deviceNumber = vbdDeviceNumber(vdev);
    const devices = await this.blockDevices(domain, signal);
    if (!devices?.some((device) => device.deviceNumber === deviceNumber)) return false;
    try {
      await this.runner.run(this.xl, ['block-detach', domain, vdev], { signal });
    } catch (err) {
      // Detached (or the domain gone) between our look and our detach.
      if (err instanceof CommandError && (/not connected/.test(err.stderr) || isNoSuchDomain(err.stderr))) return false;
      throw err;
    }
    return true;
  }

  /** The state of the domain named `name`, or undefined when there is none. */
  /** True when `xl list` stops showing the domain (or shows it dying) within `ms`. */
  private async goneWithin(name: string, ms: number, signal: AbortSignal): Promise<boolean> {
    const until = Date.now() + ms;
    for (;;) {
      const state = await this.domainState(name, signal);
      if (state === undefined || state === 'dying') return true;
      if (Date.now() >= until) return false;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  private async domainState(name: string, signal: AbortSignal): Promise<DomainRunState | undefined> {
    let result: CommandResult;
    try {
      result = await this.runner.run(this.xl, ['list', name], { signal });
    } catch (err) {
      if (err instanceof CommandError && isNoSuchDomain(err.stderr)) return undefined;
      throw err;
    }
    return parseXlList(result.stdout).find((domain) => domain.name === name)?.state;
  }

  /**
   * The VBDs of a domain, or undefined when it does not exist. xl block-list reports an
   * unknown domain on stderr but still exits 0.
   */
  private async blockDevices(domain: string, signal: AbortSignal): Promise<XlBlockDevice[] | undefined> {
    let result: CommandResult;
    try {
      result = await this.runner.run(this.xl, ['block-list', domain], { signal });
    } catch (err) {
      if (err instanceof CommandError && isNoSuchDomain(err.stderr)) return undefined;
      throw err;
    }
    if (isNoSuchDomain(result.stderr)) return undefined;
    return parseXlBlockList(result.stdout);
  }

  /**
   * The target the domain's libxl config gives `vdev` (libxl keeps it up to date on
   * hot-plug), or undefined when the config is not JSON or has no such disk.
   */
  private async configuredTarget(domain: string, vdev: string, signal: AbortSignal): Promise<string | undefined> {
    const result = await this.runner.run(this.xl, ['list', '-l', domain], { signal });
    const entries = parseJson(result.stdout);
    for (const entry of Array.isArray(entries) ? entries : [entries]) {
      for (const disk of disksOfLibxlConfig(libxlConfigOf(entry))) {
        if (disk.vdev === vdev) return disk.pdevPath;
      }
    }
    return undefined;
  }
}

/** True when xl's stderr says the named domain does not exist. */
function isNoSuchDomain(stderr: string): boolean {
  return /is an invalid domain identifier|does not exist/.test(stderr);
}

/** xl's stderr without the "Parsing config from" line, one line, for messages. */
function xlComplaint(stderr: string): string {
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
function pathsOfDryRun(stdout: string): Array<[string, string]> {
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
function libxlConfigOf(value: unknown): Record<string, unknown> | undefined {
  if (!isRecord(value)) return undefined;
  if (isRecord(value.config)) return value.config;
  return isRecord(value.c_info) ? value : undefined;
}

/** The disks of a libxl domain config (vdev and pdev_path, as libxl names them). */
function disksOfLibxlConfig(config: Record<string, unknown> | undefined): Array<{ vdev: string | undefined; pdevPath: string | undefined }> {
  const disks = config?.disks;
  if (!Array.isArray(disks)) return [];
  return disks.filter(isRecord).map((disk) => ({
    vdev: typeof disk.vdev === 'string' ? disk.vdev : undefined,
    pdevPath: typeof disk.pdev_path === 'string' ? disk.pdev_path : undefined,
  }));
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isWholeNumber(text: string | undefined): boolean {
  return text !== undefined && /^\d+$/.test(text);
}

/** A value written between quotes in an xl config: no quote, backslash or control character. */
function checkXlString(field: string, value: string): void {
  if (UNSAFE_IN_XL_STRING.test(value)) {
    throw invalidArgument(field, `${JSON.stringify(value.slice(0, 80))} contains a quote, a backslash or a control character`);
  }
}

/** An absolute path in normal form (no '.', '..', '//' or trailing '/'), safe to quote. */
function checkAbsolutePath(field: string, value: string): void {
  if (value === '') throw invalidArgument(field, 'is required');
  checkXlString(field, value);
  if (value.length > 4096) throw invalidArgument(field, 'is longer than 4096 characters');
  if (!path.posix.isAbsolute(value) || path.posix.normalize(value) !== value || (value.endsWith('/') && value !== '/')) {
    throw invalidArgument(field, `${JSON.stringify(value.slice(0, 80))} is not an absolute path in normal form`);
  }
}
