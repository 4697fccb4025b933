import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { VcstorError } from '../common/errors.js';
import type { Domain } from '../common/generated/vcstor/v1/Domain.js';
import type { DomainConfig__Output } from '../common/generated/vcstor/v1/DomainConfig.js';
import type { Vbd } from '../common/generated/vcstor/v1/Vbd.js';
import type { VbdSpec__Output } from '../common/generated/vcstor/v1/VbdSpec.js';
import { nfsImageKey, type NfsImageFiles } from './nfs-images.js';
import type { DomainDisk, DomainSpec, HypervisorDriver } from './hypervisor.js';
import { OperationLocks } from '../common/locks.js';
import type { LoopDevices } from '../common/loop-devices.js';
import type { Logger } from '../common/log.js';

interface VbdRecord {
  domain: string;
  spec: VbdSpec__Output;
  guestDevice: string;
  /** The key an NFS image's device was opened under (see NfsImageFiles), if any. */
  nfsDeviceKey?: string;
}

const STATE: Record<string, Domain['state']> = {
  running: 'DOMAIN_STATE_RUNNING',
  blocked: 'DOMAIN_STATE_BLOCKED',
  paused: 'DOMAIN_STATE_PAUSED',
  shutdown: 'DOMAIN_STATE_SHUTDOWN',
  crashed: 'DOMAIN_STATE_CRASHED',
  dying: 'DOMAIN_STATE_DYING',
  stopped: 'DOMAIN_STATE_STOPPED',
};

/**
 * Domains and their VBDs on a dom0 host: configs written in the hypervisor's format,
 * started and stopped through its driver, disks attached by source (a block device, a
 * local image, or an image on an NFS export: see NfsImageFiles).
 */
export class Dom0Domains {
  private readonly locks = new OperationLocks();
  private readonly vbdFile: string;

  constructor(
    private readonly o: { hypervisor: HypervisorDriver; configDir: string; stateDir: string; nfsImages: NfsImageFiles; loops: LoopDevices; log: Logger },
  ) {
    this.vbdFile = path.join(o.stateDir, 'vbds.json');
  }

  private configPath(name: string): string {
    return path.join(this.o.configDir, `${name}.cfg`);
  }

  private async vbds(): Promise<VbdRecord[]> {
    try {
      return JSON.parse(await readFile(this.vbdFile, 'utf8')) as VbdRecord[];
    } catch {
      return [];
    }
  }

  private async saveVbds(records: VbdRecord[]): Promise<void> {
    await mkdir(this.o.stateDir, { recursive: true });
    await writeFile(`${this.vbdFile}.tmp`, JSON.stringify(records, null, 2));
    await rename(`${this.vbdFile}.tmp`, this.vbdFile);
  }

  /** A disk of a config: block devices are phy; images file (or tap-aio, or phy as asked). */
  private diskOf(spec: VbdSpec__Output): DomainDisk {
    const readOnly = spec.access === 'VBD_ACCESS_READ_ONLY';
    const source = spec.source!;
    if (source.source === 'blockDevice') return { target: source.blockDevice!, kind: 'phy', vdev: spec.vdev, readOnly };
    const image = source.image!;
    if (image.location === 'nfsFile') throw new VcstorError('FAILED_PRECONDITION', 'an image on NFS is attached with AttachVbd, not written into a config');
    const kind = spec.kind === 'VBD_KIND_TAP_AIO' ? 'tap-aio' : spec.kind === 'VBD_KIND_PHY' ? 'phy' : 'file';
    return { target: image.path!, kind, vdev: spec.vdev, readOnly };
  }

  /**
   * An image given as `phy` must be a block device first: map it to a loop device (as
   * one gives a file to Xen as phy:), idempotently, with direct I/O so that dom0's page
   * cache is not in the way, as it is not for a real phy-local disk (an LV).
   */
  private async resolvePhyImages(spec: DomainSpec, config: DomainConfig__Output, signal: AbortSignal): Promise<DomainSpec> {
    const disks = await Promise.all(
      spec.disks.map(async (disk, i) => {
        const source = config.disks[i]?.source;
        if (disk.kind !== 'phy' || source?.source !== 'image') return disk;
        return { ...disk, target: await this.o.loops.attach(disk.target, signal, { directIo: true }) };
      }),
    );
    return { ...spec, disks };
  }

  /** Loop devices made for phy images of a domain's config: detached when it stops. */
  private async releasePhyImages(name: string, signal: AbortSignal): Promise<void> {
    const config = await readFile(this.configPath(name).replace(/\.cfg$/, '.source.json'), 'utf8').catch(() => undefined);
    if (!config) return;
    for (const image of JSON.parse(config) as string[]) await this.o.loops.detachFile(image, signal);
  }

  /** The domain spec of a config message. */
  specOf(config: DomainConfig__Output): DomainSpec {
    return {
      name: config.name,
      memoryMib: config.memoryMib,
      vcpus: config.vcpus,
      type: (config.type || 'pv') as DomainSpec['type'],
      ...(config.boot === 'kernel' && config.kernel ? { kernel: { kernel: config.kernel.kernel, ramdisk: config.kernel.ramdisk, cmdline: config.kernel.cmdline } } : {}),
      ...(config.boot === 'bootloader' && config.bootloader ? { bootloader: config.bootloader } : {}),
      vifs: config.vifs.map((v) => ({ bridge: v.bridge, mac: v.mac, ip: v.ip })),
      disks: config.disks.map((d) => this.diskOf(d)),
    };
  }

