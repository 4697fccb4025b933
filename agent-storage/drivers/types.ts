import type { IscsiSessionParamValues } from '../../common/iscsi-params.js';

/**
 * The storage agent's drivers: one interface per outside system (volumes, iSCSI
 * target, NFS server), each with real implementations beside it. Drivers run programs
 * only through the injected CommandRunner, take an AbortSignal on everything that may
 * take time, and throw VcstorErrors with messages a user can act on.
 */

export type Provisioning = 'preallocated' | 'sparse';

/** What a caller asks for. */
export interface VolumeSpec {
  name: string;
  sizeBytes: number;
  provisioning: Provisioning;
}

/** A volume as a driver reports it. */
export interface VolumeInfo {
  name: string;
  /** The pool it lives in (file pool directory name, or LVM volume group). */
  pool: string;
  /** The size after rounding up to the pool's allocation unit. */
  sizeBytes: number;
  provisioning: Provisioning;
  /** Space really used (st_blocks*512 for files; the full size for linear LVs). */
  allocatedBytes: number;
  /** A block device currently mapped for it, or '' when none is. */
  blockDevice: string;
  createdUnixMs: number;
  driver: string;
}

export interface OperationContext {
  signal: AbortSignal;
  /** Long work (zero-fill) reports bytes done here, for progress and logs. */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
}

/** A pool of volumes: LVM logical volumes, or image files on loop devices. */
export interface VolumeDriver {
  readonly driver: 'filepool' | 'lvm';
  readonly pool: string;
  /** Bytes a volume of `sizeBytes` really takes (rounded up to the allocation unit). */
  roundSize(sizeBytes: number): number;
  capacity(signal: AbortSignal): Promise<{ totalBytes: number; freeBytes: number }>;
  /**
   * Create a volume. Idempotent: an existing volume of the same size and provisioning
   * is returned with created=false; one with another spec is ALREADY_EXISTS. A create
   * that fails or is cancelled leaves nothing behind.
   * @throws VcstorError ALREADY_EXISTS, RESOURCE_EXHAUSTED (no space), FAILED_PRECONDITION
   *   (a provisioning the driver cannot do), CANCELLED.
   */
  create(spec: VolumeSpec, ctx: OperationContext): Promise<{ volume: VolumeInfo; created: boolean }>;
  /** Delete a volume and any block device mapped for it. Returns false when it did not exist. */
  delete(name: string, signal: AbortSignal): Promise<boolean>;
  get(name: string, signal: AbortSignal): Promise<VolumeInfo | undefined>;
  list(signal: AbortSignal): Promise<VolumeInfo[]>;
  /** What an iSCSI target should read and write: the image file, or the LV's device. */
  backingPath(name: string, signal: AbortSignal): Promise<string>;
  /** A block device for the volume, mapped if needed. Idempotent (the same device again). */
  attachBlockDevice(name: string, signal: AbortSignal): Promise<string>;
  /** Unmap what attachBlockDevice mapped. Idempotent. */
  detachBlockDevice(name: string, signal: AbortSignal): Promise<void>;
}

export interface ChapCredentials {
  username: string;
  password: string;
  /** Mutual CHAP: the target proves itself to the initiator with these. */
  mutualUsername?: string;
  mutualPassword?: string;
}

/** What one export should look like on the target: a target with one LUN. */
export interface IscsiExportSpec {
  iqn: string;
  lun: number;
  /** A file or block device. */
  backingPath: string;
  allowedInitiators: string[];
  allowedAddresses: string[];
  allowAnyInitiator: boolean;
  chap?: ChapCredentials;
  /** What the target offers at login; absent keys are the driver's defaults. */
  sessionParams?: IscsiSessionParamValues;
}

/** One initiator logged in to a target, as the target server shows it. */
export interface IscsiTargetSessionState {
  initiatorIqn: string;
  address: string;
  /** What the session negotiated, where the target server reports it. */
  negotiated?: IscsiSessionParamValues;
  /** Why `negotiated` is absent. */
  negotiatedDetail?: string;
}

/** A target as the target driver sees it now. */
export interface IscsiTargetState {
  iqn: string;
  luns: Array<{ lun: number; backingPath: string }>;
  allowedInitiators: string[];
  allowedAddresses: string[];
  allowAnyInitiator: boolean;
  /** Incoming CHAP user names bound to the target. */
  chapUsers: string[];
  /** The outgoing (mutual) CHAP user, if any. */
  mutualChapUser?: string;
  sessions: IscsiTargetSessionState[];
}

