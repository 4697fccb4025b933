/**
 * The ratios: each guest method's mean against phy-local's (the paper's baseline) and
 * against its dom0 baseline's, with their 95% intervals. Pure functions.
 */

import type { MeasurementRecord } from '../model.js';
import { ratioOf, type Summary } from '../statistics.js';
import { REPORT_BASELINE_METHOD } from '../methods.js';
import { analyseScopes, BASELINES, DOM0_BASELINE_OF, type Analysis, type Scopes } from './analysis.js';
import { figureLabel, SPARSE_DISK_FIGURES, type FigureSpec } from './figures.js';

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

/** The method every ratio is measured against: the paper's baseline (a local LV). */
export const BASELINE_METHOD: string = REPORT_BASELINE_METHOD;

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
export function ratioFigures(analysis: Analysis): FigureSpec[] {
  return analysis.figures.filter((spec) => !SPARSE_DISK_FIGURES.includes(spec));
}

/** {@link ratiosVsPhyLocal} of scopes already analysed. */
export function ratiosOf(scopes: Scopes): PhyLocalRatio[] {
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

/** "file-local, phy-local vs dom0-local; ..." for the methods shown. */
export function dom0PairsText(methods: string[]): string {
  return BASELINES.map((baseline) => {
    const of = methods.filter((m) => DOM0_BASELINE_OF[m] === baseline);
    return of.length === 0 ? '' : `${of.join(', ')} vs ${baseline}`;
  })
    .filter((t) => t !== '')
    .join('; ');
}

/** The ratio of a figure and method among `ratios`; undefined where none was computed. */
export function ratioEntry(ratios: PhyLocalRatio[], spec: FigureSpec, method: string): PhyLocalRatio | undefined {
  return ratios.find((r) => r.figure === figureLabel(spec) && r.method === method);
}

/** The guest's figures that some method has a "vs dom0" ratio for; empty without dom0 rows. */
export function dom0RatioFigures(guest: Analysis, ratios: PhyLocalRatio[]): FigureSpec[] {
  return ratioFigures(guest).filter((spec) => ratios.some((r) => r.figure === figureLabel(spec) && r.dom0Ratio !== undefined));
}
