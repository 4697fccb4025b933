import type { AgentRole } from '../common/config.js';

/**
 * What a VM-tier guest is told at boot (a JSON file qemu passes through fw_cfg; read
 * by `vcstor vm-init` inside the guest): its addresses, the kernel modules its drivers
 * need, the disk to make its volume group on, and the agents to run with their configs.
 */
export interface VmSeed {
  /** The guest's hostname (also given on the kernel command line). */
  hostname: string;
  /** Addresses of eth0 in CIDR form; the first is the host's own, more serve co-hosted agents. */
  addresses: string[];
  /** Kernel modules to load before the agents start (they do not load modules themselves). */
  modules: string[];
  /** A volume group to make on a disk when it is not there yet (the storage server). */
  volumeGroup?: { name: string; device: string };
  /** Agents to run, each with its config (written to /etc/vcstor/NAME.json). */
  agents: Array<{ name: string; role: AgentRole; listen: string; config: Record<string, unknown> }>;
  /** Where the agents' logs are copied as they grow: the guest's second serial port. */
  logDevice?: string;
  /** Files to write before the agents start (the lab's CA, the guest's certificates and keys). */
  files?: Array<{ path: string; mode: number; content: string }>;
}

/** The line vm-init prints on the console when every agent serves: the lab waits for it. */
export const VM_READY_MARK = 'vcstor-vm-init: ready';
/** The line vm-init prints when it gives up; the reason follows on the same line. */
export const VM_FAILED_MARK = 'vcstor-vm-init: failed:';
