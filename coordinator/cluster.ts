import { setMaxListeners } from 'node:events';
import type * as grpc from '@grpc/grpc-js';
import type { GetInfoResponse__Output } from '../common/generated/vcstor/v1/GetInfoResponse.js';
import { clusterGuests, clusterRunId, guestSpecKey, validateClusterPlan, type ClusterGuest, type ClusterPlan } from './cluster-plan.js';
import { runLimited } from './cluster-schedule.js';
import { AgentLists, checkPieces, type Piece } from './cluster-status.js';
import { addressesOf, agentSet, grpcClusterAgents, newRecord, PROVISIONED, recordOf, type ClusterAgents, type GuestRecord } from './cluster-records.js';

export { grpcClusterAgents, PROVISIONED, type ClusterAgents, type GuestRecord };
import type { CleanupReport, UndoJournal } from './journal.js';
import { provisionMethod, runUndoSteps, unavailableMethods, type AgentRole, type AgentSet, type MethodTarget, type UndoStep } from './methods.js';
import type { MeasurementRecord, RunRecord } from './model.js';
import type { RunContext, RunKind } from './run-kind.js';
import { finishRun, settleRun, type StepEmitter } from './run-events.js';
import type { RunStore } from './store.js';

/**
 * A virtual cluster's storage as a kind of run (a plan with a `cluster` section): every
 * guest given its disk by its method and left there (provision), looked at (status), and
 * taken down from the journal (teardown). The run id comes from the plan's name
 * (clusterRunId), so provisioning the same plan again is the same run: it finds the last
 * one's journal (undo.json) and records, and converges — a guest whose pieces are all
 * there is left untouched (only List calls), a guest with a piece missing has its
 * method's recipe run again (every agent call of it is idempotent: what is there is
 * answered as it is), a guest not yet set up is set up. Nothing else is changed.
 *
 * Each guest's record (its method, hosts and what it got) is a measurement of the run
 * (`benchmark: "provisioned"`, published on NATS as results are), kept in
 * measurements.json; its undo steps are the journal's group named after the guest.
 */

function stepKey(s: UndoStep): string {
  return JSON.stringify([s.rpc, s.agent, s.agentIndex ?? null, s.request]);
}

/** The steps journaled before, then those of this set-up not among them: a re-run never shrinks what the journal holds. */
function merged(before: readonly UndoStep[], pending: readonly UndoStep[]): UndoStep[] {
  const seen = new Set(before.map(stepKey));
  return [...before, ...pending.filter((s) => !seen.has(stepKey(s)))];
}

/** Where a guest's method is set up (a cluster's guest, or a shared-space run's). */
export function methodTarget(plan: ClusterPlan, g: ClusterGuest, agents: AgentSet): MethodTarget {
  const c = plan.cluster;
  return {
    ...agents,
    storageHost: g.storage.host,
    dom0InitiatorIqn: g.dom0.initiatorIqn,
    guestInitiatorIqn: g.initiatorIqn,
    nfsClients: c.nfsClients,
    nfsMountOptions: c.nfsMountOptions,
    dom0ImageDir: g.dom0.imageDir,
    dom0MountDir: g.dom0.mountDir,
    guestMountDir: g.mountDir,
    domain: g.domain,
    prefix: g.prefix,
    sizeBytes: g.sizeBytes,
    sparse: c.sparse,
    chap: { username: plan.chap.username, password: plan.chapPassword },
    timeoutMs: c.stepTimeoutS * 1000,
  };
}

/** The guests' records of a run, by guest name, in a list that is saved whole. */
class Records {
  private writing: Promise<unknown> = Promise.resolve();
  constructor(
    private readonly store: RunStore,
    private readonly runId: string,
    readonly list: MeasurementRecord[],
  ) {}

  static async load(store: RunStore, runId: string): Promise<Records> {
    return new Records(store, runId, (await store.measurements(runId)).filter((m) => m.benchmark === PROVISIONED));
  }

  get(guest: string): GuestRecord | undefined {
    const m = this.list.find((x) => x.guest === guest);
    return m ? recordOf(m) : undefined;
  }

