import type * as grpc from '@grpc/grpc-js';
import { channelCredentials, getAgentInfo } from '../common/clients.js';
import { VcstorError } from '../common/errors.js';
import type { GetInfoResponse__Output } from '../common/generated/vcstor/v1/GetInfoResponse.js';
import type { PlanHeader } from './plan-header.js';

/**
 * The channel credentials of a plan's `tls:` (plaintext, explicitly, or mTLS).
 * @throws VcstorError INVALID_ARGUMENT when a PEM file cannot be read.
 */
export function planCredentials(tls: PlanHeader['tls']): Promise<grpc.ChannelCredentials> {
  return channelCredentials('insecure' in tls ? { insecure: true } : { ca: tls.ca, cert: tls.cert, key: tls.key });
}

/**
 * GetInfo from each of a plan's agents, one after the other, before anything is
 * provisioned: every agent must answer (within 10 s each). Read-only.
 * @throws VcstorError UNAVAILABLE naming the first agent that does not answer.
 */
export async function askAgents<K extends string>(agents: ReadonlyArray<readonly [K, string]>, credentials: grpc.ChannelCredentials): Promise<Partial<Record<K, GetInfoResponse__Output>>> {
  const infos: Partial<Record<K, GetInfoResponse__Output>> = {};
  for (const [name, address] of agents) {
    infos[name] = await getAgentInfo(address, credentials, 10_000).catch((err: unknown) => {
      throw new VcstorError('UNAVAILABLE', `the ${name} agent at ${address} does not answer: ${err instanceof Error ? err.message : String(err)}`);
    });
  }
  return infos;
}
