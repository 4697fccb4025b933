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
 * A cluster file system on one LUN that several guests log in to (the ip-san shared space,
 * paper section 5): OCFS2, its o2cb cluster stack in the kernel. Debian's cloud kernel
 * (the VM tier's) is built without it (CONFIG_OCFS2_FS, CONFIG_GFS2_FS and CONFIG_DLM
 * are not set); the namespace lab's kernel has none either.
 */
export const CLUSTER_FILESYSTEM_DRIVERS: readonly DriverRequirements[] = [
  {
    concern: 'cluster-filesystem',
    driver: 'ocfs2',
    programs: ['mkfs.ocfs2', 'mounted.ocfs2', 'o2cb'],
    kernelFilesystems: ['ocfs2'],
    note: 'several guests mount one LUN at once; needs ocfs2-tools and a kernel with OCFS2 (Debian\'s generic kernel, not its cloud kernel)',
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
