/** The names of the methods and dom0 baselines (the registry, registry.ts, says what each is). */

/** The paper's seven ways of giving a guest a disk (section 3), in the paper's order. */
export const METHODS = ['file-local', 'phy-local', 'file-nfs', 'file-iscsi', 'phy-iscsi', 'nfs', 'iscsi'] as const;
export type MethodName = (typeof METHODS)[number];

/**
 * The paper's dom0 baselines (Fig. 3 and 5): the same benchmarks run by dom0 itself on
 * its local disk, over NFS and over iSCSI — the ceiling each method is compared with.
 * Their measurements carry these names where a method's name would be.
 */
export const DOM0_BASELINES = ['dom0-local', 'dom0-nfs', 'dom0-iscsi'] as const;
export type BaselineName = (typeof DOM0_BASELINES)[number];
