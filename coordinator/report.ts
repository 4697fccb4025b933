/**
 * What a campaign's measurements say: a text table for a terminal, a CSV for a
 * spreadsheet, the ratios against phy-local and against each method's dom0 baseline,
 * each row's data path, and one self-contained HTML report that reads like the paper:
 * Tables 1-2, then Figs. 3-7 in order (dom0's baselines in Figs. 3 and 5, the guest's
 * methods in Figs. 4 and 6, the sparse test in Fig. 7; one group of bars per method, one
 * bar per repetition), the extras (fio) after. Outcomes are "ok", "skipped", "failed"
 * (and a run's "cancelled") everywhere. Pure functions: nothing here reads a clock or
 * touches a file.
 */

import { accountingHtml, accountingText } from './accounting-report.js';
import { DOM0_BASELINES, METHODS } from './methods.js';
import { renderScaleReport, scaleResultsTable } from './scale-report.js';
import { REPORT_FIGURES, type MeasurementRecord, type RunRecord, type RunSetup, type RunState } from './model.js';
import { NOISY_CV, ratioOf, summarize, type Summary } from './statistics.js';

/** A figure the report reads from one benchmark result. */
interface FigureSpec {
  benchmark: string;
  figure: string;
  unit: string;
  read: (result: Record<string, unknown>) => number | undefined;
  reported?: (result: Record<string, unknown>) => boolean;
  /** The CPU % the tool reported beside the figure (bonnie++), where it measured it. */
  cpu?: (result: Record<string, unknown>) => number | undefined;
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
  /**
   * The method's dom0 baseline (local methods: dom0-local, iSCSI methods: dom0-iscsi, NFS
   * methods: dom0-nfs) and mean / the baseline's mean ± its 95% interval: set when the
   * baseline measured the figure.
   */
  dom0Baseline?: string;
  dom0Ratio?: number;
  dom0RatioCi95?: number;
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
const TABLE_FIGURES: FigureSpec[] = [...READ_FIGURES, SPARSE_MEAN_FIGURE, ...SPARSE_DISK_FIGURES];

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
  /** The benchmark was skipped, or it (or its setup) failed: the measurement's error. */
  | { kind: 'failed'; outcome: 'skipped' | 'failed'; error: string }
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
  /** The tool's CPU % beside the figure (bonnie++), per repetition and over them. */
  cpu(method: string, spec: FigureSpec, repetition: number): number | undefined;
  cpuSummary(method: string, spec: FigureSpec): Summary | undefined;
}

/**
 * A measurement's outcome, in the report's one vocabulary (the events' words): "ok", or
 * "skipped" (its error starts with "skipped:": these agents cannot run it), or "failed".
 */
export type Outcome = 'ok' | 'skipped' | 'failed';

/** The outcome of one measurement: see {@link Outcome}. Pure. */
export function measurementOutcome(m: MeasurementRecord): Outcome {
  if (succeeded(m)) return 'ok';
  return m.error.startsWith('skipped:') ? 'skipped' : 'failed';
}

/** A run's state in the same words: a finished run is "ok", "failed" or "cancelled". */
function runOutcome(state: RunState): string {
  return state === 'succeeded' ? 'ok' : state;
}

function succeeded(m: MeasurementRecord): m is MeasurementRecord & { result: Record<string, unknown> } {
  return m.error === '' && m.result !== undefined;
}

function failureText(m: MeasurementRecord): string {
  return m.error !== '' ? m.error : 'no result recorded';
}

/** dom0's baselines (Fig. 3), then the paper's order (section 3), then any other method by name. */
function orderMethods(names: Iterable<string>): string[] {
  const present = new Set(names);
  const known: readonly string[] = [...DOM0_BASELINES, ...METHODS];
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
    if (!succeeded(m)) return { kind: 'failed', outcome: measurementOutcome(m) === 'skipped' ? 'skipped' : 'failed', error: failureText(m) };
    const value = spec.read(m.result);
    return value === undefined ? { kind: 'unmeasured' } : { kind: 'value', value };
  };
  const summary = (method: string, spec: FigureSpec): Summary | undefined =>
    summarize(repetitions.flatMap((r) => {
      const c = cell(method, spec, r);
      return c.kind === 'value' ? [c.value] : [];
    }));
  const mean = (method: string, spec: FigureSpec): number | undefined => summary(method, spec)?.mean;
  const cpu = (method: string, spec: FigureSpec, repetition: number): number | undefined => {
    const m = measurement(method, spec.benchmark, repetition);
    // Only beside a figure the tool measured: bonnie++'s "+++" CPU goes with its "+++++".
    return m && succeeded(m) && spec.read(m.result) !== undefined ? spec.cpu?.(m.result) : undefined;
  };
  const cpuSummary = (method: string, spec: FigureSpec): Summary | undefined =>
    summarize(repetitions.flatMap((r) => {
      const value = cpu(method, spec, r);
      return value === undefined ? [] : [value];
    }));

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
  return { methods, repetitions, figures, measurement, cell, mean, summary, cpu, cpuSummary };
}

// ---------------------------------------------------------------------------------------
// dom0's baselines and the guest's methods

const BASELINES: readonly string[] = DOM0_BASELINES;

/** A dom0 baseline row (Figs. 3 and 5), not a method of giving a guest a disk. */
function isDom0(method: string): boolean {
  return BASELINES.includes(method);
}

