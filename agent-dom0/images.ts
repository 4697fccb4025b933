import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { VcstorError } from '../common/errors.js';
import type { Image } from '../common/generated/vcstor/v1/Image.js';
import { isWithin } from '../common/validate.js';
import { zeroFill } from '../common/zero-fill.js';

export type ImageProvisioning = 'preallocated' | 'sparse';

/**
 * Image files on dom0: under the configured image roots (a local filesystem, a mounted
 * iSCSI disk's filesystem, an NFS mount). Zero-filled by default, as in the paper, or
 * sparse. An image is written under a temporary name and renamed when complete, so an
 * interrupted fill never looks like an image.
 */
export class Images {
  constructor(private readonly imageRoots: readonly string[]) {}

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
    const found = await stat(file).catch(() => undefined);
    if (found && !found.isFile()) throw new VcstorError('FAILED_PRECONDITION', `${file} is not an image file (a directory or a device); nothing was deleted`);
    await rm(file, { force: true });
    return found !== undefined;
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
