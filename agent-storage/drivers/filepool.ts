import { mkdir, open, readdir, readFile, rename, rm, stat, statfs, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { VcstorError } from '../../common/errors.js';
import { LoopDevices, type LoopDevice } from '../../common/loop-devices.js';
import type { CommandRunner } from '../../common/runner.js';
import { zeroFill } from '../../common/zero-fill.js';
import type { OperationContext, VolumeDriver, VolumeInfo, VolumeSpec } from './types.js';

const MIB = 1024 * 1024;

/** What the pool records beside each image file. */
interface VolumeMeta {
  name: string;
  sizeBytes: number;
  provisioning: VolumeSpec['provisioning'];
  createdUnixMs: number;
}

/**
 * A pool of image files in a directory: `NAME.img` with `NAME.json` beside it. Images
 * are zero-filled (preallocated, as in the paper) or sparse, and exposed as block
 * devices through loop devices when one is needed.
 */
export class FilePoolVolumes implements VolumeDriver {
  readonly driver = 'filepool' as const;
  private readonly loops: LoopDevices;

  constructor(
    private readonly options: { runner: CommandRunner; poolDir: string; pool?: string },
  ) {
    this.loops = new LoopDevices(options.runner);
  }

  get pool(): string {
    return this.options.pool ?? 'default';
  }

  /** Sizes round up to whole MiB. */
  roundSize(sizeBytes: number): number {
    return Math.ceil(sizeBytes / MIB) * MIB;
  }

  private image(name: string): string {
    return path.join(this.options.poolDir, `${name}.img`);
  }

  private meta(name: string): string {
    return path.join(this.options.poolDir, `${name}.json`);
  }

  async capacity(): Promise<{ totalBytes: number; freeBytes: number }> {
    await this.ensurePoolDir();
    const fs = await statfs(this.options.poolDir);
    return { totalBytes: fs.blocks * fs.bsize, freeBytes: fs.bavail * fs.bsize };
  }

  private async readMeta(name: string): Promise<VolumeMeta | undefined> {
    try {
      return JSON.parse(await readFile(this.meta(name), 'utf8')) as VolumeMeta;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** @param loops the machine's loop devices, when the caller listed them already. */
  private async info(meta: VolumeMeta, signal: AbortSignal, loops?: LoopDevice[]): Promise<VolumeInfo | undefined> {
    let allocated: number;
    try {
      allocated = (await stat(this.image(meta.name))).blocks * 512;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    const image = this.image(meta.name);
    const device = (loops ?? (await this.loops.list(signal))).find((d) => d.backingFile === image && d.offset === 0);
    return { ...meta, pool: this.pool, allocatedBytes: allocated, blockDevice: device?.name ?? '', driver: this.driver };
  }

  async create(spec: VolumeSpec, ctx: OperationContext): Promise<{ volume: VolumeInfo; created: boolean }> {
    await this.ensurePoolDir();
    const sizeBytes = this.roundSize(spec.sizeBytes);
    const existing = await this.readMeta(spec.name);
    if (existing) {
      if (existing.sizeBytes !== sizeBytes || existing.provisioning !== spec.provisioning) {
        throw new VcstorError(
          'ALREADY_EXISTS',
          `volume ${spec.name} exists with ${existing.sizeBytes} bytes, ${existing.provisioning} (asked: ${sizeBytes} bytes, ${spec.provisioning})`,
        );
      }
      const volume = await this.info(existing, ctx.signal);
      if (volume) return { volume, created: false };
    }
    if (spec.provisioning === 'preallocated') {
      const { freeBytes } = await this.capacity();
      if (freeBytes < sizeBytes) {
        throw new VcstorError('RESOURCE_EXHAUSTED', `pool ${this.pool} has ${freeBytes} bytes free; volume ${spec.name} needs ${sizeBytes}`);
      }
    }
    // Build under a temporary name and rename at the end: a crash or a cancel never
    // leaves a half-filled image that looks complete.
    const partial = path.join(this.options.poolDir, `.${spec.name}.img.partial`);
    const meta: VolumeMeta = { name: spec.name, sizeBytes, provisioning: spec.provisioning, createdUnixMs: Date.now() };
    try {
      const file = await open(partial, 'w', 0o600);
      try {
        if (spec.provisioning === 'sparse') {
          await file.truncate(sizeBytes);
        } else {
          await zeroFill(file, sizeBytes, ctx.signal, ctx.onProgress);
        }
        if (spec.provisioning === 'sparse') await file.datasync();
      } finally {
        await file.close();
      }
      await writeFile(`${this.meta(spec.name)}.tmp`, `${JSON.stringify(meta)}\n`, { mode: 0o600 });
      await rename(`${this.meta(spec.name)}.tmp`, this.meta(spec.name));
      await rename(partial, this.image(spec.name));
    } catch (err) {
      await rm(partial, { force: true });
      await rm(`${this.meta(spec.name)}.tmp`, { force: true });
      if (!(await stat(this.image(spec.name)).catch(() => undefined))) await rm(this.meta(spec.name), { force: true });
      if (ctx.signal.aborted) throw new VcstorError('CANCELLED', `creating volume ${spec.name} was cancelled; nothing was left behind`, { cause: err });
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') throw new VcstorError('RESOURCE_EXHAUSTED', `pool ${this.pool} ran out of space creating ${spec.name}`, { cause: err });
      throw err;
    }
    // A file made just now has no loop device (delete detaches before it removes): no
    // need to ask losetup, a process per call and the costliest step of a create at scale.
    const volume = await this.info(meta, ctx.signal, []);
    if (!volume) throw new VcstorError('INTERNAL', `volume ${spec.name} vanished right after it was created`);
    return { volume, created: true };
  }

  async delete(name: string, signal: AbortSignal): Promise<boolean> {
    const meta = await this.readMeta(name);
    const image = this.image(name);
    const exists = meta !== undefined || (await stat(image).catch(() => undefined)) !== undefined;
    if (!exists) return false;
    await this.loops.detachFile(image, signal);
    await rm(image, { force: true });
    await rm(this.meta(name), { force: true });
    return true;
  }

  async get(name: string, signal: AbortSignal): Promise<VolumeInfo | undefined> {
    const meta = await this.readMeta(name);
    return meta ? this.info(meta, signal) : undefined;
  }

  async list(signal: AbortSignal): Promise<VolumeInfo[]> {
    await this.ensurePoolDir();
    const names = (await readdir(this.options.poolDir)).filter((f) => f.endsWith('.json') && !f.startsWith('.')).map((f) => f.slice(0, -5));
    // One losetup call for the whole listing, not one per volume.
    const loops = await this.loops.list(signal);
    const volumes = await Promise.all(
      names.map(async (name) => {
        const meta = await this.readMeta(name);
        return meta ? this.info(meta, signal, loops) : undefined;
      }),
    );
    return volumes.filter((v): v is VolumeInfo => v !== undefined).sort((a, b) => a.name.localeCompare(b.name));
  }

  async backingPath(name: string, _signal: AbortSignal): Promise<string> {
    // The image's metadata and file are enough; get() would also ask losetup for a
    // loop device (a process per call, the costliest step of an export at scale).
    const meta = await this.readMeta(name);
    if (!meta || !(await stat(this.image(name)).catch(() => undefined))) throw new VcstorError('NOT_FOUND', `no volume ${name} in pool ${this.pool}`);
    return this.image(name);
  }

  async attachBlockDevice(name: string, signal: AbortSignal): Promise<string> {
    await this.mustExist(name, signal);
    // Direct I/O: a filesystem on the volume (an NFS export) caches in the storage
    // server's processes (ganesha), charged to its memory; a buffered loop device would
    // add a cache charged to no one (cgroup v1).
    return this.loops.attach(this.image(name), signal, { directIo: true });
  }

  async detachBlockDevice(name: string, signal: AbortSignal): Promise<void> {
    await this.loops.detachFile(this.image(name), signal);
  }

  private async mustExist(name: string, signal: AbortSignal): Promise<void> {
    if (!(await this.get(name, signal))) throw new VcstorError('NOT_FOUND', `no volume ${name} in pool ${this.pool}`);
  }

  private async ensurePoolDir(): Promise<void> {
    await mkdir(this.options.poolDir, { recursive: true, mode: 0o700 });
  }
}
