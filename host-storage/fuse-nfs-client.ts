import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { VcstorError, invalidArgument, type ErrorCode } from '../common/errors.js';
import { parseMountinfo, type MountEntry } from '../common/filesystems.js';
import { isRunning, moveToMemoryCgroup, startDetached, stopProcess, type DetachedProcess } from '../common/processes.js';
import { CommandError, type CommandRunner } from '../common/runner.js';
import { validateMountpoint, validateNfsMountSpec } from './kernel-nfs-client.js';
import type { NfsClientDriver, NfsMountSpec } from './types.js';

/**
 * vcstor's own NFS client for hosts whose kernel has none (the namespace lab): the program
 * vcstor-nfs-fuse (host-storage/fuse-nfs/vcstor-nfs-fuse.c: libnfs behind libfuse 3,
 * NFSv3 only) mounts an export as a directory through FUSE. One program per mount, started
 * detached (its own session and process group, like qemu-storage-daemon's initiators) so
 * that mounts outlive an agent restart as kernel mounts do; its output goes to a log in
 * `<stateDir>/fuse-nfs/<key>/`, beside a record of the process. What is mounted is read
 * back from /proc/self/mountinfo: type `fuse.vcstor-nfs`, source `nfs://SERVER/EXPORT`.
 *
 * By default nothing is cached but names and attributes for 1 s: every read and write is
 * an NFS call (the program's comment says why); writes are committed on close and fsync.
 */

/** The filesystem type mountinfo shows for the program's mounts. */
export const FUSE_NFS_FSTYPE = 'fuse.vcstor-nfs';

/**
 * Where `npm run build` (scripts/build-native.sh) puts the program: dist/bin/, beside
 * this module's dist/host-storage/. Elsewhere (installed on PATH) it is found by name.
 */
export const FUSE_NFS_PROGRAM = fileURLToPath(new URL('../bin/vcstor-nfs-fuse', import.meta.url));

/** The shared libraries the program is linked against (Debian 12: libnfs13, libfuse3-3). */
export const FUSE_NFS_LIBRARIES = ['libnfs.so.13', 'libfuse3.so.3'] as const;

/** Options without a value a caller may give, each as the program's option (nfs(5) names). */
const FLAG_OPTIONS: ReadonlyMap<string, string | undefined> = new Map([
  ['hard', undefined], // the program's default: a call waits for the server as long as it takes
  ['soft', undefined], // a call fails with EIO after timeo x (retrans + 1), see programOptions
  ['ro', 'ro'],
  ['rw', 'rw'],
  ['sync', 'sync'], // files opened O_SYNC: FILE_SYNC writes
  ['async', undefined], // the default: UNSTABLE writes, COMMIT on close and fsync
  ['noac', 'attr_timeout=0,entry_timeout=0'],
  ['ac', undefined],
  ['nosuid', 'nosuid'],
  ['nodev', 'nodev'],
  ['noexec', 'noexec'],
  ['exec', 'exec'],
  ['noatime', 'noatime'],
  ['relatime', 'relatime'],
  ['nodiratime', 'nodiratime'],
]);

/** Options with a value a caller may give, each with the values allowed. */
const VALUE_OPTIONS: ReadonlyMap<string, RegExp> = new Map([
  ['port', /^([1-9]\d{0,4})$/], // the NFS port: with mountport, no portmapper is asked
  ['mountport', /^([1-9]\d{0,4})$/],
  ['rsize', /^\d{4,8}$/],
  ['wsize', /^\d{4,8}$/],
  ['timeo', /^\d{1,6}$/], // tenths of a second (nfs(5)); used with soft only
  ['retrans', /^\d{1,3}$/],
  ['actimeo', /^\d{1,6}$/], // seconds names and attributes are cached (default 1)
  ['cache', /^(none|page)$/], // the program's data caching: none (default) or the kernel page cache
]);

/** nfs(5)'s defaults over TCP: timeo=600 (60 s), retrans=2. */
const DEFAULT_TIMEO = 600;
const DEFAULT_RETRANS = 2;

/**
 * The program's `-o` list for a spec: the caller's nfs(5)-style options translated.
 * Pure.
 * @throws VcstorError INVALID_ARGUMENT for a version other than 3, or an option outside
 *   the allow-list (vers and proto among them: the driver speaks NFSv3 over TCP only).
 */
