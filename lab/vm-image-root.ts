import { access, mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { VcstorError } from '../common/errors.js';
import type { RunOptions } from '../common/runner.js';

/**
 * What goes into the VM tier's root filesystem (vm-image.ts builds and caches it): the
 * apt sources it is installed from, and the files that make it a lab host — the console
 * login, the masked timers, and the unit that hands a booting guest to vcstor.
 */

/** The Debian release the guests run; the host's own mirror must serve it. */
export const VM_IMAGE_SUITE = 'bookworm';

/** The unit that hands a booting lab guest to vcstor (see {@link vmInitUnit}). */
export const VM_INIT_UNIT = 'vcstor-vm-init.service';
/** Where qemu's fw_cfg shows the seed in the guest (`-fw_cfg name=opt/org.vcstor/seed`). */
export const VM_SEED_FW_CFG_NAME = 'opt/org.vcstor/seed';
/** The app disk's filesystem label, and where the guest mounts it. */
export const VM_APP_LABEL = 'vcstor-app';
export const VM_APP_MOUNT = '/opt/vcstor';

/**
 * The systemd unit that starts vcstor in a lab guest: no shell, each step one command.
 * It runs after the daemons the real-host drivers talk to (iscsid, nfsd, rpcbind);
 * vm-init's output goes to the console, where the lab waits for its ready line.
 */
export function vmInitUnit(): string {
  return [
    '[Unit]',
    'Description=vcstor lab host: network, disks and agents from the seed qemu passes',
    'Wants=iscsid.socket rpcbind.socket nfs-server.service',
    'After=local-fs.target systemd-udevd.service iscsid.socket rpcbind.socket nfs-server.service',
    '',
    '[Service]',
    'Type=oneshot',
    // The agents vm-init starts stay in this unit's cgroup while it counts as active.
    'RemainAfterExit=yes',
    'ExecStartPre=/sbin/modprobe qemu_fw_cfg',
    // "-": mounted already when the unit is restarted by hand.
    `ExecStartPre=-/bin/mount -o ro LABEL=${VM_APP_LABEL} ${VM_APP_MOUNT}`,
    `ExecStart=${VM_APP_MOUNT}/bin/node ${VM_APP_MOUNT}/app/dist/cli/cli.js vm-init --seed /sys/firmware/qemu_fw_cfg/by_name/${VM_SEED_FW_CFG_NAME}/raw`,
    'StandardOutput=journal+console',
    'StandardError=journal+console',
    'TimeoutStartSec=600',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}

/** One apt source as the host configures it. */
interface AptSource {
  uri: string;
  suites: string[];
}

/**
 * Read the host's apt sources (one-line .list and deb822 .sources), so the build uses
 * the mirror this machine is known to reach.
 */
export async function readAptSources(etcApt = '/etc/apt'): Promise<AptSource[]> {
  const sources: AptSource[] = [];
  const files: string[] = [];
  if (await exists(path.join(etcApt, 'sources.list'))) files.push(path.join(etcApt, 'sources.list'));
  const dropIns = await readdir(path.join(etcApt, 'sources.list.d')).catch(() => [] as string[]);
  // Only what apt itself reads: *.list and *.sources (not "*.disabled" and the like).
  for (const name of dropIns.sort()) if (name.endsWith('.list') || name.endsWith('.sources')) files.push(path.join(etcApt, 'sources.list.d', name));
  for (const file of files) {
    const text = await readFile(file, 'utf8');
    if (file.endsWith('.sources')) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const fields = new Map<string, string>();
        for (const line of stanza.split('\n')) {
          const match = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
          if (match && !line.startsWith('#')) fields.set(match[1]!.toLowerCase(), match[2]!.trim());
        }
        if (!(fields.get('types') ?? '').split(/\s+/).includes('deb')) continue;
        if ((fields.get('enabled') ?? 'yes').toLowerCase() === 'no') continue;
        const suites = (fields.get('suites') ?? '').split(/\s+/).filter(Boolean);
        for (const uri of (fields.get('uris') ?? '').split(/\s+/).filter(Boolean)) sources.push({ uri, suites });
      }
    } else {
      for (const line of text.split('\n')) {
        // deb [options] URI SUITE COMPONENT...
        const words = line.replace(/#.*/, '').replace(/\[[^\]]*\]/, '').trim().split(/\s+/);
        if (words[0] === 'deb' && words[1] && words[2]) sources.push({ uri: words[1], suites: [words[2]] });
      }
    }
  }
  return sources;
}

/**
 * The apt sources of the guest root: the host's sources for this suite, its updates and
 * its security updates, main only.
 */
export function guestSourcesList(sources: readonly AptSource[]): { mirror: string; lines: string[] } {
  const wanted = [VM_IMAGE_SUITE, `${VM_IMAGE_SUITE}-updates`, `${VM_IMAGE_SUITE}-security`];
  const mirror = sources.find((s) => s.suites.includes(VM_IMAGE_SUITE))?.uri;
  if (!mirror) {
    throw new VcstorError('FAILED_PRECONDITION', `no apt source of this host serves Debian ${VM_IMAGE_SUITE} (looked in /etc/apt/sources.list and sources.list.d); the VM image is built from it`);
  }
  const lines: string[] = [];
  for (const source of sources) {
    for (const suite of source.suites) if (wanted.includes(suite)) lines.push(`deb ${source.uri} ${suite} main`);
  }
  return { mirror, lines: [...new Set(lines)] };
}

/**
 * Make the root a bootable lab host: fstab, hostname, root without a password and
 * logged in on the serial console (tests drive the guest through it), no daemons held
 * back any more. Returns the versions that matter.
 */
export async function configureRoot(
  root: string,
  inRoot: (args: readonly string[], options?: RunOptions) => Promise<{ stdout: string }>,
  moreVersionPackages: readonly string[] = [],
): Promise<Record<string, string>> {
  const etc = (file: string) => path.join(root, 'etc', file);
  await writeFile(etc('fstab'), '/dev/vda / ext4 rw,errors=remount-ro 0 1\n');
  await writeFile(etc('hostname'), 'vcstor-vm\n');
  await writeFile(etc('hosts'), '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n');
  // Empty: systemd makes a fresh machine id at each guest's first boot (overlay-local).
  await writeFile(etc('machine-id'), '');
  await inRoot(['passwd', '--delete', 'root']);

  // Root logs in on ttyS0 without a password: the serial console is how tests (and a
  // person with the serial socket) talk to the guest until the agent runs inside.
  const dropIn = etc('systemd/system/serial-getty@ttyS0.service.d');
  await mkdir(dropIn, { recursive: true });
  await writeFile(
    path.join(dropIn, 'autologin.conf'),
    '[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 - $TERM\n',
  );
  // Under TCG every service costs seconds; these do nothing useful in a lab guest.
  for (const unit of ['apt-daily.timer', 'apt-daily-upgrade.timer', 'e2scrub_all.timer', 'e2scrub_reap.service', 'fstrim.timer']) {
    await inRoot(['systemctl', 'mask', unit], { okExitCodes: [0, 1] });
  }
  // The serial console's line width: without it, long command lines wrap into the output.
  await writeFile(path.join(root, 'root/.profile'), '[ -t 0 ] && stty cols 250 rows 50 2>/dev/null\nexport PS1="\\h# "\n');
  // Bracketed paste wraps every prompt in escape codes that end up in command output.
  await writeFile(path.join(root, 'root/.inputrc'), 'set enable-bracketed-paste off\n');

  // The lab's hook: at boot, mount the app disk (label vcstor-app: node and vcstor) and
  // run vcstor's vm-init with the seed qemu passes through fw_cfg (network, disks,
  // agents). A guest booted without them just fails this unit and stays a plain host.
  await mkdir(path.join(root, 'opt/vcstor'), { recursive: true });
  await writeFile(etc(`systemd/system/${VM_INIT_UNIT}`), vmInitUnit());
  await mkdir(etc('systemd/system/multi-user.target.wants'), { recursive: true });
  await symlink(`/etc/systemd/system/${VM_INIT_UNIT}`, etc(`systemd/system/multi-user.target.wants/${VM_INIT_UNIT}`));

  await rm(path.join(root, 'usr/sbin/policy-rc.d'), { force: true });

  const bootFiles = await readdir(path.join(root, 'boot'));
  const kernel = bootFiles.find((name) => name.startsWith('vmlinuz-'))?.slice('vmlinuz-'.length);
  if (!kernel) throw new VcstorError('INTERNAL', `no kernel in ${path.join(root, 'boot')} after installing the packages`);
  const versions: Record<string, string> = { kernel };
  const query = await inRoot(['dpkg-query', '-W', '-f', '${Package} ${Version}\\n', 'lvm2', 'targetcli-fb', 'open-iscsi', 'nfs-kernel-server', 'systemd', ...moreVersionPackages]);
  for (const line of query.stdout.trim().split('\n')) {
    const [name, version] = line.split(' ');
    if (name && version) versions[name] = version;
  }
  return versions;
}

/** Whether `file` exists (any kind). */
export async function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}
