import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { VcstorError } from '../common/errors.js';
import type { Image } from '../common/generated/vcstor/v1/Image.js';
import { isWithin } from '../common/validate.js';
import { zeroFill, zeroFillPath } from '../common/zero-fill.js';
import type { NfsFile__Output } from '../common/generated/vcstor/v1/NfsFile.js';
import type { QsdDevices } from '../common/host/qsd.js';
import type { CommandRunner } from '../common/runner.js';
import { createHash } from 'node:crypto';

export type ImageProvisioning = 'preallocated' | 'sparse';

/**
 * Image files on dom0: under the configured image roots (a local filesystem, a mounted
 * iSCSI disk's filesystem, an NFS mount). Zero-filled by default, as in the paper, or
 * sparse. An image is written under a temporary name and renamed when complete, so an
 * interrupted fill never looks like an image.
 */
export class Images {
  constructor(
    private readonly imageRoots: readonly string[],
    private readonly nfs?: { runner: CommandRunner; qsd: QsdDevices },
  ) {}

  /** `nfs://server/export/file`, as qemu's libnfs driver takes it. */
  private nfsUrl(file: NfsFile__Output): string {
    return `nfs://${file.server}${path.posix.join(file.exportPath, file.fileName)}`;
  }

  /**
   * Create an image on an NFS export without mounting it (qemu-img and qemu's libnfs
   * driver, NFSv3). Idempotent like a local image. qemu-img would truncate an existing
   * file, so existence is checked first; a zero-fill that did not finish (allocated <
   * size) is done again, as libnfs cannot write under a temporary name and rename.
   */
  async createOnNfs(
    file: NfsFile__Output,
    sizeBytes: number,
    provisioning: ImageProvisioning,
    signal: AbortSignal,
    onProgress: (done: number, total: number) => void,
  ): Promise<{ image: Image; created: boolean }> {
    if (!this.nfs) throw new VcstorError('UNAVAILABLE', 'this agent has no NFS image support configured');
    const { runner, qsd } = this.nfs;
    const url = this.nfsUrl(file);
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
      const key = `zero-${createHash('sha256').update(url).digest('hex').slice(0, 20)}`;
      const { device } = await qsd.open({ key, blockdev: ['driver=nfs', 'server.type=inet', `server.host=${file.server}`, `path=${path.posix.join(file.exportPath, file.fileName)}`], timeoutMs: 30_000, meta: { kind: 'nfs-zero-fill' } }, signal);
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

  private describe(file: string, size: number, blocks: number): Image {
    return {
      location: { path: file },
      sizeBytes: size,
      provisioning: blocks * 512 >= size ? 'PROVISIONING_PREALLOCATED' : 'PROVISIONING_SPARSE',
      allocatedBytes: blocks * 512,
    };
  }

  /**
   * Create an image. Idempotent: a complete image of the same size is returned
   * (created=false); another size, or a sparse one where a zero-filled one is asked
   * for, is ALREADY_EXISTS. Cancelling removes the partial file.
   */
  async create(
    file: string,
    sizeBytes: number,
    provisioning: ImageProvisioning,
    signal: AbortSignal,
    onProgress: (done: number, total: number) => void,
  ): Promise<{ image: Image; created: boolean }> {
    const existing = await stat(file).catch(() => undefined);
    if (existing) {
      const image = this.describe(file, existing.size, existing.blocks);
      const wantFull = provisioning === 'preallocated';
      if (existing.size !== sizeBytes || (wantFull && image.provisioning !== 'PROVISIONING_PREALLOCATED')) {
        throw new VcstorError('ALREADY_EXISTS', `${file} exists with ${existing.size} bytes (${image.provisioning === 'PROVISIONING_SPARSE' ? 'sparse' : 'zero-filled'}); asked: ${sizeBytes} bytes, ${provisioning}`);
      }
      return { image, created: false };
    }
    await mkdir(path.dirname(file), { recursive: true });
    const partial = path.join(path.dirname(file), `.${path.basename(file)}.partial`);
    try {
      const handle = await open(partial, 'w', 0o600);
      try {
        if (provisioning === 'sparse') {
          await handle.truncate(sizeBytes);
          await handle.datasync();
        } else {
          await zeroFill(handle, sizeBytes, signal, onProgress);
        }
      } finally {
        await handle.close();
      }
      await rename(partial, file);
    } catch (err) {
      await rm(partial, { force: true });
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') throw new VcstorError('RESOURCE_EXHAUSTED', `no space for a ${sizeBytes}-byte image at ${file}`, { cause: err });
      throw err;
    }
    const created = await stat(file);
    return { image: this.describe(file, created.size, created.blocks), created: true };
  }

  /** Delete an image; false when it did not exist. */
  async delete(file: string): Promise<boolean> {
    const exists = await stat(file).then(() => true, () => false);
    await rm(file, { force: true });
    return exists;
  }

  /** Images (regular files, partial ones excluded) in `directory` or every image root. */
  async list(directory?: string): Promise<Image[]> {
    const dirs = directory ? [directory] : [...this.imageRoots];
    const images: Image[] = [];
    for (const dir of dirs) {
      if (!this.imageRoots.some((r) => isWithin(r, dir))) continue;
      for (const name of (await readdir(dir).catch(() => [] as string[])).sort()) {
        if (name.startsWith('.')) continue;
        const file = path.join(dir, name);
        const s = await stat(file).catch(() => undefined);
        if (s?.isFile()) images.push(this.describe(file, s.size, s.blocks));
      }
    }
    return images;
  }
}
