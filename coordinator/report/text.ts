/**
 * The results for a terminal (a fixed-width table) and for a spreadsheet (a CSV). Pure
 * functions.
 */

import type { MeasurementRecord, RunRecord, RunSetup } from '../model.js';
import { NOISY_CV } from '../statistics.js';
import { accountingText } from './accounting.js';
import { analyseScopes, failureText, measurementOutcome, orderedFailures, rowMethods, runOutcome, succeeded, type Cell } from './analysis.js';
import { dataPaths } from './data-paths.js';
import { figureLabel, sparsePasses, SPARSE_BENCHMARK, TABLE_FIGURES, type FigureSpec } from './figures.js';
import { cpuText, fixedWidth, formatNumber, percent, ratioText } from './format.js';
import { shownFigures } from './paper-figures.js';
import { BASELINE_METHOD, dom0PairsText, dom0RatioFigures, ratioEntry, ratioFigures, ratiosOf, type PhyLocalRatio } from './ratios.js';
import { scaleResultsTable } from './scale.js';
import { sharedResultsTable } from './shared.js';
import { setupText } from './setup-tables.js';
import { sparseComparisonText } from './sparse.js';

/** A cell in the report's words: the value, "skipped", "failed", "n/a" (ran, not measured) or "-" (nothing recorded). */
function cellText(c: Cell): string {
  return c.kind === 'value' ? formatNumber(c.value) : c.kind === 'failed' ? c.outcome : c.kind === 'unmeasured' ? 'n/a' : '-';
}

/**
 * A fixed-width table for a terminal. After the set-up (Tables 1 and 2, when given): per
 * figure of the paper in order (Figs. 3-7, then the extras), its title, then one row per
 * figure × method with one column per repetition, the mean, its 95% interval, the cv and,
 * for bonnie++, its CPU % — or "not measured in this run" and why. A cell says "skipped"
 * or "failed" (the measurement's outcome), "n/a" where the benchmark ran but did not
 * produce the figure, "-" where nothing was recorded. Then each row's data path, the
 * ratios against phy-local (and against each method's dom0 baseline), and the skipped
 * and failed measurements with their reasons, one per line.
 */
