/**
 * The paper's figures as the page shows them: a numbered <figure> with a chart panel per
 * figure it shows and a caption, each bar and each missing value with its tooltip; Fig. 7
 * draws the sparse test per pass. Pure functions.
 */

import type { RunSetup } from '../model.js';
import { failureText, succeeded, type Analysis, type Cell } from './analysis.js';
import { CHART_HEIGHT, PANEL_HEIGHT, renderChart, type ChartSpec, type Slot } from './chart.js';
import { BENCHMARK_TITLES, figureKey, SPARSE_BENCHMARK, SPARSE_MEAN_FIGURE } from './figures.js';
import { cpuText, esc, formatGrouped, meanOf } from './format.js';
import { planBenchmark, type ShownFigure } from './paper-figures.js';
import { recordedPasses, sparseRatioChart } from './sparse.js';

/**
 * One figure: its title, a panel per figure it shows ((a) block write, (b) block read,
 * ...), and its caption; or, when this run did not measure it, a line saying why.
 */
export function renderFigure(shown: ShownFigure, setup?: RunSetup): string {
  const attributes = `id="${esc(shown.id)}" data-paper-figure="${esc(shown.paperFigure)}"`;
  if (shown.specs.length === 0) {
    return `<p class="not-measured" ${attributes}><strong>${esc(shown.heading)}</strong>: not measured in this run: ${esc(shown.notMeasured ?? '')}.</p>`;
  }
  const charts = figureCharts(shown);
  const panels = charts.map((chart, i) => {
    // Panels of a figure are shorter, so that a figure fits a page, as the paper's do.
    const { svg } = renderChart(chart, charts.length > 1 ? PANEL_HEIGHT : CHART_HEIGHT);
    const label = charts.length > 1 ? `(${String.fromCharCode(97 + i)}) ` : '';
    return `<div class="panel">\n<p class="panel-title">${esc(`${label}${chart.panel} (${chart.unit})`)}</p>\n${svg}\n</div>`;
  });
  const withIntervals = charts.some((chart) => chart.interval && chart.methods.some((m) => chart.interval!(m) !== undefined));
  return [
    `<figure class="chart" ${attributes}>`,
    `<h3 class="figure-title">${esc(shown.heading)}</h3>`,
    ...panels,
    `<figcaption>${esc(figureCaption(shown, charts, withIntervals, setup))}</figcaption>`,
    ...cacheWarnings(shown).map((w) => `<p class="cache-warning" data-benchmark="${esc(w.benchmark)}">${esc(w.text)}</p>`),
    '</figure>',
  ].join('\n');
}

/** Less than this reaching the backing disk is metadata and rounding, not the run's data (as the accounting table says). */
const CACHE_ONLY_BYTES = 2 ** 20;

/**
 * A figure whose runs' bytes did not reach the backing disk measured a cache, and says
 * so under the chart, not only in "Where the bytes went": per benchmark, how many of its
 * accounted runs stayed in a cache (under 1 MiB written) or reached the disk below 90%.
 */
export function cacheWarnings(shown: ShownFigure): Array<{ benchmark: string; text: string }> {
  const warnings: Array<{ benchmark: string; text: string }> = [];
  for (const benchmark of [...new Set(shown.specs.map((spec) => spec.benchmark))]) {
    const accounts = shown.analysis.methods.flatMap((method) =>
      shown.analysis.repetitions.flatMap((repetition) => {
        const m = shown.analysis.measurement(method, benchmark, repetition);
        return m && succeeded(m) && m.accounting ? [m.accounting] : [];
      }),
    );
    const cached = accounts.filter((a) => a.backingWriteBytes < CACHE_ONLY_BYTES || a.reachedBackingPercent < 90);
    if (cached.length === 0) continue;
    const title = BENCHMARK_TITLES[benchmark] ?? benchmark;
    warnings.push({
      benchmark,
      text: `Measured a cache: in ${cached.length} of ${accounts.length} accounted ${title} runs, less than 1 MiB or under 90% of what the benchmark wrote reached the backing disk, so these bars are the hosts' page caches and CPUs, not the storage ("Where the bytes went" has each run).`,
    });
  }
  return warnings;
}

