/**
 * What a campaign's measurements say: a text table for a terminal, a CSV for a
 * spreadsheet, the ratios against phy-local, and one self-contained HTML report whose
 * charts follow the paper's figures 3-7 (one group of bars per method, one bar per
 * repetition). Pure functions: nothing here reads a clock or touches a file.
 */

import { accountingHtml, accountingText } from './accounting-report.js';
import { METHODS } from './methods.js';
import { renderScaleReport, scaleResultsTable } from './scale-report.js';
import { REPORT_FIGURES, type MeasurementRecord, type RunRecord, type RunSetup } from './model.js';
import { NOISY_CV, ratioOf, summarize, type Summary } from './statistics.js';

/** A figure the report reads from one benchmark result. */
interface FigureSpec {
  benchmark: string;
  figure: string;
  unit: string;
  read: (result: Record<string, unknown>) => number | undefined;
  reported?: (result: Record<string, unknown>) => boolean;
}

/** One ratio of the "vs phy-local" comparison. */
export interface PhyLocalRatio {
  /** "<benchmark> <figure>", e.g. "bonnie block write". */
  figure: string;
  unit: string;
  method: string;
  /** Mean over the repetitions that produced the figure; undefined when none did. */
  mean: number | undefined;
  /** mean / phy-local's mean; undefined when either is missing. */
  ratio: number | undefined;
  /** Half-width of the ratio's 95% interval (both sides repeated at least twice). */
  ratioCi95?: number;
  /** The method's own spread over its repetitions (two or more). */
  summary?: Summary;
}

/** Options of {@link renderReport}. */
export interface ReportOptions {
  /** The page's title; default "vcstor report: <plan name>". */
  title?: string;
  /** When the report was made; shown when given (the renderer reads no clock). */
  generatedUnixMs?: number;
  /** What the run ran on (setup.json): shown as the set-up table. */
  setup?: RunSetup;
}

const SPARSE_BENCHMARK = 'sparse-image';
/** The method every ratio is measured against: the paper's baseline (a local LV). */
const BASELINE_METHOD = 'phy-local';

/** The sparse-image passes of a result, in MB/s, in pass order. */
function sparsePasses(result: Record<string, unknown>): Array<{ pass: number; mbPerSecond: number }> {
  const sparse = result.sparseImage;
  if (!isRecord(sparse) || !Array.isArray(sparse.passes)) return [];
  const passes: Array<{ pass: number; mbPerSecond: number }> = [];
  for (const entry of sparse.passes as unknown[]) {
    if (!isRecord(entry)) continue;
    const pass = entry.pass;
    const bytesPerSecond = entry.writeBytesPerSecond;
    if (typeof pass !== 'number' || typeof bytesPerSecond !== 'number' || !Number.isFinite(bytesPerSecond) || bytesPerSecond <= 0) continue;
    passes.push({ pass, mbPerSecond: bytesPerSecond / 1e6 });
  }
  return passes.sort((a, b) => a.pass - b.pass);
}

/**
 * The sparse test reduced to one number per measurement, so it can sit in the table and
 * the ratios beside the other benchmarks; the chart shows every pass.
 */
const SPARSE_MEAN_FIGURE: FigureSpec = {
  benchmark: SPARSE_BENCHMARK,
  figure: 'mean pass throughput',
  unit: 'MB/s',
  read: (result) => meanOf(sparsePasses(result).map((p) => p.mbPerSecond)),
};

/** The section 4.3 test's measurements: the same passes over each provisioning of the guest's image. */
const SPARSE_DISK = { 'zero-filled': 'sparse-disk:zero-filled', sparse: 'sparse-disk:sparse' } as const;
const SPARSE_DISK_FIGURES: FigureSpec[] = Object.values(SPARSE_DISK).map((benchmark) => ({ ...SPARSE_MEAN_FIGURE, benchmark }));

/** Every figure of the table, the CSV and the ratios, in the order they are shown. */
const TABLE_FIGURES: FigureSpec[] = [...REPORT_FIGURES, SPARSE_MEAN_FIGURE, ...SPARSE_DISK_FIGURES];

const BENCHMARK_TITLES: Record<string, string> = {
  bonnie: 'Bonnie++',
  postmark: 'PostMark',
  fio: 'fio',
  [SPARSE_BENCHMARK]: 'Sparse image',
  [SPARSE_DISK['zero-filled']]: 'Guest disk over a zero-filled image',
  [SPARSE_DISK.sparse]: 'Guest disk over a sparse image',
};

function figureLabel(spec: FigureSpec): string {
  return `${spec.benchmark} ${spec.figure}`;
}

/** The key charts and ratio cells carry as data-figure. */
function figureKey(spec: { benchmark: string; figure: string }): string {
  return `${spec.benchmark}/${spec.figure}`;
}

// ---------------------------------------------------------------------------------------
// The measurements, indexed

/** What one (method, figure, repetition) holds. */
type Cell =
  | { kind: 'value'; value: number }
  /** The benchmark (or its setup) failed: the measurement's error. */
  | { kind: 'failed'; error: string }
  /** The benchmark ran but did not produce this figure (e.g. bonnie++ printed "+++++"). */
  | { kind: 'unmeasured' }
  /** No measurement was recorded at all. */
  | { kind: 'absent' };

interface Analysis {
  methods: string[];
  repetitions: number[];
  /** The figures with something to show, in TABLE_FIGURES order. */
  figures: FigureSpec[];
  measurement(method: string, benchmark: string, repetition: number): MeasurementRecord | undefined;
  cell(method: string, spec: FigureSpec, repetition: number): Cell;
  mean(method: string, spec: FigureSpec): number | undefined;
  /** Mean, spread and 95% interval over the repetitions that produced the figure. */
  summary(method: string, spec: FigureSpec): Summary | undefined;
}

function succeeded(m: MeasurementRecord): m is MeasurementRecord & { result: Record<string, unknown> } {
  return m.error === '' && m.result !== undefined;
}

function failureText(m: MeasurementRecord): string {
  return m.error !== '' ? m.error : 'no result recorded';
}

/** Paper order (section 3) first, then any other method by name. */
function orderMethods(names: Iterable<string>): string[] {
  const present = new Set(names);
  const known: readonly string[] = METHODS;
  return [...known.filter((m) => present.has(m)), ...[...present].filter((m) => !known.includes(m)).sort()];
}

