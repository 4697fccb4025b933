import type { CommandRunner } from './runner.js';

/** A loop device and what it maps. */
export interface LoopDevice {
  name: string;
  backingFile: string;
  offset: number;
  sizeLimit: number;
  /** The device does direct I/O to its backing file: no page cache at this layer. */
  directIo: boolean;
}

/** How a loop device reaches its backing file. */
export interface LoopAttachOptions {
  /**
   * Direct I/O to the backing file (`losetup --direct-io=on`): the loop layer keeps no
   * page cache. On cgroup v1 a loop device's page cache is charged to no memory cgroup
   * (its I/O is done by a kernel worker): a 256 MiB O_DIRECT write to a buffered loop
   * device from a 64 MiB group left 256 MiB dirty outside it. So every layer that
   * must be bounded by a host's memory uses direct I/O here, and a buffered layer lives
   * in a process of that host instead (see SandboxHypervisor's file backend).
   */
  directIo?: boolean;
}

/**
 * Loop devices through losetup, buffered or with direct I/O (see {@link LoopAttachOptions}).
 * Over a qemu-storage-daemon FUSE export, direct I/O is safe only with the FUSE
 * connection limited to one background request (QsdDevices does that; LAB.md).
 */
export class LoopDevices {
  constructor(private readonly runner: CommandRunner) {}

  async list(signal: AbortSignal): Promise<LoopDevice[]> {
    const { stdout } = await this.runner.run('losetup', ['--json', '--list', '--output', 'NAME,BACK-FILE,OFFSET,SIZELIMIT,DIO'], { signal });
    if (stdout.trim() === '') return [];
    const parsed = JSON.parse(stdout) as { loopdevices: Array<{ name: string; 'back-file': string | null; offset: number | string; sizelimit: number | string; dio?: boolean | string | number }> };
    return parsed.loopdevices.map((d) => ({
      name: d.name,
      backingFile: (d['back-file'] ?? '').replace(/ \(deleted\)$/, ''),
      offset: Number(d.offset),
      sizeLimit: Number(d.sizelimit),
      directIo: d.dio === true || d.dio === 1 || d.dio === '1',
    }));
  }

  /** Devices mapping `file` (whole file, unless offset/sizeLimit are given). */
  async find(file: string, signal: AbortSignal, offset = 0, sizeLimit = 0): Promise<LoopDevice[]> {
    return (await this.list(signal)).filter((d) => d.backingFile === file && d.offset === offset && d.sizeLimit === sizeLimit);
  }

  /**
   * A loop device for `file`; the existing one when there is one (idempotent), switched
   * to the asked I/O mode if it differs.
   * @throws CommandError when losetup fails (e.g. direct I/O on a filesystem without O_DIRECT).
   */
  async attach(file: string, signal: AbortSignal, options: LoopAttachOptions = {}): Promise<string> {
    const directIo = options.directIo === true;
    const existing = (await this.find(file, signal))[0];
    if (existing) {
      if (existing.directIo !== directIo) await this.runner.run('losetup', [`--direct-io=${directIo ? 'on' : 'off'}`, existing.name], { signal });
      return existing.name;
    }
    const { stdout } = await this.runner.run('losetup', ['--find', '--show', ...(directIo ? ['--direct-io=on'] : []), file], { signal });
    return stdout.trim();
  }

  /**
   * Detach every device mapping `file` and wait until they are really gone: `losetup -d`
   * on a device something still holds succeeds but leaves it (LAB.md), and short-lived
   * holders (a scan, a namespace being set up) let go within moments. Retries with
   * backoff for up to `timeoutMs`.
   * @returns the devices still there when time ran out (empty: all gone).
   */
  async detachAndWait(file: string, signal: AbortSignal, timeoutMs = 10_000): Promise<string[]> {
    const until = Date.now() + timeoutMs;
    for (let delay = 100; ; delay = Math.min(delay * 2, 1000)) {
      await this.detachFile(file, signal);
      const stillMapped = (await this.list(signal)).filter((d) => d.backingFile === file).map((d) => d.name);
      if (stillMapped.length === 0 || Date.now() > until || signal.aborted) return stillMapped;
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  /** Detach every device mapping `file`. Idempotent. */
  async detachFile(file: string, signal: AbortSignal): Promise<string[]> {
    const devices = (await this.list(signal)).filter((d) => d.backingFile === file);
    for (const device of devices) await this.runner.run('losetup', ['--detach', device.name], { signal, okExitCodes: [0, 1] });
    return devices.map((d) => d.name);
  }
}
