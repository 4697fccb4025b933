/**
 * The campaign report as one self-contained HTML page that reads like the paper: Tables
 * 1-2, then Figs. 3-7 in order (dom0's baselines in Figs. 3 and 5, the guest's methods in
 * Figs. 4 and 6, the sparse test in Fig. 7; one group of bars per method, one bar per
 * repetition), the extras (fio) after, then the tables and a summary of the run. Outcomes
 * are "ok", "skipped", "failed" (and a run's "cancelled") everywhere. Pure: nothing here
 * reads a clock or touches a file.
 */

import type { MeasurementRecord, RunRecord, RunSetup } from '../model.js';
import { accountingHtml } from './accounting.js';
import { analyseScopes, failureText, measurementOutcome, orderedFailures, runOutcome, type Outcome } from './analysis.js';
import { renderDataPaths } from './data-paths.js';
import { renderFigure } from './figure-charts.js';
import { esc, formatDuration, isoTime } from './format.js';
import { shownFigures } from './paper-figures.js';
import { renderScaleReport } from './scale.js';
import { renderSharedReport } from './shared.js';
import { renderSetup } from './setup-tables.js';
import { renderSparseComparison } from './sparse.js';
import { renderDom0RatioTable, renderRatioTable, renderResults } from './statistics-tables.js';

/** Options of {@link renderReport}. */
export interface ReportOptions {
  /** The page's title; default "vcstor report: <plan name>". */
  title?: string;
  /** When the report was made; shown when given (the renderer reads no clock). */
  generatedUnixMs?: number;
  /** What the run ran on (setup.json): shown as the set-up table. */
  setup?: RunSetup;
}

/**
 * The report as one self-contained HTML page (inline CSS and SVG, no script, nothing
 * fetched), in the paper's order: the set-up (Tables 1 and 2); Figs. 3-7, each a
 * numbered figure with a panel per figure it shows and a caption (a figure this run did
 * not measure is listed with why), then the extras (fio, ...); each row's data path; the
 * results with bonnie++'s CPU %; the ratios against phy-local and against each method's
 * dom0 baseline; the section 4.3 comparison; where the bytes went; a summary of the run.
 * Each figure is `<figure class="chart" data-paper-figure="3">` (or "extra"); every panel
 * `<svg data-figure="benchmark/figure">` (dom0's: "dom0/benchmark/figure"); every group
 * `<g class="method" data-method>`; every bar `<rect class="bar" data-method
 * data-repetition data-value>` (bonnie++'s add data-cpu; sparse bars add data-pass, their
 * data-repetition is "mean"); a missing value is a `<g class="missing" data-outcome>`
 * slot marked "n/a" whose <title> says why. Outcomes are "ok", "skipped", "failed" (a run
 * also "cancelled") everywhere.
 */
