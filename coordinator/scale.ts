import { setMaxListeners } from 'node:events';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../common/log.js';
import { askAgents } from './agents.js';
import type { CleanupReport, UndoJournal } from './journal.js';
import type { MeasurementRecord, RunRecord } from './model.js';
import type { RunContext, RunKind } from './run-kind.js';
import { finishRun, type RunEvents, type StepEmitter } from './run-events.js';
import { renderScaleReport, scaleResultsTable } from './report/index.js';
import { controlPlane } from './scale-control-plane.js';
import { findKnee, type ScaleStepResult } from './scale-figures.js';
import { validateScalePlan, type ScalePlan } from './scale-plan.js';
import { deleteVolume, errorText, exportVolume, scaleAgents, unexportIscsi, volumeGroup, type ScaleAgents, type ScaleRun } from './scale-run.js';
import { runStep } from './scale-step.js';
import type { RunStore } from './store.js';

export { findKnee, samplePercentile, slope, stageHistogram, type Knee, type ScaleStepResult, type StageHistogram } from './scale-figures.js';

/**
 * The scale test (paper section 5): one target, a ramp of initiator counts spread over
 * the plan's dom0/guest agents. Per step every initiator logs in at once (a login storm,
 * each its own IQN: the agents' load sessions), the target is asked whom it lists, every
 * initiator runs the same fio job, all log out, and the target must list none of them.
 * Each step's figures are a measurement (`scale-step`) of the run; the knee — the count
 * beyond which aggregate throughput stops growing or p99 latency passes the threshold —
 * is one more (`scale-knee`). Optionally the control plane is measured the same way:
 * N volumes, exports and logins at once, with a latency histogram per stage.
 */

/**
 * Run a scale plan: set up the target, run every step of the ramp, then the control plane
 * if the plan asks, and take everything down — also after a failure or a cancel. Every
 * volume, export and load set is journaled before it is made, so `cleanupScale` removes
 * what a killed coordinator left.
 * @throws only when the run store cannot be written.
 */
export async function executeScale(o: { run: RunRecord; plan: ScalePlan; store: RunStore; events: RunEvents; journal: UndoJournal; log: Logger; signal: AbortSignal }): Promise<RunRecord> {
  const { run, plan, store, signal } = o;
  // Every call of a step (up to one per volume, 32 at once) listens on the run's signal.
  setMaxListeners(4096, signal);
  const s = plan.scale;
  const step: StepEmitter = (stepId, state, message = '', extra = {}) => o.events.emit({ stepId, state, message, ...extra });
  const k: ScaleRun = {
    run,
    plan,
    store,
    journal: o.journal,
    signal,
    agents: await scaleAgents(plan),
    T: { timeoutMs: s.stepTimeoutS * 1000, signal },
    short: run.runId.slice(-6),
    chap: { username: plan.chap.username, password: plan.chapPassword },
    step,
    measurements: [],
  };
  run.state = 'running';
  run.stepsTotal = plan.counts.length + 1 + (s.controlPlane ? 1 : 0);
  await store.saveRun(run);
  try {
    await askAgents([['storage', plan.agents.storage.address] as const, ...plan.agents.initiators.map((a) => [a.name, a.address] as const)], k.agents.credentials);
    await step('run', 'started', `${plan.counts.length} steps (${plan.counts.join(', ')} initiators) over ${k.agents.initiators.length} agents, ${s.luns} LUN(s)${s.controlPlane ? `, control plane ${s.controlPlane.volumes} volumes` : ''}`);
    const targets = await setUpTargets(k);
    const steps = await runRamp(k, targets);
    await recordKnee(k, steps);
    if (s.controlPlane && !signal.aborted) {
      const cp = await controlPlane(k, s.controlPlane);
      await record(k, measurement(k, 'control-plane', s.controlPlane.volumes, cp.result, cp.errors.join('; ')), 'control-plane', cp.errors.length === 0, cp.summary);
    }
    run.state = signal.aborted ? 'cancelled' : run.stepsFailed > 0 ? 'failed' : 'succeeded';
    if (signal.aborted) run.error = 'cancelled';
  } catch (err) {
    run.state = signal.aborted ? 'cancelled' : 'failed';
    run.error = errorText(err);
  } finally {
    await tearDown(k);
  }
  return finishRun(run, store, step);
}

/** The plan's LUNs: volumes created and exported, each journaled first; their targets. */
async function setUpTargets(k: ScaleRun): Promise<Array<{ portal: string; iqn: string; lun: number }>> {
  const s = k.plan.scale;
  await k.step('setup', 'started');
  const targets: Array<{ portal: string; iqn: string; lun: number }> = [];
  for (let i = 0; i < s.luns; i++) targets.push(await exportVolume(k, `sc-${k.short}-l${i}`, s.volumeSize, s.sparse));
  await k.step('setup', 'succeeded', `${targets.length} volume(s) exported: ${targets.map((t) => t.iqn).join(', ')}`);
  return targets;
}

