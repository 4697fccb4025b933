import type { MeasurementRecord, RunRecord } from '../model.js';
import { MEASUREMENT, type SharedPhaseResult, type SharedPostmarkResult } from '../shared-figures.js';
import { NOISY_CV, summarize, type Summary } from '../statistics.js';
import { alignColumns, escapeMarkup } from './format.js';
import { lineChart } from './line-chart.js';

/**
 * Results of a shared-space run (paper section 5): per space, per guest count, the
 * aggregate throughput of all guests writing (then reading) at once, each guest's own,
 * their spread over the repetitions, and the knee — the count beyond which adding guests
 * adds less than a tenth to the aggregate. A text table (`vcstor results`) and an HTML
 * report with a chart per space.
 */

/** Adding guests must raise the aggregate by more than this to count as growth. */
const KNEE_GROWTH = 1.1;

interface Row {
  space: string;
  shared: boolean;
  phase: 'write' | 'read';
  guests: number;
  aggregate: Summary;
  perGuest: Summary;
  overlap: number;
  verified: boolean;
  /** Each storage server's block-layer bytes of the phase as a fraction of the guests' bytes, mean over the repetitions. */
  storage: Array<{ host: string; fraction: number }>;
  /** The servers' block layer saw under 90% of the guests' bytes in some repetition: part of it came from a cache. */
  cached: boolean;
}

/** Below this fraction of the guests' bytes at the servers' block layer, a phase measured a cache. */
const REACHED_STORAGE = 0.9;

/** The servers' block-layer bytes of a phase's direction over the guests' bytes, per server. */
function storageFractions(p: SharedPhaseResult): Array<{ host: string; fraction: number }> {
  return (p.storage ?? []).map((s) => ({ host: s.host, fraction: p.totalBytes > 0 ? (p.phase === 'read' ? s.readBytes : s.writeBytes) / p.totalBytes : 0 }));
}

function phases(measurements: readonly MeasurementRecord[]): SharedPhaseResult[] {
  return measurements.filter((m) => (m.benchmark === MEASUREMENT.write || m.benchmark === MEASUREMENT.read) && m.result && !m.error).map((m) => m.result as unknown as SharedPhaseResult);
}

/** One row per space, phase and count, over the repetitions. */
function rows(measurements: readonly MeasurementRecord[]): Row[] {
  const groups = new Map<string, SharedPhaseResult[]>();
  for (const p of phases(measurements)) {
    const key = JSON.stringify([p.space, p.phase, p.guests]);
    groups.set(key, [...(groups.get(key) ?? []), p]);
  }
  return [...groups.values()].map((ps) => ({
    space: ps[0]!.space,
    shared: ps[0]!.shared,
    phase: ps[0]!.phase,
    guests: ps[0]!.guests,
    aggregate: summarize(ps.map((p) => p.aggregateBytesPerSecond / 1e6))!,
    perGuest: summarize(ps.flatMap((p) => p.perGuest.map((g) => g.bytesPerSecond / 1e6)))!,
    overlap: Math.min(...ps.map((p) => p.overlap)),
    verified: ps.every((p) => p.verified),
    storage: [...new Set(ps.flatMap((p) => (p.storage ?? []).map((s) => s.host)))].map((host) => ({
      host,
      fraction: ps.reduce((n, p) => n + (storageFractions(p).find((s) => s.host === host)?.fraction ?? 0), 0) / ps.length,
    })),
    // Recorded without storage counters (an older run): nothing to say.
    cached: ps.some((p) => (p.storage ?? []).length > 0 && storageFractions(p).reduce((n, s) => n + s.fraction, 0) < REACHED_STORAGE),
  }));
}

/** PostMark on N guests at once, over the repetitions. */
interface PostmarkRow {
  space: string;
  guests: number;
  aggregate: Summary;
  perGuest: Summary;
  /** The servers' block layer saw under 1 MiB written in some repetition: PostMark's files lived and died in a cache. */
  cached: boolean;
}

/** PostMark deletes what it made: a run whose servers' disks saw less than this written never left a cache. */
const POSTMARK_REACHED_BYTES = 2 ** 20;

