import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { VcstorError, invalidArgument, type ErrorCode } from '../common/errors.js';
import { parseMountinfo, type MountEntry } from '../common/filesystems.js';
import { CommandError, type CommandRunner } from '../common/runner.js';
import type { NfsClientDriver, NfsMountSpec } from './types.js';

/**
 * The kernel NFS client, driven through mount(8)/umount(8) (mount.nfs of nfs-utils) and
 * read back from /proc/self/mountinfo, which is what the kernel has mounted whatever
 * /etc/fstab or mtab say.
 */

/** The NFS filesystem types the kernel reports: "nfs" for v2/v3, "nfs4" for v4.x. */
const NFS_TYPES: ReadonlySet<string> = new Set(['nfs', 'nfs4']);

/** Options without a value a caller may add (nfs(5), mount(8)). */
const FLAG_OPTIONS: ReadonlySet<string> = new Set([
  'ro', 'rw', 'hard', 'soft', 'softerr', 'intr', 'nointr', 'sync', 'async',
  'atime', 'noatime', 'diratime', 'nodiratime', 'relatime', 'norelatime', 'strictatime',
  'suid', 'nosuid', 'dev', 'nodev', 'exec', 'noexec',
  'ac', 'noac', 'cto', 'nocto', 'lock', 'nolock', 'acl', 'noacl',
  'sharecache', 'nosharecache', 'resvport', 'noresvport', 'rdirplus', 'nordirplus', 'fsc', 'nofsc',
]);

/** Options with a value a caller may add, each with the values nfs(5) allows. */
const VALUE_OPTIONS: ReadonlyMap<string, RegExp> = new Map([
  ['rsize', /^\d{1,8}$/],
  ['wsize', /^\d{1,8}$/],
  ['timeo', /^\d{1,6}$/],
  ['retrans', /^\d{1,3}$/],
  ['retry', /^\d{1,6}$/],
  ['actimeo', /^\d{1,6}$/],
  ['acregmin', /^\d{1,6}$/],
  ['acregmax', /^\d{1,6}$/],
  ['acdirmin', /^\d{1,6}$/],
  ['acdirmax', /^\d{1,6}$/],
  ['nconnect', /^([1-9]|1[0-6])$/],
  ['sec', /^(sys|none|krb5|krb5i|krb5p)(:(sys|none|krb5|krb5i|krb5p))*$/],
  ['lookupcache', /^(all|none|pos|positive)$/],
  ['local_lock', /^(none|all|flock|posix)$/],
  ['clientaddr', /^[0-9A-Fa-f.:]{2,45}$/],
]);

/** mount.nfs retries a foreground mount for 2 minutes (retry=2) before giving up. */
const MOUNT_TIMEOUT_MS = 150_000;
/** umount of a hard mount whose server is gone can block: give up after this long. */
const UMOUNT_TIMEOUT_MS = 60_000;

/**
 * The `mount -o` list for a spec: vers and proto first (the driver's), then the caller's.
 * Pure.
 * @throws VcstorError INVALID_ARGUMENT for a version other than 3 or 4, or an option
 *   outside the allow-list (vers, nfsvers and proto among them: the driver sets those).
 */
export function nfsMountOptions(spec: Pick<NfsMountSpec, 'version' | 'options'>): string[] {
  let vers: string;
  if (spec.version === 3) vers = 'vers=3';
  else if (spec.version === 4) vers = 'vers=4.1';
  else throw invalidArgument('version', 'must be 3 or 4');
  for (const option of spec.options) {
    const equals = option.indexOf('=');
    const name = equals === -1 ? option : option.slice(0, equals);
    const allowed = equals === -1 ? FLAG_OPTIONS.has(option) : (VALUE_OPTIONS.get(name)?.test(option.slice(equals + 1)) ?? false);
    if (!allowed) {
      throw invalidArgument(
        'options',
        `"${option}" is not an NFS mount option vcstor passes on (vers and proto are set by the driver; allowed: ${[...FLAG_OPTIONS, ...[...VALUE_OPTIONS.keys()].map((k) => `${k}=`)].join(' ')})`,
      );
    }
  }
  return [vers, 'proto=tcp', ...spec.options];
}

/** "server:/export" as mount.nfs takes it and mountinfo shows it; IPv6 in brackets. */
export function nfsSource(server: string, exportPath: string): string {
  return server.includes(':') ? `[${server}]:${exportPath}` : `${server}:${exportPath}`;
}

/** Split a mountinfo NFS source into server and export path; undefined if it is not one. */
export function parseNfsSource(source: string): { server: string; exportPath: string } | undefined {
  const match = /^\[([^\]]+)\]:(\/.*)$/.exec(source) ?? /^([^:[\]]+):(\/.*)$/.exec(source);
  if (!match) return undefined;
  return { server: match[1] ?? '', exportPath: match[2] ?? '' };
}

