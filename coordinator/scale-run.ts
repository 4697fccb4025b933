import type * as grpc from '@grpc/grpc-js';
import { makeClient, unary, type AgentClients } from '../common/clients.js';
import type { LoadSessionSpec } from '../common/generated/vcstor/v1/LoadSessionSpec.js';
import type { RunLoadRequest } from '../common/generated/vcstor/v1/RunLoadRequest.js';
import type { RunLoadResponse__Output } from '../common/generated/vcstor/v1/RunLoadResponse.js';
import type { RunLoadResult__Output } from '../common/generated/vcstor/v1/RunLoadResult.js';
import type { StartLoadSessionsResponse__Output } from '../common/generated/vcstor/v1/StartLoadSessionsResponse.js';
import { planCredentials } from './agents.js';
import type { UndoJournal } from './journal.js';
import type { UndoStep } from './methods.js';
import type { MeasurementRecord, ProgressInfo, RunRecord } from './model.js';
import type { ScalePlan } from './scale-plan.js';
import type { StepEmitter } from './run-events.js';
import type { RunStore } from './store.js';
import { serverStream } from './stream.js';

/**
 * What the parts of a scale run share: its agents (one storage agent, many initiator
 * agents), its journal's entries (volumes, exports, load sets), and the load sets that
 * spread a step's sessions over the initiator agents.
 */

/** An initiator agent (guest or dom0): both serve the load sessions (load.proto). */
export type InitiatorClient = AgentClients['guest'] | AgentClients['dom0'];

export interface Initiator {
  name: string;
  role: 'guest' | 'dom0';
  iqnPrefix: string;
  client: InitiatorClient;
}

export interface ScaleAgents {
  storage: AgentClients['storage'];
  initiators: Initiator[];
  credentials: grpc.ChannelCredentials;
  /** The client an undo step goes to: the storage agent, or the initiator of its index. */
  undoTarget(step: UndoStep): grpc.Client | undefined;
  close(): void;
}

/**
 * Clients for a scale plan's agents. Close them when done.
 * @throws VcstorError INVALID_ARGUMENT when a PEM file of the plan's TLS cannot be read.
 */
export async function scaleAgents(plan: ScalePlan): Promise<ScaleAgents> {
  const credentials = await planCredentials(plan.tls);
  const storage = makeClient('storage', plan.agents.storage.address, credentials);
  const initiators = plan.agents.initiators.map((a) => ({ name: a.name, role: a.role, iqnPrefix: a.iqnPrefix, client: a.role === 'guest' ? makeClient('guest', a.address, credentials) : makeClient('dom0', a.address, credentials) }));
  return {
    storage,
    initiators,
    credentials,
    undoTarget: (step) => (step.agent === 'storage' ? storage : initiators[step.agentIndex ?? -1]?.client),
    close: () => [storage, ...initiators.map((i) => i.client)].forEach((c) => c.close()),
  };
}

/** What the steps of one scale run work with. */
export interface ScaleRun {
  run: RunRecord;
  plan: ScalePlan;
  store: RunStore;
  journal: UndoJournal;
  signal: AbortSignal;
  agents: ScaleAgents;
  /** Every call's deadline (the plan's step timeout) and the run's signal. */
  T: { timeoutMs: number; signal: AbortSignal };
  /** The run id's last characters, in every name the run makes. */
  short: string;
  chap: { username: string; password: string };
  step: StepEmitter;
  measurements: MeasurementRecord[];
}

/** A volume and its export: one journal group, the export undone before the volume. */
export const volumeGroup = (name: string) => `volume ${name}`;
export const deleteVolume = (name: string): UndoStep => ({ step: 'delete volume', agent: 'storage', rpc: 'DeleteVolume', request: { name, force: true }, data: true });
export const unexportIscsi = (name: string): UndoStep => ({ step: 'unexport iscsi', agent: 'storage', rpc: 'UnexportIscsi', request: { volume: name, force: true } });

/** Create volume `name` and export it over iSCSI to the plan's addresses, journaled first; its LUN. */
export async function exportVolume(k: ScaleRun, name: string, sizeBytes: number, sparse: boolean, timing?: { created(ms: number): void; exported(ms: number): void }): Promise<{ portal: string; iqn: string; lun: number }> {
  const { agents, T } = k;
  await k.journal.add(volumeGroup(name), deleteVolume(name));
  let t = performance.now();
  await unary(agents.storage, agents.storage.CreateVolume, { name, sizeBytes, provisioning: sparse ? 'PROVISIONING_SPARSE' : 'PROVISIONING_PREALLOCATED' }, T);
  timing?.created(performance.now() - t);
  await k.journal.add(volumeGroup(name), unexportIscsi(name));
  t = performance.now();
  const exported = await unary(agents.storage, agents.storage.ExportIscsi, { volume: name, allowedAddresses: [k.plan.scale.allowedAddresses], chap: k.chap }, T);
  timing?.exported(performance.now() - t);
  const target = exported.target!;
  return { portal: target.portals[0] ?? `${k.plan.agents.storage.host}:3260`, iqn: target.iqn, lun: target.luns[0]?.lun ?? 0 };
}

