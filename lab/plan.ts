import type * as grpc from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { makeClient } from '../common/clients.js';
import type { MethodTarget } from '../coordinator/methods.js';
import { IQN_PREFIX, type LabFile } from './record.js';

/**
 * A plan for a lab: its agents, directories, NATS and CHAP secret, with `campaign` as
 * given. `vcstor lab plan` prints one; tests build theirs with it.
 */
export function labPlan(lab: LabFile, name: string, campaign: Record<string, unknown>): Record<string, unknown> {
  const host = (role: string) => lab.hosts.find((h) => h.role === role)!;
  const storage = host('storage');
  const dom0 = host('dom0');
  const guest = host('guest');
  const dir = (h: { name: string; dataDir?: string }, sub: string) => path.join(h.dataDir ?? path.join(lab.dir, 'hosts', h.name), sub);
  return {
    name,
    agents: {
      storage: { address: storage.agentAddress, host: storage.address },
      dom0: { address: dom0.agentAddress, initiatorIqn: `iqn.2026-11.org.vcstor.lab:${dom0.name}`, imageDir: dir(dom0, 'images'), mountDir: dir(dom0, 'mnt') },
      guest: { address: guest.agentAddress, initiatorIqn: `iqn.2026-11.org.vcstor.lab:${guest.name}`, mountDir: dir(guest, 'mnt'), domain: guest.name },
    },
    // The lab's client certificate (mTLS, the default), or plaintext for a lab made so.
    tls: lab.tls ? { ca: lab.tls.ca, cert: lab.tls.cert, key: lab.tls.key } : { insecure: true },
    nfsClients: lab.subnet,
    chap: { username: 'vcstor', passwordFile: path.join(lab.dir, 'secrets', 'chap') },
    nats: { url: lab.natsUrl },
    campaign,
  };
}

/**
 * A scale plan for a lab (`vcstor lab up`): its storage agent's target, every dom0 and
 * guest agent as initiators (IQN prefix `iqn.2026-11.org.vcstor.lab:<host>-load`), the
 * lab's CHAP secret and NATS, with `scale` as given. Tests and the bench build theirs with it.
 */
export function scaleLabPlan(lab: LabFile, name: string, scale: Record<string, unknown>): Record<string, unknown> {
  const storage = lab.hosts.find((h) => h.role === 'storage')!;
  return {
    name,
    agents: {
      storage: { address: storage.agentAddress, host: storage.address },
      initiators: lab.hosts
        .filter((h) => h.role === 'guest' || h.role === 'dom0')
        .map((h) => ({ name: h.name, role: h.role, address: h.agentAddress, iqnPrefix: `iqn.2026-11.org.vcstor.lab:${h.name}-load` })),
    },
    // The lab's client certificate (mTLS, the default), or plaintext for a lab made so.
    tls: lab.tls ? { ca: lab.tls.ca, cert: lab.tls.cert, key: lab.tls.key } : { insecure: true },
    chap: { username: 'vcstor', passwordFile: path.join(lab.dir, 'secrets', 'chap') },
    nats: { url: lab.natsUrl },
    scale: { allowedAddresses: lab.subnet, ...scale },
  };
}

/**
 * A cluster plan for a lab (`vcstor lab up --dom0 M --guests N`): its storage servers,
 * and its guests spread over its dom0 hosts in blocks, in order (guests 0..N/M-1 on
 * host0, the next on host1, ...; the sandbox hypervisor lets any dom0 run any guest's
 * domain, named after the guest); `methods[i]` is guest i's method (or `method` for all),
 * with the rest of `cluster` (diskSize, concurrency, ...) as given. Tests build theirs with it.
 */