  /** Set (or with undefined, drop) a guest's record; resolves once stored. Returns the measurement. */
  async set(guest: string, record: GuestRecord | undefined): Promise<MeasurementRecord | undefined> {
    const i = this.list.findIndex((x) => x.guest === guest);
    const m: MeasurementRecord | undefined = record ? { runId: this.runId, method: record.method, benchmark: PROVISIONED, repetition: 0, guest, result: record as unknown as Record<string, unknown>, error: '' } : undefined;
    if (i >= 0) {
      if (m) this.list[i] = m;
      else this.list.splice(i, 1);
    } else if (m) this.list.push(m);
    const write = this.writing.then(() => this.store.saveMeasurements(this.runId, this.list));
    this.writing = write.catch(() => undefined);
    await write;
    return m;
  }
}

/** What one guest's provision did. */
type GuestOutcome = { state: 'succeeded' | 'failed' | 'skipped' | 'cancelled'; message: string; record?: MeasurementRecord };

/**
 * Provision a cluster plan: every guest given its disk (or left as it is, when all its
 * pieces are there), up to the plan's concurrency in all and per agent; the guests' set-
 * ups journaled per guest; nothing torn down (a guest whose set-up fails has its own steps
 * undone, as provisionMethod does; a re-run repairing a guest keeps what it has).
 * Guests journaled by an earlier provision and no longer in the plan are kept, and said so.
 * @throws only when the run store cannot be written.
 */
export async function executeCluster(plan: ClusterPlan, context: RunContext, agents?: ClusterAgents): Promise<RunRecord> {
  const { run, store, events, journal, signal } = context;
  setMaxListeners(1024, signal);
  const step: StepEmitter = (stepId, state, message = '', extra = {}) => events.emit({ stepId, state, message, ...extra });
  const guests = clusterGuests(plan);
  const c = plan.cluster;
  const records = await Records.load(store, run.runId);
  const reach = agents ?? (await grpcClusterAgents(plan));
  const count = async (ok: boolean) => {
    if (ok) run.stepsSucceeded++;
    else run.stepsFailed++;
    await store.saveRun(run);
  };
  run.state = 'running';
  run.stepsTotal = guests.length;
  await store.saveRun(run);
  try {
    // Every agent must answer before anything is changed.
    const hosts = new Map<string, AgentRole>();
    for (const g of guests) hosts.set(g.storage.address, 'storage').set(g.dom0.address, 'dom0').set(g.address, 'guest');
    const infos = new Map<string, GetInfoResponse__Output>();
    await Promise.all(
      [...hosts].map(async ([address, role]) => {
        try {
          infos.set(address, await reach.info(role, address));
        } catch (err) {
          throw new Error(`the ${role} agent at ${address} does not answer: ${err instanceof Error ? err.message : String(err)}`);
        }
      }),
    );
    const methods = guests.map((g) => g.method);
    await step('run', 'started', `${guests.length} guests on ${c.dom0.length} dom0 hosts from ${c.storage.length} storage servers (${[...new Set(methods)].join(', ')}), ${c.concurrency.overall} at once, ${c.concurrency.perAgent} per agent`);
    const lists = new AgentLists(c.stepTimeoutS * 1000);
    await runLimited(guests, c.concurrency, (g) => [g.storage.address, g.dom0.address, g.address], async (g) => {
      const stepId = `guest/${g.name}`;
      if (signal.aborted) {
        await step(stepId, 'cancelled', 'not started: the run was cancelled');
        await count(false);
        return;
      }
      await step(stepId, 'started', `${g.method} on ${g.dom0.name}, from ${g.storage.name}`);
      const skip = unavailableMethods({ storage: infos.get(g.storage.address)!, dom0: infos.get(g.dom0.address)!, guest: infos.get(g.address)! }).get(g.method);
      let outcome: GuestOutcome;
      try {
        outcome = skip ? { state: 'failed', message: `${g.method} cannot run here: ${skip}` } : await provisionGuest(plan, g, { journal, records, agents: reach, lists, signal });
      } catch (err) {
        outcome = { state: signal.aborted ? 'cancelled' : 'failed', message: err instanceof Error ? err.message : String(err) };
      }
      await step(stepId, outcome.state, outcome.message, outcome.record ? { measurement: outcome.record } : {});
      await count(outcome.state === 'succeeded');
    });
    // Guests an earlier provision of this cluster set up that the plan no longer has.
    const named = new Set(guests.map((g) => g.name));
    for (const group of Object.keys(journal.pending()).filter((g) => !named.has(g))) {
      await step(`guest/${group}`, 'skipped', `not in the plan any more: kept as it is (vcstor teardown ${run.runId} removes it)`);
    }
    settleRun(run, signal);
  } catch (err) {
    settleRun(run, signal, err);
  } finally {
    if (!agents) reach.close();
    await journal.settled();
  }
  return finishRun(run, store, step);
}

