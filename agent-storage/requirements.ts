import type { DriverRequirements } from '../common/requirements.js';
import { INITIATOR_DRIVERS } from '../host-storage/requirements.js';

/** Every driver the storage agent has, and what each needs from its host. */
export const STORAGE_DRIVERS: readonly DriverRequirements[] = [
  { concern: 'volumes', driver: 'filepool', programs: ['losetup', 'fallocate'], note: 'image files in a directory, exposed through loop devices' },
  { concern: 'volumes', driver: 'lvm', programs: ['lvcreate', 'lvremove', 'lvs', 'vgs'] },
  { concern: 'iscsi-target', driver: 'tgt', programs: ['tgtadm', 'tgtd'] },
  { concern: 'iscsi-target', driver: 'lio', programs: ['targetcli'] },
  { concern: 'nfs-server', driver: 'ganesha', programs: ['ganesha.nfsd'] },
  { concern: 'nfs-server', driver: 'kernel', programs: ['exportfs'], kernelFilesystems: ['nfsd'] },
  {
    concern: 'parallel-fs',
    driver: 'glusterfs',
    programs: ['gluster', 'glusterd', 'glusterfsd'],
    note: 'a distributed GlusterFS volume over bricks on the storage servers; glusterd is started by the host (or the lab), the agent drives it with the gluster CLI on its socket',
  },
  // A NAS head logs in to another storage server's LUN (paper section 5).
  ...INITIATOR_DRIVERS,
];
