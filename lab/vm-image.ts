import { createHash } from 'node:crypto';
import { chmod, copyFile, mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../common/log.js';
import type { CommandRunner, RunOptions } from '../common/runner.js';
import { processStartTicks } from '../common/processes.js';
import { configureRoot, exists, guestSourcesList, readAptSources, VM_IMAGE_SUITE } from './vm-image-root.js';

export { readAptSources, VM_APP_LABEL, VM_APP_MOUNT, VM_IMAGE_SUITE, VM_INIT_UNIT, VM_SEED_FW_CFG_NAME, vmInitUnit } from './vm-image-root.js';

/**
 * The VM tier's root filesystem: a small Debian bookworm made once with debootstrap and
 * cached, so that `lab up --vm` boots real guest kernels (iscsi_tcp, nfsd, LIO, dm_mod)
 * without rebuilding. The cache holds a raw ext4 image that guests only ever read: each
 * guest writes to its own qcow2 overlay (see vm.ts).
 */

/**
 * Bump when the recipe below changes in a way the package list does not show (files
 * written into the root, image size, mkfs options): it is part of the cache key.
 */
export const VM_IMAGE_RECIPE_VERSION = 4; // 4: the unit starts dist/cli/cli.js

/**
 * What is installed on top of debootstrap's minbase (no recommends). The kernel is
 * Debian's cloud flavour: it boots under TCG in seconds and has every storage module
 * the lab needs. No nodejs: the lab brings the host's own node and vcstor on an app disk
 * at each boot (see vm-app.ts), so the guest runs the very code and runtime under test
 * and a code change never invalidates this cache.
 */
export const VM_IMAGE_PACKAGES: readonly string[] = [
  'linux-image-cloud-amd64',
  'systemd-sysv',
  // udev makes /dev/mapper and /dev/disk/by-* the way real hosts have them; kmod is modprobe.
  'udev',
  'kmod',
  // targetcli asks tcmu-runner over the system bus which user backstores exist, and
  // fails without one; systemctl poweroff wants it too.
  'dbus',
  // mkfs.ext4/fsck in the guest (not in minbase): initramfs fscks the root with it.
  'e2fsprogs',
  'lvm2',
  'targetcli-fb',
  'open-iscsi',
  'nfs-kernel-server',
  'nfs-common',
  'iproute2',
];

/** Size of the ext4 image; the file is sparse, so only what is used takes disk space. */
const ROOTFS_SIZE = '3G';

/** File names inside one cache entry. */
const KERNEL_FILE = 'vmlinuz';
const INITRD_FILE = 'initrd.img';
const ROOTFS_FILE = 'rootfs.ext4';
const MANIFEST_FILE = 'manifest.json';

/** The PATH inside the chroot and on the host for the build's tools. */
const SYSTEM_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';

/** A cached (or just built) guest image. */
export interface VmImage {
  /** The guest kernel (copied out of the root's /boot). */
  kernel: string;
  initrd: string;
  /** Raw ext4 image of the root filesystem; read-only, guests boot from overlays. */
  rootfs: string;
}

/**
 * A variant of the image for experiments (e.g. a Xen dom0): its own package list, files
 * from /boot copied out next to the kernel, more configuration after the default one.
 * A variant has its own cache key (its name and version are hashed in), so it never
 * replaces or invalidates the lab's default image. Keep variants in their own cache
 * directory: building the default image removes every other entry of its directory.
 */
export interface VmImageVariant {
  /** Names the variant in its cache key and manifest (a-z0-9-). */
  name: string;
  /** Bump when the variant's configure step or boot files change: part of the key. */
  version: number;
  /** Installed instead of {@link VM_IMAGE_PACKAGES}; must hold one kernel (vmlinuz-*). */
  packages: readonly string[];
  /** Files of the root's /boot whose names match, copied into the entry as they are. */
  bootFiles?: readonly RegExp[];
  /** Packages whose versions the manifest records, besides the default ones. */
  versionPackages?: readonly string[];
  /** Runs after the default configuration, before mkfs. */
  configure?: (root: string, inRoot: (args: readonly string[], options?: RunOptions) => Promise<{ stdout: string }>) => Promise<void>;
}

/** What {@link buildVmImage} returns. */
export interface VmImageResult extends VmImage {
  /** False when the cache already held this image. */
  built: boolean;
  /** How long this call took. */
  ms: number;
  /** Duration of each build phase (ms), as recorded when the image was built. */
  phases: Record<string, number>;
  /** Kernel release and the versions of the packages that matter, from the build. */
  versions: Record<string, string>;
  /** A variant's boot files ({@link VmImageVariant.bootFiles}) in the entry, by name. */
  bootFiles?: Record<string, string>;
}

/** What a cache entry records about its build. */
interface VmImageManifest {
  key: string;
  recipeVersion: number;
  suite: string;
  mirror: string;
  packages: readonly string[];
  builtUnixMs: number;
  phases: Record<string, number>;
  versions: Record<string, string>;
  /** Only in a variant's entry. */
  variant?: { name: string; version: number; bootFiles: string[] };
}

/** The cache key: the package list and the recipe, nothing about the host. */
export function vmImageKey(packages: readonly string[] = VM_IMAGE_PACKAGES): string {
  const recipe = JSON.stringify({ recipe: VM_IMAGE_RECIPE_VERSION, suite: VM_IMAGE_SUITE, packages: [...packages].sort() });
  return createHash('sha256').update(recipe).digest('hex').slice(0, 16);
}

/** A variant's cache key: the default recipe's fields plus the variant's name and version. */
export function vmImageVariantKey(variant: VmImageVariant): string {
  const recipe = JSON.stringify({
    recipe: VM_IMAGE_RECIPE_VERSION,
    suite: VM_IMAGE_SUITE,
    packages: [...variant.packages].sort(),
    variant: variant.name,
    variantVersion: variant.version,
  });
  return createHash('sha256').update(recipe).digest('hex').slice(0, 16);
}

async function readManifest(entry: string): Promise<VmImageManifest | undefined> {
  try {
    const manifest = JSON.parse(await readFile(path.join(entry, MANIFEST_FILE), 'utf8')) as VmImageManifest;
    for (const file of [KERNEL_FILE, INITRD_FILE, ROOTFS_FILE]) if (!(await exists(path.join(entry, file)))) return undefined;
    return manifest;
  } catch {
    return undefined;
  }
}

/**
 * Remove build dirs that a crashed or killed build left: named `.build-KEY-PID`, the
 * pid no longer running. A build still running (another process) is left alone.
 */
async function removeAbandonedBuilds(runner: CommandRunner, cacheDir: string): Promise<void> {
  for (const name of await readdir(cacheDir)) {
    const match = /^\.build-[0-9a-f]+-(\d+)$/.exec(name);
    if (!match) continue;
    const pid = Number(match[1]);
    if (pid !== process.pid && (await processStartTicks(pid)) !== undefined) continue;
    await removeTree(runner, path.join(cacheDir, name));
  }
}

/**
 * rm -rf that never crosses into another file system: if a build was killed while
 * something was mounted inside its root, the host's /proc or /dev must not be touched.
 */
async function removeTree(runner: CommandRunner, dir: string): Promise<void> {
  await runner.run('rm', ['-rf', '--one-file-system', '--', dir], { timeoutMs: 300_000 });
}

/**
 * Build (or find in the cache) the guest image: debootstrap --variant=minbase, the
 * packages installed with apt-get in a chroot, an ext4 image made from the directory
 * with `mkfs.ext4 -d` (no loop device, no mount), the kernel and initrd copied out.
 *
 * The cache entry is `cacheDir/KEY/` (see {@link vmImageKey}). The build runs in
 * `cacheDir/.build-KEY-PID/` and is renamed into place only when complete, so an
 * interrupted build never leaves a cache entry that looks whole.
 *
 * Every chroot command runs in its own mount namespace (unshare) with /proc mounted
 * there only: nothing stays mounted on the host when a build is killed.
 */
export async function buildVmImage(options: { runner: CommandRunner; cacheDir: string; log?: Logger; signal?: AbortSignal; variant?: VmImageVariant }): Promise<VmImageResult> {
  const { runner, cacheDir, log, signal, variant } = options;
  const started = performance.now();
  // Without a variant: exactly the lab's image, key and package list as they always were.
  const packages = variant?.packages ?? VM_IMAGE_PACKAGES;
  const key = variant ? vmImageVariantKey(variant) : vmImageKey();
  const entry = path.join(cacheDir, key);
  const cached = await readManifest(entry);
  if (cached) {
    log?.info({ entry }, 'vm image: cached');
    return {
      ...imageFiles(entry),
      built: false,
      ms: Math.round(performance.now() - started),
      phases: cached.phases,
      versions: cached.versions,
      ...(cached.variant ? { bootFiles: variantBootFiles(entry, cached.variant.bootFiles) } : {}),
    };
  }

  await mkdir(cacheDir, { recursive: true });
  await removeAbandonedBuilds(runner, cacheDir);
  const work = path.join(cacheDir, `.build-${key}-${process.pid}`);
  const root = path.join(work, 'root');
  const output = path.join(work, 'image');
  const phases: Record<string, number> = {};
  const timed = async <T>(phase: string, step: () => Promise<T>): Promise<T> => {
    const phaseStarted = performance.now();
    log?.info({ phase }, 'vm image: phase started');
    const result = await step();
    phases[phase] = Math.round(performance.now() - phaseStarted);
    log?.info({ phase, ms: phases[phase] }, 'vm image: phase done');
    return result;
  };
  const run = (command: string, args: readonly string[], runOptions: RunOptions = {}) => runner.run(command, args, { timeoutMs: 1_800_000, signal, ...runOptions });
  /** Run a command in the root: minimal environment, own mount namespace with /proc. */
  const inRoot = (args: readonly string[], runOptions: RunOptions = {}) =>
    run(
      'env',
      [
        '-i',
        `PATH=${SYSTEM_PATH}`,
        'HOME=/root',
        'LC_ALL=C',
        'DEBIAN_FRONTEND=noninteractive',
        'DEBCONF_NONINTERACTIVE_SEEN=true',
        'unshare',
        '--mount',
        // slave, not private: a private copy of this machine's mounts would pin the loop
        // devices of a lab running meanwhile (LAB.md); unmounts must reach this namespace.
        '--propagation',
        'slave',
        '--pid',
        '--fork',
        `--mount-proc=${path.join(root, 'proc')}`,
        'chroot',
        root,
        ...args,
      ],
      runOptions,
    );

  try {
    await removeTree(runner, work);
    await mkdir(output, { recursive: true });
    const { mirror, lines } = guestSourcesList(await readAptSources());
    log?.info({ mirror, key }, 'vm image: building');

    // debootstrap mounts /proc and /sys in the target itself; in a private mount
    // namespace those mounts die with it, even when it is killed.
    await timed('debootstrap', () =>
      run('unshare', ['--mount', '--propagation', 'slave', 'debootstrap', '--variant=minbase', VM_IMAGE_SUITE, root, mirror], {
        env: { PATH: SYSTEM_PATH },
      }),
    );

    await timed('packages', async () => {
      await writeFile(path.join(root, 'etc/apt/sources.list'), `${lines.join('\n')}\n`);
      // No daemon starts inside the chroot while packages install (policy-rc.d, 101 = deny).
      await writeFile(path.join(root, 'usr/sbin/policy-rc.d'), '#!/bin/sh\nexit 101\n', { mode: 0o755 });
      await writeFile(path.join(root, 'etc/apt/apt.conf.d/90vcstor'), 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\nAcquire::Retries "3";\n');
      await inRoot(['apt-get', 'update']);
      await inRoot(['apt-get', 'install', '-y', '--no-install-recommends', ...packages]);
      await inRoot(['apt-get', 'clean']);
    });

    const versions = await timed('configure', async () => {
      const found = await configureRoot(root, inRoot, variant?.versionPackages);
      if (variant?.configure) await variant.configure(root, inRoot);
      return found;
    });
    const copiedBootFiles: string[] = [];

    await timed('mkfs', async () => {
      // -d copies the tree with owners and modes as they are; the file is created sparse.
      await run('mkfs.ext4', ['-q', '-F', '-L', 'vcstor-root', '-d', root, path.join(output, ROOTFS_FILE), ROOTFS_SIZE]);
      const kernelRelease = versions.kernel!;
      await copyFile(path.join(root, 'boot', `vmlinuz-${kernelRelease}`), path.join(output, KERNEL_FILE));
      await copyFile(path.join(root, 'boot', `initrd.img-${kernelRelease}`), path.join(output, INITRD_FILE));
      for (const name of await readdir(path.join(root, 'boot'))) {
        if (!variant?.bootFiles?.some((pattern) => pattern.test(name))) continue;
        // A name that could clash with the entry's own files is not copied.
        if ([KERNEL_FILE, INITRD_FILE, ROOTFS_FILE, MANIFEST_FILE].includes(name)) continue;
        await copyFile(path.join(root, 'boot', name), path.join(output, name));
        await chmod(path.join(output, name), 0o444);
        copiedBootFiles.push(name);
      }
      // Guests never write the cache: they boot from qcow2 overlays on top of it.
      for (const file of [KERNEL_FILE, INITRD_FILE, ROOTFS_FILE]) await chmod(path.join(output, file), 0o444);
    });

    const manifest: VmImageManifest = {
      key,
      recipeVersion: VM_IMAGE_RECIPE_VERSION,
      suite: VM_IMAGE_SUITE,
      mirror,
      packages,
      builtUnixMs: Date.now(),
      phases,
      versions,
      ...(variant ? { variant: { name: variant.name, version: variant.version, bootFiles: copiedBootFiles } } : {}),
    };
    await writeFile(path.join(output, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
    // The manifest is written last and the rename is atomic: the entry appears whole.
    await rename(output, entry);
    // Images of older recipes are never used again (each is ~0.5 GB on disk): remove them.
    // A variant removes only its own older builds (same variant name), nothing else.
    for (const name of await readdir(cacheDir)) {
      if (!/^[0-9a-f]{16}$/.test(name) || name === key) continue;
      if (variant && (await readManifest(path.join(cacheDir, name)))?.variant?.name !== variant.name) continue;
      await removeTree(runner, path.join(cacheDir, name));
    }
    const rootfsBytes = (await stat(path.join(entry, ROOTFS_FILE))).blocks * 512;
    log?.info({ entry, phases, versions, rootfsMiB: Math.round(rootfsBytes / 2 ** 20) }, 'vm image: built');
    return {
      ...imageFiles(entry),
      built: true,
      ms: Math.round(performance.now() - started),
      phases,
      versions,
      ...(variant ? { bootFiles: variantBootFiles(entry, copiedBootFiles) } : {}),
    };
  } finally {
    await removeTree(runner, work).catch((err: unknown) => log?.warn({ err, work }, 'vm image: could not remove the build dir'));
  }
}

function variantBootFiles(entry: string, names: readonly string[]): Record<string, string> {
  return Object.fromEntries(names.map((name) => [name, path.join(entry, name)]));
}

function imageFiles(entry: string): VmImage {
  return { kernel: path.join(entry, KERNEL_FILE), initrd: path.join(entry, INITRD_FILE), rootfs: path.join(entry, ROOTFS_FILE) };
}

