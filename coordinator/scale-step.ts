import type { RunLoadResult__Output } from '../common/generated/vcstor/v1/RunLoadResult.js';
import type { StartLoadSessionsResponse__Output } from '../common/generated/vcstor/v1/StartLoadSessionsResponse.js';
import { histogramPercentile, mergeHistogram, type Histogram } from '../host-storage/load-fio.js';
import { samplePercentile, type ScaleStepResult } from './scale-figures.js';
import { errorText, runLoad, spreadSessions, startLoadSets, stopLoadSet, targetSessionsOf, type LoadSet, type ScaleRun } from './scale-run.js';

type Target = { portal: string; iqn: string; lun: number };

/**
 * One step of the ramp: `count` initiators log in at once (the storm), the target must
 * list them, each runs the plan's fio job, all log out, and the target must list none.
 * Failures are the result's `errors`, not thrown.
 */
export async function runStep(k: ScaleRun, targets: readonly Target[], count: number, stepId: string): Promise<ScaleStepResult> {
  const { step } = k;
  const errors: string[] = [];
  const { active, iqns } = spreadSessions(k, `sc-${k.short}-c${count}`, Array.from({ length: count }, (_, i) => targets[i % targets.length]!), (i) => `${i}`);
  await step(stepId, 'started', `${count} initiators: ${active.map((x) => `${x.a.name} ${x.sessions.length}`).join(', ')}`);
  const logins: StartLoadSessionsResponse__Output[] = [];
  let fio: RunLoadResult__Output[] = [];
  let targetSessions = 0;
  let logoutMs = 0;
  try {
    // The storm: every agent at once.
    const started = await startLoadSets(k, active);
    for (const [i, r] of started.entries()) {
      if (r.status === 'fulfilled') logins.push(r.value);
      else errors.push(`${active[i]!.a.name}: ${errorText(r.reason)}`);
    }
    const loggedIn = logins.reduce((n, l) => n + l.loggedIn, 0);
    await step(stepId, 'progress', '', { progress: { phase: 'logged in', percent: 10, bytesDone: 0, bytesTotal: 0, elapsedMs: 0, message: `${loggedIn}/${count} logged in` } });
    // What the target itself lists: every session must really be there.
    targetSessions = await targetSessionsOf(k, iqns);
    if (errors.length === 0 && loggedIn > 0) fio = await runFio(k, active, count, stepId, errors);
  } catch (err) {
    errors.push(errorText(err));
  } finally {
    const t0 = performance.now();
    for (const x of active) await stopLoadSet(k, x).catch((err: unknown) => errors.push(`stop ${x.a.name}: ${errorText(err)}`));
    logoutMs = performance.now() - t0;
  }
  const after = await sessionsAfterLogout(k, iqns);
  if (after !== 0) errors.push(`the target still lists ${after} of this step's sessions after logout`);
  return stepResult({ count, active, logins, fio, targetSessions, after, logoutMs, errors });
}

/** The plan's fio job on every set at once; progress at most once a second. Failures go to `errors`. */
async function runFio(k: ScaleRun, active: readonly LoadSet[], count: number, stepId: string, errors: string[]): Promise<RunLoadResult__Output[]> {
  const f = k.plan.scale.fio;
  let lastProgress = 0;
  const loadStarted = Date.now();
  const runs = await Promise.allSettled(
    active.map((x) =>
      runLoad(x.a.client, { setId: x.setId, fio: { rw: f.rw, blockSizeBytes: f.blockSize, iodepth: f.iodepth, sizeBytes: f.size, runtimeS: f.runtimeS, rwmixRead: f.rwmixRead } }, k.T.timeoutMs, k.signal, (p) => {
        if (Date.now() - lastProgress < 1000) return;
        lastProgress = Date.now();
        void k.step(stepId, 'progress', '', { progress: { ...p, percent: 10 + 0.8 * p.percent, elapsedMs: Date.now() - loadStarted, message: `fio on ${count} initiators` } });
      }),
    ),
  );
  runs.forEach((r, i) => {
    if (r.status === 'rejected') errors.push(`${active[i]!.a.name}: ${errorText(r.reason)}`);
  });
  return runs.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
}

