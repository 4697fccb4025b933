import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { invalidArgument, VcstorError } from '../common/errors.js';
import { parseMountinfo, type MountEntry } from '../common/filesystems.js';
import { processStartTicks, stopProcess } from '../common/processes.js';
import { CommandError, type CommandRunner } from '../common/runner.js';

/**
 * The GlusterFS FUSE client, for the parallel-fs shared space: every guest mounts the
 * storage servers' volume. It runs `glusterfs` itself with an argument array rather than
 * `mount -t glusterfs`: mount.glusterfs is a shell script that joins its options into one
 * unquoted string before running the same `glusterfs` command, and what it adds (refuse an
 * occupied mount point, stat the mount afterwards, `--process-name fuse`) the driver does
 * itself (agent-storage/drivers/glusterfs-notes.md). The mount is read back from /proc/self/mountinfo, where it
 * shows as `fuse.glusterfs` with the source `SERVER:VOLUME`.
 *
 * glusterfs daemonizes once the volume file is fetched and the FUSE mount made: the
 * client process outlives the call, one per mount. `umount` ends it (it exits by itself
 * within about a second); the driver waits for that, and stops it if it lingers.
 */

/** The filesystem type mountinfo shows for a glusterfs FUSE mount. */
export const GLUSTERFS_FSTYPE = 'fuse.glusterfs';

/** One volume to mount. */
export interface GlusterMountSpec {
  /** The storage server whose glusterd hands out the volume file (any server of the pool). */
  server: string;
  /** Servers to ask for the volume file when `server` does not answer (the data paths go to every brick anyway). */
  backupServers?: readonly string[];
  volume: string;
  /** Absolute; made if missing. */
  mountpoint: string;
  readOnly?: boolean;
}

/** A glusterfs mount, as mountinfo shows it. */
export interface GlusterMount {
  server: string;
  volume: string;
  mountpoint: string;
  /** The mount's own options as the kernel reports them (rw, relatime...). */
  options: string[];
}

/** Fetching the volume file from an unreachable server took 3.1 s; backups each add as much. */
const MOUNT_TIMEOUT_MS = 60_000;
/** stat of the new mount: the first lookup goes to every brick. */
const STAT_TIMEOUT_MS = 30_000;
/** umount of a FUSE mount whose client hangs can block: give up after this long. */
const UMOUNT_TIMEOUT_MS = 60_000;

const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

function validateServer(field: string, value: string): string {
  if (value === '') throw invalidArgument(field, 'is required');
  if (isIP(value) === 6) throw invalidArgument(field, `${JSON.stringify(value)}: use an IPv4 address or a host name`);
  if (!HOST_NAME.test(value)) throw invalidArgument(field, `${JSON.stringify(value.slice(0, 80))} is not an IPv4 address or a host name`);
  return value;
}

function validateVolume(value: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(value)) {
    throw invalidArgument('volume', `${JSON.stringify(value.slice(0, 80))} is not a gluster volume name: use 1-64 characters of A-Z, a-z, 0-9, '_', '-', starting with a letter or digit`);
  }
  return value;
}

function validateMountpoint(mountpoint: string): string {
  // eslint-disable-next-line no-control-regex
  if (!path.isAbsolute(mountpoint) || /[\u0000-\u001f\u007f]/.test(mountpoint)) throw invalidArgument('mountpoint', 'must be an absolute path');
  const normalized = path.resolve(mountpoint);
  if (normalized === '/') throw invalidArgument('mountpoint', 'cannot be /');
  // mountinfo shows the normalized path: compare with that.
  return normalized;
}

