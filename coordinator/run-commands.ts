import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { VcstorError } from '../common/errors.js';
import { createLogger } from '../common/log.js';
import { Coordinator } from './coordinator.js';
import { natsOptionsFromSettings, RunEventBus } from './events.js';
import type { Logger } from '../common/log.js';
import { clusterStatus } from './cluster.js';
import { clusterRunId, type ClusterPlan } from './cluster-plan.js';
import type { PlanKind, RunEventRecord } from './model.js';
import type { ParsedPlan } from './run-kind.js';
import { resultsCsv } from './report/index.js';
import type { EventPublisher } from './run-events.js';
import { parsePlanText, reportOf } from './run-kinds.js';

/** Where runs are kept when no --runs-dir is given. */
export const DEFAULT_RUNS_DIR = '/var/lib/vcstor/runs';

function clock(ms: number): string {
  return new Date(ms).toISOString().slice(11, 19);
}

/** One line for people per event; progress lines say phase, percent and elapsed time. */
export function describeEvent(e: RunEventRecord): string {
  if (e.state === 'progress' && e.progress) {
    const p = e.progress;
    const percent = p.percent >= 0 ? `${p.percent.toFixed(0).padStart(3)}%` : '   …';
    return `${clock(e.timeUnixMs)} ${e.stepId.padEnd(34)} ${percent} ${p.phase} ${(p.elapsedMs / 1000).toFixed(1)} s`;
  }
  const mark = { started: '…', succeeded: 'ok', failed: 'FAILED', skipped: 'skipped', cancelled: 'cancelled', progress: '' }[e.state];
  return `${clock(e.timeUnixMs)} ${e.stepId.padEnd(34)} ${mark}${e.message ? `  ${e.message}` : ''}`;
}

/** The plan's NATS publisher, when it names a server. */
async function planPublisher(plan: ParsedPlan['header'], source: string, name: string, log: Logger): Promise<(EventPublisher & { close(): Promise<void> }) | undefined> {
  return plan.nats ? RunEventBus.connect({ ...(await natsOptionsFromSettings(plan.nats, source)), name, log }) : undefined;
}

/**
 * `vcstor run PLAN` (and `vcstor provision PLAN`, which takes cluster plans only): run a
 * plan in this process, printing every step as it happens; publishes on NATS too when
 * the plan names a server. Exit code 0 only if it succeeded.
 */
export async function runPlanCommand(planFile: string, runsDir: string, withReport: boolean, only?: PlanKind): Promise<number> {
  const text = await readFile(planFile, 'utf8').catch((err: unknown) => {
    throw new VcstorError('NOT_FOUND', `cannot read plan ${planFile}: ${(err as Error).message}`);
  });
  // Read once: the coordinator runs this very plan.
  const parsed = await parsePlanText(text, planFile);
  if (only && parsed.kind !== only) throw new VcstorError('INVALID_ARGUMENT', `${planFile}: a ${parsed.kind} plan; vcstor provision takes a plan with a cluster: section (vcstor run takes any)`);
  const plan = parsed.header;
  const log = createLogger({ name: 'coordinator', level: process.env.VCSTOR_LOG_LEVEL ?? 'warn' });
  const publisher = await planPublisher(plan, planFile, 'vcstor run', log);
  const coordinator = new Coordinator({ runsDir, log, ...(publisher ? { publisher } : {}) });
  const started = Date.now();
  const { run, afterSeq } = await coordinator.submit(parsed);
  console.log(`run ${run.runId}: ${plan.name}, ${parsed.description}${afterSeq > 0 ? ` (again: converging on what run ${run.runId} has)` : ''}${plan.nats ? ` (events on ${plan.nats.url}, vcstor.run.${run.runId}.>)` : ''}`);
  const stop = () => void coordinator.cancel(run.runId);
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  for await (const event of coordinator.watch(run.runId, afterSeq)) console.log(describeEvent(event));
  const final = await coordinator.wait(run.runId);
  await publisher?.close();
  const { measurements, setup } = await coordinator.results(run.runId);
  const report = reportOf(final.kind);
  console.log(`\n${report.table(final, measurements, setup)}`);
  console.log(`run ${final.runId} ${final.state} in ${((Date.now() - started) / 1000).toFixed(1)} s; results in ${coordinator.store.dir(final.runId)}`);
  if (withReport) {
    const file = path.join(coordinator.store.dir(final.runId), 'report.html');
    await writeFile(file, report.html(final, measurements, setup));
    console.log(`report: ${file}`);
  }
  return final.state === 'succeeded' ? 0 : 1;
}

/** A run id as given, or a cluster plan's name (its run is `cl-<name>`). */
async function findRun(coordinator: Coordinator, given: string): Promise<string> {
  if (await coordinator.store.run(given).then(() => true, () => false)) return given;
  const byName = clusterRunId(given);
  if (await coordinator.store.run(byName).then(() => true, () => false)) return byName;
  throw new VcstorError('NOT_FOUND', `no run ${given} in ${coordinator.store.root} (see vcstor runs)`);
}

/**
 * `vcstor teardown RUN`: take down what a cluster run provisioned, its journal replayed
 * per guest, with live progress (and on NATS when its plan names a server). Idempotent.
 * Exit code 0 only if nothing is left.
 */
