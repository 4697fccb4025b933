/**
 * The paper's Figs. 3-7 (and the extras no figure of the paper shows, such as fio): which
 * rows and benchmarks each shows, and, for this run, what it draws or why it was not
 * measured. Pure functions.
 */

import { DOM0_BASELINES } from '../methods.js';
import type { RunSetup } from '../model.js';
import type { Analysis, Scope, Scopes } from './analysis.js';
import { BENCHMARK_TITLES, SPARSE_BENCHMARK, SPARSE_DISK, type FigureSpec } from './figures.js';

/** One figure of the paper (or an extra): which rows and benchmarks it shows. */
interface FigureGroup {
  /** The paper's figure number; undefined for an extra. */
  number?: number;
  title: string;
  scope: Scope;
  /** The benchmarks whose figures it shows (table rows and chart panels). */
  benchmarks: string[];
  /** The tool it shows, for "ran no ...". */
  tool: string;
  /** What it shows, the start of its caption; `params` is the plan's benchmark parameters. */
  lead: (params: (benchmark: string) => string) => string;
}

/** The paper's figures 3-7, in order. */
const PAPER_FIGURES: FigureGroup[] = [
  {
    number: 3,
    title: 'dom0 sequential I/O (bonnie++ block write, block read, rewrite): local disk, NFS, iSCSI',
    scope: 'dom0',
    benchmarks: ['bonnie'],
    tool: 'bonnie++',
    lead: (params) => `dom0 itself runs bonnie++${params('bonnie')} on its own local disk (dom0-local), over NFS (dom0-nfs) and over iSCSI (dom0-iscsi), no guest in the way: the ceilings the methods of Fig. 4 are held against (the "vs dom0" ratios).`,
  },
  {
    number: 4,
    title: 'guest sequential I/O per method (block write, read, rewrite)',
    scope: 'guest',
    benchmarks: ['bonnie'],
    tool: 'bonnie++',
    lead: (params) => `bonnie++${params('bonnie')} in the guest, on the filesystem each method (section 3) gives it.`,
  },
  {
    number: 5,
    title: 'PostMark in dom0',
    scope: 'dom0',
    benchmarks: ['postmark'],
    tool: 'PostMark',
    lead: (params) => `PostMark${params('postmark')} run by dom0 itself on each baseline: transactions per second over the whole run, timed by the agent's millisecond clock (PostMark's own rate counts whole seconds).`,
  },
  {
    number: 6,
    title: 'PostMark in the guest per method',
    scope: 'guest',
    benchmarks: ['postmark'],
    tool: 'PostMark',
    lead: (params) => `PostMark${params('postmark')} in the guest on each method's filesystem: transactions per second over the whole run (the agent's clock, as in Fig. 5).`,
  },
  {
    number: 7,
    title: 'the sparse test (section 4.3)',
    scope: 'guest',
    benchmarks: [SPARSE_BENCHMARK, ...Object.values(SPARSE_DISK)],
    tool: 'the sparse test (sparse-image or sparse-disk)',
    lead: (params) => `The sparse test of section 4.3${params(SPARSE_BENCHMARK)}${params(SPARSE_DISK.sparse)}: a file written in 8 KiB blocks, synced and deleted, pass after pass.`,
  },
];

/** The plan's name of each benchmark (setup.json's `benchmarks` keys). */
export function planBenchmark(benchmark: string): string {
  if (benchmark === SPARSE_BENCHMARK) return 'sparseImage';
  if (benchmark.startsWith('sparse-disk:')) return 'sparseDisk';
  return benchmark;
}

/** A figure as this run shows it: drawn, or listed as not measured with why. */
export interface ShownFigure {
  group: FigureGroup;
  /** "Fig. 3 — dom0 sequential I/O ..." or "Extra: fio in the guest per method". */
  heading: string;
  /** The HTML id, and data-paper-figure: "3", or "extra". */
  id: string;
  paperFigure: string;
  analysis: Analysis;
  /** Its figures with something to show; empty when it was not measured in this run. */
  specs: FigureSpec[];
  /** Why it was not measured (when specs is empty). */
  notMeasured?: string;
}

/**
 * Figs. 3-7 in the paper's order, each with its rows' figures or why it has none; then,
 * unnumbered, what no paper figure shows (fio, ...), per benchmark, dom0's then the guest's.
 */
export function shownFigures(scopes: Scopes, setup?: RunSetup): ShownFigure[] {
  const shown: ShownFigure[] = PAPER_FIGURES.map((group) => {
    const analysis = scopes[group.scope];
    const specs = analysis.figures.filter((spec) => group.benchmarks.includes(spec.benchmark));
    return {
      group,
      heading: `Fig. ${group.number} — ${group.title}`,
      id: `fig-${group.number}`,
      paperFigure: String(group.number),
      analysis,
      specs,
      ...(specs.length === 0 ? { notMeasured: whyNotMeasured(group, analysis, setup) } : {}),
    };
  });
  for (const scope of ['dom0', 'guest'] as const) {
    const analysis = scopes[scope];
    const covered = PAPER_FIGURES.filter((g) => g.scope === scope).flatMap((g) => g.benchmarks);
    const rest = analysis.figures.filter((spec) => !covered.includes(spec.benchmark));
    for (const benchmark of [...new Set(rest.map((spec) => spec.benchmark))]) {
      const tool = BENCHMARK_TITLES[benchmark] ?? benchmark;
      const group: FigureGroup = {
        title: `${tool} ${scope === 'dom0' ? 'in dom0' : 'in the guest per method'}`,
        scope,
        benchmarks: [benchmark],
        tool,
        lead: (params) => `${tool}${params(benchmark)} ${scope === 'dom0' ? 'run by dom0 itself' : 'in the guest'}: not one of the paper's figures.`,
      };
      shown.push({ group, heading: `Extra: ${group.title}`, id: `extra-${scope}-${benchmark.replace(/[^a-z0-9]+/gi, '-')}`, paperFigure: 'extra', analysis, specs: rest.filter((spec) => spec.benchmark === benchmark) });
    }
  }
  return shown;
}

function whyNotMeasured(group: FigureGroup, analysis: Analysis, setup?: RunSetup): string {
  if (analysis.methods.length === 0) {
    return group.scope === 'dom0' ? `no dom0 rows: the plan ran none of the dom0 baselines (${DOM0_BASELINES.join(', ')})` : 'no guest method was measured';
  }
  const who = group.scope === 'dom0' ? 'the dom0 baselines ran' : 'no method ran';
  const ran = group.scope === 'dom0' ? `${who} no ${group.tool}` : `${who} ${group.tool}`;
  if (!setup) return `${ran} (not among the plan's benchmarks)`;
  const planned = Object.keys(setup.benchmarks);
  const wanted = [...new Set(group.benchmarks.map(planBenchmark))];
  return wanted.some((b) => planned.includes(b))
    ? `${ran}: the plan names it, but no measurement of it was recorded`
    : `${ran}: not among the plan's benchmarks (${planned.join(', ') || 'none recorded'})`;
}
