import type { MeasurementRecord, RunRecord } from '../model.js';
import type { Knee, ScaleStepResult, StageHistogram } from '../scale-figures.js';
import { alignColumns, escapeMarkup } from './format.js';

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

/** A line chart of `values` against the counts (evenly spaced: the ramp is geometric). */
function lineChart(o: { id: string; title: string; unit: string; counts: number[]; values: number[]; kneeCount?: number; threshold?: number }): string {
  const W = 560;
  const H = 260;
  const left = 60;
  const right = 20;
  const top = 30;
  const bottom = 40;
  const max = Math.max(...o.values, o.threshold ?? 0, 1e-9) * 1.1;
  const x = (i: number) => left + (o.counts.length === 1 ? (W - left - right) / 2 : (i * (W - left - right)) / (o.counts.length - 1));
  const y = (v: number) => top + (H - top - bottom) * (1 - v / max);
  const parts: string[] = [`<svg id="${o.id}" class="chart" xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${escapeMarkup(o.title)}">`];
  parts.push(`<text x="${W / 2}" y="18" text-anchor="middle" font-weight="bold">${escapeMarkup(o.title)}</text>`);
  parts.push(`<line x1="${left}" y1="${H - bottom}" x2="${W - right}" y2="${H - bottom}" stroke="#000"/><line x1="${left}" y1="${top}" x2="${left}" y2="${H - bottom}" stroke="#000"/>`);
  for (let t = 0; t <= 4; t++) {
    const v = (max * t) / 4;
    parts.push(`<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end" font-size="11">${v >= 100 ? v.toFixed(0) : v.toFixed(2)}</text><line x1="${left}" y1="${y(v)}" x2="${W - right}" y2="${y(v)}" stroke="#ddd"/>`);
  }
  o.counts.forEach((c, i) => parts.push(`<text x="${x(i)}" y="${H - bottom + 16}" text-anchor="middle" font-size="11">${c}</text>`));
  parts.push(`<text x="${W / 2}" y="${H - 6}" text-anchor="middle" font-size="12">initiators</text><text x="14" y="${H / 2}" transform="rotate(-90 14 ${H / 2})" text-anchor="middle" font-size="12">${escapeMarkup(o.unit)}</text>`);
  if (o.threshold !== undefined) parts.push(`<line class="threshold" x1="${left}" y1="${y(o.threshold)}" x2="${W - right}" y2="${y(o.threshold)}" stroke="#c00" stroke-dasharray="4 3"><title>threshold ${o.threshold} ${escapeMarkup(o.unit)}</title></line>`);
  const kneeIndex = o.kneeCount === undefined ? -1 : o.counts.indexOf(o.kneeCount);
  if (kneeIndex >= 0) parts.push(`<line class="knee" x1="${x(kneeIndex)}" y1="${top}" x2="${x(kneeIndex)}" y2="${H - bottom}" stroke="#e80" stroke-dasharray="6 3"><title>knee: ${o.kneeCount} initiators</title></line>`);
  parts.push(`<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="${o.values.map((v, i) => `${x(i)},${y(v)}`).join(' ')}"/>`);
  o.values.forEach((v, i) => parts.push(`<circle class="point" cx="${x(i)}" cy="${y(v)}" r="4" fill="#1f77b4" data-count="${o.counts[i]}" data-value="${v}"><title>${o.counts[i]} initiators: ${v.toFixed(2)} ${escapeMarkup(o.unit)}</title></circle>`));
  parts.push('</svg>');
  return parts.join('\n');
}

/** The HTML report of a scale run. */
export function renderScaleReport(run: RunRecord, measurements: readonly MeasurementRecord[]): string {
  const s = steps(measurements);
  const k = knee(measurements);
  const rule = (measurements.find((m) => m.benchmark === 'scale-knee')?.result as { rule?: { p99LatencyMs: number } } | undefined)?.rule;
  const counts = s.map((x) => x.count);
  const charts = s.length
    ? [
        lineChart({ id: 'throughput', title: 'Aggregate throughput vs initiators', unit: 'MB/s', counts, values: s.map((x) => x.bytesPerSecond / 1e6), ...(k ? { kneeCount: k.count } : {}) }),
        lineChart({ id: 'p99', title: 'p99 completion latency vs initiators', unit: 'ms', counts, values: s.map((x) => x.p99Ms), ...(k ? { kneeCount: k.count } : {}), ...(rule ? { threshold: rule.p99LatencyMs } : {}) }),
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
