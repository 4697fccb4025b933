import path from 'node:path';
import { makeClient } from '../../common/clients.js';
import type { LabFile, LabOptions } from '../../lab/lab.js';
import type { MethodTarget } from '../../coordinator/methods.js';
import { labClientCredentials } from './lab.js';

/** A MethodTarget for a lab: its three agents, directories and names. */
export function labMethodTarget(record: LabFile, lab: LabOptions, overrides: Partial<MethodTarget> = {}): MethodTarget {
  const host = (role: string) => record.hosts.find((h) => h.role === role)!;
  const credentials = labClientCredentials(record);
  const dir = (name: string, sub: string) => path.join(record.hosts.find((h) => h.name === name)?.dataDir ?? path.join(lab.dir, 'hosts', name), sub);
  return {
    storage: makeClient('storage', host('storage').agentAddress, credentials),
    dom0: makeClient('dom0', host('dom0').agentAddress, credentials),
    guest: makeClient('guest', host('guest').agentAddress, credentials),
    storageHost: host('storage').address,
    dom0InitiatorIqn: `iqn.2026-11.org.vcstor.lab:${host('dom0').name}`,
    guestInitiatorIqn: `iqn.2026-11.org.vcstor.lab:${host('guest').name}`,
    nfsClients: lab.subnet,
    dom0ImageDir: dir(host('dom0').name, 'images'),
    dom0MountDir: dir(host('dom0').name, 'mnt'),
    guestMountDir: dir(host('guest').name, 'mnt'),
    domain: host('guest').name,
    prefix: 't',
    sizeBytes: 64 * 1024 * 1024,
    sparse: false,
    chap: { username: 'alice', password: 'secretpass12' },
    timeoutMs: 60_000,
    ...overrides,
  };
}
