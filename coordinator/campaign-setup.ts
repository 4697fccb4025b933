import type * as grpc from '@grpc/grpc-js';
import { makeClient, unary } from '../common/clients.js';
import type { GetInfoResponse__Output } from '../common/generated/vcstor/v1/GetInfoResponse.js';
import { formatIscsiValue, iscsiSessionParamsFromProto, setIscsiSessionParams, type IscsiSessionParamValues } from '../common/iscsi-params.js';
import { planCredentials } from './agents.js';
import type { AgentInfos, AgentSet, IscsiSessionFacts, ProvisionedMethod } from './methods.js';
import type { RunSetup } from './model.js';
import type { Plan } from './plan.js';

/**
 * What a campaign runs on, as setup.json keeps it: the agents (Table 1) and each
 * method's data path as it was set up (Table 2).
 */

/** The sparse or zero-filled provisioning, as results and the report name it. */
export function provisioningName(sparse: boolean): 'sparse' | 'zero-filled' {
  return sparse ? 'sparse' : 'zero-filled';
}

/**
 * Clients for the plan's agents. Close them when done.
 * @throws VcstorError INVALID_ARGUMENT when a PEM file of the plan's TLS cannot be read.
 */
export async function planAgents(plan: Plan): Promise<AgentSet & { credentials: grpc.ChannelCredentials; close(): void }> {
  const credentials = await planCredentials(plan.tls);
  const agents = {
    storage: makeClient('storage', plan.agents.storage.address, credentials),
    dom0: makeClient('dom0', plan.agents.dom0.address, credentials),
    guest: makeClient('guest', plan.agents.guest.address, credentials),
  };
  return { ...agents, credentials, close: () => Object.values(agents).forEach((c) => c.close()) };
}

/**
 * Table 2: a method's NFS client and iSCSI session, as the first set-up of it reported
 * them, added to `setup`; true when it changed (the caller saves it).
 */
export function recordDataPath(setup: RunSetup, method: string, provisioned: ProvisionedMethod): boolean {
  let changed = false;
  if (provisioned.nfsClient && !setup.nfsClients?.some((c) => c.method === method)) {
    setup.nfsClients = [...(setup.nfsClients ?? []), { method, ...provisioned.nfsClient }];
    changed = true;
  }
  const session = provisioned.iscsiSession;
  if (session && !setup.iscsiSessions?.some((c) => c.method === method)) {
    setup.iscsiSessions = [...(setup.iscsiSessions ?? []), { method, ...iscsiSessionRow(session) }];
    changed = true;
  }
  return changed;
}

/**
 * The run's set-up (Table 1): each agent's own description, the memory its host has
 * (from its memory counter; 0 when the agent cannot say), and the campaign's parameters.
 */
export async function describeSetup(plan: Plan, agents: AgentSet, infos: AgentInfos): Promise<RunSetup> {
  const hosts: RunSetup['hosts'] = [];
  for (const role of ['storage', 'dom0', 'guest'] as const) {
    const info = infos[role];
    const client = agents[role];
    const sample = await unary(client, client.SampleIo, { paths: [] }, { timeoutMs: 10_000 }).catch(() => undefined);
    const memory = sample?.counters.find((c) => c.kind === 'IO_COUNTER_KIND_MEMORY');
    hosts.push({
      role,
      name: info?.name ?? role,
      hostname: info?.hostname ?? '',
      version: info?.version ?? '',
      memoryScope: memory?.detail ?? 'unknown (the agent cannot say)',
      memoryBytes: Number(memory?.limitBytes ?? 0),
      drivers: (info?.drivers ?? []).filter((d) => d.selected).map((d) => `${d.concern}=${d.driver}${d.available ? '' : ' (unavailable)'}`),
      ...(info?.kernel ? { kernel: info.kernel } : {}),
      ...(info?.cpus ? { cpus: info.cpus } : {}),
      tools: Object.fromEntries((info?.drivers ?? []).filter((d) => d.version).map((d) => [d.driver, d.version])),
    });
  }
  const c = plan.campaign;
  const benchmarks: Record<string, string> = {};
  for (const [name, spec] of Object.entries(c.benchmarks)) {
    if (spec) benchmarks[name] = Object.entries(spec).map(([k, v]) => `${k}=${String(v)}`).join(' ');
  }
  return {
    hosts,
    repetitions: c.repetitions,
    volumeSizeBytes: c.volumeSize,
    provisioning: provisioningName(c.sparse),
    benchmarks,
    linkRate: linkRateOf(infos),
    iscsiParams: iscsiParamsText(c.iscsi ?? {}),
    iscsiSessions: [],
    nfsClients: [],
  };
}

/** Session parameters as Table 2 spells them: RFC 7143 keys, "Yes"/"No" and bytes. */
function iscsiParamsText(values: IscsiSessionParamValues): Record<string, string> {
  return Object.fromEntries(setIscsiSessionParams(values).map(({ key, value }) => [key.rfcKey, formatIscsiValue(value)]));
}

/**
 * A session's row of Table 2: what it negotiated where its initiator can tell
 * (open-iscsi), else what the target offered — for InitialR2T (OR), ImmediateData (AND)
 * and the lengths (minimum) the most the session can have (RFC 7143 6.2) — said so.
 */
export function iscsiSessionRow(session: IscsiSessionFacts): { initiator: string; target: string; params: Record<string, string>; basis: string } {
  const negotiated = iscsiParamsText(iscsiSessionParamsFromProto(session.negotiated));
  if (Object.keys(negotiated).length > 0) return { initiator: session.initiator, target: session.target, params: negotiated, basis: 'negotiated, as the initiator reports it' };
  const offered = iscsiParamsText(iscsiSessionParamsFromProto(session.offered));
  return {
    initiator: session.initiator,
    target: session.target,
    params: offered,
    basis: `the target's offer, read back from it: the session's bound under RFC 7143 (${session.detail || 'the initiator reports no negotiated values'})`,
  };
}

/**
 * Table 1's link rate: each host's links as its agent described them (the rate a tbf
 * holds a link to, else the kernel's speed), one text when all hosts agree.
 */
export function linkRateOf(infos: Partial<Record<'storage' | 'dom0' | 'guest', Pick<GetInfoResponse__Output, 'links'>>>): string {
  const bits = (n: number) => (n >= 1e9 && n % 1e8 === 0 ? `${n / 1e9} Gbit/s` : `${Math.round(n / 1e6)} Mbit/s`);
  const perRole = (['storage', 'dom0', 'guest'] as const).map((role) => {
    const links = infos[role]?.links ?? [];
    const text = links.map((l) => `${l.name} ${Number(l.shapedBitsPerSecond) > 0 ? `${bits(Number(l.shapedBitsPerSecond))} (tc tbf)` : Number(l.speedMbps) > 0 ? bits(Number(l.speedMbps) * 1e6) : 'speed unknown'}`).join(', ');
    return { role, text: text || 'not reported' };
  });
  const texts = new Set(perRole.map((r) => r.text));
  return texts.size === 1 ? `${perRole[0]!.text} (every host)` : perRole.map((r) => `${r.role}: ${r.text}`).join('; ');
}
