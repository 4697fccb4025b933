/**
 * The figures the report reads from a benchmark result (bonnie++'s block write, PostMark's
 * transactions, the sparse test's passes, ...), in the order it shows them, with their
 * titles and keys. Pure data and readers.
 */

import { REPORT_FIGURES } from '../model.js';
import { isRecord, meanOf } from './format.js';

/** A figure the report reads from one benchmark result. */
export interface FigureSpec {
  benchmark: string;
  figure: string;
  unit: string;
  read: (result: Record<string, unknown>) => number | undefined;
  reported?: (result: Record<string, unknown>) => boolean;
  /** The CPU % the tool reported beside the figure (bonnie++), where it measured it. */
  cpu?: (result: Record<string, unknown>) => number | undefined;
}

/** The sparse-image test (section 4.3) run by the agent on a file it writes itself. */
export const SPARSE_BENCHMARK = 'sparse-image';

/** The sparse-image passes of a result, in MB/s, in pass order. */
export function sparsePasses(result: Record<string, unknown>): Array<{ pass: number; mbPerSecond: number }> {
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
export const SPARSE_MEAN_FIGURE: FigureSpec = {
  benchmark: SPARSE_BENCHMARK,
  figure: 'mean pass throughput',
  unit: 'MB/s',
  read: (result) => meanOf(sparsePasses(result).map((p) => p.mbPerSecond)),
};

/** The section 4.3 test's measurements: the same passes over each provisioning of the guest's image. */
export const SPARSE_DISK = { 'zero-filled': 'sparse-disk:zero-filled', sparse: 'sparse-disk:sparse' } as const;
/** The mean pass throughput of each section 4.3 provisioning (guest disk over a zero-filled or a sparse image). */
export const SPARSE_DISK_FIGURES: FigureSpec[] = Object.values(SPARSE_DISK).map((benchmark) => ({ ...SPARSE_MEAN_FIGURE, benchmark }));

/** bonnie++'s result field behind each figure of REPORT_FIGURES, for the CPU % it reports beside it. */
const BONNIE_FIELDS: Record<string, string> = { 'block write': 'writeBlock', 'block read': 'readBlock', rewrite: 'rewrite' };

/** bonnie++'s CPU % of a figure it measured ("+++" when it did not: undefined). */
function bonnieCpu(field: string): (result: Record<string, unknown>) => number | undefined {
  return (result) => {
    const f = (result.bonnie as Record<string, unknown> | undefined)?.[field];
    if (!isRecord(f) || f.measured !== true) return undefined;
    return typeof f.cpuPercent === 'number' && Number.isFinite(f.cpuPercent) && f.cpuPercent >= 0 ? f.cpuPercent : undefined;
  };
}

/**
 * REPORT_FIGURES as the report shows them: bonnie++'s in the paper's order (block write,
 * block read, rewrite: Figs. 3-4), each with its CPU %; then the others as listed.
 */
const READ_FIGURES: FigureSpec[] = (() => {
  const order = Object.keys(BONNIE_FIELDS);
  const rank = (spec: FigureSpec) => (spec.benchmark === 'bonnie' && order.includes(spec.figure) ? order.indexOf(spec.figure) : order.length);
  const bonnie = REPORT_FIGURES.filter((spec) => spec.benchmark === 'bonnie').sort((a, b) => rank(a) - rank(b));
  return [
    ...bonnie.map((spec): FigureSpec => (BONNIE_FIELDS[spec.figure] ? { ...spec, cpu: bonnieCpu(BONNIE_FIELDS[spec.figure]!) } : spec)),
    ...REPORT_FIGURES.filter((spec) => spec.benchmark !== 'bonnie'),
  ];
})();

/** Every figure of the table, the CSV and the ratios, in the order they are shown. */
export const TABLE_FIGURES: FigureSpec[] = [...READ_FIGURES, SPARSE_MEAN_FIGURE, ...SPARSE_DISK_FIGURES];

/** Each benchmark's name in titles and headings. */
export const BENCHMARK_TITLES: Record<string, string> = {
  bonnie: 'Bonnie++',
  postmark: 'PostMark',
  fio: 'fio',
  [SPARSE_BENCHMARK]: 'Sparse image',
  [SPARSE_DISK['zero-filled']]: 'Guest disk over a zero-filled image',
  [SPARSE_DISK.sparse]: 'Guest disk over a sparse image',
};

/** "<benchmark> <figure>", e.g. "bonnie block write": how tables, the CSV and the ratios name a figure. */
export function figureLabel(spec: FigureSpec): string {
  return `${spec.benchmark} ${spec.figure}`;
}

/** The key charts and ratio cells carry as data-figure. */
export function figureKey(spec: { benchmark: string; figure: string }): string {
  return `${spec.benchmark}/${spec.figure}`;
}