export function fuseNfsProgramOptions(spec: Pick<NfsMountSpec, 'version' | 'options'>): string[] {
  if (spec.version !== 3) throw invalidArgument('version', 'the fuse-nfs client speaks NFSv3 only (libnfs 4.0\'s v4 is not usable)');
  const out: string[] = [];
  const values = new Map<string, string>();
  let soft = false;
  for (const option of spec.options) {
    const equals = option.indexOf('=');
    const name = equals === -1 ? option : option.slice(0, equals);
    const value = option.slice(equals + 1);
    const allowed = equals === -1 ? FLAG_OPTIONS.has(option) : (VALUE_OPTIONS.get(name)?.test(value) ?? false);
    if (!allowed) {
      throw invalidArgument(
        'options',
        `"${option}" is not an option the fuse-nfs client takes (NFSv3 over TCP only; allowed: ${[...FLAG_OPTIONS.keys(), ...[...VALUE_OPTIONS.keys()].map((k) => `${k}=`)].join(' ')})`,
      );
    }
    if (equals === -1) {
      if (option === 'soft') soft = true;
      if (option === 'hard') soft = false;
      const mapped = FLAG_OPTIONS.get(option);
      if (mapped) out.push(mapped);
    } else {
      values.set(name, value);
    }
  }
  const port = values.get('port');
  const mountport = values.get('mountport');
  if (port !== undefined && Number(port) > 65535) throw invalidArgument('options', `port=${port} is not a port`);
  if (mountport !== undefined && Number(mountport) > 65535) throw invalidArgument('options', `mountport=${mountport} is not a port`);
  if (port !== undefined) out.push(`nfsport=${port}`);
  if (mountport !== undefined) out.push(`mountport=${mountport}`);
  for (const name of ['rsize', 'wsize', 'cache'] as const) {
    const value = values.get(name);
    if (value !== undefined) out.push(`${name}=${value}`);
  }
  const actimeo = values.get('actimeo');
  if (actimeo !== undefined) out.push(`attr_timeout=${actimeo}`, `entry_timeout=${actimeo}`);
  if (soft) {
    const timeo = Number(values.get('timeo') ?? DEFAULT_TIMEO);
    const retrans = Number(values.get('retrans') ?? DEFAULT_RETRANS);
    out.push(`timeout=${Math.max(1, Math.ceil(timeo / 10)) * (retrans + 1)}`);
  }
  return out;
}

/** The program's URL for an export ("nfs://SERVER/EXPORT"), which mountinfo shows as the source. */
export function fuseNfsSource(server: string, exportPath: string): string {
  return `nfs://${server}${exportPath}`;
}

/** Split a mountinfo source of the program into server and export path; undefined if it is not one. */
export function parseFuseNfsSource(source: string): { server: string; exportPath: string } | undefined {
  const match = /^nfs:\/\/([^/]+)(\/.*)$/.exec(source);
  return match ? { server: match[1] ?? '', exportPath: match[2] ?? '' } : undefined;
}

function normalExportPath(exportPath: string): string {
  return exportPath.length > 1 ? exportPath.replace(/\/+$/, '') : exportPath;
}

function sameSource(mounted: string, wanted: { server: string; exportPath: string }): boolean {
  const parsed = parseFuseNfsSource(mounted);
  return parsed !== undefined && parsed.server.toLowerCase() === wanted.server.toLowerCase() && normalExportPath(parsed.exportPath) === normalExportPath(wanted.exportPath);
}

/**
 * What the program said before it exited (its log), as an error a user can act on. The
 * program's own words (and libnfs's) are kept in the message.
 */
