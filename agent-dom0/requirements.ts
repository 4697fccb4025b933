import type { DriverRequirements } from '../common/requirements.js';
import { BENCHMARK_DRIVERS, FILESYSTEM_DRIVERS, INITIATOR_DRIVERS } from '../host-storage/requirements.js';

/** Every driver the dom0 agent has, and what each needs from its host. */
export const DOM0_DRIVERS: readonly DriverRequirements[] = [
  ...INITIATOR_DRIVERS,
  {
    concern: 'nfs-client',
    driver: 'libnfs',
    programs: ['qemu-storage-daemon', 'losetup'],
    note: 'image files on an export through qemu\'s libnfs driver (NFSv3); no directory mounts',
  },
  { concern: 'nfs-client', driver: 'kernel', programs: ['mount.nfs'], kernelFilesystems: ['nfs'] },
  { concern: 'hypervisor', driver: 'sandbox', programs: ['ip', 'nsenter', 'losetup'], note: 'guests are network namespaces; VBDs are loop devices' },
  { concern: 'hypervisor', driver: 'xen', programs: ['xl'] },
  ...FILESYSTEM_DRIVERS,
  ...BENCHMARK_DRIVERS,
];