/** One guest: left as it is, repaired, or set up; its record and journal group kept current. */
async function provisionGuest(
  plan: ClusterPlan,
  g: ClusterGuest,
  k: { journal: UndoJournal; records: Records; agents: ClusterAgents; lists: AgentLists; signal: AbortSignal },
): Promise<GuestOutcome> {
  const { journal, records } = k;
  const key = guestSpecKey(g, plan);
  const before = journal.pending()[g.name] ?? [];
  const previous = records.get(g.name);
  if (previous && previous.specKey !== key && before.length > 0) {
    return { state: 'failed', message: `${g.name} has ${previous.method} from ${previous.storage.name} on ${previous.dom0.name} (${previous.sizeBytes} bytes) set up, which the plan now gives otherwise: nothing changed; tear the cluster down first to set it up anew` };
  }
  const fresh = newRecord(g, plan);
  const at = addressesOf(fresh);
  const set = agentSet(k.agents, at);
  let repairing = '';
  if (before.length > 0) {
    const pieces = await checkPieces(before, set, at, k.lists);
    const unknown = pieces.filter((p) => p.present === undefined);
    if (unknown.length > 0) return { state: 'failed', message: `cannot tell what ${g.name} still has, nothing changed: ${unknown.map((p) => `${p.what}: ${p.detail ?? '?'}`).join('; ')}` };
    const missing = pieces.filter((p) => p.present === false);
    if (missing.length === 0 && previous?.state === 'provisioned' && previous.specKey === key) {
      return { state: 'succeeded', message: `unchanged: ${pieces.length} pieces all there (${g.method}, ${previous.guestMountpoint || previous.volume || ''})` };
    }
    repairing = missing.length > 0 ? `missing ${missing.map((p) => p.what).join(', ')}` : 'its set-up had not finished';
  }
  // Intent first: the record says which agents hold the guest's pieces before any is made.
  if (!previous || previous.state !== 'provisioned') await records.set(g.name, { ...fresh, ...(previous ? { state: previous.state } : {}) });
  let provisioned;
  try {
    provisioned = await provisionMethod(g.method, methodTarget(plan, g, set), k.signal, (pending) => journal.set(g.name, merged(before, pending)), { keepOnFailure: before.length > 0 });
  } catch (err) {
    // A first set-up that failed has undone its own steps: the guest holds nothing.
    if (!previous && (journal.pending()[g.name] ?? []).length === 0) await records.set(g.name, undefined);
    throw err;
  }
  const done: GuestRecord = {
    ...fresh,
    state: 'provisioned',
    ...(provisioned.volume ? { volume: provisioned.volume } : {}),
    ...(provisioned.image?.path ? { image: provisioned.image.path } : {}),
    guestDevice: provisioned.guestDevice,
    guestMountpoint: provisioned.guestMountpoint,
    provisionedUnixMs: previous?.provisionedUnixMs ?? Date.now(),
  };
  const record = await records.set(g.name, done);
  const steps = provisioned.setup.map((s) => `${s.step} ${s.ms} ms`).join(', ');
  return { state: 'succeeded', message: repairing ? `repaired (${repairing}): ${steps}` : `provisioned: ${steps}`, ...(record ? { record } : {}) };
}