function analyse(measurements: MeasurementRecord[]): Analysis {
  // One record per (method, benchmark, repetition). A step retried after a failure may
  // record twice: a success is kept over a failure, otherwise the later record wins.
  const byKey = new Map<string, MeasurementRecord>();
  const key = (method: string, benchmark: string, repetition: number): string => JSON.stringify([method, benchmark, repetition]);
  for (const m of measurements) {
    const k = key(m.method, m.benchmark, m.repetition);
    const earlier = byKey.get(k);
    if (earlier && succeeded(earlier) && !succeeded(m)) continue;
    byKey.set(k, m);
  }
  const methods = orderMethods(measurements.map((m) => m.method));
  const repetitions = [...new Set(measurements.map((m) => m.repetition))].sort((a, b) => a - b);

  const measurement = (method: string, benchmark: string, repetition: number): MeasurementRecord | undefined => byKey.get(key(method, benchmark, repetition));
  const cell = (method: string, spec: FigureSpec, repetition: number): Cell => {
    const m = measurement(method, spec.benchmark, repetition);
    if (!m) return { kind: 'absent' };
    if (!succeeded(m)) return { kind: 'failed', error: failureText(m) };
    const value = spec.read(m.result);
    return value === undefined ? { kind: 'unmeasured' } : { kind: 'value', value };
  };
  const summary = (method: string, spec: FigureSpec): Summary | undefined =>
    summarize(repetitions.flatMap((r) => {
      const c = cell(method, spec, r);
      return c.kind === 'value' ? [c.value] : [];
    }));
  const mean = (method: string, spec: FigureSpec): number | undefined => summary(method, spec)?.mean;

  // A figure is shown when its benchmark was recorded, except when every successful run
  // of it lacks the figure: a write-only fio job has no read bandwidth to draw, while a
  // benchmark that only failed is drawn, to show the failures.
  const figures = TABLE_FIGURES.filter((spec) => {
    const ofBenchmark = [...byKey.values()].filter((m) => m.benchmark === spec.benchmark);
    if (ofBenchmark.length === 0) return false;
    const successes = ofBenchmark.filter(succeeded);
    // bonnie++ reports a figure it could not time ("+++++"): drawn as n/a with why,
    // never dropped — a missing chart would hide that the run measured a cache.
    return successes.length === 0 || successes.some((m) => spec.read(m.result) !== undefined || spec.reported?.(m.result) === true);
  });
  return { methods, repetitions, figures, measurement, cell, mean, summary };
}

// ---------------------------------------------------------------------------------------
// Ratios

/**
 * For every figure present and every method (paper order): the method's mean over its
 * repetitions, and that mean divided by phy-local's. Failed and unmeasured repetitions
 * are left out of a mean rather than counted as zero.
 */
export function ratiosVsPhyLocal(measurements: MeasurementRecord[]): PhyLocalRatio[] {
  return ratiosOf(analyse(measurements));
}

/** Figures compared against phy-local: the section 4.3 runs compare provisionings instead, on file methods only. */
function ratioFigures(analysis: Analysis): FigureSpec[] {
  return analysis.figures.filter((spec) => !SPARSE_DISK_FIGURES.includes(spec));
}

function ratiosOf(analysis: Analysis): PhyLocalRatio[] {
  return ratioFigures(analysis).flatMap((spec) => {
    const baseline = analysis.summary(BASELINE_METHOD, spec);
    return analysis.methods.map((method): PhyLocalRatio => {
      const summary = analysis.summary(method, spec);
      const interval = summary && baseline ? ratioOf(summary, baseline) : undefined;
      return {
        figure: figureLabel(spec),
        unit: spec.unit,
        method,
        mean: summary?.mean,
        ratio: interval?.ratio,
        ...(interval?.ci95 !== undefined ? { ratioCi95: interval.ci95 } : {}),
        ...(summary && summary.n > 1 ? { summary } : {}),
      };
    });
  });
}

// ---------------------------------------------------------------------------------------
// Text table

/**
 * A fixed-width table for a terminal: one row per figure × method with one column per
 * repetition and the mean ("failed" where the benchmark failed, "n/a" where it ran but
 * did not produce the figure, "-" where nothing was recorded); then the ratios against
 * phy-local (figures × methods); then the errors, one per line.
 */
export function resultsTable(run: RunRecord, measurements: MeasurementRecord[], setup?: RunSetup): string {
  if (run.kind === 'scale') return scaleResultsTable(run, measurements);
  const analysis = analyse(measurements);
  const lines = [`run ${run.runId} (${run.planName}): ${run.state}`, ''];
  if (setup) lines.push(...setupText(setup), '');
  if (measurements.length === 0) {
    lines.push('no measurements');
    return `${lines.join('\n')}\n`;
  }

  // The events' words: a method these agents cannot run was skipped, not failed.
  const cellText = (c: Cell): string => (c.kind === 'value' ? formatNumber(c.value) : c.kind === 'failed' ? (c.error.startsWith('skipped:') ? 'skipped' : 'failed') : c.kind === 'unmeasured' ? 'n/a' : '-');
  const noisy: string[] = [];
  const resultRows = analysis.figures.flatMap((spec) =>
    // A method that never ran this benchmark (the section 4.3 test runs on file methods only) has no row.
    analysis.methods.filter((method) => analysis.repetitions.some((r) => analysis.cell(method, spec, r).kind !== 'absent')).map((method) => {
      const summary = analysis.summary(method, spec);
      const isNoisy = summary?.cv !== undefined && summary.cv > NOISY_CV;
      if (isNoisy) noisy.push(`${method} ${figureLabel(spec)} (cv ${percent(summary.cv!)})`);
      return [
        method,
        figureLabel(spec),
        spec.unit,
        ...analysis.repetitions.map((r) => cellText(analysis.cell(method, spec, r))),
        summary === undefined ? '-' : formatNumber(summary.mean),
        summary?.ci95 === undefined ? '-' : `±${formatNumber(summary.ci95)}`,
        summary?.cv === undefined ? '-' : `${percent(summary.cv)}${isNoisy ? '!' : ''}`,
      ];
    }),
  );
  lines.push(
    ...fixedWidth(
      ['method', 'figure', 'unit', ...analysis.repetitions.map((r) => `rep${r}`), 'mean', '95% CI', 'cv'],
      resultRows,
      [false, false, false, ...analysis.repetitions.map(() => true), true, true, true],
    ),
  );
  lines.push(`95% CI: the mean's 95% confidence interval (Student's t over the repetitions); cv: standard deviation / mean, "!" above ${percent(NOISY_CV)}`);
  if (noisy.length > 0) lines.push(`noisy (cv above ${percent(NOISY_CV)}; read these with care, or run more repetitions): ${noisy.join(', ')}`);

  lines.push('', `ratio vs ${BASELINE_METHOD} (mean of the method / mean of ${BASELINE_METHOD}, ± its 95% interval)`);
  const ratios = ratiosOf(analysis);
  const ratioRows = ratioFigures(analysis).map((spec) => [
    figureLabel(spec),
    spec.unit,
    ...analysis.methods.map((method) => {
      const entry = ratios.find((r) => r.figure === figureLabel(spec) && r.method === method);
      if (entry?.ratio === undefined) return '-';
      return entry.ratioCi95 === undefined ? entry.ratio.toFixed(2) : `${entry.ratio.toFixed(2)}±${entry.ratioCi95.toFixed(2)}`;
    }),
  ]);
  lines.push(...fixedWidth(['figure', 'unit', ...analysis.methods], ratioRows, [false, false, ...analysis.methods.map(() => true)]));

  lines.push(...sparseComparisonText(analysis));
  lines.push(...accountingText(measurements));

  const failures = orderedFailures(measurements);
  if (failures.length > 0) {
    lines.push('', 'errors');
    // A terminal row per error: a multi-line message would break the layout.
    for (const m of failures) lines.push(`  ${m.method} ${m.benchmark} rep${m.repetition}: ${failureText(m).replace(/\s*[\r\n]+\s*/g, ' ')}`);
  }
  return `${lines.join('\n')}\n`;
}

