/**
 * A campaign's measurements indexed by method, figure and repetition: what each cell
 * holds, the means and spreads over the repetitions, each measurement's outcome, and the
 * paper's order of the rows. dom0's baselines and the guest's methods are analysed apart.
 * Pure functions.
 */

import { dom0BaselineOf, DOM0_BASELINES, METHOD_ORDER, METHODS } from '../methods.js';
import type { MeasurementRecord, RunState } from '../model.js';
import { summarize, type Summary } from '../statistics.js';
import { TABLE_FIGURES, type FigureSpec } from './figures.js';

/** What one (method, figure, repetition) holds. */
export type Cell =
  | { kind: 'value'; value: number }
  /** The benchmark was skipped, or it (or its setup) failed: the measurement's error. */
  | { kind: 'failed'; outcome: 'skipped' | 'failed'; error: string }
  /** The benchmark ran but did not produce this figure (e.g. bonnie++ printed "+++++"). */
  | { kind: 'unmeasured' }
  /** No measurement was recorded at all. */
  | { kind: 'absent' };

/** One scope's measurements indexed: its rows in the paper's order, its repetitions, and every cell and statistic of a figure. */
export interface Analysis {
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
export function runOutcome(state: RunState): string {
  return state === 'succeeded' ? 'ok' : state;
}

/** Whether a measurement produced a result (no error): the only kind whose figures are read. */
export function succeeded(m: MeasurementRecord): m is MeasurementRecord & { result: Record<string, unknown> } {
  return m.error === '' && m.result !== undefined;
}

/** Why a measurement has no result: its error, or that none was recorded. */
export function failureText(m: MeasurementRecord): string {
  return m.error !== '' ? m.error : 'no result recorded';
}

/** The rows every table and chart lists first, in this order: dom0's baselines (Fig. 3), then the paper's methods (section 3). */
export const KNOWN_ROWS: readonly string[] = METHOD_ORDER;

/** dom0's baselines (Fig. 3), then the paper's order (section 3), then any other method by name. */
export function orderMethods(names: Iterable<string>): string[] {
  const present = new Set(names);
  return [...KNOWN_ROWS.filter((m) => present.has(m)), ...[...present].filter((m) => !KNOWN_ROWS.includes(m)).sort()];
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

/** dom0's baselines, in the paper's order (Figs. 3 and 5). */
export const BASELINES: readonly string[] = DOM0_BASELINES;

/** A dom0 baseline row (Figs. 3 and 5), not a method of giving a guest a disk. */
function isDom0(method: string): boolean {
  return BASELINES.includes(method);
}

/** Whose rows a figure shows: dom0's baselines or the guest's methods. */
export type Scope = 'dom0' | 'guest';

/** The measurements analysed apart: dom0's baselines, and the guest's methods (every other row). */
export interface Scopes {
  dom0: Analysis;
  guest: Analysis;
}

/** {@link Scopes} of a run's measurements. */
export function analyseScopes(measurements: MeasurementRecord[]): Scopes {
  return { dom0: analyse(measurements.filter((m) => isDom0(m.method))), guest: analyse(measurements.filter((m) => !isDom0(m.method))) };
}

/** The dom0 baseline each method is held against: the same transport, dom0 doing the I/O itself (the method registry's). */
export const DOM0_BASELINE_OF: Readonly<Record<string, string>> = Object.fromEntries(
  METHODS.flatMap((method) => {
    const baseline = dom0BaselineOf(method);
    return baseline ? [[method, baseline]] : [];
  }),
);

/** Methods of a figure with a row: a method that never ran its benchmark (the section 4.3 test runs on file methods only) has none. */
export function rowMethods(analysis: Analysis, spec: FigureSpec): string[] {
  return analysis.methods.filter((method) => analysis.repetitions.some((r) => analysis.cell(method, spec, r).kind !== 'absent'));
}

/** The skipped and failed measurements, by method (paper order), benchmark and repetition. */
export function orderedFailures(measurements: MeasurementRecord[]): MeasurementRecord[] {
  const methodOrder = orderMethods(measurements.map((m) => m.method));
  return measurements
    .filter((m) => !succeeded(m))
    .sort((a, b) => methodOrder.indexOf(a.method) - methodOrder.indexOf(b.method) || a.benchmark.localeCompare(b.benchmark) || a.repetition - b.repetition);
}