/** The agents that hold a journal group's pieces: its record's, else the plan's guest of that name. */
function groupAddresses(group: string, records: Records, plan: ClusterPlan): Record<AgentRole, string> | undefined {
  const r = records.get(group);
  if (r) return addressesOf(r);
  const g = clusterGuests(plan).find((x) => x.name === group);
  return g ? { storage: g.storage.address, dom0: g.dom0.address, guest: g.address } : undefined;
}

/**
 * Undo every guest the journal holds: each guest's steps in reverse (stopping at its
 * first failure, which stays journaled with the steps below it), up to the plan's
 * concurrency; a guest whose steps are all undone loses its record. Idempotent: a
 * journal with nothing left does nothing.
 */
export async function undoCluster(
  plan: ClusterPlan,
  journal: UndoJournal,
  agents: ClusterAgents,
  onGuest: (guest: string, state: 'started' | 'succeeded' | 'failed', message: string) => Promise<unknown> = async () => undefined,
): Promise<CleanupReport> {
  const report: CleanupReport = { removed: [], leftBehind: [] };
  const records = await Records.load(journal.store, journal.runId);
  const groups = Object.keys(journal.pending());
  const timeoutMs = plan.cluster.stepTimeoutS * 1000;
  await runLimited(groups, plan.cluster.concurrency, (group) => Object.values(groupAddresses(group, records, plan) ?? {}), async (group) => {
    const at = groupAddresses(group, records, plan);
    await onGuest(group, 'started', '');
    if (!at) {
      report.leftBehind.push(`${group}: no agents known for it (no record, not in the plan)`);
      await onGuest(group, 'failed', 'no agents known for it');
      return;
    }
    try {
      const timings = await runUndoSteps(journal.pending()[group] ?? [], agentSet(agents, at), timeoutMs, journal.of(group));
      report.removed.push(...timings.map((t) => `${group}: ${t.step}`));
      await records.set(group, undefined);
      await onGuest(group, 'succeeded', timings.map((t) => `${t.step} ${t.ms} ms`).join(', '));
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      report.leftBehind.push(`${group}: ${why}`);
      await onGuest(group, 'failed', why);
    }
  });
  // Records of guests with nothing journaled hold nothing.
  for (const m of [...records.list]) if (!(m.guest in journal.pending())) await records.set(m.guest, undefined);
  await journal.settled();
  return report;
}

/**
 * Tear a cluster down (`vcstor teardown RUN`): every guest's journal replayed in
 * reverse, each guest an event. Idempotent: a second teardown succeeds doing nothing.
 * @throws only when the run store cannot be written.
 */
export async function teardownCluster(plan: ClusterPlan, context: RunContext, agents?: ClusterAgents): Promise<RunRecord> {
  const { run, store, events, journal } = context;
  const step: StepEmitter = (stepId, state, message = '', extra = {}) => events.emit({ stepId, state, message, ...extra });
  const reach = agents ?? (await grpcClusterAgents(plan));
  const groups = Object.keys(journal.pending());
  run.state = 'running';
  run.stepsTotal = groups.length;
  await store.saveRun(run);
  try {
    await step('teardown', 'started', groups.length === 0 ? 'nothing is provisioned' : `${groups.length} guests: ${groups.join(', ')}`);
    const { leftBehind } = await undoCluster(plan, journal, reach, async (guest, state, message) => {
      await step(`teardown/${guest}`, state, message);
      if (state !== 'started') {
        if (state === 'succeeded') run.stepsSucceeded++;
        else run.stepsFailed++;
        await store.saveRun(run);
      }
    });
    run.state = leftBehind.length === 0 ? 'succeeded' : 'failed';
    if (leftBehind.length > 0) run.error = `left behind: ${leftBehind.join('; ')}`;
  } catch (err) {
    run.state = 'failed';
    run.error = err instanceof Error ? err.message : String(err);
  } finally {
    if (!agents) reach.close();
  }
  return finishRun(run, store, step);
}

