import { access, mkdir, readdir, readFile, realpath, rmdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { VcstorError } from '../common/errors.js';
import { majorMinor } from '../common/host-accounting.js';

/**
 * Each namespace host's memory and disk: cgroup v1 groups of its own.
 *
 * Memory: so the hosts of the one-machine lab do not share one page cache. A host's
 * daemons and agent (and all they start: qemu-storage-daemon, benchmarks) run in
 * memory:/vcstor.<lab>/<host>, limited to the lab's --memory; the agent reads and
 * empties it (DropCaches, SampleIo).
 *
 * Disk: this machine's disk is a virtual disk whose host caches it: 1 MiB O_DIRECT reads
 * run at 2.5 GB/s, and bonnie++ reads a 512 MiB file in under its 0.5 s timer (+++++).
 * blkio:/vcstor.<lab>/<host> throttles each host's reads and writes of that disk to
 * --disk-rate, as a disk of its own would. The kernel charges I/O to the cgroup of the
 * task that issued it, also through a direct-I/O loop device (its worker carries the
 * issuer's cgroup): a guest writing to its phy VBD is limited like dom0 writing a file.
 *
 * Version 1 only: these machines mount the memory controller at /sys/fs/cgroup/memory
 * (the unified hierarchy holds no memory controller). Elsewhere the lab says so and
 * runs without (the hosts then share the machine's cache, and the report says so).
 */

export const MEMORY_CONTROLLER = '/sys/fs/cgroup/memory';
export const BLKIO_CONTROLLER = '/sys/fs/cgroup/blkio';
const MIB = 2 ** 20;

/** The lab's group and a host's group, as paths under the controller. */
export function labCgroup(lab: string): string {
  return `/vcstor.${lab}`;
}
export function hostCgroup(lab: string, host: string): string {
  return `${labCgroup(lab)}/${host}`;
}
/**
 * Where a host's FUSE servers (qemu-storage-daemon initiators) run: beside the host's
 * group, not in it, and without a limit. Under cgroup v1 a group's reclaim waits for its
 * pages' writeback; a FUSE server inside the group whose writeback goes through it then
 * waits for itself (seen: dom0's iSCSI initiator in folio_wait_writeback for good, with
 * 128 MiB hosts). Their memory is a few MiB of buffers each, no page cache.
 */
export function fuseServerCgroup(lab: string, host: string): string {
  return `${labCgroup(lab)}/${host}-fuse`;
}

function parseSize(flag: string, value: string, minimum: number, unit: string): number {
  if (value === 'none') return 0;
  const m = /^(\d+)\s*(K|M|G)(?:i?B)?(?:\/s)?$/i.exec(value);
  if (!m) throw new VcstorError('INVALID_ARGUMENT', `${flag} ${value}: give a size such as 256MiB or 1GiB${unit}, or none`);
  const bytes = Number(m[1]) * 1024 ** ('KMG'.indexOf(m[2]!.toUpperCase()) + 1);
  if (bytes < minimum) throw new VcstorError('INVALID_ARGUMENT', `${flag} ${value}: at least ${minimum / MIB}MiB${unit}`);
  return bytes;
}

/**
 * `--memory`: "256MiB", "1GiB", "512M", or "none" (0: no limit, no group).
 * @throws VcstorError INVALID_ARGUMENT for anything else, or less than 64 MiB (the
 *   agent alone needs about that much).
 */
export function parseMemorySize(value: string): number {
  return parseSize('--memory', value, 64 * MIB, '');
}

/** `--disk-rate`: bytes per second, "80MiB" or "80MiB/s", or "none" (0: unthrottled). */
export function parseDiskRate(value: string): number {
  return parseSize('--disk-rate', value, MIB, '/s');
}

/** The whole disk (major:minor) holding `dir`: throttling applies to disks, not partitions. */
export async function diskOf(dir: string, sys = '/sys'): Promise<string | undefined> {
  const id = majorMinor((await stat(dir, { bigint: true })).dev);
  const node = await realpath(path.join(sys, 'dev/block', id)).catch(() => undefined);
  if (!node) return undefined;
  const isPartition = await access(path.join(node, 'partition')).then(() => true, () => false);
  return isPartition ? (await readFile(path.join(path.dirname(node), 'dev'), 'utf8')).trim() : id;
}

export class LabCgroups {
  constructor(
    private readonly controller: string = MEMORY_CONTROLLER,
    private readonly blkio: string = BLKIO_CONTROLLER,
  ) {}

  /** Whether a cgroup v1 memory controller is mounted where expected. */
  async available(): Promise<boolean> {
    return access(path.join(this.controller, 'memory.limit_in_bytes')).then(
      () => true,
      () => false,
    );
  }

  /** Whether a cgroup v1 blkio controller with throttling is mounted where expected. */
  async blkioAvailable(): Promise<boolean> {
    return access(path.join(this.blkio, 'blkio.throttle.read_bps_device')).then(
      () => true,
      () => false,
    );
  }

  /** Make (or keep) a host's blkio group, its reads and writes of `disk` throttled. Idempotent. */
  async ensureDiskRate(cgroup: string, disk: string, bytesPerSecond: number): Promise<void> {
    const dir = path.join(this.blkio, cgroup);
    await mkdir(dir, { recursive: true });
    for (const file of ['blkio.throttle.read_bps_device', 'blkio.throttle.write_bps_device']) await writeFile(path.join(dir, file), `${disk} ${bytesPerSecond}`);
  }

  /** Move a process into the host's blkio group (when it has one). */
  async joinBlkio(cgroup: string, pid: number): Promise<void> {
    const dir = path.join(this.blkio, cgroup);
    if (await access(dir).then(() => true, () => false)) await writeFile(path.join(dir, 'cgroup.procs'), String(pid));
  }

  /** Make (or keep) a host's group with this limit (none: unlimited). Idempotent. */
  async ensure(cgroup: string, limitBytes?: number): Promise<void> {
    const dir = this.dir(cgroup);
    await mkdir(dir, { recursive: true });
    if (limitBytes === undefined) return;
    await writeFile(path.join(dir, 'memory.limit_in_bytes'), String(limitBytes));
    // No swapping to stand for memory a host does not have (the machine has no swap either).
    await writeFile(path.join(dir, 'memory.swappiness'), '0').catch(() => undefined);
  }

  /** Move a process (all its threads) into the group; what it starts later stays in it. */
  async join(cgroup: string, pid: number): Promise<void> {
    await writeFile(path.join(this.dir(cgroup), 'cgroup.procs'), String(pid));
  }

  /** What a group holds now: all its memory, its page cache, and its limit. */
  async usage(cgroup: string): Promise<{ usageBytes: number; cacheBytes: number; limitBytes: number } | undefined> {
    const dir = this.dir(cgroup);
    try {
      const usageBytes = Number((await readFile(path.join(dir, 'memory.usage_in_bytes'), 'utf8')).trim());
      const limitBytes = Number((await readFile(path.join(dir, 'memory.limit_in_bytes'), 'utf8')).trim());
      const stat = await readFile(path.join(dir, 'memory.stat'), 'utf8');
      const cacheBytes = Number(/^total_cache (\d+)$/m.exec(stat)?.[1] ?? 0);
      return { usageBytes, cacheBytes, limitBytes };
    } catch {
      return undefined;
    }
  }

  /**
   * Remove the lab's groups: every host's, then the lab's own. A group can go only once
   * its processes have; `down` stops them first, and exits take a moment.
   * @returns the groups removed.
   */
  async remove(lab: string, timeoutMs = 5000): Promise<string[]> {
    return [...(await this.removeIn(this.controller, 'memory', lab, timeoutMs)), ...(await this.removeIn(this.blkio, 'blkio', lab, timeoutMs))];
  }

  private async removeIn(controller: string, kind: string, lab: string, timeoutMs: number): Promise<string[]> {
    const top = labCgroup(lab);
    const at = (group: string) => path.join(controller, group);
    if (!(await access(at(top)).then(() => true, () => false))) return [];
    const removed: string[] = [];
    const until = Date.now() + timeoutMs;
    const hosts = (await readdir(at(top), { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => `${top}/${e.name}`);
    for (const group of [...hosts, top]) {
      for (;;) {
        try {
          await rmdir(at(group));
          removed.push(`${kind} cgroup ${group}`);
          break;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') break;
          if (code !== 'EBUSY' || Date.now() > until) {
            throw new VcstorError('FAILED_PRECONDITION', `cannot remove ${kind} cgroup ${group}: ${(err as Error).message} (processes still in ${at(group)}/cgroup.procs?)`, { cause: err });
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    }
    return removed;
  }

  private dir(cgroup: string): string {
    return path.join(this.controller, cgroup);
  }
}
