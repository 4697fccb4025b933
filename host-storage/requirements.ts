import type { DriverRequirements } from '../common/requirements.js';
import { FUSE_NFS_LIBRARIES, FUSE_NFS_PROGRAM } from './fuse-nfs-client.js';

/** Drivers that dom0 hosts and guests both have: the iSCSI initiators and filesystems. */
export const INITIATOR_DRIVERS: readonly DriverRequirements[] = [
  {
    concern: 'iscsi-initiator',
    driver: 'qsd',
    programs: ['qemu-storage-daemon', 'losetup'],
    note: 'user-space: libiscsi in qemu-storage-daemon, exported over FUSE, attached as a loop device',
  },
  { concern: 'iscsi-initiator', driver: 'open-iscsi', programs: ['iscsiadm'] },
];

export const FILESYSTEM_DRIVERS: readonly DriverRequirements[] = [
  { concern: 'filesystem', driver: 'ext4', programs: ['mkfs.ext4', 'blkid', 'mount', 'umount'], kernelFilesystems: ['ext4'] },
];

/** The benchmarks both run: the guest for the methods, dom0 for the baselines (Fig. 3, 5). */
export const BENCHMARK_DRIVERS: readonly DriverRequirements[] = [
  { concern: 'benchmark', driver: 'bonnie++', programs: ['bonnie++'] },
  { concern: 'benchmark', driver: 'postmark', programs: ['postmark'] },
  { concern: 'benchmark', driver: 'fio', programs: ['fio'] },
];

/** The client of the parallel-fs shared space (paper section 5): guests mount the storage servers' volume. */
export const PARALLEL_FS_CLIENT_DRIVERS: readonly DriverRequirements[] = [
  {
    concern: 'parallel-fs-client',
    driver: 'glusterfs',
    programs: ['glusterfs', 'umount', 'stat'],
    kernelFilesystems: ['fuse'],
    note: 'the GlusterFS FUSE client (user space), one glusterfs process per mount',
  },
];

/**
 * vcstor's user-space NFSv3 client (directory mounts through FUSE), for hosts whose kernel
 * has no NFS client: the program npm run build makes (scripts/build-native.sh), the
 * libraries it is linked against, FUSE in the kernel, and umount(8).
 */
export const FUSE_NFS_CLIENT: DriverRequirements = {
  concern: 'nfs-client',
  driver: 'fuse-nfs',
  programs: [FUSE_NFS_PROGRAM, 'umount'],
  libraries: FUSE_NFS_LIBRARIES,
  kernelFilesystems: ['fuse'],
  note: 'user-space NFSv3 (libnfs behind FUSE, no data cache by default); built from host-storage/fuse-nfs/ by npm run build (needs libnfs-dev, libfuse3-dev)',
};
