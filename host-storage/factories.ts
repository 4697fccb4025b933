import type { CommandRunner } from '../common/runner.js';
import { FuseNfsClient } from './fuse-nfs-client.js';
import { KernelNfsClient } from './kernel-nfs-client.js';
import { OpenIscsiInitiator } from './open-iscsi.js';
import { QsdIscsiInitiator } from './qsd-initiator.js';
import type { IscsiInitiatorDriver, NfsClientDriver } from './types.js';

/** The iSCSI initiator a host's config selects. */
export function iscsiInitiatorDriver(driver: 'qsd' | 'open-iscsi', runner: CommandRunner, stateDir: string, fuseServerCgroup?: string): IscsiInitiatorDriver {
  return driver === 'qsd' ? new QsdIscsiInitiator({ runner, stateDir, ...(fuseServerCgroup ? { memoryCgroup: fuseServerCgroup } : {}) }) : new OpenIscsiInitiator({ runner });
}

/** The kernel NFS client. */
export function kernelNfsClient(runner: CommandRunner): NfsClientDriver {
  return new KernelNfsClient({ runner });
}

/**
 * The directory-level NFS client a host's config selects: the kernel's, or fuse-nfs
 * (records and logs under `stateDir`, its programs in `fuseServerCgroup` when given).
 */
export function nfsClientDriver(driver: 'kernel' | 'fuse-nfs', runner: CommandRunner, stateDir: string, fuseServerCgroup?: string): NfsClientDriver {
  return driver === 'fuse-nfs' ? new FuseNfsClient({ runner, stateDir, ...(fuseServerCgroup ? { memoryCgroup: fuseServerCgroup } : {}) }) : new KernelNfsClient({ runner });
}
