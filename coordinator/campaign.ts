import type { Logger } from '../common/log.js';
import { iscsiSessionParamsToProto } from '../common/iscsi-params.js';
import { askAgents } from './agents.js';
import { benchmarkRequests, FILESYSTEM_BENCHMARKS, measureBenchmark, sparseDiskBenchmark, type CampaignBenchmark } from './campaign-benchmarks.js';
import { describeSetup, planAgents, provisioningName, recordDataPath } from './campaign-setup.js';
import type { CleanupReport, UndoJournal } from './journal.js';
import { benchmarkRole, METHOD_SPECS, provisionMethod, unavailableMethods, type AgentSet, type BaselineName, type MethodName, type MethodTarget, type ProvisionedMethod } from './methods.js';
import type { MeasurementRecord, RunRecord, RunSetup } from './model.js';
import { validateCampaignPlan, type CampaignPlan } from './plan.js';
import { renderReport, resultsTable } from './report/index.js';
import type { RunContext, RunKind } from './run-kind.js';
import { finishRun, type RunEvents, type StepEmitter } from './run-events.js';
import type { RunStore } from './store.js';

export { iscsiSessionRow, linkRateOf } from './campaign-setup.js';
export { unavailableMethods } from './methods.js';

/**
 * A campaign (the paper's measurements): for each repetition, dom0's baselines and then
 * every method of the plan set up through the agents, every benchmark run on what it
 * set up, and taken down again.
 */

/** A campaign's plan as parsed: validated, with the CHAP password read. */
export type ResolvedPlan = CampaignPlan;

/** What one campaign run works with. */
interface Campaign {
  run: RunRecord;
  plan: CampaignPlan;
  store: RunStore;
  journal: UndoJournal;
  signal: AbortSignal;
  agents: AgentSet;
  measurements: MeasurementRecord[];
  /** Methods this deployment cannot run (a driver not available), with why. */
  skipReasons: Map<string, string>;
  /** Table 1 and 2 of the run (setup.json): the agents' words, then each method's data path as set up. */
  setup: RunSetup | undefined;
  step: StepEmitter;
  count(ok: boolean): Promise<void>;
}

/** The benchmarks `method` runs: a dom0 baseline runs a filesystem's, not the image tests. */
function benchmarksOf(method: MethodName | BaselineName, benchmarks: CampaignBenchmark[]): CampaignBenchmark[] {
  return METHOD_SPECS[method].imageBenchmarks ? benchmarks : benchmarks.filter((b) => FILESYSTEM_BENCHMARKS.includes(b.name));
}

/** The methods the section 4.3 test runs on: a file method also runs it over the other provisioning. */
function sparseDiskMethods(plan: CampaignPlan): MethodName[] {
  return plan.campaign.benchmarks.sparseDisk ? plan.campaign.methods.filter((m) => METHOD_SPECS[m].imageDisk) : [];
}

/**
 * Run a campaign: for each repetition and method, set the method up through the agents,
 * run every benchmark on the guest's filesystem, tear it down — also when a step fails
 * (recorded with why) or the run is cancelled. Everything provisioned is journaled first,
 * so `cleanupCampaign` can remove it after a crash.
 * @throws only when the run store cannot be written.
 */
