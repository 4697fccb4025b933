import type { AgentClients } from '../../common/clients.js';
import type { ImageLocation } from '../../common/generated/vcstor/v1/ImageLocation.js';
import type { IscsiSessionParams, IscsiSessionParams__Output } from '../../common/generated/vcstor/v1/IscsiSessionParams.js';
import type { BaselineName, MethodName } from './names.js';

/**
 * The types of the methods' provisioning: where a method is set up, and what it leaves
 * set up (coordinator/methods/registry.ts has the methods themselves).
 */

/** The role of an agent in a campaign. */
export type AgentRole = 'storage' | 'dom0' | 'guest';

/**
 * The layers of a data path, worded from a run's drivers (the report builds them,
 * coordinator/report/data-paths.ts); each method words its own path from them.
 */
export interface PathLayers {
  /** The selected driver of a concern on a host, or undefined when not recorded. */
  driver(role: AgentRole, concern: string): string | undefined;
  /** False when the host reported that driver unavailable. */
  available(role: AgentRole, concern: string): boolean;
  /** " — <role>'s <concern> driver (<driver>) is not available on its host", or ''. */
  unavailable(role: AgentRole, concern: string): string;
  volume(): string;
  target(): string;
  nfsServer(): string;
  initiator(host: 'dom0' | 'guest'): string;
  hypervisor(): string | undefined;
  /** An image given as file: to the guest, through dom0's backend. */
  fileBackend(): string;
  /** An image given as phy: to the guest (a direct-I/O loop device). */
  phyBackend(): string;
}

/** Where a method is set up: the three agents and what they need to know of each other. */
export interface MethodTarget {
  storage: AgentClients['storage'];
  dom0: AgentClients['dom0'];
  guest: AgentClients['guest'];
  /** The storage server's address as dom0 and the guest reach it (portal, NFS server). */
  storageHost: string;
  dom0InitiatorIqn: string;
  guestInitiatorIqn: string;
  /** Who may mount NFS exports (dom0 for file-nfs, the guest for nfs): an IP or CIDR. */
  nfsClients: string;
  /** Extra options of the kernel NFS mounts (nfs, dom0-nfs), e.g. the paper's rsize/wsize of 32 KiB. */
  nfsMountOptions?: readonly string[];
  /** Directories on dom0 for images and mounts, and on the guest for its mount. */
  dom0ImageDir: string;
  dom0MountDir: string;
  guestMountDir: string;
  /** The guest's domain name on dom0. */
  domain: string;
  /** Prefix of every name this setup makes, so runs do not clash (e.g. "r12"). */
  prefix: string;
  sizeBytes: number;
  sparse: boolean;
  chap: { username: string; password: string };
  /** Table 2: what every export offers and every login proposes (absent: the drivers' defaults). */
  iscsiSessionParams?: IscsiSessionParams;
  /** Every remote call's deadline. */
  timeoutMs: number;
}

/** A method's iSCSI session as Table 2 reports it. */
export interface IscsiSessionFacts {
  /** "dom0 (qsd)", "guest (open-iscsi)". */
  initiator: string;
  target: string;
  /** What the target offers, read back from it after the export (defaults included). */
  offered: IscsiSessionParams__Output | undefined;
  /** What the session negotiated, where the initiator can read it (open-iscsi). */
  negotiated: IscsiSessionParams__Output | undefined;
  /** Why the initiator applied or reports less than asked, in its words. */
  detail: string;
}

export interface StepTiming {
  step: string;
  ms: number;
}

/** A method set up for a guest (or a baseline for dom0): its filesystem, and how to take it all down. */
export interface ProvisionedMethod {
  method: MethodName | BaselineName;
  /** The block device the guest formatted, and where it is mounted (empty for a dom0 baseline). */
  guestDevice: string;
  guestMountpoint: string;
  /** Who runs the benchmarks (the guest for a method, dom0 for a baseline), and where. */
  runsOn: 'guest' | 'dom0';
  benchmarkDirectory: string;
  /** How its data travels, for Table 2: its iSCSI session, the NFS client and its options. */
  iscsiSession?: IscsiSessionFacts;
  nfsClient?: { client: string; options: string };
  /** The storage volume behind it, if any (for verification and cleanup). */
  volume?: string;
  /** The image file on dom0 (or the export) behind it, if any. */
  image?: ImageLocation;
  setup: StepTiming[];
  /**
   * Undo every step in reverse order; collects failures and throws them together.
   * Idempotent. With keepData, the volume and image stay (to read back what was
   * written) until removeData.
   */
  teardown(options?: { keepData?: boolean }): Promise<StepTiming[]>;
  /** Delete what teardown({keepData}) kept. */
  removeData(): Promise<StepTiming[]>;
}

/** The three agents of a campaign, by role. */
export interface AgentSet {
  storage: AgentClients['storage'];
  dom0: AgentClients['dom0'];
  guest: AgentClients['guest'];
}