/** "SERVER:VOLUME" (mountinfo's source of a glusterfs mount) split; undefined if it is not one. Pure. */
export function parseGlusterSource(source: string): { server: string; volume: string } | undefined {
  const at = source.lastIndexOf(':');
  if (at <= 0) return undefined;
  // mount.glusterfs also accepts SERVER:/VOLUME.
  const volume = source.slice(at + 1).replace(/^\//, '');
  return volume === '' ? undefined : { server: source.slice(0, at), volume };
}

/**
 * The `glusterfs` arguments that mount `spec` (validated), with the client's log and
 * pid files. Pure.
 * @throws VcstorError INVALID_ARGUMENT.
 */
export function glusterfsMountArgs(spec: GlusterMountSpec, files: { logFile: string; pidFile: string }): string[] {
  const servers = [validateServer('server', spec.server), ...(spec.backupServers ?? []).map((s, i) => validateServer(`backupServers[${i}]`, s))];
  return [
    '--process-name',
    'fuse',
    ...servers.map((s) => `--volfile-server=${s}`),
    `--volfile-id=${validateVolume(spec.volume)}`,
    ...(spec.readOnly ? ['--read-only'] : []),
    `--log-file=${files.logFile}`,
    `--pid-file=${files.pidFile}`,
    validateMountpoint(spec.mountpoint),
  ];
}

/** Options of the driver; mountinfoPath and procPath move /proc for tests. */
export interface GlusterfsFuseClientOptions {
  runner: CommandRunner;
  /** The client's pid and log files go to `<stateDir>/glusterfs/`. */
  stateDir: string;
  /** Default /proc/self/mountinfo. */
  mountinfoPath?: string;
  /** Where client processes are looked for; default /proc. */
  procPath?: string;
  /** How long unmount waits for the client process to exit by itself before stopping it. Default 5 s. */
  clientExitWaitMs?: number;
}

/** The GlusterFS FUSE client: `glusterfs`, `umount`, mountinfo. */
export class GlusterfsFuseClient {
  readonly driver = 'glusterfs' as const;
  private readonly runner: CommandRunner;
  private readonly filesDir: string;
  private readonly mountinfoPath: string;
  private readonly procPath: string;
  private readonly clientExitWaitMs: number;

  constructor(options: GlusterfsFuseClientOptions) {
    if (!path.isAbsolute(options.stateDir)) throw invalidArgument('stateDir', 'must be an absolute path');
    this.runner = options.runner;
    this.filesDir = path.join(options.stateDir, 'glusterfs');
    this.mountinfoPath = options.mountinfoPath ?? '/proc/self/mountinfo';
    this.procPath = options.procPath ?? '/proc';
    this.clientExitWaitMs = options.clientExitWaitMs ?? 5_000;
  }

  /** The client's log and pid files for a mount point: readable name, hash against clashes. */
  clientFiles(mountpoint: string): { logFile: string; pidFile: string } {
    const normalized = validateMountpoint(mountpoint);
    const readable = normalized.slice(1).replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 80);
    const base = `${readable}-${createHash('sha256').update(normalized).digest('hex').slice(0, 12)}`;
    return { logFile: path.join(this.filesDir, `${base}.log`), pidFile: path.join(this.filesDir, `${base}.pid`) };
  }

  /**
   * Mount `spec.volume` from `spec.server` at `spec.mountpoint` (made if missing), then
   * stat it: a volume that exists but is not started mounts, and answers every access
   * with ENOTCONN. Idempotent: the same volume from the same server there already returns
   * false. On any failure nothing is left mounted and no client process is left running.
   * Timeout 60 s for glusterfs, 30 s for the stat.
   * @throws VcstorError FAILED_PRECONDITION (something else is mounted there), NOT_FOUND
   *   (the server has no such volume), UNAVAILABLE (no server answers; the bricks cannot
   *   be reached: is the volume started?), INVALID_ARGUMENT, DEADLINE_EXCEEDED, CANCELLED,
   *   INTERNAL.
   */
  async mount(spec: GlusterMountSpec, signal: AbortSignal): Promise<boolean> {
    const mountpoint = validateMountpoint(spec.mountpoint);
    const files = this.clientFiles(mountpoint);
    const args = glusterfsMountArgs(spec, files);
    const source = `${spec.server}:${spec.volume}`;
    const current = await this.mountedAt(mountpoint);
    if (current) {
      const mounted = current.fsType === GLUSTERFS_FSTYPE ? parseGlusterSource(current.device) : undefined;
      if (mounted && mounted.server.toLowerCase() === spec.server.toLowerCase() && mounted.volume === spec.volume) return false;
      throw new VcstorError('FAILED_PRECONDITION', `${mountpoint} already has ${current.device} (${current.fsType}) mounted; unmount it first`);
    }
    await mkdir(mountpoint, { recursive: true });
    await mkdir(this.filesDir, { recursive: true });
    await rm(files.pidFile, { force: true });
    try {
      try {
        await this.runner.run('glusterfs', args, { signal, timeoutMs: MOUNT_TIMEOUT_MS });
      } catch (err) {
        throw await this.mountFailure(err, source, mountpoint, files.logFile);
      }
      const after = await this.mountedAt(mountpoint);
      if (!after || after.fsType !== GLUSTERFS_FSTYPE) {
        throw new VcstorError(
          'INTERNAL',
          `glusterfs reported ${source} mounted at ${mountpoint}, but mountinfo shows ${after ? `${after.device} (${after.fsType})` : 'nothing'} there${await this.logTail(files.logFile)}`,
        );
      }
      try {
        await this.runner.run('stat', ['--format=%i', mountpoint], { signal, timeoutMs: STAT_TIMEOUT_MS });
      } catch (err) {
        if (err instanceof CommandError && err.code === 'INTERNAL') {
          throw new VcstorError(
            'UNAVAILABLE',
            `${source} mounted at ${mountpoint}, but the volume's bricks cannot be reached (is the volume started?): ${err.stderr.trim().split('\n').pop() ?? ''}`,
            { cause: err },
          );
        }
        throw err;
      }
      return true;
    } catch (err) {
      // Leave nothing behind: the mount (if it was made) and its client process.
      await this.unmount(mountpoint, new AbortController().signal).catch(() => undefined);
      await this.stopClient(mountpoint, 0).catch(() => undefined);
      throw err;
    }
  }

  /** glusterfs' exit as our codes, with the last lines of its log (it says little on stderr). */
  private async mountFailure(err: unknown, source: string, mountpoint: string, logFile: string): Promise<unknown> {
    if (!(err instanceof CommandError) || err.code !== 'INTERNAL') return err;
    const log = await readFile(logFile, 'utf8').catch(() => '');
    const tail = await this.logTail(logFile);
    if (/failed to fetch volume file/i.test(log)) {
      return new VcstorError('NOT_FOUND', `mounting ${source} at ${mountpoint} failed: the server has no volume ${source.split(':').pop()}${tail}`, { cause: err });
    }
    // 107 = ENOTCONN: no volfile server answered.
    if (err.exitCode === 107 || /Transport endpoint is not connected|Connection refused|No route to host|Network is unreachable|resolve/i.test(`${err.stderr}\n${log}`)) {
      return new VcstorError('UNAVAILABLE', `mounting ${source} at ${mountpoint} failed: no volume file server could be reached${tail}`, { cause: err });
    }
    return new VcstorError('INTERNAL', `mounting ${source} at ${mountpoint} failed: glusterfs exited with ${err.exitCode}${tail}`, { cause: err });
  }

  private async logTail(logFile: string): Promise<string> {
    const log = await readFile(logFile, 'utf8').catch(() => '');
    const lines = log.trim().split('\n').filter((l) => / [EW] \[/.test(l)).slice(-2);
    return lines.length > 0 ? ` (${logFile}: ${lines.join(' | ').slice(0, 600)})` : '';
  }

  /**
   * Unmount the glusterfs mount at `mountpoint`, and make sure its client process is gone
   * (it exits by itself after umount; it is stopped after `clientExitWaitMs` if not).
   * Idempotent: false when nothing is mounted there (a client process left without its
   * mount is still stopped). Never forced or lazy: a busy mount stays mounted and is
   * reported. Timeout 60 s for umount.
   * @throws VcstorError FAILED_PRECONDITION (busy; or what is mounted there is not
   *   glusterfs, which this driver leaves alone), INVALID_ARGUMENT, DEADLINE_EXCEEDED,
   *   CANCELLED, INTERNAL.
   */
  async unmount(mountpoint: string, signal: AbortSignal): Promise<boolean> {
    const normalized = validateMountpoint(mountpoint);
    const current = await this.mountedAt(normalized);
    if (!current) {
      await this.stopClient(normalized, 0);
      return false;
    }
    if (current.fsType !== GLUSTERFS_FSTYPE) {
      throw new VcstorError('FAILED_PRECONDITION', `${normalized} has ${current.device} (${current.fsType}) mounted, not glusterfs; the glusterfs client leaves it alone`);
    }
    let unmounted = true;
    try {
      await this.runner.run('umount', [normalized], { signal, timeoutMs: UMOUNT_TIMEOUT_MS });
    } catch (err) {
      if (!(err instanceof CommandError && err.code === 'INTERNAL')) throw err;
      // util-linux: "umount: /x: not mounted." / "target is busy."
      if (/not mounted/i.test(err.stderr)) unmounted = false;
      else if (/target is busy|device is busy/i.test(err.stderr)) {
        throw new VcstorError(
          'FAILED_PRECONDITION',
          `${normalized} is busy: a process still has files or its working directory under it (see fuser -vm ${normalized}); stop it, then unmount again`,
          { cause: err },
        );
      } else throw err;
    }
    await this.stopClient(normalized, this.clientExitWaitMs);
    return unmounted;
  }

  /** The glusterfs mounts at or under any of `roots` (each of stacked mounts too). Read-only. */
  async list(roots: readonly string[]): Promise<GlusterMount[]> {
    const normalizedRoots = roots.map((root) => path.resolve(root));
    const under = (mountpoint: string) =>
      normalizedRoots.some((root) => mountpoint === root || mountpoint.startsWith(root === '/' ? '/' : `${root}/`));
    const mounts: GlusterMount[] = [];
    for (const entry of await this.mounts()) {
      if (entry.fsType !== GLUSTERFS_FSTYPE || !under(entry.mountpoint)) continue;
      const source = parseGlusterSource(entry.device);
      if (!source) continue;
      mounts.push({ ...source, mountpoint: entry.mountpoint, options: entry.options });
    }
    return mounts;
  }

  /**
   * Wait up to `waitMs` for the client process of `mountpoint` to exit, then stop it
   * (SIGTERM, SIGKILL after 2 s), and remove its pid file.
   */
  private async stopClient(mountpoint: string, waitMs: number): Promise<void> {
    const { pidFile } = this.clientFiles(mountpoint);
    for (const pid of await this.clientPids(mountpoint, pidFile)) {
      const startTicks = await processStartTicks(pid);
      if (startTicks === undefined) continue;
      const until = Date.now() + waitMs;
      while (Date.now() < until && (await processStartTicks(pid)) === startTicks) await sleep(50);
      await stopProcess({ pid, startTicks }, 2_000);
    }
    await rm(pidFile, { force: true });
  }

  /**
   * The glusterfs processes serving `mountpoint`: the pid in our pid file, and any
   * glusterfs whose last argument is the mount point (one started by someone else), each
   * checked against its command line so that a reused pid is never signalled.
   */
  private async clientPids(mountpoint: string, pidFile: string): Promise<number[]> {
    const serves = async (pid: number): Promise<boolean> => {
      const argv = (await readFile(path.join(this.procPath, String(pid), 'cmdline'), 'utf8').catch(() => '')).split('\0').filter((a) => a !== '');
      return argv.length > 1 && /(^|\/)glusterfsd?$/.test(argv[0]!) && argv[argv.length - 1] === mountpoint;
    };
    const pids = new Set<number>();
    const recorded = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
    if (Number.isInteger(recorded) && recorded > 1 && (await serves(recorded))) pids.add(recorded);
    for (const name of await readdir(this.procPath).catch(() => [] as string[])) {
      const pid = Number(name);
      if (Number.isInteger(pid) && pid > 1 && pid !== process.pid && !pids.has(pid) && (await serves(pid))) pids.add(pid);
    }
    return [...pids];
  }

  private async mounts(): Promise<MountEntry[]> {
    return parseMountinfo(await readFile(this.mountinfoPath, 'utf8'));
  }

  /** The top mount at `mountpoint` (the last listed: later mounts cover earlier ones). */
  private async mountedAt(mountpoint: string): Promise<MountEntry | undefined> {
    return (await this.mounts()).reverse().find((entry) => entry.mountpoint === mountpoint);
  }
}