export function renderReport(run: RunRecord, measurements: MeasurementRecord[], options: ReportOptions = {}): string {
  if (run.kind === 'scale') return renderScaleReport(run, measurements);
  if (run.kind === 'shared') return renderSharedReport(run, measurements);
  const scopes = analyseScopes(measurements);
  const title = options.title ?? `vcstor report: ${run.planName}`;
  const figures = shownFigures(scopes, options.setup);
  const meta = [`run ${run.runId}`, `plan ${run.planName}`, `state ${runOutcome(run.state)}`];
  if (options.generatedUnixMs !== undefined) meta.push(`generated ${isoTime(options.generatedUnixMs)}`);

  const body = [
    `<header><h1>${esc(title)}</h1><p class="meta">${meta.map(esc).join(' · ')}</p></header>`,
    options.setup ? renderSetup(options.setup) : '',
    '<section class="charts">',
    '<h2>Figures</h2>',
    measurements.length === 0 ? '<p class="empty">No measurements were recorded.</p>' : figures.map((f) => renderFigure(f, options.setup)).join('\n'),
    '</section>',
    renderDataPaths(measurements, options.setup),
    renderResults(figures),
    renderRatioTable(scopes),
    renderDom0RatioTable(scopes),
    renderSparseComparison(scopes.guest),
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
th, td { border: 1px solid #bbb; padding: 0.25rem 0.5rem; overflow-wrap: anywhere; }
th { background: #f2f2f2; text-align: left; }
td.ratio { text-align: right; font-variant-numeric: tabular-nums; }
td.ratio .mean { display: block; font-size: 0.75rem; color: #555; }
td.ratio.noisy { color: #b00; }
svg .errorbar { stroke: #111; stroke-width: 1.4; fill: none; }
td.missing { text-align: center; color: #777; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.warn { color: #b00; font-weight: bold; }
p.cache-warning { color: #b00; font-weight: bold; }
td.path { font-size: 0.8rem; }
td.dom0-ratio { text-align: right; font-variant-numeric: tabular-nums; }
td.dom0-ratio .mean, td .cpu { display: block; font-size: 0.75rem; color: #555; }
td.skipped { color: #777; font-style: italic; }
.not-recorded { color: #777; font-style: italic; }
td.failed { color: #b00; }
h3.figure-title { font-size: 1rem; margin: 0 0 0.3rem; }
.panel-title { font-size: 0.85rem; margin: 0.6rem 0 0; color: #333; }
p.not-measured { color: #555; border-left: 3px solid #ccc; padding-left: 0.6rem; }
ul.data-paths li { margin-bottom: 0.3rem; }
.basis { color: #666; font-size: 0.8rem; }
dl.summary { display: grid; grid-template-columns: max-content auto; gap: 0.2rem 1rem; }
dl.summary dt { font-weight: bold; }
dl.summary dd { margin: 0; }
ul.errors { font-family: monospace; font-size: 0.85rem; white-space: pre-wrap; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; } }
`;

function renderSummary(run: RunRecord, measurements: MeasurementRecord[]): string {
  const wall = run.finishedUnixMs > 0 && run.createdUnixMs > 0 ? formatDuration(run.finishedUnixMs - run.createdUnixMs) : 'not finished';
  const count = (outcome: Outcome) => measurements.filter((m) => measurementOutcome(m) === outcome).length;
  const entries: Array<[string, string]> = [
    ['plan', run.planName],
    ['kind', run.kind],
    ['run id', run.runId],
    ['state', runOutcome(run.state)],
    ['started', run.createdUnixMs > 0 ? isoTime(run.createdUnixMs) : '-'],
    ['finished', run.finishedUnixMs > 0 ? isoTime(run.finishedUnixMs) : '-'],
    ['wall time', wall],
    ['steps', `${run.stepsSucceeded} ok, ${run.stepsFailed} failed, of ${run.stepsTotal}`],
    ['measurements', `${count('ok')} ok, ${count('skipped')} skipped, ${count('failed')} failed`],
  ];
  const line = (m: MeasurementRecord) => `${m.method} / ${m.benchmark} / rep ${m.repetition}: ${failureText(m)}`;
  const failed = [...(run.error !== '' ? [`run: ${run.error}`] : []), ...orderedFailures(measurements).filter((m) => measurementOutcome(m) === 'failed').map(line)];
  const skipped = orderedFailures(measurements).filter((m) => measurementOutcome(m) === 'skipped').map(line);
  return [
    '<section class="summary">',
    '<h2>Run summary</h2>',
    `<dl class="summary">${entries.map(([name, value]) => `<dt>${esc(name)}</dt><dd>${esc(value)}</dd>`).join('')}</dl>`,
    '<h3>Failed</h3>',
    failed.length === 0 ? '<p class="no-errors">None.</p>' : `<ul class="errors" data-outcome="failed">${failed.map((e) => `<li>${esc(e)}</li>`).join('\n')}</ul>`,
    ...(skipped.length === 0 ? [] : ['<h3>Skipped</h3>', `<ul class="errors" data-outcome="skipped">${skipped.map((e) => `<li>${esc(e)}</li>`).join('\n')}</ul>`]),
    '</section>',
  ].join('\n');
}
