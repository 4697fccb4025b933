import { access, mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { VcstorError } from '../../common/errors.js';

/**
 * Each namespace host's memory: a cgroup v1 memory group of its own, so the hosts of
 * the one-machine lab do not share one page cache. A host's daemons and agent (and all
 * they start: qemu-storage-daemon, benchmarks) run in /vcstor.<lab>/<host>, limited to
 * the lab's --memory; the agent reads and empties it (DropCaches, SampleIo).
 *
 * Version 1 only: these machines mount the memory controller at /sys/fs/cgroup/memory
 * (the unified hierarchy holds no memory controller). Elsewhere the lab says so and
 * runs without (the hosts then share the machine's cache, and the report says so).
 */

export const MEMORY_CONTROLLER = '/sys/fs/cgroup/memory';
const MIB = 2 ** 20;

/** The lab's group and a host's group, as paths under the controller. */
export function labCgroup(lab: string): string {
  return `/vcstor.${lab}`;
}
export function hostCgroup(lab: string, host: string): string {
  return `${labCgroup(lab)}/${host}`;
}

/**
 * `--memory`: "256MiB", "1GiB", "512M", or "none" (0: no limit, no group).
 * @throws VcstorError INVALID_ARGUMENT for anything else, or less than 64 MiB (the
 *   agent alone needs about that much).
 */
export function parseMemorySize(value: string): number {
  if (value === 'none') return 0;
  const m = /^(\d+)\s*(K|M|G)(?:i?B)?$/i.exec(value);
  if (!m) throw new VcstorError('INVALID_ARGUMENT', `--memory ${value}: give a size such as 256MiB or 1GiB, or none`);
  const bytes = Number(m[1]) * 1024 ** ('KMG'.indexOf(m[2]!.toUpperCase()) + 1);
  if (bytes < 64 * MIB) throw new VcstorError('INVALID_ARGUMENT', `--memory ${value}: a host needs at least 64MiB (its agent alone uses about that)`);
  return bytes;
}

export class LabMemory {
  constructor(private readonly controller: string = MEMORY_CONTROLLER) {}

  /** Whether a cgroup v1 memory controller is mounted where expected. */
  async available(): Promise<boolean> {
    return access(path.join(this.controller, 'memory.limit_in_bytes')).then(
      () => true,
      () => false,
    );
  }

  /** Make (or keep) a host's group with this limit. Idempotent. */
  async ensure(cgroup: string, limitBytes: number): Promise<void> {
    const dir = this.dir(cgroup);
    await mkdir(dir, { recursive: true });
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
    const top = labCgroup(lab);
    if (!(await access(this.dir(top)).then(() => true, () => false))) return [];
    const removed: string[] = [];
    const until = Date.now() + timeoutMs;
    const hosts = (await readdir(this.dir(top), { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => `${top}/${e.name}`);
    for (const group of [...hosts, top]) {
      for (;;) {
        try {
          await rmdir(this.dir(group));
          removed.push(`memory cgroup ${group}`);
          break;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') break;
          if (code !== 'EBUSY' || Date.now() > until) {
            throw new VcstorError('FAILED_PRECONDITION', `cannot remove memory cgroup ${group}: ${(err as Error).message} (processes still in ${this.dir(group)}/cgroup.procs?)`, { cause: err });
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