/** How many of the step's sessions the target still lists after the logout, for up to 10 s (tgtd notices closed connections at once); -1: it never answered. */
async function sessionsAfterLogout(k: ScaleRun, iqns: ReadonlySet<string>): Promise<number> {
  let after = -1;
  for (let tries = 0; tries < 50; tries++) {
    const listed = await targetSessionsOf(k, iqns, { timeoutMs: 30_000 }).catch(() => undefined);
    if (listed !== undefined) after = listed;
    if (after === 0) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  return after;
}

/** The step's figures from what the agents and the target answered. Pure. */
function stepResult(o: { count: number; active: readonly LoadSet[]; logins: StartLoadSessionsResponse__Output[]; fio: RunLoadResult__Output[]; targetSessions: number; after: number; logoutMs: number; errors: string[] }): ScaleStepResult {
  const { count, logins, fio, targetSessions, errors } = o;
  const histogram: Histogram = new Map();
  for (const f of fio) mergeHistogram(histogram, f.latencyHistogram);
  const perInitiator = fio.flatMap((f) => f.sessions.map((x) => x.readBytesPerSecond + x.writeBytesPerSecond));
  const loginMs = logins.flatMap((l) => l.sessions.filter((x) => x.loggedIn).map((x) => x.loginMs));
  const failedLogins = logins.reduce((n, l) => n + l.failed, 0) + (count - logins.reduce((n, l) => n + l.sessions.length, 0));
  const loggedIn = logins.reduce((n, l) => n + l.loggedIn, 0);
  if (failedLogins > 0) {
    const first = logins.flatMap((l) => l.sessions).find((x) => !x.loggedIn && x.error);
    if (first) errors.push(`${failedLogins} logins failed (first: ${first.initiatorIqn}: ${first.error})`);
  }
  if (targetSessions !== loggedIn) errors.push(`the target listed ${targetSessions} of the ${loggedIn} sessions the initiators logged in`);
  const usage = fio.length > 0 ? fio.map((f) => f.usage) : logins.map((l) => l.usage);
  return {
    count,
    perAgent: Object.fromEntries(o.active.map((x) => [x.a.name, x.sessions.length])),
    loggedIn,
    failedLogins,
    loginP50Ms: samplePercentile(loginMs, 50),
    loginP99Ms: samplePercentile(loginMs, 99),
    loginMaxMs: loginMs.length ? Math.max(...loginMs) : 0,
    stormMs: Math.max(0, ...logins.map((l) => l.stormMs)),
    targetSessions,
    targetSessionsAfterLogout: o.after,
    bytesPerSecond: fio.reduce((n, f) => n + f.bytesPerSecond, 0),
    iops: fio.reduce((n, f) => n + f.iops, 0),
    perInitiatorBytesPerSecond: {
      mean: perInitiator.length ? perInitiator.reduce((a, b) => a + b, 0) / perInitiator.length : 0,
      min: perInitiator.length ? Math.min(...perInitiator) : 0,
      max: perInitiator.length ? Math.max(...perInitiator) : 0,
    },
    p50Ms: histogramPercentile(histogram, 50) / 1e6,
    p95Ms: histogramPercentile(histogram, 95) / 1e6,
    p99Ms: histogramPercentile(histogram, 99) / 1e6,
    fioFailed: fio.reduce((n, f) => n + f.failed, 0),
    initiatorRssBytes: usage.reduce((n, u) => n + (u?.rssBytes ?? 0), 0),
    initiatorFds: usage.reduce((n, u) => n + (u?.openFds ?? 0), 0),
    initiatorDaemons: usage.reduce((n, u) => n + (u?.daemons ?? 0), 0),
    logoutMs: o.logoutMs,
    errors,
  };
}