/** Export paths compare without trailing slashes ("/srv/a/" is "/srv/a"; "/" stays). */
function normalExportPath(exportPath: string): string {
  return exportPath.length > 1 ? exportPath.replace(/\/+$/, '') : exportPath;
}

function sameSource(mounted: string, wanted: { server: string; exportPath: string }): boolean {
  const parsed = parseNfsSource(mounted);
  return (
    parsed !== undefined &&
    parsed.server.toLowerCase() === wanted.server.toLowerCase() &&
    normalExportPath(parsed.exportPath) === normalExportPath(wanted.exportPath)
  );
}

/**
 * Check a spec's server, export path and mountpoint (not its version or options); returns
 * the mountpoint as mountinfo shows it. Pure.
 * @throws VcstorError INVALID_ARGUMENT naming the field.
 */
export function validateNfsMountSpec(spec: NfsMountSpec): string {
  // eslint-disable-next-line no-control-regex
  const badPathChars = /[\u0000-\u001f\u007f]/;
  if (!/^[A-Za-z0-9._:%-]{1,253}$/.test(spec.server) || spec.server.startsWith('-')) {
    throw invalidArgument('server', 'must be an IP address or a host name (IPv6 without brackets)');
  }
  if (!spec.exportPath.startsWith('/') || badPathChars.test(spec.exportPath)) throw invalidArgument('exportPath', 'must be an absolute path');
  return validateMountpoint(spec.mountpoint);
}

/** An absolute mountpoint without control characters, normalized as mountinfo shows it. @throws VcstorError INVALID_ARGUMENT. */
export function validateMountpoint(mountpoint: string): string {
  // eslint-disable-next-line no-control-regex
  if (!path.isAbsolute(mountpoint) || /[\u0000-\u001f\u007f]/.test(mountpoint)) throw invalidArgument('mountpoint', 'must be an absolute path');
  // mountinfo shows the normalized path: compare with that.
  return path.resolve(mountpoint);
}

/** mount.nfs's complaints (nfs-utils utils/mount) as our codes. */
function mountFailure(err: unknown, what: string): unknown {
  if (!(err instanceof CommandError) || err.code !== 'INTERNAL') return err;
  const said = `${err.stderr}\n${err.stdout}`;
  const rules: Array<[RegExp, ErrorCode, string]> = [
    [/access denied by server/i, 'PERMISSION_DENIED', 'the server refused this client (not in the export\'s client list)'],
    [/reason given by server: No such file or directory/i, 'NOT_FOUND', 'the server does not export that path'],
    [/requested NFS version or transport protocol is not supported|Protocol not supported/i, 'FAILED_PRECONDITION', 'the server does not offer that NFS version over TCP'],
    [
      /Connection timed out|Connection refused|No route to host|Network is unreachable|Host is down|Failed to resolve server|Name or service not known|Temporary failure in name resolution/i,
      'UNAVAILABLE',
      'the server could not be reached',
    ],
  ];
  const rule = rules.find(([pattern]) => pattern.test(said));
  if (!rule) return err;
  const lastLine = said.trim().split('\n').filter((l) => l.trim() !== '').slice(-1)[0] ?? '';
  return new VcstorError(rule[1], `${what} failed: ${rule[2]} (${lastLine.trim()})`, { cause: err });
}

/** Options of the driver; mountinfoPath moves /proc/self/mountinfo for tests. */
export interface KernelNfsClientOptions {
  runner: CommandRunner;
  /** Default /proc/self/mountinfo. */
  mountinfoPath?: string;
}

/** The kernel NFS client: `mount -t nfs`, `umount`, mountinfo. */
export class KernelNfsClient implements NfsClientDriver {
  readonly driver = 'kernel' as const;
  private readonly runner: CommandRunner;
  private readonly mountinfoPath: string;

  constructor(options: KernelNfsClientOptions) {
    this.runner = options.runner;
    this.mountinfoPath = options.mountinfoPath ?? '/proc/self/mountinfo';
  }

