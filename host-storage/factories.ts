import type { CommandRunner } from '../common/runner.js';
import { KernelNfsClient } from './kernel-nfs-client.js';
import { OpenIscsiInitiator } from './open-iscsi.js';
import { QsdIscsiInitiator } from './qsd-initiator.js';
import type { IscsiInitiatorDriver, NfsClientDriver } from './types.js';

/** The iSCSI initiator a host's config selects. */
export function iscsiInitiatorDriver(driver: 'qsd' | 'open-iscsi', runner: CommandRunner, stateDir: string, fuseServerCgroup?: string): IscsiInitiatorDriver {
  return driver === 'qsd' ? new QsdIscsiInitiator({ runner, stateDir, ...(fuseServerCgroup ? { memoryCgroup: fuseServerCgroup } : {}) }) : new OpenIscsiInitiator({ runner });
}

/** The kernel NFS client (the only directory-level client there is). */
export function kernelNfsClient(runner: CommandRunner): NfsClientDriver {
  return new KernelNfsClient({ runner });
}