export function resultsTable(run: RunRecord, measurements: MeasurementRecord[], setup?: RunSetup): string {
  if (run.kind === 'scale') return scaleResultsTable(run, measurements);
  if (run.kind === 'shared') return sharedResultsTable(run, measurements);
  const scopes = analyseScopes(measurements);
  const lines = [`run ${run.runId} (${run.planName}): ${runOutcome(run.state)}`, ''];
  if (setup) lines.push(...setupText(setup), '');
  if (measurements.length === 0) {
    lines.push('no measurements');
    return `${lines.join('\n')}\n`;
  }

  const noisy: string[] = [];
  for (const shown of shownFigures(scopes, setup)) {
    if (shown.specs.length === 0) {
      lines.push(`${shown.heading}: not measured in this run: ${shown.notMeasured}`, '');
      continue;
    }
    const analysis = shown.analysis;
    const withCpu = shown.specs.some((spec) => spec.cpu !== undefined);
    const rows = shown.specs.flatMap((spec) =>
      rowMethods(analysis, spec).map((method) => {
        const summary = analysis.summary(method, spec);
        const isNoisy = summary?.cv !== undefined && summary.cv > NOISY_CV;
        if (isNoisy) noisy.push(`${method} ${figureLabel(spec)} (cv ${percent(summary.cv!)})`);
        const cpu = analysis.cpuSummary(method, spec);
        return [
          method,
          figureLabel(spec),
          spec.unit,
          ...analysis.repetitions.map((r) => cellText(analysis.cell(method, spec, r))),
          summary === undefined ? '-' : formatNumber(summary.mean),
          summary?.ci95 === undefined ? '-' : `±${formatNumber(summary.ci95)}`,
          summary?.cv === undefined ? '-' : `${percent(summary.cv)}${isNoisy ? '!' : ''}`,
          ...(withCpu ? [cpu === undefined ? '-' : cpuText(cpu.mean)] : []),
        ];
      }),
    );
    lines.push(
      shown.heading,
      ...fixedWidth(
        ['method', 'figure', 'unit', ...analysis.repetitions.map((r) => `rep${r}`), 'mean', '95% CI', 'cv', ...(withCpu ? ['cpu'] : [])],
        rows,
        [false, false, false, ...analysis.repetitions.map(() => true), true, true, true, ...(withCpu ? [true] : [])],
      ),
      '',
    );
  }
  lines.push(`95% CI: the mean's 95% confidence interval (Student's t over the repetitions); cv: standard deviation / mean, "!" above ${percent(NOISY_CV)}; cpu: bonnie++'s CPU % beside the figure, the mean over the repetitions that measured it`);
  if (noisy.length > 0) lines.push(`noisy (cv above ${percent(NOISY_CV)}; read these with care, or run more repetitions): ${noisy.join(', ')}`);

  lines.push('', 'data paths in this run');
  for (const path of dataPaths(measurements, setup)) lines.push(`  ${path.method}: ${path.text}${path.basis ? ` [${path.basis}]` : ''}`);

  const guest = scopes.guest;
  const ratios = ratiosOf(scopes);
  const ratioTable = (figures: FigureSpec[], cell: (entry: PhyLocalRatio | undefined) => string): string[] =>
    fixedWidth(
      ['figure', 'unit', ...guest.methods],
      figures.map((spec) => [figureLabel(spec), spec.unit, ...guest.methods.map((method) => cell(ratioEntry(ratios, spec, method)))]),
      [false, false, ...guest.methods.map(() => true)],
    );
  if (guest.methods.length > 0) {
    lines.push('', `ratio vs ${BASELINE_METHOD} (mean of the method / mean of ${BASELINE_METHOD}, ± its 95% interval; dom0's baselines are ceilings, not methods, and have none)`);
    lines.push(...ratioTable(ratioFigures(guest), (entry) => ratioText(entry?.ratio, entry?.ratioCi95)));
  }
  const vsDom0 = dom0RatioFigures(guest, ratios);
  if (vsDom0.length > 0) {
    lines.push('', `vs dom0 (mean of the method / mean of its dom0 baseline, ± its 95% interval; ${dom0PairsText(guest.methods)})`);
    lines.push(...ratioTable(vsDom0, (entry) => ratioText(entry?.dom0Ratio, entry?.dom0RatioCi95)));
  }

  lines.push(...sparseComparisonText(guest));
  lines.push(...accountingText(measurements));

  for (const outcome of ['skipped', 'failed'] as const) {
    const of = orderedFailures(measurements).filter((m) => measurementOutcome(m) === outcome);
    if (of.length === 0) continue;
    lines.push('', outcome);
    // A terminal row per measurement: a multi-line message would break the layout.
    for (const m of of) lines.push(`  ${m.method} ${m.benchmark} rep${m.repetition}: ${failureText(m).replace(/\s*[\r\n]+\s*/g, ' ')}`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * One row per measurement × figure of its benchmark, in the order recorded:
 * run_id,method,benchmark,repetition,figure,unit,value,error,outcome,cpu_percent. The
 * sparse-image test adds a row per pass ("pass N throughput") after its mean. A skipped
 * or failed measurement has an empty value, its error and its outcome ("ok", "skipped",
 * "failed"); cpu_percent is bonnie++'s CPU % beside a figure it measured, else empty.
 * RFC 4180 quoting and CRLF line ends.
 */
export function resultsCsv(measurements: MeasurementRecord[]): string {
  const rows: string[][] = [['run_id', 'method', 'benchmark', 'repetition', 'figure', 'unit', 'value', 'error', 'outcome', 'cpu_percent']];
  for (const m of measurements) {
    const base = [m.runId, m.method, m.benchmark, String(m.repetition)];
    const outcome = measurementOutcome(m);
    const specs = TABLE_FIGURES.filter((spec) => spec.benchmark === m.benchmark);
    if (specs.length === 0) {
      rows.push([...base, '', '', '', m.error, outcome, '']);
      continue;
    }
    for (const spec of specs) {
      const value = succeeded(m) ? spec.read(m.result) : undefined;
      const cpu = succeeded(m) && value !== undefined ? spec.cpu?.(m.result) : undefined;
      rows.push([...base, spec.figure, spec.unit, value === undefined ? '' : String(value), succeeded(m) ? '' : failureText(m), outcome, cpu === undefined ? '' : String(cpu)]);
    }
    if (m.benchmark === SPARSE_BENCHMARK && succeeded(m)) {
      for (const p of sparsePasses(m.result)) rows.push([...base, `pass ${p.pass} throughput`, 'MB/s', String(p.mbPerSecond), '', outcome, '']);
    }
  }
  return rows.map((row) => row.map(csvField).join(',')).join('\r\n') + '\r\n';
}

function csvField(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}