  /**
   * Mount `server:exportPath` at `mountpoint` (made if missing) with `vers=3` or
   * `vers=4.1`, `proto=tcp` and the caller's options (an allow-list of nfs(5) options).
   * Idempotent: the same export of the same version there already returns false. The
   * mount is read back from mountinfo. Timeout 150 s (mount.nfs's own retry period).
   * @throws VcstorError FAILED_PRECONDITION (something else, or the export with the other
   *   NFS version, is mounted there; the server lacks that version), PERMISSION_DENIED
   *   (the server refuses this client), NOT_FOUND (no such export), UNAVAILABLE (server
   *   unreachable), INVALID_ARGUMENT, DEADLINE_EXCEEDED, CANCELLED.
   */
  async mount(spec: NfsMountSpec, signal: AbortSignal): Promise<boolean> {
    const mountpoint = validateNfsMountSpec(spec);
    const options = nfsMountOptions(spec);
    const source = nfsSource(spec.server, spec.exportPath);
    const wanted = { server: spec.server, exportPath: spec.exportPath };
    const wantedType = spec.version === 4 ? 'nfs4' : 'nfs';
    const current = await this.mountedAt(mountpoint);
    if (current) {
      if (!NFS_TYPES.has(current.fsType) || !sameSource(current.device, wanted)) {
        throw new VcstorError('FAILED_PRECONDITION', `${mountpoint} already has ${current.device} (${current.fsType}) mounted; unmount it first`);
      }
      if (current.fsType !== wantedType) {
        throw new VcstorError(
          'FAILED_PRECONDITION',
          `${mountpoint} already has ${current.device} mounted over NFSv${current.fsType === 'nfs4' ? 4 : 3}, not NFSv${spec.version}; unmount it first`,
        );
      }
      return false;
    }
    await mkdir(mountpoint, { recursive: true });
    try {
      await this.runner.run('mount', ['-t', 'nfs', '-o', options.join(','), source, mountpoint], { signal, timeoutMs: MOUNT_TIMEOUT_MS });
    } catch (err) {
      throw mountFailure(err, `mounting ${source} at ${mountpoint}`);
    }
    const after = await this.mountedAt(mountpoint);
    if (!after || !NFS_TYPES.has(after.fsType) || !sameSource(after.device, wanted)) {
      throw new VcstorError('INTERNAL', `mount of ${source} at ${mountpoint} succeeded but mountinfo shows ${after ? `${after.device} (${after.fsType})` : 'nothing'} there`);
    }
    return true;
  }

  /**
   * Unmount the NFS mount at `mountpoint`. Idempotent: false when nothing is mounted
   * there (also when it went between the look and umount). Never forced or lazy: a busy
   * mount stays mounted and is reported. Timeout 60 s.
   * @throws VcstorError FAILED_PRECONDITION (busy; or what is mounted there is not NFS,
   *   which this driver leaves alone), INVALID_ARGUMENT, DEADLINE_EXCEEDED, CANCELLED,
   *   INTERNAL.
   */
  async unmount(mountpoint: string, signal: AbortSignal): Promise<boolean> {
    const normalized = validateMountpoint(mountpoint);
    const current = await this.mountedAt(normalized);
    if (!current) return false;
    if (!NFS_TYPES.has(current.fsType)) {
      throw new VcstorError('FAILED_PRECONDITION', `${normalized} has ${current.device} (${current.fsType}) mounted, not NFS; the NFS client leaves it alone`);
    }
    try {
      await this.runner.run('umount', [normalized], { signal, timeoutMs: UMOUNT_TIMEOUT_MS });
      return true;
    } catch (err) {
      if (err instanceof CommandError && err.code === 'INTERNAL') {
        // util-linux: "umount: /x: not mounted." / "target is busy."; umount.nfs: "device is busy".
        if (/not mounted/i.test(err.stderr)) return false;
        if (/target is busy|device is busy/i.test(err.stderr)) {
          throw new VcstorError(
            'FAILED_PRECONDITION',
            `${normalized} is busy: a process still has files or its working directory under it (see fuser -vm ${normalized}); stop it, then unmount again`,
            { cause: err },
          );
        }
      }
      throw err;
    }
  }

  /**
   * The NFS mounts at or under any of `roots`, as specs: version from the filesystem type
   * (nfs4 is 4, nfs is 3), options as the kernel reports the mount's own options
   * (rw, nosuid, relatime...). Read-only.
   */
  async list(roots: readonly string[]): Promise<NfsMountSpec[]> {
    const normalizedRoots = roots.map((root) => path.resolve(root));
    const under = (mountpoint: string) =>
      normalizedRoots.some((root) => mountpoint === root || mountpoint.startsWith(root === '/' ? '/' : `${root}/`));
    const specs: NfsMountSpec[] = [];
    for (const entry of await this.mounts()) {
      if (!NFS_TYPES.has(entry.fsType) || !under(entry.mountpoint)) continue;
      const source = parseNfsSource(entry.device);
      if (!source) continue;
      specs.push({
        server: source.server,
        exportPath: source.exportPath,
        mountpoint: entry.mountpoint,
        version: entry.fsType === 'nfs4' ? 4 : 3,
        options: entry.options,
      });
    }
    return specs;
  }

  private async mounts(): Promise<MountEntry[]> {
    return parseMountinfo(await readFile(this.mountinfoPath, 'utf8'));
  }

  /** The top mount at `mountpoint` (the last listed: later mounts cover earlier ones). */
  private async mountedAt(mountpoint: string): Promise<MountEntry | undefined> {
    return (await this.mounts()).reverse().find((entry) => entry.mountpoint === mountpoint);
  }
}
