/**
 * The paper's section 4.3 test (Fig. 7): per file method and pass, write throughput over a
 * sparse image against over a zero-filled one, as a text table, a chart panel and an HTML
 * table. Pure functions.
 */

import type { MeasurementRecord } from '../model.js';
import { ratioOf, summarize, type Summary } from '../statistics.js';
import { analyseScopes, succeeded, type Analysis } from './analysis.js';
import type { ChartSpec, Slot } from './chart.js';
import { sparsePasses, SPARSE_DISK } from './figures.js';
import { esc, fixedWidth, formatGrouped, ratioTableSection, ratioText } from './format.js';

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

/** The passes of a successful measurement, in MB/s; none for a failed, skipped or absent one. */
export function recordedPasses(analysis: Analysis, method: string, benchmark: string, repetition: number): Array<{ pass: number; mbPerSecond: number }> {
  const m = analysis.measurement(method, benchmark, repetition);
  return m && succeeded(m) ? sparsePasses(m.result) : [];
}

function sparseComparisonOf(analysis: Analysis): SparseComparisonPass[] {
  const out: SparseComparisonPass[] = [];
  const passValues = (method: string, benchmark: string, pass: number): number[] =>
    analysis.repetitions.flatMap((r) => recordedPasses(analysis, method, benchmark, r).filter((p) => p.pass === pass).map((p) => p.mbPerSecond));
  for (const method of analysis.methods) {
    const passes = new Set<number>();
    for (const benchmark of Object.values(SPARSE_DISK)) {
      for (const r of analysis.repetitions) for (const p of recordedPasses(analysis, method, benchmark, r)) passes.add(p.pass);
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

/** The comparison laid out as its tables and chart show it: a row per method, a column per pass. */
interface ComparisonGrid {
  /** Every pass some method has, in order. */
  passes: number[];
  /** The methods compared, in the paper's order. */
  methods: string[];
  at(method: string, pass: number): SparseComparisonPass | undefined;
}

/** The section 4.3 comparison of the guest's methods; undefined when no method has a pass to compare. */
function comparisonGrid(analysis: Analysis): ComparisonGrid | undefined {
  const rows = sparseComparisonOf(analysis);
  if (rows.length === 0) return undefined;
  return {
    passes: [...new Set(rows.map((r) => r.pass))].sort((a, b) => a - b),
    methods: [...new Set(rows.map((r) => r.method))],
    at: (method, pass) => rows.find((r) => r.method === method && r.pass === pass),
  };
}

/** Per file method and pass: write throughput over a sparse image / over a zero-filled one. */
export function sparseComparison(measurements: MeasurementRecord[]): SparseComparisonPass[] {
  return sparseComparisonOf(analyseScopes(measurements).guest);
}

/** The comparison's terminal lines (a table of ratios, a row per method); none without a pass to compare. */
export function sparseComparisonText(analysis: Analysis): string[] {
  const grid = comparisonGrid(analysis);
  if (!grid) return [];
  const { passes, methods } = grid;
  const body = methods.map((method) => [method, ...passes.map((pass) => {
    const row = grid.at(method, pass);
    return ratioText(row?.ratio, row?.ratioCi95);
  })]);
  return [
    '',
    'sparse vs zero-filled (paper section 4.3, Fig. 7): the guest writing its disk, write throughput over a sparse image / over a zero-filled one, per pass, ± 95% interval',
    ...fixedWidth(['method', ...passes.map((p) => `pass ${p}`)], body, [false, ...passes.map(() => true)]),
  ];
}

/** Fig. 7's sparse-disk panel: per file method and pass, sparse / zero-filled; undefined without a pass to compare. */
export function sparseRatioChart(analysis: Analysis): ChartSpec | undefined {
  const grid = comparisonGrid(analysis);
  if (!grid) return undefined;
  const { passes, methods } = grid;
  return {
    key: 'sparse-disk/ratio',
    title: 'Fig. 7: write throughput over a sparse image / over a zero-filled image, per pass',
    panel: 'sparse-disk: the guest writing its disk, sparse / zero-filled image',
    unit: 'sparse / zero-filled',
    reading: 'in the sparse-disk panel the guest writes its own disk, and each bar divides, per pass, the throughput over a sparse image by that over a zero-filled one (below 1.00 the sparse image costs: its blocks are allocated as the guest first writes them)',
    series: passes.map((p) => `pass ${p}`),
    methods,
    slots: (method) =>
      passes.map((pass): Slot => {
        const row = grid.at(method, pass);
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
}

/** The comparison's section of the page: a row per method, a cell per pass with the two means under it; empty without a pass to compare. */
export function renderSparseComparison(analysis: Analysis): string {
  const grid = comparisonGrid(analysis);
  if (!grid) return '';
  const { passes, methods } = grid;
  const table = methods.map((method) => {
    const cells = passes.map((pass) => {
      const row = grid.at(method, pass);
      const detail = row?.sparse && row.zeroFilled ? `<span class="mean">${esc(`${formatGrouped(row.sparse.mean)} / ${formatGrouped(row.zeroFilled.mean)} MB/s`)}</span>` : '';
      return `<td class="ratio" data-method="${esc(method)}" data-pass="${pass}">${esc(ratioText(row?.ratio, row?.ratioCi95))}${detail}</td>`;
    });
    return `<tr><th scope="row">${esc(method)}</th>${cells.join('')}</tr>`;
  });
  return ratioTableSection({
    className: 'sparse-comparison',
    heading: 'Sparse vs zero-filled images (section 4.3)',
    intro: 'The guest writes a file into its own disk in 8 KiB blocks, syncs and deletes it, pass after pass, once with the image behind its disk sparse and once zero-filled (the method set up twice). Each cell: throughput over the sparse image / over the zero-filled one ± the 95% interval over the repetitions; under it the two means. Below 1.00 the sparse image costs: its blocks are allocated as the guest first writes them. Drawn in <a href="#fig-7">Fig. 7</a>.',
    headerRow: `<tr><th>method</th>${passes.map((p) => `<th scope="col">pass ${p}</th>`).join('')}</tr>`,
    rows: table,
  });
}