export function clusterLabPlan(lab: LabFile, name: string, cluster: Record<string, unknown> & { methods?: readonly string[] }): Record<string, unknown> {
  const { methods, ...rest } = cluster;
  const dir = (h: { name: string; dataDir?: string }, sub: string) => path.join(h.dataDir ?? path.join(lab.dir, 'hosts', h.name), sub);
  const dom0s = lab.hosts.filter((h) => h.role === 'dom0');
  const guests = lab.hosts.filter((h) => h.role === 'guest');
  return {
    name,
    tls: lab.tls ? { ca: lab.tls.ca, cert: lab.tls.cert, key: lab.tls.key } : { insecure: true },
    chap: { username: 'vcstor', passwordFile: path.join(lab.dir, 'secrets', 'chap') },
    nats: { url: lab.natsUrl },
    cluster: {
      storage: lab.hosts.filter((h) => h.role === 'storage').map((h) => ({ name: h.name, address: h.agentAddress, host: h.address })),
      dom0: dom0s.map((d, i) => ({
        name: d.name,
        address: d.agentAddress,
        initiatorIqn: `iqn.2026-11.org.vcstor.lab:${d.name}`,
        imageDir: dir(d, 'images'),
        mountDir: dir(d, 'mnt'),
        guests: guests
          .map((g, j) => ({ g, j }))
          .filter(({ j }) => Math.floor((j * dom0s.length) / guests.length) === i)
          .map(({ g, j }) => ({
            name: g.name,
            address: g.agentAddress,
            initiatorIqn: `iqn.2026-11.org.vcstor.lab:${g.name}`,
            mountDir: dir(g, 'mnt'),
            ...(methods?.[j] ? { method: methods[j] } : {}),
          })),
      })),
      nfsClients: lab.subnet,
      ...rest,
    },
  };
}

/**
 * A shared-space plan for a lab (`vcstor lab up --storage 2 --dom0 M --guests N`): its
 * hosts as clusterLabPlan names them (`cluster`, here only `diskSize` and `concurrency`
 * mean anything) and the comparison's `shared` section as given. Tests build theirs with it.
 */
export function sharedLabPlan(lab: LabFile, name: string, cluster: Record<string, unknown>, shared: Record<string, unknown>): Record<string, unknown> {
  const storages = lab.hosts.filter((h) => h.role === 'storage');
  // The NAS head is storage0 (the lab's NFSv3 server: the one rpcbind runs beside), the SAN the last server.
  const head = storages[0]!;
  const nasHead = storages.length > 1 ? { head: head.name, san: storages[storages.length - 1]!.name, initiatorIqn: `${IQN_PREFIX}:${head.name}`, exportDir: path.join(head.dataDir ?? path.join(lab.dir, 'hosts', head.name), 'exports') } : undefined;
  return { ...clusterLabPlan(lab, name, cluster), shared: { ...(nasHead ? { nasHead } : {}), ...shared } };
}

/**
 * Where a method is set up in a lab: its three agents (clients over `credentials`), its
 * directories and names, for code that provisions methods directly (tests, benches).
 * The CHAP secret is a fresh one unless `overrides` gives it.
 */
export function labMethodTarget(record: LabFile, credentials: grpc.ChannelCredentials, overrides: Partial<MethodTarget> = {}): MethodTarget {
  const host = (role: string) => record.hosts.find((h) => h.role === role)!;
  const dir = (name: string, sub: string) => path.join(record.hosts.find((h) => h.name === name)?.dataDir ?? path.join(record.dir, 'hosts', name), sub);
  return {
    storage: makeClient('storage', host('storage').agentAddress, credentials),
    dom0: makeClient('dom0', host('dom0').agentAddress, credentials),
    guest: makeClient('guest', host('guest').agentAddress, credentials),
    storageHost: host('storage').address,
    dom0InitiatorIqn: `${IQN_PREFIX}:${host('dom0').name}`,
    guestInitiatorIqn: `${IQN_PREFIX}:${host('guest').name}`,
    nfsClients: record.subnet,
    dom0ImageDir: dir(host('dom0').name, 'images'),
    dom0MountDir: dir(host('dom0').name, 'mnt'),
    guestMountDir: dir(host('guest').name, 'mnt'),
    domain: host('guest').name,
    prefix: 't',
    sizeBytes: 64 * 1024 * 1024,
    sparse: false,
    // 12-16 characters, as tgt and LIO take them.
    chap: { username: 'vcstor', password: randomBytes(9).toString('base64url') },
    timeoutMs: 60_000,
    ...overrides,
  };
}
