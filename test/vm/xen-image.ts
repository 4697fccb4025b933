import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { VM_IMAGE_PACKAGES, type VmImageVariant } from '../../lab/vm-image.js';

/**
 * The image variant of the Xen experiment (issue 7's stretch goal): the lab's Debian
 * root with Xen 4.17 and a kernel that can be dom0, booted by qemu's multiboot loader
 * (see xen-vm.ts). It lives in its own cache directory and never touches the lab's.
 */

/** Where the Xen variant is cached: not the lab's cache (building one would remove the other). */
export const XEN_VM_CACHE_DIR = '/var/lib/vcstor/vm-cache-xen';

/** The Xen release Debian bookworm ships. */
export const XEN_VERSION = '4.17';

/** How dom0 sees its console under Xen: the hypervisor's PV console, not the UART. */
export const XEN_DOM0_CONSOLE = 'hvc0';

export const XEN_IMAGE_VARIANT: VmImageVariant = {
  name: 'xen-dom0',
  version: 2,
  packages: [
    // The cloud kernel has no CONFIG_XEN_DOM0 (it only runs as a Xen guest): the generic
    // one does, and has blkback/netback/gntdev/privcmd as modules.
    ...VM_IMAGE_PACKAGES.map((name) => (name === 'linux-image-cloud-amd64' ? 'linux-image-amd64' : name)),
    // The hypervisor (/boot/xen-4.17-amd64.gz) and the toolstack (xl, xenstored,
    // xenconsoled, hotplug scripts). No recommends: no qemu-system-xen (qdisk) or grub.
    `xen-hypervisor-${XEN_VERSION}-amd64`,
    `xen-utils-${XEN_VERSION}`,
    'xenstore-utils',
  ],
  // The hypervisor itself, gzipped ELF (qemu's -kernel needs it unpacked: xen-vm.ts).
  bootFiles: [/^xen-[0-9.]+-amd64\.gz$/],
  versionPackages: [`xen-hypervisor-${XEN_VERSION}-amd64`, `xen-utils-${XEN_VERSION}`, 'linux-image-amd64'],
  async configure(root) {
    const etc = (file: string) => path.join(root, 'etc', file);
    // Under Xen, dom0's console is hvc0 (the hypervisor multiplexes it onto the UART):
    // root logs in there, as on ttyS0 in the lab's guests, so runOnConsole works.
    const dropIn = etc(`systemd/system/serial-getty@${XEN_DOM0_CONSOLE}.service.d`);
    await mkdir(dropIn, { recursive: true });
    await writeFile(
      path.join(dropIn, 'autologin.conf'),
      '[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 - $TERM\n',
    );
    // The backends and devices xl needs; loaded at boot so the first xl call finds them.
    await mkdir(etc('modules-load.d'), { recursive: true });
    await writeFile(etc('modules-load.d/vcstor-xen.conf'), ['xen-evtchn', 'xen-gntdev', 'xen-gntalloc', 'xen-privcmd', 'xen-blkback', 'xen-netback', 'loop', ''].join('\n'));
    // xenconsoled writes each guest's console to /var/log/xen/console/guest-NAME.log:
    // the only way to see a domU's boot (or its panic) from dom0 without `xl console`.
    // Debian starts the daemons from /etc/init.d/xen, which reads /etc/default/xen (not
    // xencommons, which upstream's units read).
    await writeFile(etc('default/xen'), 'XENCONSOLED_ARGS="--log=guest --log-dir=/var/log/xen/console"\n', { flag: 'a' });
  },
};