export async function executeCampaign(o: { run: RunRecord; plan: CampaignPlan; store: RunStore; events: RunEvents; journal: UndoJournal; log: Logger; signal: AbortSignal }): Promise<RunRecord> {
  const { run, plan, store, events, signal } = o;
  const c = plan.campaign;
  const benchmarks = benchmarkRequests(plan);
  const agents = await planAgents(plan);
  const step: StepEmitter = (stepId, state, message = '', extra = {}) => events.emit({ stepId, state, message, ...extra });
  const campaign: Campaign = {
    run,
    plan,
    store,
    journal: o.journal,
    signal,
    agents,
    measurements: [],
    skipReasons: new Map(),
    setup: undefined,
    step,
    count: async (ok) => {
      if (ok) run.stepsSucceeded++;
      else run.stepsFailed++;
      await store.saveRun(run);
    },
  };
  const withSparseDisk = sparseDiskMethods(plan);
  run.state = 'running';
  run.stepsTotal = c.repetitions * ([...c.baselines, ...c.methods].reduce((n, m) => n + benchmarksOf(m, benchmarks).length + 2, 0) + withSparseDisk.length * (1 + 3));
  await store.saveRun(run);
  try {
    // Every agent must answer before anything is provisioned.
    const infos = await askAgents((['storage', 'dom0', 'guest'] as const).map((role) => [role, plan.agents[role].address] as const), agents.credentials);
    campaign.skipReasons = unavailableMethods(infos);
    campaign.setup = await describeSetup(plan, agents, infos);
    await store.saveSetup(run.runId, campaign.setup);
    const baselinesText = c.baselines.length > 0 ? ` (and ${c.baselines.length} dom0 baselines)` : '';
    await step('run', 'started', `${c.methods.length} methods${baselinesText} x ${c.repetitions} repetitions x ${benchmarks.length} benchmarks`);
    for (let rep = 1; rep <= c.repetitions && !signal.aborted; rep++) {
      // The ceilings first: what dom0 itself gets from each kind of storage.
      for (const baseline of c.baselines) {
        if (signal.aborted) break;
        await runOne(campaign, baseline, rep, { sparse: c.sparse, benchmarks: benchmarksOf(baseline, benchmarks), suffix: '' });
      }
      for (const method of c.methods) {
        if (signal.aborted) break;
        const sparseDisk = withSparseDisk.includes(method);
        await runOne(campaign, method, rep, { sparse: c.sparse, benchmarks: sparseDisk ? [...benchmarks, sparseDiskBenchmark(plan, c.sparse)!] : benchmarks, suffix: '' });
        if (sparseDisk && !signal.aborted) {
          await runOne(campaign, method, rep, { sparse: !c.sparse, benchmarks: [sparseDiskBenchmark(plan, !c.sparse)!], suffix: `/${provisioningName(!c.sparse)}` });
        }
      }
    }
    run.state = signal.aborted ? 'cancelled' : run.stepsFailed > 0 ? 'failed' : 'succeeded';
    if (signal.aborted) run.error = 'cancelled';
  } catch (err) {
    run.state = 'failed';
    run.error = err instanceof Error ? err.message : String(err);
  } finally {
    agents.close();
    await o.journal.settled();
  }
  return finishRun(run, store, step);
}

/** Where `method` is set up in repetition `rep`: the plan's agents and names. */
function methodTarget(k: Campaign, rep: number, variant: { sparse: boolean; suffix: string }): MethodTarget {
  const { plan, agents } = k;
  const c = plan.campaign;
  return {
    ...agents,
    storageHost: plan.agents.storage.host,
    dom0InitiatorIqn: plan.agents.dom0.initiatorIqn,
    guestInitiatorIqn: plan.agents.guest.initiatorIqn,
    nfsClients: plan.nfsClients,
    nfsMountOptions: c.nfsMountOptions,
    ...(c.iscsi ? { iscsiSessionParams: iscsiSessionParamsToProto(c.iscsi) } : {}),
    dom0ImageDir: plan.agents.dom0.imageDir,
    dom0MountDir: plan.agents.dom0.mountDir,
    guestMountDir: plan.agents.guest.mountDir,
    domain: plan.agents.guest.domain,
    prefix: `${k.run.runId.slice(-6)}-${rep}${variant.suffix ? (variant.sparse ? 's' : 'z') : ''}`,
    sizeBytes: c.volumeSize,
    sparse: variant.sparse,
    chap: { username: plan.chap.username, password: plan.chapPassword },
    timeoutMs: c.stepTimeoutS * 1000,
  };
}

