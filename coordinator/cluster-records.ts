import type * as grpc from '@grpc/grpc-js';
import { getAgentInfo, makeClient, type AgentClients } from '../common/clients.js';
import type { GetInfoResponse__Output } from '../common/generated/vcstor/v1/GetInfoResponse.js';
import { planCredentials } from './agents.js';
import { guestSpecKey, type ClusterGuest, type ClusterPlan } from './cluster-plan.js';
import type { AgentRole, AgentSet } from './methods.js';
import type { MeasurementRecord } from './model.js';

/**
 * A cluster run's agents and its record of each guest (what provision, status and
 * teardown share): the clients per role and address, and the `provisioned` measurement
 * that holds what a guest got.
 */

/** How a cluster run reaches its agents (tests give doubles). */
export interface ClusterAgents {
  client<K extends AgentRole>(role: K, address: string): AgentClients[K];
  info(role: AgentRole, address: string): Promise<GetInfoResponse__Output>;
  close(): void;
}

/** The agents of a plan over gRPC, with its TLS; one client per role and address. */
export async function grpcClusterAgents(plan: Pick<ClusterPlan, 'tls'>): Promise<ClusterAgents> {
  const credentials = await planCredentials(plan.tls);
  const clients = new Map<string, grpc.Client>();
  return {
    client: <K extends AgentRole>(role: K, address: string) => {
      const key = `${role} ${address}`;
      if (!clients.has(key)) clients.set(key, makeClient(role, address, credentials) as unknown as grpc.Client);
      return clients.get(key) as unknown as AgentClients[K];
    },
    info: (_role, address) => getAgentInfo(address, credentials, 10_000),
    close: () => clients.forEach((c) => c.close()),
  };
}

/** What a cluster run knows of one guest: kept as its `provisioned` measurement. */
export interface GuestRecord {
  /** provisioning: intent written before the first change; provisioned: its method set up. */
  state: 'provisioning' | 'provisioned';
  specKey: string;
  method: string;
  dom0: { name: string; address: string };
  storage: { name: string; address: string };
  guest: { address: string; domain: string };
  sizeBytes: number;
  volume?: string;
  image?: string;
  guestDevice?: string;
  guestMountpoint?: string;
  provisionedUnixMs?: number;
}

export const PROVISIONED = 'provisioned';

export function recordOf(m: MeasurementRecord): GuestRecord | undefined {
  return m.benchmark === PROVISIONED ? (m.result as unknown as GuestRecord) : undefined;
}

export function addressesOf(r: GuestRecord): Record<AgentRole, string> {
  return { storage: r.storage.address, dom0: r.dom0.address, guest: r.guest.address };
}

export function agentSet(agents: ClusterAgents, at: Record<AgentRole, string>): AgentSet {
  return { storage: agents.client('storage', at.storage), dom0: agents.client('dom0', at.dom0), guest: agents.client('guest', at.guest) };
}

export function newRecord(g: ClusterGuest, plan: ClusterPlan): GuestRecord {
  return {
    state: 'provisioning',
    specKey: guestSpecKey(g, plan),
    method: g.method,
    dom0: { name: g.dom0.name, address: g.dom0.address },
    storage: { name: g.storage.name, address: g.storage.address },
    guest: { address: g.address, domain: g.domain },
    sizeBytes: g.sizeBytes,
  };
}
