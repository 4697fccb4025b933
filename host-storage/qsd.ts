import { mkdir, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { VcstorError } from '../common/errors.js';
import { parseMountinfo } from '../common/filesystems.js';
import { LoopDevices } from '../common/loop-devices.js';
import { isRunning, moveToMemoryCgroup, startDetached, stopProcess, type DetachedProcess } from '../common/processes.js';
import type { CommandRunner } from '../common/runner.js';

/**
 * Block devices served by qemu-storage-daemon: a qemu block driver (libiscsi, libnfs)
 * exported over FUSE as a file, attached as a loop device. One daemon per device, each
 * in its own directory with a record, so that an agent restart finds its devices again
 * (the daemons keep running, as kernel iSCSI sessions outlive iscsid).
 *
 * The loop device does direct I/O, so no page cache sits between the device and the
 * daemon: on cgroup v1 a loop device's cache is charged to no host's memory cgroup, and
 * a guest's O_DIRECT writes would stop there. qemu 7.2's FUSE export corrupts O_DIRECT
 * I/O with more than one request in flight (LAB.md: fio verify fails at once with
 * 4 jobs x depth 8), so before the loop device is made the FUSE connection is limited
 * to one background request (fusectl `max_background`), with which fio verify passed
 * 4 jobs x depth 8 of 8 KiB, depth 4 of 3 MiB, and mixed 4 KiB-2 MiB random
 * read/write. Where that limit cannot be set, the device falls back to a buffered
 * loop device (safe, but cached outside any cgroup) and says so in its record.
 */

export interface QsdDeviceSpec {
  /** Unique and file-name safe: the device's directory. */
  key: string;
  /** `--blockdev` properties other than node-name, e.g. ["driver=iscsi", "portal=..."]. */
  blockdev: string[];
  /** A secret for `password-secret=sec0`; written to a 0600 file, never on a command line. */
  secret?: string;
  timeoutMs: number;
  /** Kept with the record, for listings (no secrets). */
  meta: Record<string, string | number>;
}

export interface QsdDevice {
  key: string;
  loopDevice: string;
  fuseFile: string;
  sizeBytes: number;
  meta: Record<string, string | number>;
  daemon: DetachedProcess;
  /** The loop device does direct I/O (the FUSE connection limited to one request). */
  directIo?: boolean;
}

const FUSECTL = '/sys/fs/fuse/connections';

export type QsdDeviceHealth = { state: 'ok' } | { state: 'broken'; detail: string };

const NODE = 'disk';

/** What a failed libiscsi/libnfs open said, as an error a user can act on. */
export function qsdFailure(log: string): VcstorError {
  const last = log.trim().split('\n').filter((l) => l.includes('qemu-storage-daemon')).pop() ?? log.trim().split('\n').pop() ?? '';
  const why = last.replace(/^qemu-storage-daemon: --blockdev [^:]*: /, '');
  if (/Authentication failure|CHAP/i.test(why)) return new VcstorError('PERMISSION_DENIED', `the target refused the login: ${why}`);
  if (/Target not found/i.test(why)) return new VcstorError('PERMISSION_DENIED', `the target refused this initiator (not on its ACL) or does not exist: ${why}`);
  if (/Permission denied|MNT3ERR_ACCES|NFS3ERR_ACCES/i.test(why)) return new VcstorError('PERMISSION_DENIED', `the NFS server refused: ${why}`);
  if (/No such file|NOENT/i.test(why)) return new VcstorError('NOT_FOUND', why);
  return new VcstorError('UNAVAILABLE', why || 'qemu-storage-daemon exited');
}

export class QsdDevices {
  private readonly loops: LoopDevices;

  /**
   * @param options.memoryCgroup a cgroup v1 memory group (under /sys/fs/cgroup/memory)
   *   to move each daemon into as it starts: initiators serve FUSE for their host's own
   *   page cache, and must not share its memory group (see config fuseServerCgroup).
   */
  constructor(private readonly options: { runner: CommandRunner; root: string; memoryCgroup?: string; memoryController?: string }) {
    this.loops = new LoopDevices(options.runner);
  }

  private dir(key: string): string {
    if (!/^[a-z0-9][a-z0-9._-]*$/.test(key)) throw new VcstorError('INTERNAL', `bad device key ${key}`);
    return path.join(this.options.root, key);
  }

  private async readRecord(key: string): Promise<QsdDevice | undefined> {
    try {
      return JSON.parse(await readFile(path.join(this.dir(key), 'device.json'), 'utf8')) as QsdDevice;
    } catch {
      return undefined;
    }
  }

  /** Whether a recorded device still works: daemon alive, FUSE file mounted, loop device on it. */
  async health(device: QsdDevice, signal: AbortSignal): Promise<QsdDeviceHealth> {
    if (!(await isRunning(device.daemon))) return { state: 'broken', detail: `qemu-storage-daemon (pid ${device.daemon.pid}) is not running` };
    const mounted = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8')).some((m) => m.mountpoint === device.fuseFile);
    if (!mounted) return { state: 'broken', detail: `the FUSE export ${device.fuseFile} is gone` };
    const [loop] = await this.loops.find(device.fuseFile, signal);
    if (!loop || loop.name !== device.loopDevice) return { state: 'broken', detail: `loop device ${device.loopDevice} no longer maps ${device.fuseFile}` };
    return { state: 'ok' };
  }

  /**
   * Open a device. Idempotent: a healthy device under `key` is returned (existed=true);
   * a broken one is cleaned away and opened again. A failed open leaves nothing.
   */
  /** Move a daemon into a memory group, before it serves anything. */
  private async moveToCgroup(pid: number, cgroup: string): Promise<void> {
    try {
      await moveToMemoryCgroup(pid, cgroup, this.options.memoryController);
    } catch (err) {
      throw new VcstorError('FAILED_PRECONDITION', `cannot move qemu-storage-daemon into memory cgroup ${cgroup} (${(err as Error).message}); create it, or leave fuseServerCgroup out of the agent's config`, { cause: err });
    }
  }

  async open(spec: QsdDeviceSpec, signal: AbortSignal): Promise<{ device: QsdDevice; existed: boolean }> {
    const existing = await this.readRecord(spec.key);
    if (existing && (await this.health(existing, signal)).state === 'ok') return { device: existing, existed: true };
    await this.close(spec.key, signal);
    const dir = this.dir(spec.key);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const fuseFile = path.join(dir, 'disk.raw');
    await writeFile(fuseFile, '');
    const secretFile = path.join(dir, 'secret');
    const args: string[] = [];
    if (spec.secret !== undefined) {
      await writeFile(secretFile, spec.secret, { mode: 0o600 });
      args.push('--object', `secret,id=sec0,file=${secretFile}`);
    }
    args.push(
      '--blockdev',
      [...spec.blockdev, `node-name=${NODE}`, ...(spec.secret !== undefined ? ['password-secret=sec0'] : [])].join(','),
      '--export',
      `type=fuse,id=export0,node-name=${NODE},mountpoint=${fuseFile},writable=on`,
    );
    const logFile = path.join(dir, 'qsd.log');
    let daemon: DetachedProcess | undefined;
    try {
      daemon = await startDetached('qemu-storage-daemon', spec.key, ['qemu-storage-daemon', ...args], logFile);
      if (this.options.memoryCgroup) await this.moveToCgroup(daemon.pid, this.options.memoryCgroup);
      await this.waitReady(daemon, fuseFile, logFile, spec.timeoutMs, signal);
      await rm(secretFile, { force: true });
      const directIo = await this.limitFuseToOneRequest(fuseFile, signal);
      const loopDevice = await this.loops.attach(fuseFile, signal, { directIo });
      const device: QsdDevice = { key: spec.key, loopDevice, fuseFile, sizeBytes: (await stat(fuseFile)).size, meta: spec.meta, daemon, directIo };
      await writeFile(path.join(dir, 'device.json'), `${JSON.stringify(device, null, 2)}\n`, { mode: 0o600 });
      return { device, existed: false };
    } catch (err) {
      if (daemon) await stopProcess(daemon, 3000);
      await this.loops.detachFile(fuseFile, new AbortController().signal).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * Limit the FUSE connection of `fuseFile` to one background request, which makes
   * direct I/O through qemu 7.2's FUSE export safe (see the class comment). The
   * connection's directory in fusectl is named by the minor number of the file's device.
   * @returns whether the limit is in place (false: use a buffered loop device).
   */
  private async limitFuseToOneRequest(fuseFile: string, signal: AbortSignal): Promise<boolean> {
    // fusectl where the host mounted it; else mounted for this moment only, at a place of
    // our own (it is one filesystem wherever it is mounted), so nothing is left mounted.
    const hostMounted = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8')).some((m) => m.mountpoint === FUSECTL && m.fsType === 'fusectl');
    const control = hostMounted ? FUSECTL : path.join(this.options.root, '.fusectl');
    let mountedHere = false;
    try {
      if (!hostMounted) {
        await mkdir(control, { recursive: true });
        await this.options.runner.run('mount', ['-t', 'fusectl', 'none', control], { signal });
        mountedHere = true;
      }
      // Linux's dev_t as stat gives it: the minor number is bits 0-7 and 20-31.
      const dev = Number((await stat(fuseFile)).dev);
      const connection = (dev & 0xff) | ((dev >> 12) & 0xfff00);
      const limit = path.join(control, String(connection), 'max_background');
      await writeFile(limit, '1');
      return (await readFile(limit, 'utf8')).trim() === '1';
    } catch {
      return false;
    } finally {
      if (mountedHere) await this.options.runner.run('umount', [control], { okExitCodes: [0, 32] }).catch(() => undefined);
    }
  }

  private async waitReady(daemon: DetachedProcess, fuseFile: string, logFile: string, timeoutMs: number, signal: AbortSignal): Promise<void> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      if (signal.aborted) throw new VcstorError('CANCELLED', 'the login was cancelled');
      if (!(await isRunning(daemon))) throw qsdFailure(await readFile(logFile, 'utf8').catch(() => ''));
      const mounted = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8')).some((m) => m.mountpoint === fuseFile && m.fsType.startsWith('fuse'));
      if (mounted && (await stat(fuseFile)).size > 0) return;
      if (Date.now() > until) throw new VcstorError('DEADLINE_EXCEEDED', `qemu-storage-daemon did not export ${fuseFile} within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /**
   * Close a device: flush, detach the loop device, stop the daemon (which flushes to the
   * target and unmounts its FUSE export), remove its directory. Idempotent (false when
   * there was nothing).
   * @throws VcstorError FAILED_PRECONDITION when the loop device is still in use (mounted).
   */
  async close(key: string, signal: AbortSignal): Promise<boolean> {
    const dir = this.dir(key);
    const device = await this.readRecord(key);
    const exists = await stat(dir).then(() => true, () => false);
    if (!exists) return false;
    const fuseFile = path.join(dir, 'disk.raw');
    const loops = await this.loops.find(fuseFile, signal);
    for (const loop of loops) {
      await this.options.runner.run('blockdev', ['--flushbufs', loop.name], { signal, okExitCodes: [0, 1] });
    }
    await this.fsync(fuseFile);
    const left = await this.loops.detachAndWait(fuseFile, signal);
    if (left.length > 0) {
      throw new VcstorError('FAILED_PRECONDITION', `${left.join(', ')} is still in use (mounted?); unmount it first`);
    }
    if (device) await stopProcess(device.daemon, 5000);
    const stillMounted = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8')).some((m) => m.mountpoint === fuseFile);
    if (stillMounted) await this.options.runner.run('umount', ['-l', fuseFile], { signal, okExitCodes: [0, 32] });
    await rm(dir, { recursive: true, force: true });
    return true;
  }

  private async fsync(file: string): Promise<void> {
    try {
      const handle = await open(file, 'r+');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    } catch {
      // A dead export cannot be flushed; closing goes on.
    }
  }

  /** Every recorded device, with its health. */
  async list(signal: AbortSignal): Promise<Array<{ device: QsdDevice; health: QsdDeviceHealth }>> {
    let keys: string[];
    try {
      keys = await readdir(this.options.root);
    } catch {
      return [];
    }
    const out: Array<{ device: QsdDevice; health: QsdDeviceHealth }> = [];
    for (const key of keys.sort()) {
      const device = await this.readRecord(key);
      if (device) out.push({ device, health: await this.health(device, signal) });
    }
    return out;
  }
}