/** An iSCSI target server: tgt or LIO. */
export interface IscsiTargetDriver {
  readonly driver: 'tgt' | 'lio';
  /** The LUN number a target's data LUN gets when the request gives none (tgt 1, LIO 0). */
  readonly defaultLun: number;
  /** "ip:port" the target listens on, for listings. */
  portals(): string[];
  /**
   * Make the target match `spec`: create what is missing, fix what differs. Idempotent;
   * used for new exports and to re-apply the agent's record after a daemon restart.
   * @throws VcstorError FAILED_PRECONDITION for what the driver cannot do (e.g. LIO has
   *   no address ACLs), UNAVAILABLE when the daemon or its tool is missing.
   */
  ensureExport(spec: IscsiExportSpec, signal: AbortSignal): Promise<void>;
  /**
   * Remove a target and its LUNs (and CHAP accounts no other target uses). Returns false
   * when it did not exist. Without `force`, a target with sessions is FAILED_PRECONDITION.
   */
  removeTarget(iqn: string, force: boolean, signal: AbortSignal): Promise<boolean>;
  listTargets(signal: AbortSignal): Promise<IscsiTargetState[]>;
  /**
   * What a target offers new sessions now, every key set (defaults included), read
   * from the target server; undefined when there is no such target. Read-only.
   */
  readSessionParams(iqn: string, signal: AbortSignal): Promise<Required<IscsiSessionParamValues> | undefined>;
}

export type NfsAccessMode = 'rw' | 'ro';
export type NfsSquashMode = 'root' | 'none' | 'all';

export interface NfsClientSpec {
  /** An IP address, a CIDR range, a host name, or "*". */
  match: string;
  access: NfsAccessMode;
  sync: boolean;
  squash: NfsSquashMode;
}

/** One export as the NFS server should have it. */
export interface NfsExportSpec {
  /** Stable id (ganesha Export_Id, kernel fsid). */
  exportId: number;
  /** The exported directory. */
  path: string;
  /** NFSv4 pseudo path. */
  pseudoPath: string;
  clients: NfsClientSpec[];
}

/** An NFS server: nfs-ganesha or kernel nfsd. */
export interface NfsServerDriver {
  readonly driver: 'ganesha' | 'kernel';
  /**
   * Make the server's table of vcstor exports exactly `exports` (every export the agent
   * has), without disturbing clients of exports that do not change. Idempotent.
   */
  apply(exports: readonly NfsExportSpec[], signal: AbortSignal): Promise<void>;
  /** The exported paths the server reports now. */
  listExportedPaths(signal: AbortSignal): Promise<string[]>;
}

/** A brick of a parallel file system: a directory on one of its servers. */
export interface BrickSpec {
  /** The server as the other servers reach it. */
  host: string;
  path: string;
}

/** A parallel file system's volume as its servers know it. */
export interface ParallelFsInfo {
  name: string;
  /** Its own word: "Started", "Created", "Stopped". */
  status: string;
  bricks: BrickSpec[];
}

/**
 * A parallel file system's servers (GlusterFS's glusterd): the driver talks to this
 * server's daemon, which the host runs (the lab, or the host's service manager).
 */
export interface ParallelFsDriver {
  readonly driver: 'glusterfs';
  /** Make `host` a peer of this server (idempotent: false when it was, or is this server). */
  probePeer(host: string, signal: AbortSignal): Promise<boolean>;
  /** Create the volume over `bricks` (idempotent: the same bricks → false; other bricks → ALREADY_EXISTS). */
  createVolume(name: string, bricks: readonly BrickSpec[], signal: AbortSignal): Promise<boolean>;
  /** Set one of its options (idempotent). */
  setOption(name: string, key: string, value: string, signal: AbortSignal): Promise<boolean>;
  /** Start it (idempotent: false when it was started). */
  startVolume(name: string, signal: AbortSignal): Promise<boolean>;
  /** Stop and delete it (idempotent: false when there is none). */
  deleteVolume(name: string, signal: AbortSignal): Promise<boolean>;
  listVolumes(signal: AbortSignal): Promise<ParallelFsInfo[]>;
}