function orderedFailures(measurements: MeasurementRecord[]): MeasurementRecord[] {
  const methodOrder = orderMethods(measurements.map((m) => m.method));
  return measurements
    .filter((m) => !succeeded(m))
    .sort((a, b) => methodOrder.indexOf(a.method) - methodOrder.indexOf(b.method) || a.benchmark.localeCompare(b.benchmark) || a.repetition - b.repetition);
}

/** Columns padded to their widest cell, two spaces apart, a dashed rule under the header. */
function fixedWidth(header: string[], rows: string[][], alignRight: boolean[]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((text, i) => (alignRight[i] ? text.padStart(widths[i] ?? 0) : text.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
}

// ---------------------------------------------------------------------------------------
// CSV

/**
 * One row per measurement × figure of its benchmark, in the order recorded:
 * run_id,method,benchmark,repetition,figure,unit,value,error. The sparse-image test adds
 * a row per pass ("pass N throughput") after its mean. A failed measurement has an empty
 * value and its error; RFC 4180 quoting and CRLF line ends.
 */
export function resultsCsv(measurements: MeasurementRecord[]): string {
  const rows: string[][] = [['run_id', 'method', 'benchmark', 'repetition', 'figure', 'unit', 'value', 'error']];
  for (const m of measurements) {
    const base = [m.runId, m.method, m.benchmark, String(m.repetition)];
    const specs = TABLE_FIGURES.filter((spec) => spec.benchmark === m.benchmark);
    if (specs.length === 0) {
      rows.push([...base, '', '', '', m.error]);
      continue;
    }
    for (const spec of specs) {
      const value = succeeded(m) ? spec.read(m.result) : undefined;
      rows.push([...base, spec.figure, spec.unit, value === undefined ? '' : String(value), succeeded(m) ? '' : failureText(m)]);
    }
    if (m.benchmark === SPARSE_BENCHMARK && succeeded(m)) {
      for (const p of sparsePasses(m.result)) rows.push([...base, `pass ${p.pass} throughput`, 'MB/s', String(p.mbPerSecond), '']);
    }
  }
  return rows.map((row) => row.map(csvField).join(',')).join('\r\n') + '\r\n';
}

function csvField(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

// ---------------------------------------------------------------------------------------
// HTML report

/** One slot of a chart group: a bar, or an empty slot saying why there is none. */
type Slot =
  | { kind: 'bar'; value: number; tooltip: string; attributes: Array<[string, string]>; points: number[] }
  | { kind: 'missing'; reason: string; attributes: Array<[string, string]> };

interface ChartSpec {
  /** data-figure of the <svg>. */
  key: string;
  title: string;
  unit: string;
  /** What one bar of a group is: "repetition" or "pass". */
  seriesName: string;
  /** Legend entries, one per slot of a group. */
  series: string[];
  methods: string[];
  slots: (method: string) => Slot[];
  /** A group's mean and its 95% interval, drawn over its bars (two or more repetitions). */
  interval?: (method: string) => Summary | undefined;
}

/**
 * The report as one self-contained HTML page (inline CSS and SVG, no script, nothing
 * fetched): a bar chart per figure in the style of the paper's figures 3-7 (a group per
 * method in the paper's order, a bar per repetition; the sparse test a bar per pass,
 * averaged over the repetitions, with each repetition's value as a dot), the ratios
 * against phy-local, and a summary of the run. Every chart is
 * `<svg data-figure="benchmark/figure">`, every group `<g class="method" data-method>`,
 * every bar `<rect class="bar" data-method data-repetition data-value>` (sparse bars add
 * data-pass; their data-repetition is "mean"); a missing value is a
 * `<g class="missing">` slot marked "n/a" whose <title> says why.
 */
export function renderReport(run: RunRecord, measurements: MeasurementRecord[], options: ReportOptions = {}): string {
  if (run.kind === 'scale') return renderScaleReport(run, measurements);
  const analysis = analyse(measurements);
  const title = options.title ?? `vcstor report: ${run.planName}`;
  const charts = chartSpecs(analysis, measurements);
  const meta = [`run ${run.runId}`, `plan ${run.planName}`, `state ${run.state}`];
  if (options.generatedUnixMs !== undefined) meta.push(`generated ${isoTime(options.generatedUnixMs)}`);

  const body = [
    `<header><h1>${esc(title)}</h1><p class="meta">${meta.map(esc).join(' · ')}</p></header>`,
    options.setup ? renderSetup(options.setup) : '',
    '<section class="charts">',
    charts.length === 0 ? '<p class="empty">No measurements were recorded.</p>' : charts.map((chart, i) => renderChart(chart, i + 1)).join('\n'),
    '</section>',
    renderRatioTable(analysis),
    renderSparseComparison(analysis),
    accountingHtml(measurements),
    renderSummary(run, measurements),
  ];
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${esc(title)}</title>`,
    `<style>${STYLE}</style>`,
    '</head>',
    '<body>',
    ...body,
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

/**
 * Okabe-Ito colours (without its yellow, too pale on paper): told apart with common
 * colour-blindness and, with the dark outline, in greyscale print.
 */
const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#000000', '#999999'];

const STYLE = `
body { font-family: "Helvetica Neue", Arial, sans-serif; color: #111; background: #fff; max-width: 60rem; margin: 1.5rem auto; padding: 0 1rem; line-height: 1.4; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ccc; }
.meta { color: #555; margin-top: 0; }
figure.chart { margin: 1.5rem 0; break-inside: avoid; page-break-inside: avoid; }
figcaption { font-size: 0.9rem; color: #333; margin-top: 0.3rem; }
svg { display: block; max-width: 100%; height: auto; font-family: inherit; }
svg text { font-size: 11px; fill: #111; }
svg .axis { stroke: #111; stroke-width: 1; }
svg .grid { stroke: #ddd; stroke-width: 1; }
svg .bar { stroke: #222; stroke-width: 0.6; }
svg .point { fill: #fff; stroke: #111; stroke-width: 1; }
svg .slot { fill: none; stroke: #888; stroke-width: 0.8; stroke-dasharray: 3 2; }
svg .na { font-size: 9px; fill: #666; }
svg .unit { font-size: 11px; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 0.5rem 0; }
th, td { border: 1px solid #bbb; padding: 0.25rem 0.5rem; }
th { background: #f2f2f2; text-align: left; }
td.ratio { text-align: right; font-variant-numeric: tabular-nums; }
td.ratio .mean { display: block; font-size: 0.75rem; color: #555; }
td.ratio.noisy { color: #b00; }
svg .errorbar { stroke: #111; stroke-width: 1.4; fill: none; }
td.missing { text-align: center; color: #777; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.warn { color: #b00; font-weight: bold; }
td.path { font-size: 0.8rem; }
dl.summary { display: grid; grid-template-columns: max-content auto; gap: 0.2rem 1rem; }
dl.summary dt { font-weight: bold; }
dl.summary dd { margin: 0; }
ul.errors { font-family: monospace; font-size: 0.85rem; white-space: pre-wrap; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; } }
`;

function chartSpecs(analysis: Analysis, measurements: MeasurementRecord[]): ChartSpec[] {
  const charts: ChartSpec[] = [];
  for (const spec of analysis.figures) {
    if (spec === SPARSE_MEAN_FIGURE || SPARSE_DISK_FIGURES.includes(spec)) continue;
    charts.push({
      key: figureKey(spec),
      title: `${BENCHMARK_TITLES[spec.benchmark] ?? spec.benchmark} ${spec.figure}`,
      unit: spec.unit,
      seriesName: 'repetition',
      series: analysis.repetitions.map((r) => `rep ${r}`),
      methods: analysis.methods,
      interval: (method) => {
        const summary = analysis.summary(method, spec);
        return summary?.ci95 !== undefined ? summary : undefined;
      },
      slots: (method) =>
        analysis.repetitions.map((repetition): Slot => {
          const cell = analysis.cell(method, spec, repetition);
          const attributes: Array<[string, string]> = [
            ['data-method', method],
            ['data-repetition', String(repetition)],
          ];
          if (cell.kind === 'value') {
            return { kind: 'bar', value: cell.value, tooltip: `${method}, rep ${repetition}: ${formatGrouped(cell.value)} ${spec.unit}`, attributes: [...attributes, ['data-value', String(cell.value)]], points: [] };
          }
          return { kind: 'missing', reason: `${method}, rep ${repetition}: ${missingReason(cell, spec.benchmark)}`, attributes };
        }),
    });
  }
  if (measurements.some((m) => m.benchmark === SPARSE_BENCHMARK)) charts.push(sparseChart(analysis));
  return charts;
}

function missingReason(cell: Exclude<Cell, { kind: 'value' }>, benchmark: string): string {
  switch (cell.kind) {
    case 'failed':
      return cell.error;
    case 'unmeasured':
      return benchmark === 'bonnie'
        ? 'bonnie++ printed +++++: the test ended within its 0.5 s timer, so it measured a cache or a file too small, not the storage'
        : 'the benchmark ran but did not measure this figure';
    case 'absent':
      return 'no measurement recorded';
  }
}

/**
 * The sparse test as the paper draws it: a bar per pass, grouped by method. Repetitions
 * are averaged into the bar (five passes times several repetitions would make bars too
 * thin to read); each repetition's value is a dot on it, so the spread stays visible.
 */
function sparseChart(analysis: Analysis): ChartSpec {
  const passesOf = (method: string, repetition: number): Array<{ pass: number; mbPerSecond: number }> => {
    const m = analysis.measurement(method, SPARSE_BENCHMARK, repetition);
    return m && succeeded(m) ? sparsePasses(m.result) : [];
  };
  const passNumbers = [...new Set(analysis.methods.flatMap((method) => analysis.repetitions.flatMap((r) => passesOf(method, r).map((p) => p.pass))))].sort((a, b) => a - b);
  // Every group keeps at least one slot, so a method that only failed still shows "n/a".
  const slotsPasses = passNumbers.length > 0 ? passNumbers : [1];
  return {
    key: `${SPARSE_BENCHMARK}/pass throughput`,
    title: 'Sparse image write throughput per pass',
    unit: 'MB/s',
    seriesName: 'pass',
    series: slotsPasses.map((p) => `pass ${p}`),
    methods: analysis.methods,
    slots: (method) =>
      slotsPasses.map((pass): Slot => {
        const values: Array<{ repetition: number; mbPerSecond: number }> = [];
        const problems: string[] = [];
        for (const repetition of analysis.repetitions) {
          const m = analysis.measurement(method, SPARSE_BENCHMARK, repetition);
          const found = passesOf(method, repetition).find((p) => p.pass === pass);
          if (found) values.push({ repetition, mbPerSecond: found.mbPerSecond });
          else if (m && !succeeded(m)) problems.push(`rep ${repetition}: ${failureText(m)}`);
          else if (m) problems.push(`rep ${repetition}: no pass ${pass} in the result`);
        }
        const attributes: Array<[string, string]> = [
          ['data-method', method],
          ['data-repetition', 'mean'],
          ['data-pass', String(pass)],
        ];
        const mean = meanOf(values.map((v) => v.mbPerSecond));
        if (mean === undefined) {
          return { kind: 'missing', reason: `${method}, pass ${pass}: ${problems.length > 0 ? problems.join('; ') : 'no measurement recorded'}`, attributes };
        }
        const detail = values.map((v) => `rep ${v.repetition}: ${formatGrouped(v.mbPerSecond)}`).join(', ');
        const tooltip = `${method}, pass ${pass}: mean ${formatGrouped(mean)} MB/s (${detail})${problems.length > 0 ? `; ${problems.join('; ')}` : ''}`;
        return {
          kind: 'bar',
          value: mean,
          tooltip,
          attributes: [...attributes, ['data-repetitions', values.map((v) => v.repetition).join(' ')], ['data-value', String(mean)]],
          points: values.length > 1 ? values.map((v) => v.mbPerSecond) : [],
        };
      }),
  };
}

// Chart geometry, in SVG user units (the chart scales to the page width).
const CHART_WIDTH = 800;
const CHART_HEIGHT = 360;
const MARGIN_LEFT = 78;
const MARGIN_RIGHT = 16;
const MARGIN_BOTTOM = 58;
const LEGEND_ITEM_WIDTH = 72;
const LEGEND_ROW_HEIGHT = 18;

function renderChart(chart: ChartSpec, number: number): string {
  const plotWidth = CHART_WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
  const legendPerRow = Math.max(1, Math.floor(plotWidth / LEGEND_ITEM_WIDTH));
  const legendRows = Math.ceil(chart.series.length / legendPerRow);
  const top = 14 + legendRows * LEGEND_ROW_HEIGHT;
  const plotHeight = CHART_HEIGHT - top - MARGIN_BOTTOM;
  const baseline = top + plotHeight;

  const slotsByMethod = chart.methods.map((method) => ({ method, slots: chart.slots(method) }));
  const intervals = new Map(chart.methods.map((method) => [method, chart.interval?.(method)]));
  const highest = Math.max(
    0,
    ...slotsByMethod.flatMap(({ slots }) => slots.flatMap((s) => (s.kind === 'bar' ? [s.value, ...s.points] : []))),
    ...[...intervals.values()].map((i) => (i ? i.mean + (i.ci95 ?? 0) : 0)),
  );
  const axis = niceAxis(highest);
  const y = (value: number): number => baseline - (value / axis.max) * plotHeight;

  const parts: string[] = [];
  parts.push(
    `<svg data-figure="${esc(chart.key)}" viewBox="0 0 ${CHART_WIDTH} ${CHART_HEIGHT}" width="${CHART_WIDTH}" height="${CHART_HEIGHT}" role="img" aria-label="${esc(`${chart.title} (${chart.unit})`)}">`,
  );
  parts.push(`<title>${esc(`${chart.title} (${chart.unit})`)}</title>`);

  // Y axis: grid lines at round values, their labels, and the unit.
  for (const tick of axis.ticks) {
    const ty = fix(y(tick));
    parts.push(`<line class="grid" x1="${MARGIN_LEFT}" x2="${CHART_WIDTH - MARGIN_RIGHT}" y1="${ty}" y2="${ty}"/>`);
    parts.push(`<text class="tick" x="${MARGIN_LEFT - 6}" y="${ty}" text-anchor="end" dominant-baseline="middle">${esc(formatTick(tick, axis.decimals))}</text>`);
  }
  parts.push(`<line class="axis" x1="${MARGIN_LEFT}" x2="${MARGIN_LEFT}" y1="${top}" y2="${baseline}"/>`);
  parts.push(`<line class="axis" x1="${MARGIN_LEFT}" x2="${CHART_WIDTH - MARGIN_RIGHT}" y1="${baseline}" y2="${baseline}"/>`);
  parts.push(`<text class="unit" x="16" y="${fix(top + plotHeight / 2)}" text-anchor="middle" transform="rotate(-90 16 ${fix(top + plotHeight / 2)})">${esc(chart.unit)}</text>`);

  // Legend: one swatch per repetition (or pass), above the plot.
  parts.push('<g class="legend">');
  chart.series.forEach((label, i) => {
    const lx = MARGIN_LEFT + (i % legendPerRow) * LEGEND_ITEM_WIDTH;
    const ly = 8 + Math.floor(i / legendPerRow) * LEGEND_ROW_HEIGHT;
    parts.push(`<rect class="swatch" x="${lx}" y="${ly}" width="12" height="12" fill="${colour(i)}" stroke="#222" stroke-width="0.6"/>`);
    parts.push(`<text x="${lx + 17}" y="${ly + 10}">${esc(label)}</text>`);
  });
  parts.push('</g>');

  // Groups: one per method, the slots side by side inside it.
  const groupWidth = plotWidth / Math.max(1, chart.methods.length);
  const groupPadding = groupWidth * 0.1;
  const slotWidth = (groupWidth - 2 * groupPadding) / Math.max(1, chart.series.length);
  const barWidth = slotWidth * 0.86;
  const longestName = Math.max(0, ...chart.methods.map((m) => m.length));
  // Names wider than their group (about 6.5 units a character) are slanted, not overlapped.
  const slantNames = longestName * 6.5 + 6 > groupWidth;
  slotsByMethod.forEach(({ method, slots }, g) => {
    const groupX = MARGIN_LEFT + g * groupWidth;
    parts.push(`<g class="method" data-method="${esc(method)}">`);
    slots.forEach((slot, i) => {
      const x = groupX + groupPadding + i * slotWidth + (slotWidth - barWidth) / 2;
      const attributes = slot.attributes.map(([name, value]) => ` ${name}="${esc(value)}"`).join('');
      if (slot.kind === 'bar') {
        const barTop = y(slot.value);
        parts.push(
          `<rect class="bar"${attributes} x="${fix(x)}" y="${fix(barTop)}" width="${fix(barWidth)}" height="${fix(baseline - barTop)}" fill="${colour(i)}"><title>${esc(slot.tooltip)}</title></rect>`,
        );
        for (const point of slot.points) parts.push(`<circle class="point" cx="${fix(x + barWidth / 2)}" cy="${fix(y(point))}" r="${fix(Math.min(3, barWidth / 3))}"/>`);
      } else {
        // An empty, dashed slot where the bar would be; the reason is its tooltip.
        const narrow = barWidth < 16;
        const slotHeight = narrow ? 30 : 22;
        const cx = x + barWidth / 2;
        const label = narrow
          ? `<text class="na" x="${fix(cx)}" y="${fix(baseline - 15)}" text-anchor="middle" dominant-baseline="middle" transform="rotate(-90 ${fix(cx)} ${fix(baseline - 15)})">n/a</text>`
          : `<text class="na" x="${fix(cx)}" y="${fix(baseline - 8)}" text-anchor="middle">n/a</text>`;
        parts.push(
          `<g class="missing"${attributes}><title>${esc(slot.reason)}</title><rect class="slot" x="${fix(x)}" y="${fix(baseline - slotHeight)}" width="${fix(barWidth)}" height="${slotHeight}"/>${label}</g>`,
        );
      }
    });
    // The group's mean (a line across its bars) and its 95% interval (a whisker).
    const interval = intervals.get(method);
    if (interval?.ci95 !== undefined) {
      const left = groupX + groupPadding;
      const right = groupX + groupWidth - groupPadding;
      const cx = (left + right) / 2;
      const low = y(Math.max(0, interval.mean - interval.ci95));
      const high = y(interval.mean + interval.ci95);
      const cap = Math.min(8, (right - left) / 4);
      const tip = `${method}: mean ${formatGrouped(interval.mean)} ${chart.unit}, 95% interval ±${formatGrouped(interval.ci95)}, cv ${percent(interval.cv ?? 0)} (${interval.n} repetitions)`;
      parts.push(
        `<g class="errorbar" data-method="${esc(method)}" data-mean="${interval.mean}" data-ci95="${interval.ci95}"><title>${esc(tip)}</title>` +
          `<line class="errorbar" x1="${fix(left)}" x2="${fix(right)}" y1="${fix(y(interval.mean))}" y2="${fix(y(interval.mean))}" stroke-dasharray="4 2"/>` +
          `<path class="errorbar" d="M${fix(cx)} ${fix(low)}V${fix(high)}M${fix(cx - cap)} ${fix(low)}H${fix(cx + cap)}M${fix(cx - cap)} ${fix(high)}H${fix(cx + cap)}"/></g>`,
      );
    }
    const nameX = groupX + groupWidth / 2;
    const nameY = baseline + 16;
    parts.push(
      slantNames
        ? `<text class="method-name" x="${fix(nameX)}" y="${nameY}" text-anchor="end" transform="rotate(-30 ${fix(nameX)} ${nameY})">${esc(method)}</text>`
        : `<text class="method-name" x="${fix(nameX)}" y="${nameY}" text-anchor="middle">${esc(method)}</text>`,
    );
    parts.push('</g>');
  });
  parts.push('</svg>');

  const errorBars = chart.interval && [...intervals.values()].some((i) => i !== undefined) ? ' The dashed line over a group is its mean, the whisker its 95% confidence interval.' : '';
  const caption = `Figure ${number}. ${chart.title} (${chart.unit}): one group per method, one bar per ${chart.seriesName}${chart.seriesName === 'pass' ? ' (the mean over the repetitions; dots are the repetitions)' : ''}. Higher is better; "n/a" marks a value that is missing, its reason in the tooltip.${errorBars}`;
  return `<figure class="chart">\n${parts.join('\n')}\n<figcaption>${esc(caption)}</figcaption>\n</figure>`;
}

function renderRatioTable(analysis: Analysis): string {
  const ratios = ratiosOf(analysis);
  const rows = ratioFigures(analysis).map((spec) => {
    const cells = analysis.methods.map((method) => {
      const entry = ratios.find((r) => r.figure === figureLabel(spec) && r.method === method);
      const attributes = `data-method="${esc(method)}" data-figure="${esc(figureKey(spec))}"`;
      if (entry?.ratio === undefined) {
        const title = entry?.mean === undefined ? `no ${method} value` : `no ${BASELINE_METHOD} value`;
        return `<td class="missing" ${attributes} title="${esc(title)}">-</td>`;
      }
      const spread = entry.summary ? ` ±${formatGrouped(entry.summary.ci95 ?? 0)}, cv ${percent(entry.summary.cv ?? 0)}` : '';
      const mean = entry.mean === undefined ? '' : `<span class="mean">${esc(`${formatGrouped(entry.mean)}${spread} ${spec.unit}`)}</span>`;
      const noisy = (entry.summary?.cv ?? 0) > NOISY_CV;
      const interval = entry.ratioCi95 === undefined ? '' : ` ±${entry.ratioCi95.toFixed(2)}`;
      return `<td class="ratio${noisy ? ' noisy' : ''}" ${attributes} data-ratio="${entry.ratio}"${entry.ratioCi95 === undefined ? '' : ` data-ci95="${entry.ratioCi95}"`}${noisy ? ` title="${esc(`${method}'s repetitions vary by more than ${percent(NOISY_CV)} (cv ${percent(entry.summary!.cv!)})`)}"` : ''}>${entry.ratio.toFixed(2)}${interval}${noisy ? ' !' : ''}${mean}</td>`;
    });
    return `<tr><th scope="row">${esc(figureLabel(spec))} (${esc(spec.unit)})</th>${cells.join('')}</tr>`;
  });
  return [
    '<section class="ratios">',
    `<h2>Ratio against ${BASELINE_METHOD}</h2>`,
    `<p>Each method's mean over its repetitions divided by ${BASELINE_METHOD}'s (1.00 is as fast as ${BASELINE_METHOD}; higher is better), ± the ratio's 95% interval (delta method, Student's t); under it the method's mean ± its 95% confidence interval and its coefficient of variation. "!" marks a method whose repetitions vary by more than ${percent(NOISY_CV)}. Failed repetitions are left out of the mean.</p>`,
    '<table class="ratios">',
    `<thead><tr><th>figure</th>${analysis.methods.map((m) => `<th scope="col">${esc(m)}</th>`).join('')}</tr></thead>`,
    `<tbody>${rows.join('\n')}</tbody>`,
    '</table>',
    '</section>',
  ].join('\n');
}

function renderSummary(run: RunRecord, measurements: MeasurementRecord[]): string {
  const wall = run.finishedUnixMs > 0 && run.createdUnixMs > 0 ? formatDuration(run.finishedUnixMs - run.createdUnixMs) : 'not finished';
  const entries: Array<[string, string]> = [
    ['plan', run.planName],
    ['kind', run.kind],
    ['run id', run.runId],
    ['state', run.state],
    ['started', run.createdUnixMs > 0 ? isoTime(run.createdUnixMs) : '-'],
    ['finished', run.finishedUnixMs > 0 ? isoTime(run.finishedUnixMs) : '-'],
    ['wall time', wall],
    ['steps', `${run.stepsSucceeded} ok, ${run.stepsFailed} failed, of ${run.stepsTotal}`],
    ['measurements', `${measurements.filter(succeeded).length} ok, ${measurements.filter((m) => !succeeded(m)).length} failed`],
  ];
  const errors = [
    ...(run.error !== '' ? [`run: ${run.error}`] : []),
    ...orderedFailures(measurements).map((m) => `${m.method} / ${m.benchmark} / rep ${m.repetition}: ${failureText(m)}`),
  ];
  return [
    '<section class="summary">',
    '<h2>Run summary</h2>',
    `<dl class="summary">${entries.map(([name, value]) => `<dt>${esc(name)}</dt><dd>${esc(value)}</dd>`).join('')}</dl>`,
    '<h3>Errors</h3>',
    errors.length === 0 ? '<p class="no-errors">None.</p>' : `<ul class="errors">${errors.map((e) => `<li>${esc(e)}</li>`).join('\n')}</ul>`,
    '</section>',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------
// Small helpers

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function percent(fraction: number): string {
  return `${(fraction * 100).toFixed(fraction < 0.1 ? 1 : 0)}%`;
}

function meanOf(values: number[]): number | undefined {
  return values.length === 0 ? undefined : values.reduce((sum, v) => sum + v, 0) / values.length;
}

/** Text for HTML content and attribute values alike. */
function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

function colour(index: number): string {
  return PALETTE[index % PALETTE.length] ?? '#777777';
}

/** Coordinates to two decimals: enough for a screen, and stable output. */
function fix(n: number): string {
  return String(Math.round(n * 100) / 100);
}

/** About three significant digits, no grouping: 58610, 420, 61.0, 0.50. */
function formatNumber(n: number): string {
  const magnitude = Math.abs(n);
  return n.toFixed(magnitude >= 100 ? 0 : magnitude >= 10 ? 1 : 2);
}

/** {@link formatNumber} with thousands separated: 58,610. */
function formatGrouped(n: number): string {
  return groupThousands(formatNumber(n));
}

function groupThousands(text: string): string {
  const [whole = '', fraction] = text.split('.');
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return fraction === undefined ? grouped : `${grouped}.${fraction}`;
}

function formatTick(value: number, decimals: number): string {
  return groupThousands(value.toFixed(decimals));
}

/**
 * A y axis from 0 to a round value above `highest`, ticks at a 1, 2, 2.5 or 5 times a
 * power of ten step: four to six gridlines, as a reader would draw them.
 */
function niceAxis(highest: number): { max: number; ticks: number[]; decimals: number } {
  if (!(highest > 0)) return { max: 1, ticks: [0, 0.25, 0.5, 0.75, 1], decimals: 2 };
  const rough = highest / 5;
  const power = 10 ** Math.floor(Math.log10(rough));
  const multiple = [1, 2, 2.5, 5, 10].find((m) => m * power >= rough) ?? 10;
  const step = multiple * power;
  const steps = Math.max(1, Math.ceil(highest / step - 1e-9));
  const ticks = Array.from({ length: steps + 1 }, (_, i) => i * step);
  let decimals = 0;
  while (decimals < 6 && Math.abs(Math.round(step * 10 ** decimals) - step * 10 ** decimals) > 1e-6) decimals++;
  return { max: steps * step, ticks, decimals };
}

function isoTime(unixMs: number): string {
  return new Date(unixMs).toISOString().replace('.000Z', 'Z');
}

/** "12.3 s", "4 min 05 s", "1 h 02 min 03 s". */
function formatDuration(ms: number): string {
  if (ms < 0) return '-';
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const totalSeconds = Math.round(ms / 1000);
  const hours = Math.floor(totalSeconds / 3600);
  const minutes = Math.floor((totalSeconds % 3600) / 60);
  const seconds = String(totalSeconds % 60).padStart(2, '0');
  return hours > 0 ? `${hours} h ${String(minutes).padStart(2, '0')} min ${seconds} s` : `${minutes} min ${seconds} s`;
}

// ---------------------------------------------------------------------------------------
// Sparse vs zero-filled (the paper's section 4.3, Fig. 7)

/** One method's pass: each provisioning's throughput over the repetitions, and their ratio. */
export interface SparseComparisonPass {
  method: string;
  pass: number;
  zeroFilled: Summary | undefined;
  sparse: Summary | undefined;
  /** sparse mean / zero-filled mean, ± its 95% interval. */
  ratio: number | undefined;
  ratioCi95: number | undefined;
}

function sparseComparisonOf(analysis: Analysis): SparseComparisonPass[] {
  const out: SparseComparisonPass[] = [];
  const passValues = (method: string, benchmark: string, pass: number): number[] =>
    analysis.repetitions.flatMap((r) => {
      const m = analysis.measurement(method, benchmark, r);
      return m && succeeded(m) ? sparsePasses(m.result).filter((p) => p.pass === pass).map((p) => p.mbPerSecond) : [];
    });
  for (const method of analysis.methods) {
    const passes = new Set<number>();
    for (const benchmark of Object.values(SPARSE_DISK)) {
      for (const r of analysis.repetitions) {
        const m = analysis.measurement(method, benchmark, r);
        if (m && succeeded(m)) for (const p of sparsePasses(m.result)) passes.add(p.pass);
      }
    }
    for (const pass of [...passes].sort((a, b) => a - b)) {
      const zeroFilled = summarize(passValues(method, SPARSE_DISK['zero-filled'], pass));
      const sparse = summarize(passValues(method, SPARSE_DISK.sparse, pass));
      const interval = zeroFilled && sparse ? ratioOf(sparse, zeroFilled) : undefined;
      out.push({ method, pass, zeroFilled, sparse, ratio: interval?.ratio, ratioCi95: interval?.ci95 });
    }
  }
  return out;
}

/** Per file method and pass: write throughput over a sparse image / over a zero-filled one. */
export function sparseComparison(measurements: MeasurementRecord[]): SparseComparisonPass[] {
  return sparseComparisonOf(analyse(measurements));
}

function ratioText(ratio: number | undefined, ci95: number | undefined): string {
  if (ratio === undefined) return '-';
  return ci95 === undefined ? ratio.toFixed(2) : `${ratio.toFixed(2)}±${ci95.toFixed(2)}`;
}

function sparseComparisonText(analysis: Analysis): string[] {
  const rows = sparseComparisonOf(analysis);
  if (rows.length === 0) return [];
  const passes = [...new Set(rows.map((r) => r.pass))].sort((a, b) => a - b);
  const methods = [...new Set(rows.map((r) => r.method))];
  const body = methods.map((method) => [method, ...passes.map((pass) => {
    const row = rows.find((r) => r.method === method && r.pass === pass);
    return ratioText(row?.ratio, row?.ratioCi95);
  })]);
  return [
    '',
    'sparse vs zero-filled (paper section 4.3, Fig. 7): the guest writing its disk, write throughput over a sparse image / over a zero-filled one, per pass, ± 95% interval',
    ...fixedWidth(['method', ...passes.map((p) => `pass ${p}`)], body, [false, ...passes.map(() => true)]),
  ];
}

function renderSparseComparison(analysis: Analysis): string {
  const rows = sparseComparisonOf(analysis);
  if (rows.length === 0) return '';
  const passes = [...new Set(rows.map((r) => r.pass))].sort((a, b) => a - b);
  const methods = [...new Set(rows.map((r) => r.method))];
  const chart: ChartSpec = {
    key: 'sparse-disk/ratio',
    title: 'Fig. 7: write throughput over a sparse image / over a zero-filled image, per pass',
    unit: 'sparse / zero-filled',
    seriesName: 'pass',
    series: passes.map((p) => `pass ${p}`),
    methods,
    slots: (method) =>
      passes.map((pass): Slot => {
        const row = rows.find((r) => r.method === method && r.pass === pass);
        const attributes: Array<[string, string]> = [['data-method', method], ['data-pass', String(pass)]];
        if (row?.ratio === undefined) return { kind: 'missing', reason: `${method}, pass ${pass}: ${row?.zeroFilled ? 'no sparse run' : 'no zero-filled run'}`, attributes };
        const mbs = (x: Summary | undefined) => (x ? `${formatGrouped(x.mean)} MB/s` : '-');
        return {
          kind: 'bar',
          value: row.ratio,
          tooltip: `${method}, pass ${pass}: sparse ${mbs(row.sparse)} / zero-filled ${mbs(row.zeroFilled)} = ${ratioText(row.ratio, row.ratioCi95)}`,
          attributes: [...attributes, ['data-value', String(row.ratio)], ...(row.ratioCi95 === undefined ? [] : ([['data-ci95', String(row.ratioCi95)]] as Array<[string, string]>))],
          points: [],
        };
      }),
  };
  const table = methods.map((method) => {
    const cells = passes.map((pass) => {
      const row = rows.find((r) => r.method === method && r.pass === pass);
      const detail = row?.sparse && row.zeroFilled ? `<span class="mean">${esc(`${formatGrouped(row.sparse.mean)} / ${formatGrouped(row.zeroFilled.mean)} MB/s`)}</span>` : '';
      return `<td class="ratio" data-method="${esc(method)}" data-pass="${pass}">${esc(ratioText(row?.ratio, row?.ratioCi95))}${detail}</td>`;
    });
    return `<tr><th scope="row">${esc(method)}</th>${cells.join('')}</tr>`;
  });
  return [
    '<section class="sparse-comparison">',
    '<h2>Sparse vs zero-filled images (section 4.3)</h2>',
    '<p>The guest writes a file into its own disk in 8 KiB blocks, syncs and deletes it, pass after pass, once with the image behind its disk sparse and once zero-filled (the method set up twice). Each cell: throughput over the sparse image / over the zero-filled one ± the 95% interval over the repetitions; under it the two means. Below 1.00 the sparse image costs: its blocks are allocated as the guest first writes them.</p>',
    renderChart(chart, 0).replace('Figure 0. ', ''),
    '<table class="ratios">',
    `<thead><tr><th>method</th>${passes.map((p) => `<th scope="col">pass ${p}</th>`).join('')}</tr></thead>`,
    `<tbody>${table.join('\n')}</tbody>`,
    '</table>',
    '</section>',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------
// The set-up (the paper's Table 1)

function mibText(bytes: number): string {
  return bytes > 0 ? `${Math.round(bytes / 2 ** 20)} MiB` : 'unknown';
}

function setupText(setup: RunSetup): string[] {
  const rows = setup.hosts.map((h) => [h.role, h.name, mibText(h.memoryBytes), h.memoryScope, h.drivers.join(' ')]);
  return [
    `set-up: ${setup.repetitions} repetitions, ${mibText(setup.volumeSizeBytes)} ${setup.provisioning} volumes; ${Object.entries(setup.benchmarks).map(([name, spec]) => `${name} (${spec})`).join('; ')}`,
    ...fixedWidth(['role', 'host', 'memory', 'memory of', 'drivers'], rows, [false, false, true, false, false]),
  ];
}

function renderSetup(setup: RunSetup): string {
  const rows = setup.hosts.map(
    (h) =>
      `<tr data-role="${esc(h.role)}"><td>${esc(h.role)}</td><td>${esc(h.name)}</td><td>${esc(h.hostname)}</td><td class="num">${esc(mibText(h.memoryBytes))}</td><td>${esc(h.memoryScope)}</td><td>${esc(h.version)}</td><td>${esc(h.drivers.join(', '))}</td></tr>`,
  );
  const benchmarks = Object.entries(setup.benchmarks).map(([name, spec]) => `<tr><th scope="row">${esc(name)}</th><td>${esc(spec)}</td></tr>`);
  return [
    '<section class="setup">',
    '<h2>Set-up (Table 1)</h2>',
    `<p>${setup.repetitions} repetitions of every method and benchmark, on ${esc(mibText(setup.volumeSizeBytes))} ${esc(setup.provisioning)} volumes and images. Each host as its agent described itself when the run began; its memory is its memory cgroup's limit where hosts share a kernel (the lab), else the machine's.</p>`,
    '<table class="setup">',
    '<thead><tr><th>role</th><th>agent</th><th>hostname</th><th>memory</th><th>memory of</th><th>vcstor</th><th>drivers</th></tr></thead>',
    `<tbody>${rows.join('\n')}</tbody>`,
    '</table>',
    '<table class="benchmarks">',
    `<tbody>${benchmarks.join('\n')}</tbody>`,
    '</table>',
    '</section>',
  ].join('\n');
}
