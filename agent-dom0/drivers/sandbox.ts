import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { VcstorError } from '../../common/errors.js';
import type { AttachedDisk, DomainDisk, DomainSpec, DomainStatus, HypervisorDriver } from '../hypervisor.js';
import { QsdDevices } from '../../host-storage/qsd.js';
import { LoopDevices } from '../../common/loop-devices.js';
import type { CommandRunner } from '../../common/runner.js';

interface SandboxDomainState {
  running: boolean;
  memoryMib: number;
  vcpus: number;
  /** vdev → what it maps and whether the sandbox made a loop device for it. */
  disks: Record<string, { target: string; device: string; loopOwned: boolean; readOnly: boolean; backendKey?: string }>;
}

/**
 * How the sandbox serves an image given as a `file` disk:
 * - `loop`: a buffered loop device, as Xen's loop-based file backend (right on a host
 *   whose kernel is dom0's own, e.g. the VM tier);
 * - `qsd`: dom0's own qemu-storage-daemon opens the image buffered (cache.direct=off)
 *   and exports it over FUSE; the guest's device is a direct-I/O loop device over that.
 *   Xen's qdisk backend works this way. In the namespace lab this is what keeps the
 *   file methods' dom0 page cache inside dom0's memory cgroup: a loop device's own
 *   cache would be charged to no one (cgroup v1) and grow to the whole machine.
 * Images given as `phy` are always direct-I/O loop devices: no dom0 cache, as a real
 * phy: disk (an LV) has none.
 */
export type SandboxFileBackend = 'loop' | 'qsd';

/**
 * The sandbox hypervisor of the lab: a guest is a network namespace the lab made, with
 * its own agent. Starting a domain attaches its disks; a disk becomes a block device
 * (the block device itself for phy, a loop device over the image for file and
 * tap-aio) published in `ROOT/<domain>/dev/<vdev>`, where the guest's agent finds it
 * (its vbdDirectory): the lab's stand-in for a Xen frontend's /dev/xvdX. Configs are
 * rendered in xl's format by `render`, so what the sandbox runs is what Xen would.
 */
export class SandboxHypervisor implements HypervisorDriver {
  readonly driver = 'sandbox' as const;
  private readonly loops: LoopDevices;
  private readonly backends: QsdDevices;

  constructor(private readonly options: { runner: CommandRunner; root: string; render: (spec: DomainSpec) => string; fileBackend?: SandboxFileBackend }) {
    this.loops = new LoopDevices(options.runner);
    // Not a domain: list() skips directories without a state.json.
    this.backends = new QsdDevices({ runner: options.runner, root: path.join(options.root, '.backends') });
  }

  /** The key of a file disk's qemu-storage-daemon backend: stable per domain and vdev. */
  private backendKey(domain: string, vdev: string): string {
    return `vbd-${createHash('sha256').update(`${domain}/${vdev}`).digest('hex').slice(0, 16)}`;
  }

  /** A block device for an image: see {@link SandboxFileBackend}. */
  private async imageDevice(domain: string, disk: DomainDisk, signal: AbortSignal): Promise<{ device: string; loopOwned: boolean; backendKey?: string }> {
    if (disk.kind !== 'phy' && this.options.fileBackend === 'qsd') {
      const key = this.backendKey(domain, disk.vdev);
      // qemu's option syntax doubles a comma inside a value.
      const filename = disk.target.replaceAll(',', ',,');
      const { device } = await this.backends.open(
        {
          key,
          blockdev: ['driver=file', `filename=${filename}`, 'cache.direct=off', 'aio=threads', ...(disk.readOnly ? ['read-only=on'] : [])],
          timeoutMs: 15_000,
          meta: { domain, vdev: disk.vdev, image: disk.target },
        },
        signal,
      );
      return { device: device.loopDevice, loopOwned: false, backendKey: key };
    }
    // A regular file as phy (or file with the loop backend): the loop device is what blkback would open.
    return { device: await this.loops.attach(disk.target, signal, { directIo: disk.kind === 'phy' }), loopOwned: true };
  }

  renderConfig(spec: DomainSpec): string {
    return this.options.render(spec);
  }

  /** The sandbox reads the spec written beside the config (NAME.json), not xl's text. */
  async checkConfig(configPath: string): Promise<void> {
    await this.readSpec(configPath);
  }

  private async readSpec(configPath: string): Promise<DomainSpec> {
    const file = configPath.replace(/\.cfg$/, '.json');
    try {
      return JSON.parse(await readFile(file, 'utf8')) as DomainSpec;
    } catch (err) {
      throw new VcstorError('NOT_FOUND', `no domain spec at ${file}: write the domain's config first`, { cause: err });
    }
  }

