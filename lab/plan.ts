import path from 'node:path';
import type { LabFile } from './record.js';

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