type Scope = 'dom0' | 'guest';

/** The measurements analysed apart: dom0's baselines, and the guest's methods (every other row). */
interface Scopes {
  dom0: Analysis;
  guest: Analysis;
}

function analyseScopes(measurements: MeasurementRecord[]): Scopes {
  return { dom0: analyse(measurements.filter((m) => isDom0(m.method))), guest: analyse(measurements.filter((m) => !isDom0(m.method))) };
}

/** The dom0 baseline each method is held against: the same transport, dom0 doing the I/O itself. */
const DOM0_BASELINE_OF: Record<string, string> = {
  'file-local': 'dom0-local',
  'phy-local': 'dom0-local',
  'file-nfs': 'dom0-nfs',
  nfs: 'dom0-nfs',
  'file-iscsi': 'dom0-iscsi',
  'phy-iscsi': 'dom0-iscsi',
  iscsi: 'dom0-iscsi',
};

// ---------------------------------------------------------------------------------------
// The paper's figures

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
function planBenchmark(benchmark: string): string {
  if (benchmark === SPARSE_BENCHMARK) return 'sparseImage';
  if (benchmark.startsWith('sparse-disk:')) return 'sparseDisk';
  return benchmark;
}

/** A figure as this run shows it: drawn, or listed as not measured with why. */
interface ShownFigure {
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
function shownFigures(scopes: Scopes, setup?: RunSetup): ShownFigure[] {
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

// ---------------------------------------------------------------------------------------
// Ratios

/**
 * For every figure present and every guest method (paper order): the method's mean over
 * its repetitions, that mean divided by phy-local's, and (where its dom0 baseline measured
 * the figure) divided by the baseline's. Failed, skipped and unmeasured repetitions are
 * left out of a mean rather than counted as zero. dom0's baselines get no ratio: they are
 * ceilings, not methods.
 */
export function ratiosVsPhyLocal(measurements: MeasurementRecord[]): PhyLocalRatio[] {
  return ratiosOf(analyseScopes(measurements));
}

/** Figures compared against phy-local: the section 4.3 runs compare provisionings instead, on file methods only. */
function ratioFigures(analysis: Analysis): FigureSpec[] {
  return analysis.figures.filter((spec) => !SPARSE_DISK_FIGURES.includes(spec));
}

function ratiosOf(scopes: Scopes): PhyLocalRatio[] {
  const analysis = scopes.guest;
  return ratioFigures(analysis).flatMap((spec) => {
    const baseline = analysis.summary(BASELINE_METHOD, spec);
    return analysis.methods.map((method): PhyLocalRatio => {
      const summary = analysis.summary(method, spec);
      const interval = summary && baseline ? ratioOf(summary, baseline) : undefined;
      const dom0Baseline = DOM0_BASELINE_OF[method];
      const dom0 = dom0Baseline ? scopes.dom0.summary(dom0Baseline, spec) : undefined;
      const vsDom0 = summary && dom0 ? ratioOf(summary, dom0) : undefined;
      return {
        figure: figureLabel(spec),
        unit: spec.unit,
        method,
        mean: summary?.mean,
        ratio: interval?.ratio,
        ...(interval?.ci95 !== undefined ? { ratioCi95: interval.ci95 } : {}),
        ...(summary && summary.n > 1 ? { summary } : {}),
        ...(dom0Baseline && dom0 ? { dom0Baseline } : {}),
        ...(vsDom0 ? { dom0Ratio: vsDom0.ratio } : {}),
        ...(vsDom0?.ci95 !== undefined ? { dom0RatioCi95: vsDom0.ci95 } : {}),
      };
    });
  });
}

// ---------------------------------------------------------------------------------------
// Text table

/** A cell in the report's words: the value, "skipped", "failed", "n/a" (ran, not measured) or "-" (nothing recorded). */
function cellText(c: Cell): string {
  return c.kind === 'value' ? formatNumber(c.value) : c.kind === 'failed' ? c.outcome : c.kind === 'unmeasured' ? 'n/a' : '-';
}

/** Methods of a figure with a row: a method that never ran its benchmark (the section 4.3 test runs on file methods only) has none. */
function rowMethods(analysis: Analysis, spec: FigureSpec): string[] {
  return analysis.methods.filter((method) => analysis.repetitions.some((r) => analysis.cell(method, spec, r).kind !== 'absent'));
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
  const ratioCell = (ratio: number | undefined, ci95: number | undefined): string => (ratio === undefined ? '-' : ci95 === undefined ? ratio.toFixed(2) : `${ratio.toFixed(2)}±${ci95.toFixed(2)}`);
  if (guest.methods.length > 0) {
    lines.push('', `ratio vs ${BASELINE_METHOD} (mean of the method / mean of ${BASELINE_METHOD}, ± its 95% interval; dom0's baselines are ceilings, not methods, and have none)`);
    const ratioRows = ratioFigures(guest).map((spec) => [
      figureLabel(spec),
      spec.unit,
      ...guest.methods.map((method) => {
        const entry = ratios.find((r) => r.figure === figureLabel(spec) && r.method === method);
        return ratioCell(entry?.ratio, entry?.ratioCi95);
      }),
    ]);
    lines.push(...fixedWidth(['figure', 'unit', ...guest.methods], ratioRows, [false, false, ...guest.methods.map(() => true)]));
  }
  if (ratios.some((r) => r.dom0Ratio !== undefined)) {
    const figures = ratioFigures(guest).filter((spec) => ratios.some((r) => r.figure === figureLabel(spec) && r.dom0Ratio !== undefined));
    lines.push('', `vs dom0 (mean of the method / mean of its dom0 baseline, ± its 95% interval; ${dom0PairsText(guest.methods)})`);
    const rows = figures.map((spec) => [
      figureLabel(spec),
      spec.unit,
      ...guest.methods.map((method) => {
        const entry = ratios.find((r) => r.figure === figureLabel(spec) && r.method === method);
        return ratioCell(entry?.dom0Ratio, entry?.dom0RatioCi95);
      }),
    ]);
    lines.push(...fixedWidth(['figure', 'unit', ...guest.methods], rows, [false, false, ...guest.methods.map(() => true)]));
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

/** "file-local, phy-local vs dom0-local; ..." for the methods shown. */
function dom0PairsText(methods: string[]): string {
  return BASELINES.map((baseline) => {
    const of = methods.filter((m) => DOM0_BASELINE_OF[m] === baseline);
    return of.length === 0 ? '' : `${of.join(', ')} vs ${baseline}`;
  })
    .filter((t) => t !== '')
    .join('; ');
}

function cpuText(cpu: number): string {
  return `${cpu.toFixed(cpu >= 10 ? 0 : 1)}%`;
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
// Data paths: what each row's bytes went through in this run

/** One row's data path in this run (the "Data paths" section). */
export interface DataPath {
  /** A method or a dom0 baseline. */
  method: string;
  /** Its path, from the benchmark's files down to the disk, as this run's drivers make it. */
  text: string;
  /** The drivers it follows from ("dom0 hypervisor=sandbox, ..."); empty when none apply. */
  basis: string;
}

type Role = RunSetup['hosts'][number]['role'];
type DriverLookup = (role: Role, concern: string) => { driver: string; available: boolean } | undefined;

/** The selected drivers of a set-up: "iscsi-target=tgt", "nfs-client=kernel (unavailable)". */
function driverLookup(setup: RunSetup): DriverLookup {
  return (role, concern) => {
    for (const host of setup.hosts.filter((h) => h.role === role)) {
      for (const entry of host.drivers) {
        const at = entry.indexOf('=');
        if (at < 0 || entry.slice(0, at) !== concern) continue;
        const rest = entry.slice(at + 1);
        const unavailable = / \(unavailable\)$/.test(rest);
        return { driver: rest.replace(/ \(unavailable\)$/, ''), available: !unavailable };
      }
    }
    return undefined;
  };
}

/** The namespace lab's drivers and a real host's (README's two columns), for a run that recorded none. */
const LAB_DRIVERS: Record<string, string> = { 'storage volumes': 'filepool', 'storage iscsi-target': 'tgt', 'storage nfs-server': 'ganesha', 'dom0 iscsi-initiator': 'qsd', 'dom0 nfs-client': 'libnfs', 'dom0 hypervisor': 'sandbox', 'guest iscsi-initiator': 'qsd', 'guest nfs-client': 'kernel (unavailable)' };
const REAL_DRIVERS: Record<string, string> = { 'storage volumes': 'lvm', 'storage iscsi-target': 'lio', 'storage nfs-server': 'kernel', 'dom0 iscsi-initiator': 'open-iscsi', 'dom0 nfs-client': 'kernel', 'dom0 hypervisor': 'xen', 'guest iscsi-initiator': 'open-iscsi', 'guest nfs-client': 'kernel' };

function fixedDrivers(table: Record<string, string>): DriverLookup {
  return (role, concern) => {
    const value = table[`${role} ${concern}`];
    return value === undefined ? undefined : { driver: value.replace(/ \(unavailable\)$/, ''), available: !value.endsWith('(unavailable)') };
  };
}

/**
 * A method's path from its drivers (README, "What each method's data path is": the lab's
 * and a real host's texts, composed per layer, since a run may mix them — the VM tier runs
 * open-iscsi and kernel NFS under the sandbox hypervisor). Records each driver it used.
 */
function composePath(method: string, lookup: DriverLookup, used: string[]): string | undefined {
  const d = (role: Role, concern: string): string | undefined => {
    const found = lookup(role, concern);
    if (!found) return undefined;
    const entry = `${role} ${concern}=${found.driver}${found.available ? '' : ' (unavailable)'}`;
    if (!used.includes(entry)) used.push(entry);
    return found.driver;
  };
  const available = (role: Role, concern: string): boolean => lookup(role, concern)?.available !== false;
  const volume = (): string => {
    const v = d('storage', 'volumes');
    return v === 'lvm' ? 'a storage-server volume (an LV)' : v === 'filepool' ? 'a storage-server volume (a pool file on a loop device)' : 'a storage-server volume';
  };
  const target = (): string => {
    const t = d('storage', 'iscsi-target');
    return t === 'tgt' ? 'tgtd (aio backing store)' : t === 'lio' ? 'LIO (targetcli)' : t ? `the ${t} iSCSI target` : 'the iSCSI target (driver not recorded)';
  };
  const nfsServer = (): string => {
    const s = d('storage', 'nfs-server');
    return s === 'ganesha' ? 'exported by nfs-ganesha' : s === 'kernel' ? "exported by the kernel's nfsd" : s ? `exported by ${s}` : 'NFS-exported';
  };
  const initiator = (host: 'dom0' | 'guest'): string => {
    const whose = host === 'dom0' ? "dom0's" : "the guest's own";
    const where = `in ${host === 'dom0' ? "dom0's" : "the guest's"} memory, on ${host === 'dom0' ? "dom0's" : "the guest's"} link`;
    const i = d(host, 'iscsi-initiator');
    if (i === 'qsd') return `${whose} initiator (qemu-storage-daemon + libiscsi → FUSE → direct-I/O loop; ${where})`;
    if (i === 'open-iscsi') return `${whose} initiator (open-iscsi, the kernel's; ${where})`;
    return `${whose} initiator (${i ?? 'driver not recorded'}; ${where})`;
  };
  const hypervisor = (): string | undefined => d('dom0', 'hypervisor');
  const fileBackend = (): string => {
    const h = hypervisor();
    if (h === 'sandbox') return "dom0's qemu-storage-daemon (driver=file, buffered: dom0's page cache, in dom0's memory) → FUSE → direct-I/O loop device → the guest's VBD";
    if (h === 'xen') return "Xen file: VBD (blkback over a loop device, dom0's page cache)";
    return `dom0's file backend (hypervisor ${h ?? 'not recorded'}) → the guest's VBD`;
  };
  const phyBackend = (): string => {
    const h = hypervisor();
    const loop = 'loop device with direct I/O (no dom0 cache, as a phy: disk has none)';
    if (h === 'sandbox') return `${loop} → the guest's VBD`;
    if (h === 'xen') return `${loop} → phy: VBD`;
    return `${loop} → the guest's VBD (hypervisor ${h ?? 'not recorded'})`;
  };
  const unavailable = (role: Role, concern: string): string => {
    const found = lookup(role, concern);
    return found && !found.available ? ` — ${role}'s ${concern} driver (${found.driver}) is not available on its host` : '';
  };
  switch (method) {
    case 'file-local':
      return `image file on dom0's filesystem → ${fileBackend()}`;
    case 'phy-local':
      return `image file on dom0's filesystem (a real host's phy-local disk is an LV) → ${phyBackend()}`;
    case 'file-iscsi':
      return `${volume()} → ${target()} → ${initiator('dom0')} → dom0 ext4 → image file → ${fileBackend()}`;
    case 'phy-iscsi':
      return `${volume()} → ${target()} → ${initiator('dom0')} → its device as the guest's phy: disk${hypervisor() === 'xen' ? ' (blkback)' : ' (the VBD)'}`;
    case 'iscsi':
      return `${volume()} → ${target()} → ${initiator('guest')} → the guest's disk`;
    case 'file-nfs': {
      const c = d('dom0', 'nfs-client');
      const head = `${volume()}, ext4 on it, ${nfsServer()}`;
      if (c === 'libnfs') return `${head} → dom0's qemu-storage-daemon with qemu's NFS driver (libnfs, NFSv3) → FUSE → direct-I/O loop → the guest's VBD`;
      return `${head} → ${c === 'kernel' ? 'a kernel NFS mount in dom0' : `dom0's NFS client (${c ?? 'driver not recorded'})`} → image file → ${fileBackend()}${unavailable('dom0', 'nfs-client')}`;
    }
    case 'nfs': {
      const c = d('guest', 'nfs-client');
      const head = `${volume()}, ext4 on it, ${nfsServer()}`;
      return `${head} → ${c === 'kernel' || c === undefined ? 'a kernel NFS mount in the guest' : `the guest's NFS client (${c})`} (in the guest's memory, on the guest's link)${available('guest', 'nfs-client') ? '' : `${unavailable('guest', 'nfs-client')}: it needs a kernel NFS client in the guest (the VM tier)`}`;
    }
    case 'dom0-local':
      return "a directory on dom0's own local filesystem (the one its images live on)";
    case 'dom0-iscsi':
      return `${volume()} → ${target()} → ${initiator('dom0')} → ext4 mounted in dom0`;
    case 'dom0-nfs': {
      const c = d('dom0', 'nfs-client');
      const head = `${volume()}, ext4 on it, ${nfsServer()} → a kernel NFS mount in dom0`;
      if (c === 'libnfs') return `${head} — not available where dom0's NFS client is libnfs, which reaches image files only`;
      return `${head}${unavailable('dom0', 'nfs-client')}`;
    }
    default:
      return undefined;
  }
}

/** The reason of a row whose every measurement was skipped ("skipped: ..."), else undefined. */
function skippedReason(measurements: MeasurementRecord[], method: string): string | undefined {
  const of = measurements.filter((m) => m.method === method);
  if (of.length === 0 || !of.every((m) => measurementOutcome(m) === 'skipped')) return undefined;
  return of[0]!.error.replace(/^skipped:\s*/, '');
}

/**
 * Each row's data path in this run, dom0's baselines first, then the methods in the
 * paper's order: derived from the set-up's drivers (hypervisor sandbox or xen, iSCSI
 * initiator qsd or open-iscsi, NFS client libnfs or kernel, ...); without a set-up, the
 * namespace lab's path and a real host's, both. A row whose every measurement was skipped
 * says so, with the measurement's reason. Pure.
 */
export function dataPaths(measurements: MeasurementRecord[], setup?: RunSetup): DataPath[] {
  return orderMethods(measurements.map((m) => m.method)).map((method): DataPath => {
    let text: string;
    let basis: string;
    if (setup) {
      const used: string[] = [];
      text = composePath(method, driverLookup(setup), used) ?? 'not one of the paper\'s methods: no data path known';
      basis = used.length > 0 ? `from the set-up: ${used.join(', ')}` : '';
    } else {
      const lab = composePath(method, fixedDrivers(LAB_DRIVERS), []);
      const real = composePath(method, fixedDrivers(REAL_DRIVERS), []);
      text = lab === undefined || real === undefined ? 'not one of the paper\'s methods: no data path known' : `in the namespace lab, ${lab}; on a real host, ${real}`;
      basis = 'drivers not recorded (no set-up)';
    }
    const skipped = skippedReason(measurements, method);
    if (skipped !== undefined) text += `. Skipped in this run: ${skipped}`;
    return { method, text, basis };
  });
}

function renderDataPaths(measurements: MeasurementRecord[], setup?: RunSetup): string {
  const paths = dataPaths(measurements, setup);
  if (paths.length === 0) return '';
  return [
    '<section class="data-paths">',
    '<h2>Data paths</h2>',
    `<p>What each row's bytes went through in this run, from the benchmark's files to the disk${setup ? ', as the drivers each agent selected make it (in brackets)' : ': the run recorded no set-up, so both the namespace lab\'s path and a real host\'s are given'}. dom0's baselines run the benchmark in dom0 itself: no guest, no VBD.</p>`,
    '<ul class="data-paths">',
    ...paths.map((p) => `<li data-method="${esc(p.method)}"><strong>${esc(p.method)}</strong>: ${esc(p.text)}${p.basis ? ` <span class="basis">[${esc(p.basis)}]</span>` : ''}</li>`),
    '</ul>',
    '</section>',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------
// CSV

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
  /** The panel's name in its figure: "block write". */
  panel: string;
  /** How to read its bars, for the figure's caption: "one bar per repetition". */
  reading: string;
  /** Legend entries, one per slot of a group. */
  series: string[];
  methods: string[];
  slots: (method: string) => Slot[];
  /** A group's mean and its 95% interval, drawn over its bars (two or more repetitions). */
  interval?: (method: string) => Summary | undefined;
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

/**
 * One figure: its title, a panel per figure it shows ((a) block write, (b) block read,
 * ...), and its caption; or, when this run did not measure it, a line saying why.
 */
function renderFigure(shown: ShownFigure, setup?: RunSetup): string {
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
    '</figure>',
  ].join('\n');
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
th, td { border: 1px solid #bbb; padding: 0.25rem 0.5rem; overflow-wrap: anywhere; }
th { background: #f2f2f2; text-align: left; }
td.ratio { text-align: right; font-variant-numeric: tabular-nums; }
td.ratio .mean { display: block; font-size: 0.75rem; color: #555; }
td.ratio.noisy { color: #b00; }
svg .errorbar { stroke: #111; stroke-width: 1.4; fill: none; }
td.missing { text-align: center; color: #777; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.warn { color: #b00; font-weight: bold; }
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

function missingReason(cell: Exclude<Cell, { kind: 'value' }>, benchmark: string): string {
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

// Chart geometry, in SVG user units (the chart scales to the page width).
const CHART_WIDTH = 800;
const CHART_HEIGHT = 360;
const PANEL_HEIGHT = 280;
const MARGIN_LEFT = 78;
const MARGIN_RIGHT = 16;
const MARGIN_BOTTOM = 58;
const LEGEND_ITEM_WIDTH = 72;
const LEGEND_ROW_HEIGHT = 18;

/** A chart as an <svg>. */
function renderChart(chart: ChartSpec, height = CHART_HEIGHT): { svg: string } {
  const plotWidth = CHART_WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
  const legendPerRow = Math.max(1, Math.floor(plotWidth / LEGEND_ITEM_WIDTH));
  const legendRows = Math.ceil(chart.series.length / legendPerRow);
  const top = 14 + legendRows * LEGEND_ROW_HEIGHT;
  const plotHeight = height - top - MARGIN_BOTTOM;
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
    `<svg data-figure="${esc(chart.key)}" viewBox="0 0 ${CHART_WIDTH} ${height}" width="${CHART_WIDTH}" height="${height}" role="img" aria-label="${esc(`${chart.title} (${chart.unit})`)}">`,
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

  return { svg: parts.join('\n') };
}

function renderRatioTable(scopes: Scopes): string {
  const analysis = scopes.guest;
  if (analysis.methods.length === 0) return '';
  const ratios = ratiosOf(scopes);
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
    `<p>Each method's mean over its repetitions divided by ${BASELINE_METHOD}'s (1.00 is as fast as ${BASELINE_METHOD}; higher is better), ± the ratio's 95% interval (delta method, Student's t); under it the method's mean ± its 95% confidence interval and its coefficient of variation. "!" marks a method whose repetitions vary by more than ${percent(NOISY_CV)}. Skipped and failed repetitions are left out of the mean. dom0's baselines are ceilings, not methods: they have no ratio here (see "vs dom0").</p>`,
    '<table class="ratios">',
    `<thead><tr><th>figure</th>${analysis.methods.map((m) => `<th scope="col">${esc(m)}</th>`).join('')}</tr></thead>`,
    `<tbody>${rows.join('\n')}</tbody>`,
    '</table>',
    '</section>',
  ].join('\n');
}

/** Each guest method against its dom0 baseline (local → dom0-local, iSCSI → dom0-iscsi, NFS → dom0-nfs); empty without dom0 rows. */
function renderDom0RatioTable(scopes: Scopes): string {
  const ratios = ratiosOf(scopes);
  if (!ratios.some((r) => r.dom0Ratio !== undefined)) return '';
  const methods = scopes.guest.methods;
  const figures = ratioFigures(scopes.guest).filter((spec) => ratios.some((r) => r.figure === figureLabel(spec) && r.dom0Ratio !== undefined));
  const rows = figures.map((spec) => {
    const cells = methods.map((method) => {
      const entry = ratios.find((r) => r.figure === figureLabel(spec) && r.method === method);
      const baseline = DOM0_BASELINE_OF[method];
      const attributes = `data-method="${esc(method)}" data-figure="${esc(figureKey(spec))}"${baseline ? ` data-baseline="${esc(baseline)}"` : ''}`;
      if (entry?.dom0Ratio === undefined) {
        const title = !baseline ? `${method} has no dom0 baseline` : entry?.mean === undefined ? `no ${method} value` : `no ${baseline} value`;
        return `<td class="missing" ${attributes} title="${esc(title)}">-</td>`;
      }
      const interval = entry.dom0RatioCi95 === undefined ? '' : ` ±${entry.dom0RatioCi95.toFixed(2)}`;
      return `<td class="dom0-ratio" ${attributes} data-ratio="${entry.dom0Ratio}"${entry.dom0RatioCi95 === undefined ? '' : ` data-ci95="${entry.dom0RatioCi95}"`}>${entry.dom0Ratio.toFixed(2)}${interval}<span class="mean">vs ${esc(baseline ?? '')}</span></td>`;
    });
    return `<tr><th scope="row">${esc(figureLabel(spec))} (${esc(spec.unit)})</th>${cells.join('')}</tr>`;
  });
  return [
    '<section class="dom0-ratios">',
    '<h2>vs dom0</h2>',
    `<p>Each method's mean divided by its dom0 baseline's — dom0 doing the same I/O itself over the same transport (Figs. 3 and 5): ${esc(dom0PairsText(methods))}. 1.00 is as fast as dom0 itself; ± the ratio's 95% interval.</p>`,
    '<table class="ratios">',
    `<thead><tr><th>figure</th>${methods.map((m) => `<th scope="col">${esc(m)}</th>`).join('')}</tr></thead>`,
    `<tbody>${rows.join('\n')}</tbody>`,
    '</table>',
    '</section>',
  ].join('\n');
}

/**
 * The results as tables, one per figure drawn: a row per method and figure, a cell per
 * repetition (the value and, for bonnie++, its CPU %; or the outcome, its reason as the
 * title), the mean ± its 95% interval, the cv and the mean CPU %.
 */
function renderResults(figures: ShownFigure[]): string {
  const drawn = figures.filter((f) => f.specs.length > 0);
  if (drawn.length === 0) return '';
  const tables = drawn.map((shown) => {
    const analysis = shown.analysis;
    const withCpu = shown.specs.some((spec) => spec.cpu !== undefined);
    const rows = shown.specs.flatMap((spec) =>
      rowMethods(analysis, spec).map((method) => {
        const cells = analysis.repetitions.map((r) => {
          const c = analysis.cell(method, spec, r);
          const at = `data-method="${esc(method)}" data-repetition="${r}"`;
          if (c.kind === 'value') {
            const cpu = analysis.cpu(method, spec, r);
            return `<td class="num" ${at} data-outcome="ok" data-value="${c.value}"${cpu === undefined ? '' : ` data-cpu="${cpu}"`}>${esc(formatGrouped(c.value))}${cpu === undefined ? '' : `<span class="cpu">CPU ${esc(cpuText(cpu))}</span>`}</td>`;
          }
          if (c.kind === 'absent') return `<td class="missing" ${at} title="no measurement recorded">-</td>`;
          const outcome = c.kind === 'failed' ? c.outcome : 'n/a';
          return `<td class="missing ${c.kind === 'failed' ? c.outcome : 'unmeasured'}" ${at}${c.kind === 'failed' ? ` data-outcome="${c.outcome}"` : ''} title="${esc(missingReason(c, spec.benchmark))}">${outcome}</td>`;
        });
        const summary = analysis.summary(method, spec);
        const cpu = analysis.cpuSummary(method, spec);
        const noisy = (summary?.cv ?? 0) > NOISY_CV;
        return (
          `<tr data-method="${esc(method)}" data-figure="${esc(figureKey(spec))}"><th scope="row">${esc(method)}</th><td>${esc(spec.figure)}</td><td>${esc(spec.unit)}</td>${cells.join('')}` +
          `<td class="num">${summary ? esc(formatGrouped(summary.mean)) : '-'}</td><td class="num">${summary?.ci95 === undefined ? '-' : `±${esc(formatGrouped(summary.ci95))}`}</td>` +
          `<td class="num${noisy ? ' warn' : ''}">${summary?.cv === undefined ? '-' : `${percent(summary.cv)}${noisy ? ' !' : ''}`}</td>` +
          `${withCpu ? `<td class="num cpu-mean">${cpu ? esc(cpuText(cpu.mean)) : '-'}</td>` : ''}</tr>`
        );
      }),
    );
    return [
      `<h3>${esc(shown.heading)}</h3>`,
      `<table class="results" data-paper-figure="${esc(shown.paperFigure)}">`,
      `<thead><tr><th>${shown.group.scope === 'dom0' ? 'baseline' : 'method'}</th><th>figure</th><th>unit</th>${analysis.repetitions.map((r) => `<th scope="col">rep ${r}</th>`).join('')}<th>mean</th><th>95% CI</th><th>cv</th>${withCpu ? '<th>CPU %</th>' : ''}</tr></thead>`,
      `<tbody>${rows.join('\n')}</tbody>`,
      '</table>',
    ].join('\n');
  });
  return [
    '<section class="results">',
    '<h2>Results</h2>',
    `<p>Every repetition of every figure drawn: its value (bonnie++: with the CPU % it reported beside it), or its outcome — "skipped" (these agents cannot run it), "failed" — or "n/a" (it ran, the tool did not measure the figure), its reason as the cell's tooltip; then the mean, its 95% confidence interval and cv ("!" above ${percent(NOISY_CV)}), and bonnie++'s mean CPU %.</p>`,
    ...tables,
    '</section>',
  ].join('\n');
}

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
  return sparseComparisonOf(analyseScopes(measurements).guest);
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

/** Fig. 7's sparse-disk panel: per file method and pass, sparse / zero-filled; undefined without a pass to compare. */
function sparseRatioChart(analysis: Analysis): ChartSpec | undefined {
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

function renderSparseComparison(analysis: Analysis): string {
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

// ---------------------------------------------------------------------------------------
// The set-up (the paper's Tables 1 and 2)

const NOT_RECORDED = 'not recorded';

function mibText(bytes: number): string {
  return bytes > 0 ? `${Math.round(bytes / 2 ** 20)} MiB` : 'unknown';
}

type SetupHost = RunSetup['hosts'][number];

/** Table 1's cells of a host: what the run recorded, "not recorded" for what it did not (older runs). */
function hostFacts(h: SetupHost, setup: RunSetup): { kernel: string; cpus: string; tools: string; link: string } {
  const tools = h.tools ? Object.entries(h.tools).map(([tool, version]) => `${tool}: ${version}`) : undefined;
  return {
    kernel: h.kernel || NOT_RECORDED,
    cpus: h.cpus !== undefined && h.cpus > 0 ? String(h.cpus) : NOT_RECORDED,
    tools: tools === undefined ? NOT_RECORDED : tools.length === 0 ? 'none' : tools.join('; '),
    link: setup.linkRate || NOT_RECORDED,
  };
}

/** "k=v k=v" of a parameter set. */
function paramsText(params: Record<string, string>): string {
  return Object.entries(params).map(([k, v]) => `${k}=${v}`).join(' ');
}

/** Every iSCSI parameter named by the request or a session, the request's first. */
function iscsiParamNames(setup: RunSetup): string[] {
  const names: string[] = [];
  for (const params of [setup.iscsiParams ?? {}, ...(setup.iscsiSessions ?? []).map((s) => s.params)]) for (const name of Object.keys(params)) if (!names.includes(name)) names.push(name);
  return names;
}

function setupText(setup: RunSetup): string[] {
  const rows = setup.hosts.map((h) => {
    const f = hostFacts(h, setup);
    return [h.role, h.name, f.kernel, f.cpus, mibText(h.memoryBytes), h.memoryScope, f.link, h.drivers.join(' ')];
  });
  const lines = [
    `set-up: ${setup.repetitions} repetitions, ${mibText(setup.volumeSizeBytes)} ${setup.provisioning} volumes; ${Object.entries(setup.benchmarks).map(([name, spec]) => `${name} (${spec})`).join('; ')}`,
    'Table 1: hosts',
    ...fixedWidth(['role', 'host', 'kernel', 'cpus', 'memory', 'memory of', 'link', 'drivers'], rows, [false, false, false, true, true, false, false, false]),
    ...setup.hosts.map((h) => `  tools on ${h.name}: ${hostFacts(h, setup).tools}`),
    'Table 2: iSCSI and NFS parameters',
    `  iSCSI requested: ${setup.iscsiParams ? paramsText(setup.iscsiParams) || 'none (the drivers\' defaults)' : NOT_RECORDED}`,
  ];
  if (setup.iscsiSessions === undefined) lines.push(`  iSCSI negotiated: ${NOT_RECORDED}`);
  else if (setup.iscsiSessions.length === 0) lines.push('  iSCSI negotiated: no session');
  else for (const s of setup.iscsiSessions) lines.push(`  iSCSI session, ${s.method} (${s.initiator} → ${s.target}): ${paramsText(s.params)}${s.basis ? ` [${s.basis}]` : ''}`);
  if (setup.nfsClients === undefined) lines.push(`  NFS clients: ${NOT_RECORDED}`);
  else if (setup.nfsClients.length === 0) lines.push('  NFS clients: none');
  else for (const c of setup.nfsClients) lines.push(`  NFS client, ${c.method} (${c.client}): ${c.options}`);
  return lines;
}

function renderSetup(setup: RunSetup): string {
  const rows = setup.hosts.map((h) => {
    const f = hostFacts(h, setup);
    const cell = (text: string, cls = '') => `<td${text === NOT_RECORDED ? ' class="not-recorded"' : cls ? ` class="${cls}"` : ''}>${esc(text)}</td>`;
    return `<tr data-role="${esc(h.role)}"><td>${esc(h.role)}</td><td>${esc(h.name)}</td><td>${esc(h.hostname)}</td>${cell(f.kernel)}${cell(f.cpus, 'num')}<td class="num">${esc(mibText(h.memoryBytes))}</td><td>${esc(h.memoryScope)}</td>${cell(f.tools)}${cell(f.link)}<td>${esc(h.version)}</td><td>${esc(h.drivers.join(', '))}</td></tr>`;
  });
  const benchmarks = Object.entries(setup.benchmarks).map(([name, spec]) => `<tr><th scope="row">${esc(name)}</th><td>${esc(spec)}</td></tr>`);
  return [
    '<section class="setup">',
    '<h2>Set-up (Table 1)</h2>',
    `<p>${setup.repetitions} repetitions of every method and benchmark, on ${esc(mibText(setup.volumeSizeBytes))} ${esc(setup.provisioning)} volumes and images. Each host as its agent described itself when the run began; its memory is its memory cgroup's limit where hosts share a kernel (the lab), else the machine's; the link is the rate every lab link was shaped to. "not recorded": the run predates the field.</p>`,
    '<table class="setup">',
    '<thead><tr><th>role</th><th>agent</th><th>hostname</th><th>kernel</th><th>CPUs</th><th>memory</th><th>memory of</th><th>tools</th><th>link</th><th>vcstor</th><th>drivers</th></tr></thead>',
    `<tbody>${rows.join('\n')}</tbody>`,
    '</table>',
    '<table class="benchmarks">',
    `<tbody>${benchmarks.join('\n')}</tbody>`,
    '</table>',
    renderTable2(setup),
    '</section>',
  ].join('\n');
}

/** Table 2: iSCSI parameters (a row each) as requested and as each session negotiated them; each NFS client's options. */
function renderTable2(setup: RunSetup): string {
  const sessions = setup.iscsiSessions ?? [];
  const names = iscsiParamNames(setup);
  const parts = ['<h3 id="table-2">Table 2: iSCSI and NFS parameters</h3>'];
  if (setup.iscsiParams === undefined && setup.iscsiSessions === undefined) {
    parts.push(`<p class="not-recorded" data-table2="iscsi">iSCSI session parameters: ${NOT_RECORDED}.</p>`);
  } else if (names.length === 0) {
    parts.push(`<p data-table2="iscsi">iSCSI session parameters: requested ${setup.iscsiParams ? "none (the drivers' defaults)" : NOT_RECORDED}; negotiated ${setup.iscsiSessions ? 'by no session' : NOT_RECORDED}.</p>`);
  } else {
    const header = `<tr><th>parameter</th><th scope="col">requested</th>${sessions.map((s) => `<th scope="col" data-method="${esc(s.method)}">${esc(s.method)}<span class="basis"> ${esc(s.initiator)} → ${esc(s.target)}</span></th>`).join('')}${setup.iscsiSessions === undefined ? `<th scope="col">negotiated</th>` : ''}</tr>`;
    const rows = names.map((name) => {
      const requested = setup.iscsiParams === undefined ? NOT_RECORDED : (setup.iscsiParams[name] ?? "the driver's default");
      const negotiated = setup.iscsiSessions === undefined ? [`<td class="not-recorded">${NOT_RECORDED}</td>`] : sessions.map((s) => `<td data-method="${esc(s.method)}" data-param="${esc(name)}">${esc(s.params[name] ?? '-')}</td>`);
      return `<tr><th scope="row">${esc(name)}</th><td${requested === NOT_RECORDED ? ' class="not-recorded"' : ''} data-param="${esc(name)}">${esc(requested)}</td>${negotiated.join('')}</tr>`;
    });
    parts.push('<table class="iscsi-params" data-table2="iscsi">', `<thead>${header}</thead>`, `<tbody>${rows.join('\n')}</tbody>`, '</table>');
    // Whether a column is what the session negotiated or what the target offered.
    // Sessions of one basis share a line: the same initiator says the same thing for each.
    const byBasis = new Map<string, string[]>();
    for (const session of sessions) if (session.basis) byBasis.set(session.basis, [...(byBasis.get(session.basis) ?? []), session.method]);
    if (byBasis.size > 0) parts.push(`<ul class="basis" data-table2="basis">${[...byBasis].map(([basis, methods]) => `<li data-methods="${esc(methods.join(' '))}">${esc(methods.join(', '))}: ${esc(basis)}</li>`).join('')}</ul>`);
  }
  if (setup.nfsClients === undefined) {
    parts.push(`<p class="not-recorded" data-table2="nfs">NFS client options: ${NOT_RECORDED}.</p>`);
  } else if (setup.nfsClients.length === 0) {
    parts.push('<p data-table2="nfs">NFS client options: no NFS client in this run.</p>');
  } else {
    parts.push(
      '<table class="nfs-clients" data-table2="nfs">',
      '<thead><tr><th>method</th><th>client</th><th>options</th></tr></thead>',
      `<tbody>${setup.nfsClients.map((c) => `<tr data-method="${esc(c.method)}"><td>${esc(c.method)}</td><td>${esc(c.client)}</td><td>${esc(c.options)}</td></tr>`).join('\n')}</tbody>`,
      '</table>',
    );
  }
  return parts.join('\n');
}