  private domainDir(name: string): string {
    return path.join(this.options.root, name);
  }

  /** The directory the guest agent reads its VBDs from. */
  deviceDirectory(name: string): string {
    return path.join(this.domainDir(name), 'dev');
  }

  private async state(name: string): Promise<SandboxDomainState | undefined> {
    try {
      return JSON.parse(await readFile(path.join(this.domainDir(name), 'state.json'), 'utf8')) as SandboxDomainState;
    } catch {
      return undefined;
    }
  }

  private async save(name: string, state: SandboxDomainState): Promise<void> {
    await mkdir(this.deviceDirectory(name), { recursive: true });
    const file = path.join(this.domainDir(name), 'state.json');
    await writeFile(`${file}.tmp`, JSON.stringify(state, null, 2));
    await rename(`${file}.tmp`, file);
  }

  async start(name: string, configPath: string, signal: AbortSignal): Promise<boolean> {
    const current = await this.state(name);
    if (current?.running) return false;
    const spec = await this.readSpec(configPath);
    await this.save(name, { running: true, memoryMib: spec.memoryMib, vcpus: spec.vcpus, disks: current?.disks ?? {} });
    try {
      for (const disk of spec.disks) await this.attachDisk(name, disk, signal);
    } catch (err) {
      await this.stop(name, true, 0, new AbortController().signal).catch(() => undefined);
      throw err;
    }
    return true;
  }

  async stop(name: string, _force: boolean, _timeoutMs: number, signal: AbortSignal): Promise<boolean> {
    const current = await this.state(name);
    if (!current?.running) return false;
    for (const vdev of Object.keys(current.disks)) await this.detachDisk(name, vdev, signal);
    await this.save(name, { ...((await this.state(name)) ?? current), running: false, disks: {} });
    return true;
  }

  async list(): Promise<DomainStatus[]> {
    const names = await readdir(this.options.root).catch(() => [] as string[]);
    const out: DomainStatus[] = [];
    for (const name of names.sort()) {
      const s = await this.state(name);
      if (s) out.push({ name, id: s.running ? out.length + 1 : 0, state: s.running ? 'running' : 'stopped', memoryMib: s.memoryMib, vcpus: s.vcpus });
    }
    return out;
  }

  async attachDisk(domain: string, disk: DomainDisk, signal: AbortSignal): Promise<AttachedDisk> {
    const state = await this.state(domain);
    if (!state?.running) throw new VcstorError('FAILED_PRECONDITION', `domain ${domain} is not running; start it first`);
    const link = path.join(this.deviceDirectory(domain), disk.vdev);
    const existing = state.disks[disk.vdev];
    if (existing) {
      if (existing.target !== disk.target) throw new VcstorError('ALREADY_EXISTS', `${domain} already has ${disk.vdev} (${existing.target})`);
      return { guestDevice: link };
    }
    const isBlock = (await stat(disk.target).catch(() => undefined))?.isBlockDevice() ?? false;
    let device = disk.target;
    let loopOwned = false;
    let backendKey: string | undefined;
    if (!isBlock) {
      if (!(await stat(disk.target).catch(() => undefined))) throw new VcstorError('NOT_FOUND', `${disk.target} does not exist`);
      ({ device, loopOwned, backendKey } = await this.imageDevice(domain, disk, signal));
    }
    await mkdir(this.deviceDirectory(domain), { recursive: true });
    await rm(link, { force: true });
    await symlink(device, link);
    state.disks[disk.vdev] = { target: disk.target, device, loopOwned, readOnly: disk.readOnly, ...(backendKey ? { backendKey } : {}) };
    await this.save(domain, state);
    return { guestDevice: link };
  }

  async detachDisk(domain: string, vdev: string, signal: AbortSignal): Promise<boolean> {
    const state = await this.state(domain);
    const disk = state?.disks[vdev];
    if (!state || !disk) return false;
    if (disk.loopOwned) {
      await this.options.runner.run('blockdev', ['--flushbufs', disk.device], { signal, okExitCodes: [0, 1] });
      if ((await this.loops.detachAndWait(disk.target, signal)).length > 0) {
        throw new VcstorError('FAILED_PRECONDITION', `${disk.device} (${vdev} of ${domain}) is still in use; unmount it in the guest first`);
      }
    }
    // The daemon flushes its cache to the image as it stops.
    if (disk.backendKey) await this.backends.close(disk.backendKey, signal);
    await rm(path.join(this.deviceDirectory(domain), vdev), { force: true });
    delete state.disks[vdev];
    await this.save(domain, state);
    return true;
  }
}