/** What `vcstor status` says of one guest. */
export interface GuestStatus {
  guest: string;
  /** provisioned, provisioning (set-up unfinished), or not-provisioned. */
  state: GuestRecord['state'] | 'not-provisioned';
  method?: string;
  dom0?: string;
  storage?: string;
  volume?: string;
  image?: string;
  guestDevice?: string;
  guestMountpoint?: string;
  /** In the plan the run was last given (false: kept from an earlier plan). */
  inPlan: boolean;
  /** Each piece, where it comes from (its undo step) and whether it is still there. */
  pieces: Piece[];
  /** Every piece is there (and the set-up finished). */
  intact: boolean;
}

/**
 * What each guest of a cluster run has, from its records and journal, each piece asked of
 * its agent (List calls only). Read-only.
 */
export async function clusterStatus(plan: ClusterPlan, store: RunStore, runId: string, agents?: ClusterAgents): Promise<GuestStatus[]> {
  const reach = agents ?? (await grpcClusterAgents(plan));
  try {
    const records = await Records.load(store, runId);
    const journal = await store.undo(runId);
    const planned = clusterGuests(plan).map((g) => g.name);
    const names = [...new Set([...planned, ...records.list.map((m) => m.guest), ...Object.keys(journal)])];
    const lists = new AgentLists(10_000);
    return await Promise.all(
      names.map(async (name): Promise<GuestStatus> => {
        const r = records.get(name);
        const steps = journal[name] ?? [];
        const at = groupAddresses(name, records, plan);
        const pieces = at && steps.length > 0 ? await checkPieces(steps, agentSet(reach, at), at, lists) : [];
        return {
          guest: name,
          state: r?.state ?? (steps.length > 0 ? 'provisioning' : 'not-provisioned'),
          ...(r ? { method: r.method, dom0: r.dom0.name, storage: r.storage.name } : {}),
          ...(r?.volume ? { volume: r.volume } : {}),
          ...(r?.image ? { image: r.image } : {}),
          ...(r?.guestDevice ? { guestDevice: r.guestDevice } : {}),
          ...(r?.guestMountpoint ? { guestMountpoint: r.guestMountpoint } : {}),
          inPlan: planned.includes(name),
          pieces,
          intact: r?.state === 'provisioned' && pieces.length > 0 && pieces.every((p) => p.present === true),
        };
      }),
    );
  } finally {
    if (!agents) reach.close();
  }
}

/** A plain-text table of a cluster run's guests (`vcstor results`). */
export function clusterTable(run: RunRecord, measurements: MeasurementRecord[]): string {
  const rows = measurements.flatMap((m) => {
    const r = recordOf(m);
    return r ? [[m.guest, r.method, r.dom0.name, r.storage.name, r.state, r.volume ?? '-', r.guestDevice || '-', r.guestMountpoint || '-']] : [];
  });
  const head = ['guest', 'method', 'dom0', 'storage', 'state', 'volume', 'device', 'mountpoint'];
  const all = [head, ...rows];
  const widths = head.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  const lines = all.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd());
  return [`cluster ${run.planName} (run ${run.runId}, last ${run.kind} ${run.state}): ${rows.length} guests provisioned`, ...(rows.length > 0 ? lines : [])].join('\n');
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

/** The cluster kind: a plan with a `cluster` section; its runs are provisions (and teardowns, on demand). */
export const clusterKind: RunKind<ClusterPlan> = {
  kind: 'provision',
  claims: (value) => typeof value === 'object' && value !== null && 'cluster' in value,
  parse: validateClusterPlan,
  describe: (plan) => `cluster of ${clusterGuests(plan).length} guests on ${plan.cluster.dom0.length} dom0 hosts`,
  runId: (plan) => clusterRunId(plan.name),
  execute: (plan, context) => executeCluster(plan, context),
  teardown: (plan, context) => teardownCluster(plan, context),
  cleanup: async (plan, journal) => {
    const agents = await grpcClusterAgents(plan);
    try {
      return await undoCluster(plan, journal, agents);
    } finally {
      agents.close();
    }
  },
  report: {
    table: (run, measurements) => clusterTable(run, measurements),
    html: (run, measurements) => `<!doctype html><meta charset="utf-8"><title>${escapeHtml(run.planName)}</title><pre>${escapeHtml(clusterTable(run, measurements))}</pre>\n`,
  },
};
