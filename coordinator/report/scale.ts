import type { MeasurementRecord, RunRecord } from '../model.js';
import type { Knee, ScaleStepResult, StageHistogram } from '../scale-figures.js';
import { alignColumns, escapeMarkup } from './format.js';
import { lineChart } from './line-chart.js';

/**
 * Results of a scale run: a text table per step (what `vcstor results` prints) and an HTML
 * report with two charts against the initiator count — aggregate throughput and p99
 * latency — with the knee marked, then the steps' table and the control plane's stages.
 */

function steps(measurements: readonly MeasurementRecord[]): ScaleStepResult[] {
  return measurements
    .filter((m) => m.benchmark === 'scale-step' && m.result)
    .map((m) => m.result as unknown as ScaleStepResult)
    .sort((a, b) => a.count - b.count);
}

function knee(measurements: readonly MeasurementRecord[]): Knee | undefined {
  const m = measurements.find((x) => x.benchmark === 'scale-knee');
  return (m?.result as { knee?: Knee } | undefined)?.knee;
}

interface ControlPlane {
  volumes: number;
  exported: number;
  loggedIn: number;
  failedLogins: number;
  provisionWallMs: number;
  loginWallMs: number;
  totalWallMs: number;
  stages: Record<string, StageHistogram>;
  kthExport: { firstTenthMeanMs: number; lastTenthMeanMs: number; slopeMsPerExport: number };
}

function controlPlane(measurements: readonly MeasurementRecord[]): ControlPlane | undefined {
  return measurements.find((x) => x.benchmark === 'control-plane')?.result as unknown as ControlPlane | undefined;
}

const mb = (bytes: number) => (bytes / 1e6).toFixed(1);

/** The steps as a fixed-width table, the knee, and the control plane. */
export function scaleResultsTable(run: RunRecord, measurements: readonly MeasurementRecord[]): string {
  const lines = [`run ${run.runId} (${run.planName}): ${run.state}`, ''];
  const header = ['initiators', 'logged in', 'target', 'login p50 ms', 'login p99 ms', 'MB/s', 'IOPS', 'MB/s per init', 'p50 ms', 'p95 ms', 'p99 ms', 'qsd RSS MB', 'fds'];
  const rows = steps(measurements).map((s) => [
    String(s.count),
    `${s.loggedIn}${s.failedLogins ? ` (${s.failedLogins} failed)` : ''}`,
    String(s.targetSessions),
    s.loginP50Ms.toFixed(0),
    s.loginP99Ms.toFixed(0),
    mb(s.bytesPerSecond),
    s.iops.toFixed(0),
    mb(s.perInitiatorBytesPerSecond.mean),
    s.p50Ms.toFixed(2),
    s.p95Ms.toFixed(2),
    s.p99Ms.toFixed(2),
    (s.initiatorRssBytes / 1e6).toFixed(0),
    String(s.initiatorFds),
  ]);
  lines.push(...alignColumns(header, rows, header.map((_, i) => i > 0)));
  const k = knee(measurements);
  if (k) lines.push('', `knee: ${k.count} initiators${k.reached ? '' : ' (not reached)'} — ${k.reason}`);
  const cp = controlPlane(measurements);
  if (cp) {
    lines.push('', `control plane: ${cp.exported}/${cp.volumes} volumes+exports in ${(cp.provisionWallMs / 1000).toFixed(1)} s, ${cp.loggedIn} logins in ${(cp.loginWallMs / 1000).toFixed(1)} s (${cp.failedLogins} failed), total ${(cp.totalWallMs / 1000).toFixed(1)} s`);
    for (const [stage, h] of Object.entries(cp.stages)) lines.push(`  ${stage.padEnd(14)} n=${String(h.n).padStart(5)}  p50 ${h.p50Ms.toFixed(1).padStart(7)} ms  p95 ${h.p95Ms.toFixed(1).padStart(7)} ms  p99 ${h.p99Ms.toFixed(1).padStart(7)} ms  max ${h.maxMs.toFixed(1).padStart(7)} ms`);
    lines.push(`  k-th export: first 10% ${cp.kthExport.firstTenthMeanMs.toFixed(1)} ms, last 10% ${cp.kthExport.lastTenthMeanMs.toFixed(1)} ms, slope ${cp.kthExport.slopeMsPerExport.toFixed(3)} ms per export`);
  }
  const errors = measurements.filter((m) => m.error);
  if (errors.length > 0) lines.push('', 'errors:', ...errors.map((m) => `  ${m.benchmark} ${m.repetition}: ${m.error}`));
  return `${lines.join('\n')}\n`;
}

/** The HTML report of a scale run. */
export function renderScaleReport(run: RunRecord, measurements: readonly MeasurementRecord[]): string {
  const s = steps(measurements);
  const k = knee(measurements);
  const rule = (measurements.find((m) => m.benchmark === 'scale-knee')?.result as { rule?: { p99LatencyMs: number } } | undefined)?.rule;
  const counts = s.map((x) => x.count);
  const charts = s.length
    ? [
        lineChart({ id: 'throughput', title: 'Aggregate throughput vs initiators', unit: 'MB/s', xLabel: 'initiators', counts, series: [{ name: 'aggregate', values: s.map((x) => x.bytesPerSecond / 1e6) }], ...(k ? { kneeCount: k.count } : {}) }),
        lineChart({ id: 'p99', title: 'p99 completion latency vs initiators', unit: 'ms', xLabel: 'initiators', counts, series: [{ name: 'p99', values: s.map((x) => x.p99Ms) }], ...(k ? { kneeCount: k.count } : {}), ...(rule ? { threshold: rule.p99LatencyMs } : {}) }),
      ]
    : ['<p>no steps were measured</p>'];
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vcstor scale report: ${escapeMarkup(run.planName)}</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}pre{background:#f6f6f6;padding:1em}</style></head>
<body>
<h1>How many initiators can one target serve? (${escapeMarkup(run.planName)})</h1>
<p>run ${escapeMarkup(run.runId)} — ${escapeMarkup(run.state)}${run.error ? ` — ${escapeMarkup(run.error)}` : ''}</p>
<p id="knee">${k ? `Knee: <b>${k.count}</b> initiators${k.reached ? '' : ' (not reached)'} — ${escapeMarkup(k.reason)}` : 'no knee computed'}</p>
${charts.join('\n')}
<h2>Steps</h2>
<pre>${escapeMarkup(scaleResultsTable(run, measurements))}</pre>
</body></html>
`;
}
