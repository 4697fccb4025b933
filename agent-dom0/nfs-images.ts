import { createHash } from 'node:crypto';
import { mkdir, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { VcstorError } from '../common/errors.js';
import type { Image } from '../common/generated/vcstor/v1/Image.js';
import type { NfsFile__Output } from '../common/generated/vcstor/v1/NfsFile.js';
import type { QsdDevices } from '../host-storage/qsd.js';
import type { NfsClientDriver } from '../host-storage/types.js';
import type { LoopDevices } from '../common/loop-devices.js';
import type { CommandRunner } from '../common/runner.js';
import { zeroFillPath } from '../common/zero-fill.js';
import type { ImageProvisioning, Images } from './images.js';

/**
 * Image files on an NFS export, as dom0 reaches them: the paper's file-nfs method. Two
 * drivers, chosen by `dom0.nfsClient.driver`:
 * - `libnfs`: no directory mount; qemu-img and qemu's libnfs driver (in
 *   qemu-storage-daemon) reach the file. What runs on a host without a kernel NFS client.
 * - `kernel`: the export is mounted with the kernel client, the image is a file in it,
 *   served to the domain through a loop device. What a real dom0 does.
 */
export interface NfsImageFiles {
  readonly driver: 'libnfs' | 'kernel';
  /** Create the image (idempotent like a local image). */
  create(file: NfsFile__Output, sizeBytes: number, provisioning: ImageProvisioning, signal: AbortSignal, onProgress: (done: number, total: number) => void): Promise<{ image: Image; created: boolean }>;
  /**
   * A block device over the image for a VBD, kept under `key` until {@link close}; the
   * same key again returns the same device. Keys survive an agent restart: they are
   * all close needs.
   */
  open(key: string, file: NfsFile__Output, signal: AbortSignal): Promise<string>;
  /** Release what {@link open} made under `key`; nothing there is fine. */
  close(key: string, signal: AbortSignal): Promise<void>;
}

/** The key of an NFS image's device: stable for the same file. */
export function nfsImageKey(file: NfsFile__Output): string {
  return `nfs-${createHash('sha256').update(`${file.server}:${file.exportPath}/${file.fileName}`).digest('hex').slice(0, 20)}`;
}

function filePath(file: NfsFile__Output): string {
  return path.posix.join(file.exportPath, file.fileName);
}

/** Through qemu's libnfs driver: qemu-img creates, qemu-storage-daemon serves a loop device. */
export class LibnfsImageFiles implements NfsImageFiles {
  readonly driver = 'libnfs' as const;

  constructor(private readonly o: { runner: CommandRunner; qsd: QsdDevices }) {}

  private blockdev(file: NfsFile__Output): string[] {
    return ['driver=nfs', 'server.type=inet', `server.host=${file.server}`, `path=${filePath(file)}`];
  }

  /**
   * qemu-img would truncate an existing file, so existence is checked first; a
   * zero-fill that did not finish (allocated < size) is done again, as libnfs cannot
   * write under a temporary name and rename.
   */
  async create(file: NfsFile__Output, sizeBytes: number, provisioning: ImageProvisioning, signal: AbortSignal, onProgress: (done: number, total: number) => void): Promise<{ image: Image; created: boolean }> {
    const { runner, qsd } = this.o;
    const url = `nfs://${file.server}${filePath(file)}`;
    const info = async () => {
      const result = await runner.run('qemu-img', ['info', '--output=json', url], { signal, okExitCodes: [0, 1], timeoutMs: 30_000 });
      if (result.exitCode !== 0) return undefined;
      const parsed = JSON.parse(result.stdout) as { 'virtual-size': number; 'actual-size'?: number };
      return { size: parsed['virtual-size'], allocated: parsed['actual-size'] ?? 0 };
    };
    const describe = (size: number, allocated: number): Image => ({
      location: { nfsFile: file },
      sizeBytes: size,
      provisioning: allocated >= size ? 'PROVISIONING_PREALLOCATED' : 'PROVISIONING_SPARSE',
      allocatedBytes: allocated,
    });
    const existing = await info();
    if (existing && existing.size !== sizeBytes) {
      throw new VcstorError('ALREADY_EXISTS', `${url} exists with ${existing.size} bytes; asked: ${sizeBytes}`);
    }
    const complete = existing && (provisioning === 'sparse' || existing.allocated >= sizeBytes);
    if (existing && complete) return { image: describe(existing.size, existing.allocated), created: false };
    if (!existing) await runner.run('qemu-img', ['create', '-q', '-f', 'raw', url, String(sizeBytes)], { signal, timeoutMs: 60_000 });
    if (provisioning === 'preallocated') {
      const key = `zero-${nfsImageKey(file).slice('nfs-'.length)}`;
      const { device } = await qsd.open({ key, blockdev: this.blockdev(file), timeoutMs: 30_000, meta: { kind: 'nfs-zero-fill' } }, signal);
      try {
        // Through the buffered loop device: writing 4 MiB straight into qemu 7.2's FUSE
        // export fails with EFAULT (and large O_DIRECT writes there corrupt data).
        await zeroFillPath(device.loopDevice, sizeBytes, signal, onProgress);
      } finally {
        await qsd.close(key, new AbortController().signal);
      }
    }
    const after = await info();
    return { image: describe(after?.size ?? sizeBytes, after?.allocated ?? 0), created: true };
  }

  async open(key: string, file: NfsFile__Output, signal: AbortSignal): Promise<string> {
    const { device } = await this.o.qsd.open({ key, blockdev: this.blockdev(file), timeoutMs: 30_000, meta: { kind: 'nfs', server: file.server, path: filePath(file) } }, signal);
    return device.loopDevice;
  }

  async close(key: string, signal: AbortSignal): Promise<void> {
    await this.o.qsd.close(key, signal);
  }
}

/**
 * Through the kernel NFS client: each use mounts the export at its own mountpoint,
 * `mountRoot/.nfs/<key>` (the kernel shares one superblock between mounts of the same
 * export), so closing one use never pulls the filesystem from under another, and a
 * restarted agent finds everything from the key alone.
 */
export class KernelNfsImageFiles implements NfsImageFiles {
  readonly driver = 'kernel' as const;

  constructor(private readonly o: { nfsClient: NfsClientDriver; loops: LoopDevices; images: Images; mountRoot: string; runner: CommandRunner }) {}

  private mountpoint(key: string): string {
    return path.join(this.o.mountRoot, '.nfs', key);
  }

  private async mount(key: string, file: NfsFile__Output, signal: AbortSignal): Promise<string> {
    const mountpoint = this.mountpoint(key);
    await mkdir(mountpoint, { recursive: true });
    // hard: a server that goes away stalls I/O rather than failing it under a guest's filesystem.
    await this.o.nfsClient.mount({ server: file.server, exportPath: file.exportPath, mountpoint, version: file.nfsVersion || 3, options: ['hard'] }, signal);
    return mountpoint;
  }

  private async unmount(key: string, signal: AbortSignal): Promise<void> {
    const mountpoint = this.mountpoint(key);
    await this.o.nfsClient.unmount(mountpoint, signal);
    await rmdir(mountpoint).catch(() => undefined);
  }

  async create(file: NfsFile__Output, sizeBytes: number, provisioning: ImageProvisioning, signal: AbortSignal, onProgress: (done: number, total: number) => void): Promise<{ image: Image; created: boolean }> {
    const key = `create-${nfsImageKey(file).slice('nfs-'.length)}`;
    const mountpoint = await this.mount(key, file, signal);
    try {
      // A local image in the mounted export: temporary name, rename when complete.
      const result = await this.o.images.create(path.join(mountpoint, file.fileName), sizeBytes, provisioning, signal, onProgress);
      return { image: { ...result.image, location: { nfsFile: file } }, created: result.created };
    } finally {
      await this.unmount(key, new AbortController().signal);
    }
  }

  async open(key: string, file: NfsFile__Output, signal: AbortSignal): Promise<string> {
    const mountpoint = await this.mount(key, file, signal);
    try {
      return await this.o.loops.attach(path.join(mountpoint, file.fileName), signal);
    } catch (err) {
      await this.unmount(key, new AbortController().signal).catch(() => undefined);
      if ((err as { exitCode?: number }).exitCode !== undefined) throw new VcstorError('NOT_FOUND', `${file.server}:${filePath(file)}: no image there to attach; create it first`, { cause: err });
      throw err;
    }
  }

  async close(key: string, signal: AbortSignal): Promise<void> {
    const mountpoint = this.mountpoint(key);
    for (const device of await this.o.loops.list(signal)) {
      if (!device.backingFile.startsWith(`${mountpoint}/`)) continue;
      await this.o.runner.run('blockdev', ['--flushbufs', device.name], { signal, okExitCodes: [0, 1] });
      const left = await this.o.loops.detachAndWait(device.backingFile, signal);
      if (left.length > 0) throw new VcstorError('FAILED_PRECONDITION', `${left.join(', ')} over ${device.backingFile} is still in use; unmount it in the guest first`);
    }
    await this.unmount(key, signal);
  }
}