export async function teardownCommand(given: string, runsDir: string): Promise<number> {
  const log = createLogger({ name: 'coordinator', level: process.env.VCSTOR_LOG_LEVEL ?? 'warn' });
  // Found first, to read its plan's NATS; then run by a coordinator that publishes there.
  const probe = new Coordinator({ runsDir, log });
  const runId = await findRun(probe, given);
  const parsed = await parsePlanText(await probe.store.planText(runId), `plan of ${runId}`);
  const publisher = await planPublisher(parsed.header, `plan of ${runId}`, 'vcstor teardown', log);
  const coordinator = new Coordinator({ runsDir, log, ...(publisher ? { publisher } : {}) });
  try {
    const { afterSeq } = await coordinator.teardown(runId);
    for await (const event of coordinator.watch(runId, afterSeq)) console.log(describeEvent(event));
    const final = await coordinator.wait(runId);
    console.log(final.state === 'succeeded' ? `run ${runId}: torn down, nothing left provisioned` : `run ${runId}: teardown ${final.state}: ${final.error}; run vcstor teardown ${runId} again once the agents are back`);
    return final.state === 'succeeded' ? 0 : 1;
  } finally {
    await publisher?.close();
  }
}

/**
 * `vcstor status RUN [--json]`: what each guest of a cluster run has (from its records
 * and journal) and whether each piece is still there (the agents' List calls). Read-only.
 * Exit code 0 when every provisioned guest is intact.
 */
export async function statusCommand(given: string, runsDir: string, json: boolean): Promise<number> {
  const coordinator = new Coordinator({ runsDir, log: createLogger({ name: 'coordinator', level: 'warn' }) });
  const runId = await findRun(coordinator, given);
  const run = await coordinator.get(runId);
  const parsed = await parsePlanText(await coordinator.store.planText(runId), `plan of ${runId}`);
  if (parsed.kind !== 'provision') throw new VcstorError('FAILED_PRECONDITION', `run ${runId} is a ${run.kind} run: vcstor status is for cluster runs (vcstor results shows the others)`);
  const guests = await clusterStatus(parsed.header as ClusterPlan, coordinator.store, runId);
  const ok = guests.every((g) => g.state === 'not-provisioned' || g.intact);
  if (json) {
    console.log(JSON.stringify({ run, guests }, null, 2));
    return ok ? 0 : 1;
  }
  console.log(`cluster ${run.planName}, run ${runId}: last ${run.kind} ${run.state}${run.finishedUnixMs ? ` at ${new Date(run.finishedUnixMs).toISOString()}` : ''}`);
  for (const g of guests) {
    const where = g.method ? ` ${g.method} on ${g.dom0}, from ${g.storage}` : '';
    const what = [g.volume && `volume ${g.volume}`, g.image && `image ${g.image}`, g.guestDevice && `device ${g.guestDevice}`, g.guestMountpoint && `mounted at ${g.guestMountpoint}`].filter(Boolean).join(', ');
    console.log(`${g.guest}: ${g.state}${where}${what ? `: ${what}` : ''}${g.inPlan ? '' : ' (not in the plan any more)'}${g.state === 'not-provisioned' ? '' : g.intact ? ' — intact' : ' — NOT INTACT'}`);
    for (const p of g.pieces) console.log(`  ${p.present === true ? 'there  ' : p.present === false ? 'MISSING' : 'UNKNOWN'} ${p.what} (${p.agent}; undone by "${p.undo}")${p.detail ? `: ${p.detail}` : ''}`);
  }
  return ok ? 0 : 1;
}

/** `vcstor runs | results | report | cleanup | watch` on the runs in a directory. */
export async function runsCommand(command: string, runId: string | undefined, runsDir: string, flags: { format?: string; out?: string; nats?: string }): Promise<number> {
  const coordinator = new Coordinator({ runsDir, log: createLogger({ name: 'coordinator', level: 'warn' }) });
  if (command === 'runs') {
    for (const r of await coordinator.list()) {
      console.log(`${r.runId.padEnd(24)} ${r.planName.padEnd(16)} ${r.state.padEnd(10)} ${new Date(r.createdUnixMs).toISOString()}  ${r.stepsSucceeded} ok, ${r.stepsFailed} failed`);
    }
    return 0;
  }
  if (!runId) throw new VcstorError('INVALID_ARGUMENT', `vcstor ${command}: give a RUN id (see vcstor runs)`);
  switch (command) {
    case 'results': {
      const { run, measurements, setup } = await coordinator.results(runId);
      const format = flags.format ?? 'table';
      if (format === 'json') console.log(JSON.stringify({ run, measurements, ...(setup ? { setup } : {}) }, null, 2));
      else if (format === 'csv') process.stdout.write(resultsCsv(measurements));
      else if (format === 'table') console.log(reportOf(run.kind).table(run, measurements, setup));
      else throw new VcstorError('INVALID_ARGUMENT', `--format: ${format} is not table, json or csv`);
      return 0;
    }
    case 'report': {
      const { run, measurements, setup } = await coordinator.results(runId);
      const file = flags.out ?? path.join(coordinator.store.dir(runId), 'report.html');
      await writeFile(file, reportOf(run.kind).html(run, measurements, setup));
      console.log(file);
      return 0;
    }
    case 'cleanup': {
      const { removed, leftBehind } = await coordinator.cleanup(runId);
      for (const r of removed) console.log(`removed ${r}`);
      for (const l of leftBehind) console.log(`LEFT BEHIND ${l}`);
      console.log(leftBehind.length === 0 ? `run ${runId}: nothing left provisioned` : `run ${runId}: ${leftBehind.length} left behind`);
      return leftBehind.length === 0 ? 0 : 1;
    }
    case 'watch': {
      if (flags.nats) {
        // From NATS: any machine can follow a run, and a late watcher replays it all.
        const bus = await RunEventBus.connect({ servers: flags.nats, name: 'vcstor watch' });
        try {
          for await (const e of bus.watch(runId)) console.log(describeEvent(e));
        } finally {
          await bus.close();
        }
        return 0;
      }
      for await (const e of coordinator.watch(runId)) console.log(describeEvent(e));
      return 0;
    }
    default:
      throw new VcstorError('INVALID_ARGUMENT', `unknown command ${command}`);
  }
}
