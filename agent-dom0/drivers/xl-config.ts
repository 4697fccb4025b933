import { isIP } from 'node:net';
import path from 'node:path';
import { invalidArgument } from '../../common/errors.js';
import { validateName } from '../../common/validate.js';
import type { DomainDisk, DomainSpec, VbdBackendKind } from '../hypervisor.js';

/**
 * What the Xen driver writes for xl: domain config files (xl.cfg(5)) and disk specs in
 * the keyword syntax of xl-disk-configuration(5), every value checked before it is
 * written. Pure: nothing here runs xl.
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

/** A value written between quotes in an xl config: no quote, backslash or control character. */
export function checkXlString(field: string, value: string): void {
  if (UNSAFE_IN_XL_STRING.test(value)) {
    throw invalidArgument(field, `${JSON.stringify(value.slice(0, 80))} contains a quote, a backslash or a control character`);
  }
}

/** An absolute path in normal form (no '.', '..', '//' or trailing '/'), safe to quote. */
export function checkAbsolutePath(field: string, value: string): void {
  if (value === '') throw invalidArgument(field, 'is required');
  checkXlString(field, value);
  if (value.length > 4096) throw invalidArgument(field, 'is longer than 4096 characters');
  if (!path.posix.isAbsolute(value) || path.posix.normalize(value) !== value || (value.endsWith('/') && value !== '/')) {
    throw invalidArgument(field, `${JSON.stringify(value.slice(0, 80))} is not an absolute path in normal form`);
  }
}
