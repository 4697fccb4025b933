import type { IscsiSessionParamValues } from '../iscsi-params.js';

/**
 * Drivers of the hosts that use storage: dom0 and guests. One interface per outside
 * system (iSCSI initiator, NFS client, hypervisor), each with real implementations
 * beside it, running programs only through the injected CommandRunner.
 */

export interface ChapSecrets {
  username: string;
  password: string;
  /** Mutual CHAP: what the target must prove. */
  mutualUsername?: string;
  mutualPassword?: string;
}

/** A LUN to log in to. */
export interface IscsiLoginSpec {
  /** Target portal host (IP address or name). */
  host: string;
  port: number;
  targetIqn: string;
  lun: number;
  /** This initiator's IQN: distinct IQNs give distinct sessions. */
  initiatorIqn: string;
  chap?: ChapSecrets;
  headerDigest: boolean;
  timeoutMs: number;
  /** What to propose at login; absent keys keep the initiator's defaults. */
  sessionParams?: IscsiSessionParamValues;
}

/** What a login did, and with which of the requested session parameters. */
export interface IscsiLoginResult {
  session: IscsiSessionInfo;
  alreadyLoggedIn: boolean;
  /** The requested keys the driver set before logging in. */
  sessionParamsApplied: IscsiSessionParamValues;
  /** Why requested keys were not applied; '' when all were (or none was asked for). */
  sessionParamsDetail: string;
}

export type IscsiSessionHealth = 'logged-in' | 'broken' | 'uncertain';

/** A session as the initiator driver knows it. */
export interface IscsiSessionInfo {
  host: string;
  port: number;
  targetIqn: string;
  lun: number;
  initiatorIqn: string;
  /** The block device carrying the LUN ('' when broken). */
  devicePath: string;
  sizeBytes: number;
  state: IscsiSessionHealth;
  /** Why it is broken or uncertain. */
  detail: string;
  /**
   * What the session negotiated, where the driver can read it. maxRecvDataSegmentLength
   * is the target's (what this initiator may send in one PDU).
   */
  negotiated?: IscsiSessionParamValues;
  /** Why `negotiated` is absent. */
  negotiatedDetail?: string;
}

/** An iSCSI initiator: open-iscsi (kernel) or qemu-storage-daemon (user space). */
export interface IscsiInitiatorDriver {
  readonly driver: 'open-iscsi' | 'qsd';
  /**
   * Log in and return the session with its block device. Idempotent: a session of the
   * same initiator to the same LUN is returned as it is (alreadyLoggedIn=true). A
   * failed or cancelled login leaves nothing behind (no daemon, no device, no record).
   * @throws VcstorError PERMISSION_DENIED (CHAP or ACL refused), UNAVAILABLE (portal
   *   unreachable), DEADLINE_EXCEEDED.
   */
  login(spec: IscsiLoginSpec, signal: AbortSignal): Promise<IscsiLoginResult>;
  /** Log out; returns false when there was no such session. Removes its device. */
  logout(target: { host: string; port: number; targetIqn: string; lun: number; initiatorIqn: string }, signal: AbortSignal): Promise<boolean>;
  /** Every session, with broken ones (dead daemon, lost connection) marked as such. */
  list(signal: AbortSignal): Promise<IscsiSessionInfo[]>;
}

/** An NFS directory mount. */
export interface NfsMountSpec {
  server: string;
  exportPath: string;
  mountpoint: string;
  /** 3 or 4. */
  version: number;
  options: string[];
}

/** An NFS client that mounts directories: the kernel client. */
export interface NfsClientDriver {
  readonly driver: 'kernel';
  /** Mount; idempotent (the same export there already → false). */
  mount(spec: NfsMountSpec, signal: AbortSignal): Promise<boolean>;
  /** Unmount; false when nothing was mounted there. */
  unmount(mountpoint: string, signal: AbortSignal): Promise<boolean>;
  /** NFS mounts under `roots`. */
  list(roots: readonly string[]): Promise<NfsMountSpec[]>;
}

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
