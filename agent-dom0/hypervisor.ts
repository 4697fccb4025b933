/**
 * The hypervisor driver of a dom0 host (Xen's xl, or the lab's sandbox of namespaces):
 * domains, their configs and their virtual block devices.
 */

export type VbdBackendKind = 'phy' | 'file' | 'tap-aio';

/** A disk of a domain, resolved to paths on dom0. */
export interface DomainDisk {
  /** A block device (phy) or an image file (file, tap-aio) on dom0. */
  target: string;
  kind: VbdBackendKind;
  vdev: string;
  readOnly: boolean;
}

export interface DomainSpec {
  name: string;
  memoryMib: number;
  vcpus: number;
  type: 'pv' | 'pvh' | 'hvm';
  kernel?: { kernel: string; ramdisk: string; cmdline: string };
  bootloader?: string;
  vifs: Array<{ bridge: string; mac: string; ip: string }>;
  disks: DomainDisk[];
}

export type DomainRunState = 'running' | 'blocked' | 'paused' | 'shutdown' | 'crashed' | 'dying' | 'stopped';

export interface DomainStatus {
  name: string;
  id: number;
  state: DomainRunState;
  memoryMib: number;
  vcpus: number;
}

/** What a hot-plugged disk became, as the hypervisor reports it. */
export interface AttachedDisk {
  /** The device the guest opens (sandbox: the loop device given to the guest). */
  guestDevice: string;
}

/** A hypervisor: Xen (xl) on real hosts, the sandbox (guests are namespaces) here. */
export interface HypervisorDriver {
  readonly driver: 'xen' | 'sandbox';
  /** The config file text for `spec` (xl's format for Xen). Pure: same spec, same text. */
  renderConfig(spec: DomainSpec): string;
  /**
   * Check a written config with the hypervisor's own parser where there is one.
   * @throws VcstorError INVALID_ARGUMENT with the parser's complaint.
   */
  checkConfig(configPath: string, signal: AbortSignal): Promise<void>;
  /** Start a domain from its config file. Idempotent: a running one is left running (false). */
  start(name: string, configPath: string, signal: AbortSignal): Promise<boolean>;
  /** Stop a domain (destroy when `force`). False when it was not running. */
  stop(name: string, force: boolean, timeoutMs: number, signal: AbortSignal): Promise<boolean>;
  list(signal: AbortSignal): Promise<DomainStatus[]>;
  /** Hot-plug a disk into a running domain. Idempotent for the same vdev and target. */
  attachDisk(domain: string, disk: DomainDisk, signal: AbortSignal): Promise<AttachedDisk>;
  /** Unplug; false when no disk had that vdev. */
  detachDisk(domain: string, vdev: string, signal: AbortSignal): Promise<boolean>;
}
