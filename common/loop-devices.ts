import type { CommandRunner } from './runner.js';

/** A loop device and what it maps. */
export interface LoopDevice {
  name: string;
  backingFile: string;
  offset: number;
  sizeLimit: number;
}

/**
 * Loop devices through losetup. Devices are buffered (never --direct-io): qemu 7.2's
 * FUSE export corrupts O_DIRECT writes (see LAB.md), and the cost is small.
 */
export class LoopDevices {
  constructor(private readonly runner: CommandRunner) {}

  async list(signal: AbortSignal): Promise<LoopDevice[]> {
    const { stdout } = await this.runner.run('losetup', ['--json', '--list', '--output', 'NAME,BACK-FILE,OFFSET,SIZELIMIT'], { signal });
    if (stdout.trim() === '') return [];
    const parsed = JSON.parse(stdout) as { loopdevices: Array<{ name: string; 'back-file': string | null; offset: number | string; sizelimit: number | string }> };
    return parsed.loopdevices.map((d) => ({
      name: d.name,
      backingFile: (d['back-file'] ?? '').replace(/ \(deleted\)$/, ''),
      offset: Number(d.offset),
      sizeLimit: Number(d.sizelimit),
    }));
  }

  /** Devices mapping `file` (whole file, unless offset/sizeLimit are given). */
  async find(file: string, signal: AbortSignal, offset = 0, sizeLimit = 0): Promise<LoopDevice[]> {
    return (await this.list(signal)).filter((d) => d.backingFile === file && d.offset === offset && d.sizeLimit === sizeLimit);
  }

  /** A loop device for `file`; the existing one when there is one (idempotent). */
  async attach(file: string, signal: AbortSignal): Promise<string> {
    const existing = await this.find(file, signal);
    if (existing[0]) return existing[0].name;
    const { stdout } = await this.runner.run('losetup', ['--find', '--show', file], { signal });
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