export function fuseNfsFailure(log: string, what: string): VcstorError {
  const lines = log.trim().split('\n').filter((l) => l.trim() !== '');
  const said = lines.filter((l) => l.startsWith('vcstor-nfs-fuse:') || /fuse/i.test(l)).pop() ?? lines.pop() ?? 'it exited without a word';
  const tail = lines.slice(-3).join(' | ');
  const rules: Array<[RegExp, ErrorCode, string]> = [
    [/MNT3ERR_ACCES|NFS3ERR_ACCES|Permission denied/i, 'PERMISSION_DENIED', 'the server refused this client, or does not export that path'],
    [/MNT3ERR_NOENT|NFS3ERR_NOENT|No such file or directory/i, 'NOT_FOUND', 'the server does not export that path'],
    [/no answer|nfs_service failed|connect|Connection refused|timed out/i, 'UNAVAILABLE', 'the server could not be reached'],
    [/\/dev\/fuse|fusermount|(^|\s)fuse: /i, 'FAILED_PRECONDITION', 'FUSE is not usable on this host'], // libfuse's own words
  ];
  const rule = rules.find(([pattern]) => pattern.test(said));
  if (rule) return new VcstorError(rule[1], `${what} failed: ${rule[2]} (${said.trim()})`);
  return new VcstorError('INTERNAL', `${what} failed: vcstor-nfs-fuse exited: ${tail || said}`);
}

/** What the driver keeps per mount: the spec and the program's process. */
interface FuseNfsRecord {
  spec: NfsMountSpec;
  process: DetachedProcess;
}

/** How the driver starts the program; tests give one that records the command line. */
export type StartProgram = (name: string, host: string, command: string[], log: string) => Promise<DetachedProcess>;

/** Options of the driver. */
export interface FuseNfsClientOptions {
  /** For umount(8). */
  runner: CommandRunner;
  /** The agent's state directory: mounts' records and logs go under `<stateDir>/fuse-nfs/`. */
  stateDir: string;
  /** The program; default dist/bin/vcstor-nfs-fuse when it was built, else found on PATH. */
  program?: string;
  /** A cgroup v1 memory group to run the program in (the host's fuseServerCgroup). */
  memoryCgroup?: string;
  memoryController?: string;
  /** Default /proc/self/mountinfo. */
  mountinfoPath?: string;
  /** How long a mount may take to show (default 45 s: the program gives up on the server after 30 s). */
  mountTimeoutMs?: number;
  /** After umount, how long the program has to exit by itself before it is signalled (default 5 s). */
  exitGraceMs?: number;
  /** Default: startDetached (common/processes.ts). */
  start?: StartProgram;
}

const UMOUNT_TIMEOUT_MS = 60_000;

/** The fuse-nfs client: vcstor-nfs-fuse started per mount, `umount`, mountinfo. */
export class FuseNfsClient implements NfsClientDriver {
  readonly driver = 'fuse-nfs' as const;
  private readonly o: FuseNfsClientOptions;
  private readonly program: string;
  private readonly mountinfoPath: string;
  private readonly start: StartProgram;

  constructor(options: FuseNfsClientOptions) {
    this.o = options;
    this.program = options.program ?? (existsSync(FUSE_NFS_PROGRAM) ? FUSE_NFS_PROGRAM : 'vcstor-nfs-fuse');
    this.mountinfoPath = options.mountinfoPath ?? '/proc/self/mountinfo';
    this.start = options.start ?? ((name, host, command, log) => startDetached(name, host, command, log));
  }

  /** The command line that mounts `spec` (program first). Pure apart from the program's path. */
  commandLine(spec: NfsMountSpec): string[] {
    const mountpoint = validateNfsMountSpec(spec);
    const options = fuseNfsProgramOptions(spec);
    return [this.program, ...(options.length > 0 ? ['-o', options.join(',')] : []), fuseNfsSource(spec.server, spec.exportPath), mountpoint];
  }