/** One method set up (sparse or zero-filled), its benchmarks run, torn down. */
async function runOne(k: Campaign, method: MethodName | BaselineName, rep: number, variant: { sparse: boolean; benchmarks: CampaignBenchmark[]; suffix: string }): Promise<void> {
  const { run, store, step, count, signal, measurements } = k;
  const benchmarks = variant.benchmarks;
  const key = `${method}/rep${rep}${variant.suffix}`;
  const target = methodTarget(k, rep, variant);
  /** The measurement's host: the guest's domain, or "dom0" for a baseline. */
  const host = benchmarkRole(method) === 'dom0' ? 'dom0' : k.plan.agents.guest.domain;
  const measurement = (benchmark: string, error: string): MeasurementRecord => ({ runId: run.runId, method, benchmark, repetition: rep, guest: host, error });
  const skip = k.skipReasons.get(method);
  if (skip) {
    for (const name of ['setup', ...benchmarks.map((b) => b.name), 'teardown']) {
      const m = name === 'setup' || name === 'teardown' ? undefined : measurement(name, `skipped: ${skip}`);
      if (m) measurements.push(m);
      await step(`${key}/${name}`, 'skipped', skip, m ? { measurement: m } : {});
    }
    run.stepsTotal -= benchmarks.length + 2;
    await store.saveMeasurements(run.runId, measurements);
    await store.saveRun(run);
    return;
  }
  await step(`${key}/setup`, 'started');
  let provisioned: ProvisionedMethod;
  try {
    provisioned = await provisionMethod(method, target, signal, k.journal.of(key));
    if (k.setup && recordDataPath(k.setup, method, provisioned)) await store.saveSetup(run.runId, k.setup);
    await step(`${key}/setup`, 'succeeded', provisioned.setup.map((s) => `${s.step} ${s.ms} ms`).join(', '));
    await count(true);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    await step(`${key}/setup`, 'failed', why);
    await count(false);
    for (const b of benchmarks) {
      const m = measurement(b.name, `setup failed: ${why}`);
      measurements.push(m);
      await step(`${key}/${b.name}`, 'skipped', m.error, { measurement: m });
      await count(false);
    }
    await store.saveMeasurements(run.runId, measurements);
    await step(`${key}/teardown`, 'skipped', 'nothing was left to tear down');
    await count(true);
    return;
  }
  for (const b of benchmarks) {
    const stepId = `${key}/${b.name}`;
    const m = measurement(b.name, '');
    if (signal.aborted) break;
    await step(stepId, 'started');
    try {
      const { result, accounting } = await measureBenchmark({ agents: k.agents, provisioned, benchmark: b, label: `${method} rep ${rep}`, stepId, step, timeoutMs: target.timeoutMs, signal });
      m.result = result;
      if (accounting) m.accounting = accounting;
      measurements.push(m);
      await store.saveMeasurements(run.runId, measurements);
      await step(stepId, 'succeeded', '', { measurement: m });
      await count(true);
    } catch (err) {
      m.error = err instanceof Error ? err.message : String(err);
      measurements.push(m);
      await store.saveMeasurements(run.runId, measurements);
      await step(stepId, signal.aborted ? 'cancelled' : 'failed', m.error, { measurement: m });
      await count(false);
    }
  }
  await step(`${key}/teardown`, 'started');
  try {
    const timings = await provisioned.teardown();
    await step(`${key}/teardown`, 'succeeded', timings.map((s) => `${s.step} ${s.ms} ms`).join(', '));
    await count(true);
  } catch (err) {
    await step(`${key}/teardown`, 'failed', `${err instanceof Error ? err.message : String(err)}; run vcstor cleanup ${run.runId}`);
    await count(false);
  }
}

/**
 * Tear down whatever a run provisioned and did not remove (after a crash or kill): the
 * journaled undo steps, replayed in reverse, one setup after the other. Idempotent.
 */
export async function cleanupCampaign(plan: CampaignPlan, journal: UndoJournal): Promise<CleanupReport> {
  const agents = await planAgents(plan);
  try {
    return await journal.replay(agents, { timeoutMs: 120_000 });
  } finally {
    agents.close();
  }
}

/** The campaign as a kind of run: any plan without another kind's section. */
export const campaignKind: RunKind<CampaignPlan> = {
  kind: 'campaign',
  claims: () => true,
  parse: validateCampaignPlan,
  describe: (plan) => `${plan.campaign.methods.length} methods x ${plan.campaign.repetitions} repetitions`,
  execute: (plan, context: RunContext) => executeCampaign({ ...context, plan }),
  cleanup: cleanupCampaign,
  report: {
    table: (run, measurements, setup) => resultsTable(run, measurements, setup),
    html: (run, measurements, setup) => renderReport(run, measurements, setup ? { setup } : {}),
  },
};
