import { unary } from '../common/clients.js';
import { pool } from './journal.js';
import type { ScalePlan } from './scale-plan.js';
import { samplePercentile, slope, stageHistogram } from './scale-figures.js';
import { deleteVolume, errorText, exportVolume, spreadSessions, startLoadSets, stopLoadSet, targetSessionsOf, unexportIscsi, volumeGroup, type ScaleRun } from './scale-run.js';

type Target = { portal: string; iqn: string; lun: number };

/**
 * The control plane: N volumes + exports + logins, all at once (bounded by the plan's
 * concurrency), timed per stage; then all removed. Failures are the result's `errors`.
 */
export async function controlPlane(k: ScaleRun, cp: NonNullable<ScalePlan['scale']['controlPlane']>): Promise<{ result: Record<string, unknown>; errors: string[]; summary: string }> {
  const { step, signal } = k;
  const stepId = 'control-plane';
  const errors: string[] = [];
  const names = Array.from({ length: cp.volumes }, (_, i) => `cp-${k.short}-${i}`);
  const createMs: number[] = [];
  const exportMs: number[] = [];
  /** Export latency by completion order: is the k-th export as fast as the first? */
  const exportByOrder: number[] = [];
  const cpTargets = new Map<string, Target>();
  await step(stepId, 'started', `${cp.volumes} volumes, exports and logins, ${cp.concurrency} at a time`);
  const started = performance.now();
  const ticker = setInterval(() => {
    void step(stepId, 'progress', '', { progress: { phase: 'provision', percent: (50 * cpTargets.size) / cp.volumes, bytesDone: 0, bytesTotal: 0, elapsedMs: Math.round(performance.now() - started), message: `${cpTargets.size}/${cp.volumes} exported; create p50 ${samplePercentile(createMs, 50).toFixed(0)} ms, export p50 ${samplePercentile(exportMs, 50).toFixed(0)} ms` } });
  }, 1000);
  try {
    await pool(names, cp.concurrency, async (name) => {
      if (signal.aborted) return;
      try {
        const target = await exportVolume(k, name, cp.volumeSize, true, {
          created: (ms) => createMs.push(ms),
          exported: (ms) => {
            exportMs.push(ms);
            exportByOrder.push(ms);
          },
        });
        cpTargets.set(name, target);
      } catch (err) {
        errors.push(`${name}: ${errorText(err)}`);
      }
    });
    const provisionWallMs = performance.now() - started;
    const logins = await loginAll(k, names.map((name) => cpTargets.get(name)), errors);
    const totalWallMs = logins.listedAt - started;
    clearInterval(ticker);
    const removeStarted = performance.now();
    await pool(names, cp.concurrency, async (name) => {
      try {
        await unary(k.agents.storage, k.agents.storage.UnexportIscsi, { volume: name, force: true }, { timeoutMs: 120_000 });
        await k.journal.done(volumeGroup(name), unexportIscsi(name));
        await unary(k.agents.storage, k.agents.storage.DeleteVolume, { name, force: true }, { timeoutMs: 120_000 });
        await k.journal.done(volumeGroup(name), deleteVolume(name));
      } catch (err) {
        errors.push(`remove ${name}: ${errorText(err)}`);
      }
    });
    const tenth = Math.max(1, Math.floor(exportByOrder.length / 10));
    const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
    const result = {
      volumes: cp.volumes,
      concurrency: cp.concurrency,
      exported: cpTargets.size,
      loggedIn: logins.loginMs.length,
      failedLogins: logins.failedLogins,
      targetSessions: logins.targetSessions,
      provisionWallMs,
      loginWallMs: logins.wallMs,
      totalWallMs,
      removeWallMs: performance.now() - removeStarted,
      stages: { createVolume: stageHistogram(createMs), exportWithAcl: stageHistogram(exportMs), login: stageHistogram(logins.loginMs), deviceVisible: stageHistogram(logins.visibleMs) },
      kthExport: { firstTenthMeanMs: mean(exportByOrder.slice(0, tenth)), lastTenthMeanMs: mean(exportByOrder.slice(-tenth)), slopeMsPerExport: slope(exportByOrder) },
    };
    if (logins.targetSessions !== logins.loginMs.length) errors.push(`the target listed ${logins.targetSessions} of ${logins.loginMs.length} control-plane sessions`);
    return {
      result,
      errors,
      summary: `${cpTargets.size} volumes+exports in ${(provisionWallMs / 1000).toFixed(1)} s, ${logins.loginMs.length} logins in ${(logins.wallMs / 1000).toFixed(1)} s, total ${(totalWallMs / 1000).toFixed(1)} s; export first 10% ${result.kthExport.firstTenthMeanMs.toFixed(0)} ms, last 10% ${result.kthExport.lastTenthMeanMs.toFixed(0)} ms`,
    };
  } finally {
    clearInterval(ticker);
  }
}

/** One login per exported volume, spread over the initiator agents, all at once; then all logged out. */
async function loginAll(k: ScaleRun, targets: ReadonlyArray<Target | undefined>, errors: string[]): Promise<{ loginMs: number[]; visibleMs: number[]; wallMs: number; failedLogins: number; targetSessions: number; listedAt: number }> {
  const { active, iqns } = spreadSessions(k, `cp-${k.short}`, targets, (i) => `cp${i}`);
  const loginMs: number[] = [];
  const visibleMs: number[] = [];
  let failedLogins = 0;
  let wallMs = 0;
  const logins = await startLoadSets(k, active, (ms) => (wallMs = ms));
  for (const [i, r] of logins.entries()) {
    if (r.status === 'rejected') errors.push(`${active[i]!.a.name}: ${errorText(r.reason)}`);
    else {
      loginMs.push(...r.value.sessions.filter((x) => x.loggedIn).map((x) => x.loginMs));
      visibleMs.push(...r.value.sessions.filter((x) => x.loggedIn).map((x) => x.exportMs));
      failedLogins += r.value.failed;
      const first = r.value.sessions.find((x) => !x.loggedIn);
      if (first) errors.push(`${active[i]!.a.name}: ${r.value.failed} logins failed (first: ${first.initiatorIqn} to ${first.target?.iqn}: ${first.error})`);
    }
  }
  const targetSessions = await targetSessionsOf(k, iqns);
  const listedAt = performance.now();
  for (const x of active) await stopLoadSet(k, x).catch((err: unknown) => errors.push(`stop ${x.a.name}: ${errorText(err)}`));
  return { loginMs, visibleMs, wallMs, failedLogins, targetSessions, listedAt };
}