  /**
   * Mount `nfs://server/exportPath` at `mountpoint` (made if missing): start the program,
   * wait until mountinfo shows the mount. Idempotent: the same export there already, its
   * program running, returns false; one whose program died is unmounted and mounted
   * again. A failed or cancelled mount leaves no process, mount or record behind.
   * Timeout 45 s (mountTimeoutMs).
   * @throws VcstorError FAILED_PRECONDITION (something else is mounted there; FUSE not
   *   usable), PERMISSION_DENIED (the server refuses this client or the path), NOT_FOUND,
   *   UNAVAILABLE (server unreachable; the program missing), INVALID_ARGUMENT (version
   *   other than 3, an option outside the allow-list, an IPv6 server or a '?' in the path),
   *   DEADLINE_EXCEEDED, CANCELLED; INTERNAL with the program's log otherwise.
   */
  async mount(spec: NfsMountSpec, signal: AbortSignal): Promise<boolean> {
    if (spec.server.includes(':')) throw invalidArgument('server', 'the fuse-nfs client (libnfs 4.0 URLs) takes an IPv4 address or a host name, not IPv6');
    if (spec.exportPath.includes('?')) throw invalidArgument('exportPath', 'must not contain "?" (libnfs reads URL arguments after it)');
    const command = this.commandLine(spec);
    const mountpoint = command[command.length - 1]!;
    const source = fuseNfsSource(spec.server, spec.exportPath);
    const what = `mounting ${source} at ${mountpoint}`;
    const current = await this.mountedAt(mountpoint);
    if (current) {
      if (current.fsType !== FUSE_NFS_FSTYPE || !sameSource(current.device, spec)) {
        throw new VcstorError('FAILED_PRECONDITION', `${mountpoint} already has ${current.device} (${current.fsType}) mounted; unmount it first`);
      }
      const record = await this.readRecord(mountpoint);
      if (!record || (await isRunning(record.process))) return false;
      // Its program is gone: the mount answers ENOTCONN. Clear it away and mount again.
      await this.runner.run('umount', [mountpoint], { signal, timeoutMs: UMOUNT_TIMEOUT_MS, okExitCodes: [0, 32] });
    }
    await this.forget(mountpoint);
    await mkdir(mountpoint, { recursive: true });
    const dir = this.dir(mountpoint);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const log = path.join(dir, 'client.log');
    let proc: DetachedProcess | undefined;
    try {
      try {
        proc = await this.start('vcstor-nfs-fuse', path.basename(dir), command, log);
      } catch (err) {
        throw new VcstorError('UNAVAILABLE', `${what} failed: ${(err as Error).message} (build it with npm run build: scripts/build-native.sh)`, { cause: err });
      }
      if (this.o.memoryCgroup) {
        await moveToMemoryCgroup(proc.pid, this.o.memoryCgroup, this.o.memoryController).catch(async (err: unknown) => {
          // A program that already exited (the server refused it) says why in its log: waitMounted reports that.
          if (!(await isRunning(proc!))) return;
          throw new VcstorError('FAILED_PRECONDITION', `cannot move vcstor-nfs-fuse into memory cgroup ${this.o.memoryCgroup} (${(err as Error).message}); create it, or leave fuseServerCgroup out of the agent's config`, { cause: err });
        });
      }
      await this.waitMounted(proc, mountpoint, spec, log, what, signal);
      const record: FuseNfsRecord = { spec: { ...spec, mountpoint }, process: proc };
      await writeFile(path.join(dir, 'mount.json'), `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
      return true;
    } catch (err) {
      if (proc) await stopProcess(proc, 3000);
      // The program unmounts on SIGTERM; a killed one leaves its mount (ENOTCONN) behind.
      if ((await this.mountedAt(mountpoint))?.fsType === FUSE_NFS_FSTYPE) {
        await this.runner.run('umount', [mountpoint], { timeoutMs: UMOUNT_TIMEOUT_MS, okExitCodes: [0, 32] }).catch(() => undefined);
      }
      await rm(dir, { recursive: true, force: true }); // the error carries what the log said
      throw err;
    }
  }

  /**
   * Unmount the fuse-nfs mount at `mountpoint` with umount(8), then make sure its program
   * has exited (it does by itself once unmounted; after 5 s it is sent SIGTERM, then
   * SIGKILL). Idempotent: false when nothing is mounted there (a recorded program still
   * running is stopped all the same). Never forced or lazy: a busy mount stays mounted
   * and is reported. Timeout 60 s for umount.
   * @throws VcstorError FAILED_PRECONDITION (busy; or what is mounted there is not this
   *   client's), INVALID_ARGUMENT, DEADLINE_EXCEEDED, CANCELLED, INTERNAL.
   */
  async unmount(mountpoint: string, signal: AbortSignal): Promise<boolean> {
    const normalized = validateMountpoint(mountpoint);
    const current = await this.mountedAt(normalized);
    const record = await this.readRecord(normalized);
    if (!current) {
      if (record) await stopProcess(record.process, 2000);
      await this.forget(normalized);
      return false;
    }
    if (current.fsType !== FUSE_NFS_FSTYPE) {
      throw new VcstorError('FAILED_PRECONDITION', `${normalized} has ${current.device} (${current.fsType}) mounted, not a fuse-nfs mount; the fuse-nfs client leaves it alone`);
    }
    let unmounted = true;
    try {
      await this.runner.run('umount', [normalized], { signal, timeoutMs: UMOUNT_TIMEOUT_MS });
    } catch (err) {
      if (!(err instanceof CommandError && err.code === 'INTERNAL')) throw err;
      if (/target is busy|device is busy/i.test(err.stderr)) {
        throw new VcstorError(
          'FAILED_PRECONDITION',
          `${normalized} is busy: a process still has files or its working directory under it (see fuser -vm ${normalized}); stop it, then unmount again`,
          { cause: err },
        );
      }
      if (!/not mounted/i.test(err.stderr)) throw err;
      unmounted = false;
    }
    if (record) {
      const until = Date.now() + (this.o.exitGraceMs ?? 5000);
      while (Date.now() < until && (await isRunning(record.process))) await sleep(20);
      await stopProcess(record.process, 2000);
    }
    await this.forget(normalized);
    return unmounted;
  }

  /**
   * The fuse-nfs mounts at or under any of `roots`, as specs: server and export path from
   * the mount's source, version 3, options the mount's own (rw, nosuid, ...) followed by
   * the NFS options it was mounted with (from its record, where there is one). Read-only.
   */
  async list(roots: readonly string[]): Promise<NfsMountSpec[]> {
    const normalizedRoots = roots.map((root) => path.resolve(root));
    const under = (mountpoint: string) => normalizedRoots.some((root) => mountpoint === root || mountpoint.startsWith(root === '/' ? '/' : `${root}/`));
    const specs: NfsMountSpec[] = [];
    for (const entry of await this.mounts()) {
      if (entry.fsType !== FUSE_NFS_FSTYPE || !under(entry.mountpoint)) continue;
      const source = parseFuseNfsSource(entry.device);
      if (!source) continue;
      const requested = (await this.readRecord(entry.mountpoint))?.spec.options ?? [];
      specs.push({
        server: source.server,
        exportPath: source.exportPath,
        mountpoint: entry.mountpoint,
        version: 3,
        options: [...entry.options, ...requested.filter((o) => !entry.options.includes(o))],
      });
    }
    return specs;
  }

  private get runner(): CommandRunner {
    return this.o.runner;
  }

  /** A mount's directory: named by a hash of its mountpoint, so a restarted agent finds it. */
  private dir(mountpoint: string): string {
    const key = createHash('sha256').update(mountpoint).digest('hex').slice(0, 16);
    return path.join(this.o.stateDir, 'fuse-nfs', `m-${key}`);
  }

  private async readRecord(mountpoint: string): Promise<FuseNfsRecord | undefined> {
    try {
      const record = JSON.parse(await readFile(path.join(this.dir(mountpoint), 'mount.json'), 'utf8')) as FuseNfsRecord;
      return record.spec?.mountpoint === mountpoint ? record : undefined;
    } catch {
      return undefined;
    }
  }

  private async forget(mountpoint: string): Promise<void> {
    await rm(this.dir(mountpoint), { recursive: true, force: true });
  }

  private async waitMounted(proc: DetachedProcess, mountpoint: string, spec: NfsMountSpec, log: string, what: string, signal: AbortSignal): Promise<void> {
    const timeoutMs = this.o.mountTimeoutMs ?? 45_000;
    const until = Date.now() + timeoutMs;
    for (;;) {
      if (signal.aborted) throw new VcstorError('CANCELLED', `${what} was cancelled`);
      const entry = await this.mountedAt(mountpoint);
      if (entry && entry.fsType === FUSE_NFS_FSTYPE && sameSource(entry.device, spec)) return;
      if (!(await isRunning(proc))) throw fuseNfsFailure(await readFile(log, 'utf8').catch(() => ''), what);
      if (Date.now() > until) throw new VcstorError('DEADLINE_EXCEEDED', `${what}: no mount within ${timeoutMs} ms (log: ${log})`);
      await sleep(20);
    }
  }

  private async mounts(): Promise<MountEntry[]> {
    return parseMountinfo(await readFile(this.mountinfoPath, 'utf8'));
  }

  /** The top mount at `mountpoint` (the last listed: later mounts cover earlier ones). */
  private async mountedAt(mountpoint: string): Promise<MountEntry | undefined> {
    return (await this.mounts()).reverse().find((entry) => entry.mountpoint === mountpoint);
  }
}
