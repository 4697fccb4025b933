/**
 * How much a figure varies over its repetitions: mean, sample standard deviation,
 * min-max, a 95% confidence interval of the mean (Student's t), the coefficient of
 * variation; and the interval of a ratio of two means. A figure without its spread
 * cannot be read: two runs here differed by up to 2x before caches were taken out.
 */

/** A figure's repetitions summarised. */
export interface Summary {
  n: number;
  mean: number;
  /** Sample standard deviation (n - 1); 0 for one value. */
  sd: number;
  min: number;
  max: number;
  /** Half-width of the 95% confidence interval of the mean; undefined for one value. */
  ci95: number | undefined;
  /** sd / mean; undefined for one value or a zero mean. */
  cv: number | undefined;
}

/** Above this coefficient of variation a figure is flagged as noisy. */
export const NOISY_CV = 0.1;

/** Two-sided 95% quantiles of Student's t for 1-30 degrees of freedom. */
const T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131, 2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042];

/** t(0.975, df): from the table up to 30, then the normal's 1.96 (2.0 to 60, a bound). */
export function t95(df: number): number {
  if (!Number.isInteger(df) || df < 1) throw new RangeError(`degrees of freedom must be a whole number >= 1, got ${df}`);
  if (df <= 30) return T95[df - 1]!;
  return df <= 60 ? 2.0 : 1.96;
}

/** The summary of `values`, or undefined when there are none. */
export function summarize(values: readonly number[]): Summary | undefined {
  const n = values.length;
  if (n === 0) return undefined;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const sd = n > 1 ? Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1)) : 0;
  return {
    n,
    mean,
    sd,
    min: Math.min(...values),
    max: Math.max(...values),
    ci95: n > 1 ? (t95(n - 1) * sd) / Math.sqrt(n) : undefined,
    cv: n > 1 && mean !== 0 ? sd / Math.abs(mean) : undefined,
  };
}

/** A ratio of two means with its 95% interval. */
export interface RatioInterval {
  ratio: number;
  /** Half-width of the 95% interval; undefined when either side has one value. */
  ci95: number | undefined;
}

/**
 * a.mean / b.mean, its interval by the delta method: the ratio's relative standard
 * error is the root sum of squares of the two means' relative standard errors, with
 * the fewer repetitions' degrees of freedom (conservative).
 */
export function ratioOf(a: Summary, b: Summary): RatioInterval | undefined {
  if (b.mean === 0) return undefined;
  const ratio = a.mean / b.mean;
  if (a.n < 2 || b.n < 2 || a.mean === 0) return { ratio, ci95: undefined };
  const relativeSe = Math.sqrt((a.sd / Math.sqrt(a.n) / a.mean) ** 2 + (b.sd / Math.sqrt(b.n) / b.mean) ** 2);
  return { ratio, ci95: t95(Math.min(a.n, b.n) - 1) * Math.abs(ratio) * relativeSe };
}
