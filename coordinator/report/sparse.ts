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
import { esc, fixedWidth, formatGrouped, ratioText } from './format.js';

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
  return sparseComparisonOf(analyseScopes(measurements).guest);
}


export function sparseComparisonText(analysis: Analysis): string[] {
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

/** Fig. 7's sparse-disk panel: per file method and pass, sparse / zero-filled; undefined without a pass to compare. */
export function sparseRatioChart(analysis: Analysis): ChartSpec | undefined {
  const rows = sparseComparisonOf(analysis);
  if (rows.length === 0) return undefined;
  const passes = [...new Set(rows.map((r) => r.pass))].sort((a, b) => a - b);
  const methods = [...new Set(rows.map((r) => r.method))];
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
}

export function renderSparseComparison(analysis: Analysis): string {
  const rows = sparseComparisonOf(analysis);
  if (rows.length === 0) return '';
  const passes = [...new Set(rows.map((r) => r.pass))].sort((a, b) => a - b);
  const methods = [...new Set(rows.map((r) => r.method))];
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
    '<p>The guest writes a file into its own disk in 8 KiB blocks, syncs and deletes it, pass after pass, once with the image behind its disk sparse and once zero-filled (the method set up twice). Each cell: throughput over the sparse image / over the zero-filled one ± the 95% interval over the repetitions; under it the two means. Below 1.00 the sparse image costs: its blocks are allocated as the guest first writes them. Drawn in <a href="#fig-7">Fig. 7</a>.</p>',
    '<table class="ratios">',
    `<thead><tr><th>method</th>${passes.map((p) => `<th scope="col">pass ${p}</th>`).join('')}</tr></thead>`,
    `<tbody>${table.join('\n')}</tbody>`,
    '</table>',
    '</section>',
  ].join('\n');
}