  /** Write NAME.cfg (the hypervisor's text) and NAME.json (the spec); check it. Idempotent. */
  async writeConfig(config: DomainConfig__Output, signal: AbortSignal): Promise<{ path: string; content: string; changed: boolean }> {
    const spec = await this.resolvePhyImages(this.specOf(config), config, signal);
    const phyImages = config.disks.filter((d, i) => d.source?.source === 'image' && spec.disks[i]?.kind === 'phy').map((d) => d.source!.image!.path!);
    const content = this.o.hypervisor.renderConfig(spec);
    const file = this.configPath(spec.name);
    await mkdir(this.o.configDir, { recursive: true });
    const current = await readFile(file, 'utf8').catch(() => undefined);
    const changed = current !== content;
    if (changed) {
      await writeFile(`${file}.tmp`, content, { mode: 0o644 });
      await writeFile(file.replace(/\.cfg$/, '.json'), JSON.stringify(spec, null, 2));
      await writeFile(file.replace(/\.cfg$/, '.source.json'), JSON.stringify(phyImages));
      await rename(`${file}.tmp`, file);
    }
    await this.o.hypervisor.checkConfig(file, signal);
    return { path: file, content, changed };
  }

  async start(name: string, signal: AbortSignal): Promise<{ domain: Domain; alreadyRunning: boolean }> {
    return this.locks.with(`domain:${name}`, `domain ${name}`, async () => {
      const file = this.configPath(name);
      if (!(await readFile(file, 'utf8').then(() => true, () => false))) throw new VcstorError('NOT_FOUND', `no config for domain ${name}; write it first`);
      const started = await this.o.hypervisor.start(name, file, signal);
      return { domain: await this.domain(name, signal), alreadyRunning: !started };
    });
  }

  async stop(name: string, force: boolean, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
    return this.locks.with(`domain:${name}`, `domain ${name}`, async () => {
      const stopped = await this.o.hypervisor.stop(name, force, timeoutMs || 60_000, signal);
      // Stopping a domain takes its disks away: forget them, and close NFS image devices.
      const records = await this.vbds();
      for (const r of records.filter((x) => x.domain === name && x.nfsDeviceKey)) await this.o.nfsImages.close(r.nfsDeviceKey!, signal);
      await this.saveVbds(records.filter((x) => x.domain !== name));
      await this.releasePhyImages(name, signal);
      return stopped;
    });
  }

  private async domain(name: string, signal: AbortSignal): Promise<Domain> {
    const status = (await this.o.hypervisor.list(signal)).find((d) => d.name === name);
    return {
      name,
      id: status?.id ?? 0,
      state: status ? STATE[status.state] : 'DOMAIN_STATE_STOPPED',
      memoryMib: status?.memoryMib ?? 0,
      vcpus: status?.vcpus ?? 0,
      configPath: this.configPath(name),
    };
  }

  async list(signal: AbortSignal): Promise<Domain[]> {
    return Promise.all((await this.o.hypervisor.list(signal)).map((d) => this.domain(d.name, signal)));
  }

  async attach(domain: string, spec: VbdSpec__Output, signal: AbortSignal): Promise<{ vbd: Vbd; alreadyAttached: boolean }> {
    return this.locks.with(`domain:${domain}`, `domain ${domain}`, async () => {
      const records = await this.vbds();
      const existing = records.find((r) => r.domain === domain && r.spec.vdev === spec.vdev);
      if (existing) {
        if (JSON.stringify(existing.spec) !== JSON.stringify(spec)) throw new VcstorError('ALREADY_EXISTS', `${domain} already has ${spec.vdev} with another source`);
        return { vbd: { domain, spec, guestDevice: existing.guestDevice, live: true }, alreadyAttached: true };
      }
      let disk: DomainDisk;
      let nfsDeviceKey: string | undefined;
      const image = spec.source?.source === 'image' ? spec.source.image : undefined;
      if (image?.location === 'nfsFile' && image.nfsFile) {
        // A block device over the file: through qemu's libnfs or a kernel NFS mount.
        nfsDeviceKey = nfsImageKey(image.nfsFile);
        const device = await this.o.nfsImages.open(nfsDeviceKey, image.nfsFile, signal);
        disk = { target: device, kind: 'phy', vdev: spec.vdev, readOnly: spec.access === 'VBD_ACCESS_READ_ONLY' };
      } else {
        disk = this.diskOf(spec);
      }
      try {
        const attached = await this.o.hypervisor.attachDisk(domain, disk, signal);
        records.push({ domain, spec, guestDevice: attached.guestDevice, ...(nfsDeviceKey ? { nfsDeviceKey } : {}) });
        await this.saveVbds(records);
        return { vbd: { domain, spec, guestDevice: attached.guestDevice, live: true }, alreadyAttached: false };
      } catch (err) {
        if (nfsDeviceKey) await this.o.nfsImages.close(nfsDeviceKey, new AbortController().signal).catch(() => undefined);
        throw err;
      }
    });
  }

  async detach(domain: string, vdev: string, signal: AbortSignal): Promise<boolean> {
    return this.locks.with(`domain:${domain}`, `domain ${domain}`, async () => {
      const detached = await this.o.hypervisor.detachDisk(domain, vdev, signal);
      const records = await this.vbds();
      const record = records.find((r) => r.domain === domain && r.spec.vdev === vdev);
      if (record?.nfsDeviceKey) await this.o.nfsImages.close(record.nfsDeviceKey, signal);
      await this.saveVbds(records.filter((r) => r !== record));
      return detached || record !== undefined;
    });
  }

  /** VBDs attached through this agent (a domain's config disks are listed by the sandbox as it starts them). */
  async listVbds(domain: string): Promise<Vbd[]> {
    return (await this.vbds()).filter((r) => domain === '' || r.domain === domain).map((r) => ({ domain: r.domain, spec: r.spec, guestDevice: r.guestDevice, live: true }));
  }
}