/** Every step of the ramp, each recorded as a `scale-step` measurement, until cancelled. */
async function runRamp(k: ScaleRun, targets: Array<{ portal: string; iqn: string; lun: number }>): Promise<ScaleStepResult[]> {
  const results: ScaleStepResult[] = [];
  for (const count of k.plan.counts) {
    if (k.signal.aborted) break;
    const stepId = `scale/${count}`;
    const r = await runStep(k, targets, count, stepId);
    results.push(r);
    await record(
      k,
      measurement(k, 'scale-step', count, r as unknown as Record<string, unknown>, r.errors.join('; ')),
      stepId,
      r.errors.length === 0,
      `${r.loggedIn}/${count} logged in (target listed ${r.targetSessions}), ${(r.bytesPerSecond / 1e6).toFixed(1)} MB/s, ${r.iops.toFixed(0)} IOPS, p99 ${r.p99Ms.toFixed(2)} ms, login p99 ${r.loginP99Ms.toFixed(0)} ms`,
    );
  }
  return results;
}

/** The knee of the ramp's steps with logins, as a `scale-knee` measurement. */
async function recordKnee(k: ScaleRun, steps: ScaleStepResult[]): Promise<void> {
  const rule = k.plan.scale.knee;
  const knee = findKnee(
    steps.filter((r) => r.loggedIn > 0),
    rule,
  );
  await record(k, measurement(k, 'scale-knee', 0, { knee, rule, counts: steps.map((r) => r.count) }, ''), 'knee', true, `knee at ${knee.count} initiators${knee.reached ? '' : ' (not reached)'}: ${knee.reason}`);
}

/** Undo all the journal holds (a failure makes a succeeded run failed), and close the agents. */
async function tearDown(k: ScaleRun): Promise<void> {
  const { run, step } = k;
  await step('teardown', 'started');
  const { leftBehind: left } = await undoAll(k.agents, k.journal);
  await step('teardown', left.length === 0 ? 'succeeded' : 'failed', left.length === 0 ? 'nothing left' : `left behind: ${left.join('; ')}; run vcstor cleanup ${run.runId}`);
  if (left.length > 0 && run.state === 'succeeded') {
    run.state = 'failed';
    run.error = `teardown left ${left.length} behind`;
  }
  k.agents.close();
}

function measurement(k: ScaleRun, benchmark: string, repetition: number, result: Record<string, unknown>, error: string): MeasurementRecord {
  return { runId: k.run.runId, method: 'scale', benchmark, repetition, guest: k.agents.initiators.map((a) => a.name).join(','), result, error };
}

/** Keep a measurement, count its step, and say so. */
async function record(k: ScaleRun, m: MeasurementRecord, stepId: string, ok: boolean, message: string): Promise<void> {
  const { run, store } = k;
  k.measurements.push(m);
  await store.saveMeasurements(run.runId, k.measurements);
  if (ok) run.stepsSucceeded++;
  else run.stepsFailed++;
  await store.saveRun(run);
  await k.step(stepId, ok ? 'succeeded' : k.signal.aborted ? 'cancelled' : 'failed', message, { measurement: m });
}

/** Undo every journaled group, 16 at once: every load set first (they rest on the exports), then each volume's export and the volume. */
function undoAll(agents: ScaleAgents, journal: UndoJournal): Promise<CleanupReport> {
  const loadSetsFirst = (groups: string[]) => [groups.filter((g) => g.startsWith('load-set ')), groups.filter((g) => !g.startsWith('load-set '))];
  return journal.replay(agents.undoTarget, { timeoutMs: 120_000, concurrency: 16, phases: loadSetsFirst });
}

/**
 * What a scale run of an earlier release journaled (scale-undo.json), moved into the
 * run's undo journal so that cleanup finds it.
 */
async function adoptOldJournal(journal: UndoJournal, plan: ScalePlan): Promise<void> {
  const file = path.join(journal.store.dir(journal.runId), 'scale-undo.json');
  const text = await readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined) return;
  for (const e of JSON.parse(text) as Array<{ kind: 'volume' | 'export' | 'load-set'; name: string; agent?: number }>) {
    if (e.kind === 'volume') await journal.add(volumeGroup(e.name), deleteVolume(e.name));
    else if (e.kind === 'export') await journal.add(volumeGroup(e.name), unexportIscsi(e.name));
    else await journal.add(`load-set ${e.name} (${e.agent ?? -1})`, { step: 'stop load sessions', agent: plan.agents.initiators[e.agent ?? -1]?.role ?? 'guest', agentIndex: e.agent ?? -1, rpc: 'StopLoadSessions', request: { setId: e.name } });
  }
  await rm(file, { force: true });
}

/**
 * Remove what a killed scale run left (its journal, replayed). Idempotent.
 */
export async function cleanupScale(plan: ScalePlan, journal: UndoJournal): Promise<CleanupReport> {
  await adoptOldJournal(journal, plan);
  const agents = await scaleAgents(plan);
  try {
    return await undoAll(agents, journal);
  } finally {
    agents.close();
  }
}

/** The scale test as a kind of run: a plan with a `scale` section. */
export const scaleKind: RunKind<ScalePlan> = {
  kind: 'scale',
  claims: (value) => typeof value === 'object' && value !== null && 'scale' in value,
  parse: validateScalePlan,
  describe: (plan) => `scale test, ${plan.counts.join(', ')} initiators`,
  execute: (plan, context: RunContext) => executeScale({ ...context, plan }),
  cleanup: cleanupScale,
  report: {
    table: (run, measurements) => scaleResultsTable(run, measurements),
    html: (run, measurements) => renderScaleReport(run, measurements),
  },
};
