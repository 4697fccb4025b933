import { mkdir, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { VcstorError } from '../common/errors.js';
import type { Filesystems } from '../common/filesystems.js';
import type { Brick } from '../common/generated/vcstor/v1/Brick.js';
import type { ParallelFs } from '../common/generated/vcstor/v1/ParallelFs.js';
import type { OperationLocks } from '../common/locks.js';
import type { Logger } from '../common/log.js';
import type { BrickSpec, ParallelFsDriver, VolumeDriver } from './drivers/types.js';
import { requireVolume } from './storage-records.js';

/**
 * A storage server's part in a parallel file system (paper section 5's shared space): its
 * volumes given as bricks — each volume's filesystem mounted at `<brickRoot>/<volume>`,
 * the brick the directory `brick` inside it (a brick at a mount's root would, unmounted,
 * silently become the root filesystem's directory) — and, on the server asked, the
 * parallel file system's volumes over the bricks of several servers. A brick is what is
 * mounted under the brick root: the mount table is its record, so nothing is lost when
 * the agent restarts. Each change is idempotent and takes the volume's (or the parallel
 * file system's) lock.
 */
export class ParallelFsServer {
  constructor(
    private readonly o: {
      volumes: VolumeDriver;
      /** Absent: the host runs no parallel file system (its calls are FAILED_PRECONDITION). */
      driver?: ParallelFsDriver;
      filesystems: Filesystems;
      locks: OperationLocks;
      log: Logger;
      brickRoot: string;
    },
  ) {}

  private requireDriver(): ParallelFsDriver {
    if (!this.o.driver) throw new VcstorError('FAILED_PRECONDITION', 'this storage server runs no parallel file system (storage.parallelFs.driver: glusterfs)');
    return this.o.driver;
  }

  private mountpointOf(volume: string): string {
    return path.join(this.o.brickRoot, volume);
  }

  /** The brick directory of `volume`, when its filesystem is mounted as a brick. */
  async brickOf(volume: string): Promise<string | undefined> {
    const mountpoint = this.mountpointOf(volume);
    return (await this.o.filesystems.mountedAt(mountpoint)) ? path.join(mountpoint, 'brick') : undefined;
  }

  /** ExportBrick: the volume's filesystem (made if asked and missing) mounted as a brick. */
  async exportBrick(volume: string, makeFilesystem: string, signal: AbortSignal): Promise<{ brick: Brick; created: boolean }> {
    this.requireDriver();
    return this.o.locks.with(`volume:${volume}`, `volume ${volume}`, async () => {
      await requireVolume(this.o.volumes, volume, signal);
      const mountpoint = this.mountpointOf(volume);
      const device = await this.o.volumes.attachBlockDevice(volume, signal);
      let fsType = await this.o.filesystems.probe(device, signal);
      if (fsType === '') {
        if (makeFilesystem === '') throw new VcstorError('FAILED_PRECONDITION', `volume ${volume} has no filesystem; set make_filesystem (e.g. ext4) to make one`);
        await this.o.filesystems.ensure(device, makeFilesystem, { signal });
        fsType = makeFilesystem;
      }
      const created = await this.o.filesystems.mount(device, mountpoint, { fsType, signal });
      const brick = path.join(mountpoint, 'brick');
      await mkdir(brick, { recursive: true, mode: 0o755 });
      if (created) this.o.log.info({ volume, brick }, 'volume exported as a brick');
      return { brick: { host: '', path: brick, volume }, created };
    });
  }

  /** UnexportBrick: unmount the volume's brick filesystem; refused while a parallel file system uses it. */
  async unexportBrick(volume: string, signal: AbortSignal): Promise<boolean> {
    return this.o.locks.with(`volume:${volume}`, `volume ${volume}`, () => this.removeBrick(volume, signal));
  }

  /** Unmount `volume`'s brick (the caller holds its lock); false when it is not one. */
  async removeBrick(volume: string, signal: AbortSignal): Promise<boolean> {
    const brick = await this.brickOf(volume);
    if (!brick) return false;
    if (this.o.driver) {
      const users = (await this.o.driver.listVolumes(signal)).filter((v) => v.bricks.some((b) => b.path === brick));
      if (users.length > 0) throw new VcstorError('FAILED_PRECONDITION', `the brick of volume ${volume} is in parallel file system ${users.map((u) => u.name).join(', ')}; delete it first`);
    }
    const mountpoint = this.mountpointOf(volume);
    await this.o.filesystems.unmount(mountpoint, signal);
    await this.o.volumes.detachBlockDevice(volume, signal);
    await rmdir(mountpoint).catch(() => undefined);
    this.o.log.info({ volume }, 'brick unexported');
    return true;
  }

  /** CreateParallelFs: the peers probed, the volume created over the bricks and started. */
  async create(name: string, bricks: readonly BrickSpec[], signal: AbortSignal): Promise<{ parallelFs: ParallelFs; created: boolean }> {
    const driver = this.requireDriver();
    return this.o.locks.with(`parallel-fs:${name}`, `parallel file system ${name}`, async () => {
      for (const host of new Set(bricks.map((b) => b.host))) await driver.probePeer(host, signal);
      const created = await driver.createVolume(name, bricks, signal);
      // O_DIRECT from a client must reach the bricks: gluster's write-behind and
      // read-ahead would otherwise serve it from the client's memory (a benchmark with
      // O_DIRECT would measure the guest, not the space).
      await driver.setOption(name, 'performance.strict-o-direct', 'on', signal);
      await driver.startVolume(name, signal);
      const found = (await driver.listVolumes(signal)).find((v) => v.name === name);
      if (!found) throw new VcstorError('INTERNAL', `parallel file system ${name} was created but its servers do not list it`);
      if (created) this.o.log.info({ name, bricks: bricks.length }, 'parallel file system created');
      return { parallelFs: { name, bricks: found.bricks, status: found.status, driver: driver.driver }, created };
    });
  }

  /** DeleteParallelFs: stopped and deleted (its bricks stay exported, their files on them). */
  async delete(name: string, signal: AbortSignal): Promise<boolean> {
    const driver = this.o.driver;
    if (!driver) return false;
    return this.o.locks.with(`parallel-fs:${name}`, `parallel file system ${name}`, async () => {
      const removed = await driver.deleteVolume(name, signal);
      if (removed) this.o.log.info({ name }, 'parallel file system deleted');
      return removed;
    });
  }

  /** Its parallel file systems (as this server's daemon knows them) and this server's bricks. */
  async list(signal: AbortSignal): Promise<{ parallelFs: ParallelFs[]; bricks: Brick[] }> {
    const driver = this.o.driver;
    const parallelFs = driver ? (await driver.listVolumes(signal)).map((v) => ({ name: v.name, bricks: v.bricks, status: v.status, driver: driver.driver })) : [];
    const mounts = await this.o.filesystems.mounts();
    const bricks = mounts
      .filter((m) => path.dirname(m.mountpoint) === this.o.brickRoot)
      .map((m) => ({ host: '', path: path.join(m.mountpoint, 'brick'), volume: path.basename(m.mountpoint) }));
    return { parallelFs, bricks };
  }
}