/** The sessions of one initiator agent in a step. */
export interface LoadSet {
  /** The agent's index in the plan. */
  agent: number;
  a: Initiator;
  setId: string;
  sessions: LoadSessionSpec[];
}

const loadSetGroup = (x: LoadSet) => `load-set ${x.setId} on ${x.a.name} (${x.agent})`;
const stopLoadSessions = (x: LoadSet): UndoStep => ({ step: 'stop load sessions', agent: x.a.role, agentIndex: x.agent, rpc: 'StopLoadSessions', request: { setId: x.setId } });

/**
 * Sessions spread round-robin over the initiator agents: session `i` goes to agent
 * `i % agents`, with the IQN `<its prefix>.<suffix(i)>`. Only agents with sessions.
 */
export function spreadSessions(k: ScaleRun, setId: string, targets: ReadonlyArray<LoadSessionSpec['target'] | undefined>, suffix: (i: number) => string): { active: LoadSet[]; iqns: Set<string> } {
  const A = k.agents.initiators.length;
  const sets: LoadSet[] = k.agents.initiators.map((a, agent) => ({ agent, a, setId, sessions: [] }));
  targets.forEach((target, i) => {
    const set = sets[i % A]!;
    if (target) set.sessions.push({ target, initiatorIqn: `${set.a.iqnPrefix}.${suffix(i)}` });
  });
  const active = sets.filter((x) => x.sessions.length > 0);
  return { active, iqns: new Set(active.flatMap((x) => x.sessions.map((y) => y.initiatorIqn!))) };
}

/** Journal every set, then log them all in at once (the storm, its wall time to `timed`); each agent's answer or error. */
export async function startLoadSets(k: ScaleRun, active: readonly LoadSet[], timed?: (ms: number) => void): Promise<Array<PromiseSettledResult<StartLoadSessionsResponse__Output>>> {
  const s = k.plan.scale;
  for (const x of active) await k.journal.add(loadSetGroup(x), stopLoadSessions(x));
  const started = performance.now();
  const answers = await Promise.allSettled(active.map((x) => unary(x.a.client, x.a.client.StartLoadSessions, { setId: x.setId, sessions: x.sessions, chap: k.chap, sessionsPerDaemon: s.sessionsPerDaemon, loginTimeoutMs: s.loginTimeoutS * 1000 }, k.T)));
  timed?.(performance.now() - started);
  return answers;
}

/**
 * Log a set out and remove it from its agent (within 2 minutes); it leaves the journal.
 * @throws VcstorError of the call (the set stays journaled).
 */
export async function stopLoadSet(k: ScaleRun, x: LoadSet): Promise<void> {
  await unary(x.a.client, x.a.client.StopLoadSessions, { setId: x.setId }, { timeoutMs: 120_000 });
  await k.journal.done(loadSetGroup(x), stopLoadSessions(x));
}

/** How many of `iqns` the target lists as logged in. */
export async function targetSessionsOf(k: ScaleRun, iqns: ReadonlySet<string>, options: { timeoutMs: number; signal?: AbortSignal } = k.T): Promise<number> {
  const listed = await unary(k.agents.storage, k.agents.storage.ListIscsiTargets, {}, options);
  return listed.targets.flatMap((t) => t.sessions).filter((x) => iqns.has(x.initiatorIqn)).length;
}

/**
 * RunLoad to its result, passing progress on.
 * @throws VcstorError of the call (CANCELLED when `signal` aborted it).
 */
export function runLoad(client: InitiatorClient, request: RunLoadRequest, timeoutMs: number, signal: AbortSignal, onProgress: (p: ProgressInfo) => void): Promise<RunLoadResult__Output> {
  return serverStream((options) => client.RunLoad(request, options), {
    what: 'RunLoad',
    timeoutMs,
    signal,
    onMessage: (m: RunLoadResponse__Output) => {
      if (m.progress) onProgress({ phase: m.progress.phase, percent: m.progress.percent, bytesDone: 0, bytesTotal: 0, elapsedMs: m.progress.elapsedMs, message: m.progress.message });
      return m.result ?? undefined;
    },
  });
}

export const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));