function postmarkRows(measurements: readonly MeasurementRecord[]): PostmarkRow[] {
  const groups = new Map<string, SharedPostmarkResult[]>();
  for (const m of measurements.filter((x) => x.benchmark === MEASUREMENT.postmark && x.result && !x.error)) {
    const r = m.result as unknown as SharedPostmarkResult;
    const key = JSON.stringify([r.space, r.guests]);
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  return [...groups.values()].map((rs) => ({
    space: rs[0]!.space,
    guests: rs[0]!.guests,
    aggregate: summarize(rs.map((r) => r.aggregateTransactionsPerSecond))!,
    perGuest: summarize(rs.flatMap((r) => r.perGuest.map((g) => g.transactionsPerSecond)))!,
    cached: rs.some((r) => (r.storage ?? []).length > 0 && r.storage.reduce((n, s) => n + s.writeBytes, 0) < POSTMARK_REACHED_BYTES),
  }));
}

function spaces(all: readonly Row[]): string[] {
  return [...new Set(all.map((r) => r.space))];
}

/** The knee of one space's phase: the last count whose aggregate grew by more than a tenth over the count before it. */
export function sharedKnee(all: readonly Row[], space: string, phase: 'write' | 'read'): { guests: number; reached: boolean } | undefined {
  const line = all.filter((r) => r.space === space && r.phase === phase).sort((a, b) => a.guests - b.guests);
  if (line.length === 0) return undefined;
  for (let i = 1; i < line.length; i++) {
    if (line[i]!.aggregate.mean < line[i - 1]!.aggregate.mean * KNEE_GROWTH) return { guests: line[i - 1]!.guests, reached: true };
  }
  return { guests: line[line.length - 1]!.guests, reached: false };
}

function spread(s: Summary): string {
  return s.n > 1 ? `±${s.sd.toFixed(1)}${s.cv !== undefined && s.cv > NOISY_CV ? ' (noisy)' : ''}` : '';
}

/** A fixed-width table of every space, phase and count; the knees; the errors. */
export function sharedResultsTable(run: RunRecord, measurements: readonly MeasurementRecord[]): string {
  const all = rows(measurements);
  const lines = [`run ${run.runId} (${run.planName}): ${run.state}`, ''];
  const header = ['space', 'phase', 'guests', 'aggregate MB/s', 'n', 'per guest MB/s', 'min-max', 'overlap', 'at the servers\' disks', 'pattern'];
  const body = all
    .sort((a, b) => spaces(all).indexOf(a.space) - spaces(all).indexOf(b.space) || a.phase.localeCompare(b.phase) * -1 || a.guests - b.guests)
    .map((r) => [
      r.space,
      r.phase,
      String(r.guests),
      `${r.aggregate.mean.toFixed(1)}${spread(r.aggregate)}`,
      String(r.aggregate.n),
      r.perGuest.mean.toFixed(1),
      `${r.perGuest.min.toFixed(1)}-${r.perGuest.max.toFixed(1)}`,
      `${(r.overlap * 100).toFixed(0)}%`,
      `${r.storage.map((s) => `${s.host} ${(s.fraction * 100).toFixed(0)}%`).join(' ') || '-'}${r.cached ? ' (cache!)' : ''}`,
      r.phase === 'read' ? (r.shared && r.guests > 1 ? 'intact, read by another guest' : 'intact') : '-',
    ]);
  lines.push(...alignColumns(header, body, header.map((_, i) => i >= 2 && i <= 7)));
  for (const space of spaces(all)) {
    for (const phase of ['write', 'read'] as const) {
      const k = sharedKnee(all, space, phase);
      if (k) lines.push(`knee ${space} ${phase}: ${k.reached ? `${k.guests} guests (more add under 10%)` : `not reached up to ${k.guests} guests`}`);
    }
  }
  const pm = postmarkRows(measurements);
  if (pm.length > 0) {
    lines.push('', 'PostMark, every participant at once (a directory each in the space):');
    const order = spaces(all);
    const pmRows = pm
      .sort((a, b) => order.indexOf(a.space) - order.indexOf(b.space) || a.guests - b.guests)
      .map((r) => [r.space, String(r.guests), `${r.aggregate.mean.toFixed(0)}${r.aggregate.n > 1 ? `±${r.aggregate.sd.toFixed(0)}` : ''}`, String(r.aggregate.n), r.perGuest.mean.toFixed(0), `${r.perGuest.min.toFixed(0)}-${r.perGuest.max.toFixed(0)}`, r.cached ? 'no (cache!)' : 'yes']);
    const pmHeader = ['space', 'guests', 'transactions/s', 'n', 'per guest', 'min-max', 'reached the servers\' disks'];
    lines.push(...alignColumns(pmHeader, pmRows, pmHeader.map((_, i) => i >= 1 && i <= 5)));
    const inCache = pm.filter((r) => r.cached);
    if (inCache.length > 0) lines.push(`PostMark measured a cache (its files were made and deleted before any reached the servers' disks): ${inCache.map((r) => `${r.space} ${r.guests}`).join(', ')}`);
  }
  const cached = all.filter((r) => r.cached);
  if (cached.length > 0) lines.push('', `measured a cache (the servers' disks saw under ${REACHED_STORAGE * 100}% of the guests' bytes): ${cached.map((r) => `${r.space} ${r.phase} ${r.guests}`).join(', ')}`);
  const errors = measurements.filter((m) => m.error);
  if (errors.length > 0) lines.push('', 'errors:', ...errors.map((m) => `  ${m.method} ${m.benchmark} ${m.guest} rep ${m.repetition}: ${m.error}`));
  return `${lines.join('\n')}\n`;
}

/** The HTML report of a shared-space run: a chart per space (aggregate and per-guest MB/s against guests at once), then the table. */
export function renderSharedReport(run: RunRecord, measurements: readonly MeasurementRecord[]): string {
  const all = rows(measurements);
  const charts = spaces(all).map((space) => {
    const counts = [...new Set(all.filter((r) => r.space === space).map((r) => r.guests))].sort((a, b) => a - b);
    const value = (phase: 'write' | 'read', pick: (r: Row) => number) => counts.map((c) => {
      const r = all.find((x) => x.space === space && x.phase === phase && x.guests === c);
      return r ? pick(r) : Number.NaN;
    });
    const shared = all.find((r) => r.space === space)?.shared;
    const knee = sharedKnee(all, space, 'write');
    const pm = postmarkRows(measurements).filter((r) => r.space === space);
    const pmChart =
      pm.length > 0
        ? lineChart({
            id: `postmark-${space}`,
            title: `${space}: PostMark vs guests at once`,
            unit: 'transactions/s',
            xLabel: 'guests at once',
            counts,
            series: [
              { name: 'all', values: counts.map((c) => pm.find((r) => r.guests === c)?.aggregate.mean ?? Number.NaN) },
              { name: 'each', values: counts.map((c) => pm.find((r) => r.guests === c)?.perGuest.mean ?? Number.NaN), dashed: true },
            ],
          })
        : '';
    return `<section class="space" data-space="${escapeMarkup(space)}">
<h2>${escapeMarkup(space)}${shared ? ' (shared by every guest)' : ' (each guest its own disk)'}</h2>
${lineChart({
  id: `space-${space}`,
  title: `${space}: throughput vs guests at once`,
  unit: 'MB/s',
  xLabel: 'guests at once',
  counts,
  series: [
    { name: 'write, all', values: value('write', (r) => r.aggregate.mean) },
    { name: 'read, all', values: value('read', (r) => r.aggregate.mean) },
    { name: 'write, each', values: value('write', (r) => r.perGuest.mean), dashed: true },
    { name: 'read, each', values: value('read', (r) => r.perGuest.mean), dashed: true },
  ],
  ...(knee?.reached ? { kneeCount: knee.guests } : {}),
})}
${pmChart}
${pm.some((r) => r.cached) ? `<p class="warning">PostMark on ${escapeMarkup(space)} measured a cache: its files were made and deleted before any reached the servers' disks (with ${pm.filter((r) => r.cached).map((r) => r.guests).join(', ')} guests).</p>` : ''}
${all.some((r) => r.space === space && r.cached) ? `<p class="warning">Part of this space's figures came from a cache: the storage servers' disks saw under ${REACHED_STORAGE * 100}% of the guests' bytes in ${all.filter((r) => r.space === space && r.cached).map((r) => `${r.phase} with ${r.guests}`).join(', ')}.</p>` : ''}
<p class="caption">Each guest writes its own file with fio (O_DIRECT where the client takes it), every cache on the path is dropped, then each reads ${shared ? 'the file another guest wrote' : 'its file'} back and fio checks every block's pattern and offset. Each storage server's share of the bytes is what its processes moved to or from its block layer (below every page cache). "All": every byte over the span from the first guest's first I/O to the last guest's last; "each": each guest's own rate. Points are means over the repetitions.${knee ? ` Write knee: ${knee.reached ? `${knee.guests} guests` : `not reached up to ${knee.guests} guests`}.` : ''}</p>
</section>`;
  });
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vcstor shared-space report: ${escapeMarkup(run.planName)}</title>
<style>body{font-family:sans-serif;margin:2em}pre{background:#f6f6f6;padding:1em}.caption{max-width:50em;color:#333}.warning{color:#b00;font-weight:bold}</style></head>
<body>
<h1>Which shared space serves a virtual cluster? (${escapeMarkup(run.planName)})</h1>
<p>run ${escapeMarkup(run.runId)} — ${escapeMarkup(run.state)}${run.error ? ` — ${escapeMarkup(run.error)}` : ''}</p>
${charts.length > 0 ? charts.join('\n') : '<p>nothing was measured</p>'}
<h2>All phases</h2>
<pre>${escapeMarkup(sharedResultsTable(run, measurements))}</pre>
</body></html>
`;
}
