import type { IscsiSessionParamValues } from '../common/iscsi-params.js';

/**
 * Drivers of the hosts that use storage: dom0 and guests. One interface per outside
 * system (iSCSI initiator, NFS client), each with real implementations
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

/**
 * An NFS client that mounts directories: the kernel client, or `fuse-nfs` (vcstor's own
 * NFSv3 client in user space, libnfs behind FUSE) where the kernel has none.
 */
export interface NfsClientDriver {
  readonly driver: 'kernel' | 'fuse-nfs';
  /** Mount; idempotent (the same export there already → false). */
  mount(spec: NfsMountSpec, signal: AbortSignal): Promise<boolean>;
  /** Unmount; false when nothing was mounted there. */
  unmount(mountpoint: string, signal: AbortSignal): Promise<boolean>;
  /** NFS mounts under `roots`. */
  list(roots: readonly string[]): Promise<NfsMountSpec[]>;
}

/** A mount of a parallel file system's volume (a shared space every guest mounts). */
export interface ParallelFsMountSpec {
  /** A server to fetch the volume's layout from. */
  server: string;
  /** The volume's name on the parallel file system. */
  volume: string;
  mountpoint: string;
}

/** A parallel file system's client: GlusterFS's FUSE client. */
export interface ParallelFsClientDriver {
  readonly driver: 'glusterfs';
  /** Mount; idempotent (the same volume there already → false). */
  mount(spec: ParallelFsMountSpec, signal: AbortSignal): Promise<boolean>;
  /** Unmount, the client process gone after; false when nothing was mounted there. */
  unmount(mountpoint: string, signal: AbortSignal): Promise<boolean>;
  /** Its mounts under `roots`. */
  list(roots: readonly string[]): Promise<ParallelFsMountSpec[]>;
}
