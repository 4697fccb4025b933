import { mkdir, readFile } from 'node:fs/promises';
import { VcstorError } from './errors.js';
import { CommandError, type CommandRunner } from './runner.js';

/** A mounted filesystem, from /proc/self/mountinfo. */
export interface MountEntry {
  device: string;
  mountpoint: string;
  fsType: string;
  options: string[];
}

/** /proc/self/mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeMountinfo(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** Parse /proc/self/mountinfo text. */
export function parseMountinfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const [before, after] = line.split(' - ');
    const fields = (before ?? '').split(' ');
    const tail = (after ?? '').split(' ');
    entries.push({
      mountpoint: unescapeMountinfo(fields[4] ?? ''),
      options: (fields[5] ?? '').split(','),
      fsType: tail[0] ?? '',
      device: unescapeMountinfo(tail[1] ?? ''),
    });
  }
  return entries;
}

/**
 * Filesystems on block devices: probe, make, mount, unmount. Shared by the storage
 * agent (volume filesystems for NFS exports), dom0 (file-iscsi) and guests.
 */
export class Filesystems {
  constructor(private readonly runner: CommandRunner) {}

  /** The filesystem type on `device` ("ext4"), or '' when it has none. */
  async probe(device: string, signal: AbortSignal): Promise<string> {
    // blkid exits 2 when it finds nothing to report.
    const result = await this.runner.run('blkid', ['-p', '-o', 'value', '-s', 'TYPE', device], { okExitCodes: [0, 2], signal, timeoutMs: 30_000 });
    return result.exitCode === 0 ? result.stdout.trim() : '';
  }

  /** The UUID of the filesystem on `device`, or ''. */
  async uuid(device: string, signal: AbortSignal): Promise<string> {
    const result = await this.runner.run('blkid', ['-p', '-o', 'value', '-s', 'UUID', device], { okExitCodes: [0, 2], signal, timeoutMs: 30_000 });
    return result.exitCode === 0 ? result.stdout.trim() : '';
  }

  /**
   * Make a filesystem unless one of that type is there (idempotent). Another filesystem
   * is FAILED_PRECONDITION unless `force`.
   * @returns true when it made one.
   */
  async ensure(device: string, fsType: string, options: { force?: boolean; mkfsOptions?: readonly string[]; label?: string; signal: AbortSignal }): Promise<boolean> {
    const existing = await this.probe(device, options.signal);
    if (existing === fsType && !options.force) return false;
    if (existing !== '' && !options.force) {
      throw new VcstorError('FAILED_PRECONDITION', `${device} already has a ${existing} filesystem; set force to replace it with ${fsType}`);
    }
    await this.runner.run(`mkfs.${fsType}`, mkfsArgs(fsType, device, options), { signal: options.signal, timeoutMs: 10 * 60_000, env: MKFS_ENV });
    return true;
  }

  async mounts(): Promise<MountEntry[]> {
    return parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'));
  }

  /** What is mounted at `mountpoint`, if anything. */
  async mountedAt(mountpoint: string): Promise<MountEntry | undefined> {
    return (await this.mounts()).reverse().find((m) => m.mountpoint === mountpoint);
  }

  /**
   * Mount `device` at `mountpoint` (made if missing). Idempotent: the same device there
   * already is fine; another device there is FAILED_PRECONDITION.
   * @returns false when it was mounted already.
   */
  async mount(device: string, mountpoint: string, options: { fsType?: string; mountOptions?: readonly string[]; signal: AbortSignal }): Promise<boolean> {
    const current = await this.mountedAt(mountpoint);
    if (current) {
      if (current.device === device) return false;
      throw new VcstorError('FAILED_PRECONDITION', `${mountpoint} already has ${current.device} mounted`);
    }
    await mkdir(mountpoint, { recursive: true });
    const type = options.fsType ? ['-t', options.fsType] : [];
    const opts = options.mountOptions && options.mountOptions.length > 0 ? ['-o', options.mountOptions.join(',')] : [];
    await this.runner.run('mount', [...type, ...opts, device, mountpoint], { signal: options.signal, timeoutMs: 60_000 });
    return true;
  }

  /**
   * Unmount `mountpoint`. Idempotent: returns false when nothing was mounted there.
   * "target is busy" is tried again for up to 10 s: a process just killed (a benchmark
   * cancelled at its deadline, finishing its last I/O over a slow link) holds the
   * filesystem a moment longer, and teardown comes right after the cancel (the fault
   * suite's throttled link hit this). Still busy after that: the error, as umount said it.
   */
  async unmount(mountpoint: string, signal: AbortSignal): Promise<boolean> {
    if (!(await this.mountedAt(mountpoint))) return false;
    const until = Date.now() + 10_000;
    for (;;) {
      try {
        await this.runner.run('umount', [mountpoint], { signal, timeoutMs: 120_000 });
        return true;
      } catch (err) {
        const busy = err instanceof CommandError && /target is busy/i.test(err.stderr);
        if (!busy || Date.now() >= until || signal.aborted) throw err;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/**
 * mke2fs zeroes its journal with fallocate(ZERO_RANGE) and, where that fails (a loop
 * device over a FUSE export), with fallocate(PUNCH_HOLE): a 4 MiB hole in a zero-filled
 * pool file (file-nfs, seen in CI). libext2fs's UNIX_IO_NOZEROOUT makes it write the
 * zeros instead; other mkfs programs ignore it.
 */
export const MKFS_ENV: Readonly<Record<string, string>> = { UNIX_IO_NOZEROOUT: '1' };

/**
 * mkfs's arguments: quiet and forced, the label, the caller's options, and never a
 * discard. mkfs discards the whole device by default, and a discard through a loop
 * device (or a thin LV, or a tgt LUN on a file) punches holes in what backs it: a
 * zero-filled 64 MiB volume was left with 4.5 MiB allocated, so every preallocated
 * image or volume turned sparse the moment a filesystem was made on it — the paper's
 * whole zero-filled vs sparse comparison with it. ext2/3/4: `-E nodiscard` (merged into
 * the caller's -E); xfs: `-K`.
 */
export function mkfsArgs(fsType: string, device: string, options: { mkfsOptions?: readonly string[]; label?: string }): string[] {
  const quiet = fsType === 'xfs' ? ['-f'] : ['-q', '-F'];
  const label = options.label ? ['-L', options.label] : [];
  const extra = [...(options.mkfsOptions ?? [])];
  if (fsType === 'xfs') {
    if (!extra.includes('-K')) extra.push('-K');
  } else if (/^ext[234]$/.test(fsType)) {
    // And no lazy inode table init: the kernel's ext4lazyinit thread zeroes the tables
    // after mount with a write-zeroes that a loop device turns into a punched hole
    // (2-4 MiB holes in file-nfs's zero-filled pool file, now and then).
    const wanted = ['nodiscard', 'lazy_itable_init=0'];
    const e = extra.indexOf('-E');
    if (e >= 0 && e + 1 < extra.length) {
      const values = extra[e + 1]!.split(',').filter((v) => v !== 'discard' && v !== 'lazy_itable_init=1');
      extra[e + 1] = [...values, ...wanted.filter((w) => !values.includes(w))].join(',');
    } else {
      extra.push('-E', wanted.join(','));
    }
  }
  return [...quiet, ...label, ...extra, device];
}