/** The caption under a figure: what it shows, how to read it, and where its data paths are. */
function figureCaption(shown: ShownFigure, charts: ChartSpec[], withIntervals: boolean, setup?: RunSetup): string {
  const params = (benchmark: string): string => {
    const spec = setup?.benchmarks[planBenchmark(benchmark)];
    return spec ? ` (${spec})` : '';
  };
  const rows = shown.group.scope === 'dom0' ? 'baseline' : 'method';
  const panels = charts.length > 1 ? ` Panels: ${charts.map((c, i) => `(${String.fromCharCode(97 + i)}) ${c.panel}`).join(', ')}.` : '';
  const reading = [...new Set(charts.map((c) => c.reading))].join('; ');
  const cpu = shown.specs.some((spec) => spec.cpu !== undefined) ? " bonnie++'s CPU % is in each bar's tooltip and in the Results table." : '';
  const intervals = withIntervals ? ' The dashed line over a group is its mean, the whisker its 95% confidence interval.' : '';
  return (
    `${shown.paperFigure === 'extra' ? shown.heading : `Fig. ${shown.group.number}`}. ${shown.group.lead(params)}${panels} One group per ${rows} in the paper's order; ${reading}.${intervals}${cpu}` +
    ` Higher is better; "n/a" marks a value that is missing (skipped, failed, or not measured by the tool), its reason in the tooltip. Each ${rows}'s data path in this run: "Data paths" below.`
  );
}

/** The panels of a figure: a chart per figure it shows; Fig. 7 draws the sparse test its own way. */
function figureCharts(shown: ShownFigure): ChartSpec[] {
  const analysis = shown.analysis;
  if (shown.group.number === 7) {
    const charts: ChartSpec[] = [];
    if (shown.specs.includes(SPARSE_MEAN_FIGURE)) charts.push(sparseChart(analysis));
    const ratio = sparseRatioChart(analysis);
    if (ratio) charts.push(ratio);
    return charts;
  }
  return shown.specs.map((spec): ChartSpec => ({
    key: shown.group.scope === 'dom0' ? `dom0/${figureKey(spec)}` : figureKey(spec),
    title: `${shown.group.scope === 'dom0' ? 'dom0: ' : ''}${BENCHMARK_TITLES[spec.benchmark] ?? spec.benchmark} ${spec.figure}`,
    panel: spec.figure,
    unit: spec.unit,
    reading: 'one bar per repetition',
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
          const cpu = analysis.cpu(method, spec, repetition);
          return {
            kind: 'bar',
            value: cell.value,
            tooltip: `${method}, rep ${repetition}: ${formatGrouped(cell.value)} ${spec.unit}${cpu === undefined ? '' : `, CPU ${cpuText(cpu)}`}`,
            attributes: [...attributes, ['data-value', String(cell.value)], ...(cpu === undefined ? [] : ([['data-cpu', String(cpu)]] as Array<[string, string]>))],
            points: [],
          };
        }
        return { kind: 'missing', reason: `${method}, rep ${repetition}: ${missingReason(cell, spec.benchmark)}`, attributes: [...attributes, ['data-outcome', cell.kind === 'failed' ? cell.outcome : cell.kind]] };
      }),
  }));
}

/** Why a cell has no value, for its tooltip: the outcome and error, what "+++++" means, or that nothing was recorded. */
export function missingReason(cell: Exclude<Cell, { kind: 'value' }>, benchmark: string): string {
  switch (cell.kind) {
    case 'failed':
      // The outcome's word first: a skipped measurement's error already starts with it.
      return cell.outcome === 'skipped' || cell.error.startsWith(`${cell.outcome}`) ? cell.error : `${cell.outcome}: ${cell.error}`;
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
  const passesOf = (method: string, repetition: number) => recordedPasses(analysis, method, SPARSE_BENCHMARK, repetition);
  const passNumbers = [...new Set(analysis.methods.flatMap((method) => analysis.repetitions.flatMap((r) => passesOf(method, r).map((p) => p.pass))))].sort((a, b) => a - b);
  // Every group keeps at least one slot, so a method that only failed still shows "n/a".
  const slotsPasses = passNumbers.length > 0 ? passNumbers : [1];
  return {
    key: `${SPARSE_BENCHMARK}/pass throughput`,
    title: 'Sparse image write throughput per pass',
    panel: 'sparse-image: write throughput per pass',
    unit: 'MB/s',
    reading: 'in the sparse-image panel a fresh sparse image is written pass after pass, a bar per pass (the mean over the repetitions; dots are the repetitions)',
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
