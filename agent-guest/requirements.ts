import type { DriverRequirements } from '../common/requirements.js';
import { BENCHMARK_DRIVERS, CLUSTER_FILESYSTEM_DRIVERS, FILESYSTEM_DRIVERS, FUSE_NFS_CLIENT, INITIATOR_DRIVERS, PARALLEL_FS_CLIENT_DRIVERS } from '../host-storage/requirements.js';

/** Every driver the guest agent has, and what each needs from its host. */
export const GUEST_DRIVERS: readonly DriverRequirements[] = [
  ...INITIATOR_DRIVERS,
  {
    concern: 'nfs-client',
    driver: 'kernel',
    programs: ['mount.nfs'],
    kernelFilesystems: ['nfs'],
    note: 'directory mounts need a kernel NFS client; namespace guests of the lab share a kernel without one (use the VM tier, or fuse-nfs)',
  },
  FUSE_NFS_CLIENT,
  ...PARALLEL_FS_CLIENT_DRIVERS,
  ...CLUSTER_FILESYSTEM_DRIVERS,
  ...FILESYSTEM_DRIVERS,
  ...BENCHMARK_DRIVERS,
];
