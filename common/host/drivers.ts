import type { CommandRunner } from '../runner.js';
import { QsdIscsiInitiator } from './qsd-initiator.js';
import type { IscsiInitiatorDriver, NfsClientDriver } from './types.js';

/** The iSCSI initiator a host's config selects. */
export async function iscsiInitiatorDriver(driver: 'qsd' | 'open-iscsi', runner: CommandRunner, stateDir: string): Promise<IscsiInitiatorDriver> {
  if (driver === 'qsd') return new QsdIscsiInitiator({ runner, stateDir });
  const { OpenIscsiInitiator } = await import('./open-iscsi.js');
  return new OpenIscsiInitiator({ runner });
}

/** The kernel NFS client (the only directory-level client there is). */
export async function kernelNfsClient(runner: CommandRunner): Promise<NfsClientDriver> {
  const { KernelNfsClient } = await import('./kernel-nfs-client.js');
  return new KernelNfsClient({ runner });
}
