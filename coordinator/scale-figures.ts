/**
 * The scale test's figures (paper section 5), pure: what a step of the ramp measured,
 * the knee of a ramp, percentiles and histograms of latencies, the k-th export's cost.
 */

/** What one step of the ramp measured. Kept as the `result` of a `scale-step` measurement. */
export interface ScaleStepResult {
  count: number;
  /** Sessions per initiator agent. */
  perAgent: Record<string, number>;
  loggedIn: number;
  failedLogins: number;
  loginP50Ms: number;
  loginP99Ms: number;
  loginMaxMs: number;
  stormMs: number;
  /** Of this step's initiator IQNs, how many the target listed while they were logged in. */
  targetSessions: number;
  /** ... and how many it still listed after the logout (0 when all logged out). */
  targetSessionsAfterLogout: number;
  bytesPerSecond: number;
  iops: number;
  perInitiatorBytesPerSecond: { mean: number; min: number; max: number };
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  fioFailed: number;
  /** The initiator side's processes (qemu-storage-daemon) at the peak of the step. */
  initiatorRssBytes: number;
  initiatorFds: number;
  initiatorDaemons: number;
  logoutMs: number;
  errors: string[];
}

export interface Knee {
  /** The largest count that still grew throughput enough with p99 under the threshold; 0 when even the first step failed the rule. */
  count: number;
  /** False when the ramp ended before the knee (throughput still growing at its last count). */
  reached: boolean;
  limitedBy: 'throughput' | 'latency' | 'logins' | 'none';
  reason: string;
}

/**
 * The knee of a ramp. Steps are taken in count order, up to the first whose p99 passes
 * `p99LatencyMs` or where a login failed. Among those, throughput "still grows" at a step
 * that beats the best so far by at least `minGainPercent`: the knee is the last such step
 * — the count beyond which more initiators bring no more throughput. Comparing with the
 * best so far, not the previous step, keeps one noisy step (a 2-core lab) from ending the
 * ramp early. Pure: the unit tests feed it figures.
 */
export function findKnee(
  steps: ReadonlyArray<Pick<ScaleStepResult, 'count' | 'bytesPerSecond' | 'p99Ms' | 'failedLogins'>>,
  rule: { p99LatencyMs: number; minGainPercent: number },
): Knee {
  const sorted = [...steps].sort((a, b) => a.count - b.count);
  const cutAt = sorted.findIndex((s) => s.failedLogins > 0 || s.p99Ms > rule.p99LatencyMs);
  const usable = cutAt < 0 ? sorted : sorted.slice(0, cutAt);
  const cut = cutAt < 0 ? undefined : sorted[cutAt]!;
  const cutReason = (c: (typeof sorted)[number]) =>
    c.failedLogins > 0 ? `${c.failedLogins} of ${c.count} logins failed` : `p99 ${c.p99Ms.toFixed(2)} ms at ${c.count} initiators passes ${rule.p99LatencyMs} ms`;
  if (usable.length === 0) {
    return cut ? { count: 0, reached: true, limitedBy: cut.failedLogins > 0 ? 'logins' : 'latency', reason: cutReason(cut) } : { count: 0, reached: false, limitedBy: 'none', reason: 'no steps' };
  }
  let best = usable[0]!;
  for (const s of usable.slice(1)) if (s.bytesPerSecond >= best.bytesPerSecond * (1 + rule.minGainPercent / 100)) best = s;
  const beyond = usable.filter((s) => s.count > best.count);
  if (beyond.length > 0) {
    const most = Math.max(...beyond.map((s) => s.bytesPerSecond));
    const gain = best.bytesPerSecond > 0 ? (100 * (most - best.bytesPerSecond)) / best.bytesPerSecond : 0;
    return {
      count: best.count,
      reached: true,
      limitedBy: 'throughput',
      reason: `throughput peaked at ${(best.bytesPerSecond / 1e6).toFixed(1)} MB/s with ${best.count} initiators; up to ${beyond[beyond.length - 1]!.count} gained at most ${gain.toFixed(1)}% (less than ${rule.minGainPercent}%)`,
    };
  }
  if (cut) return { count: best.count, reached: true, limitedBy: cut.failedLogins > 0 ? 'logins' : 'latency', reason: cutReason(cut) };
  return { count: best.count, reached: false, limitedBy: 'none', reason: `still growing at ${best.count} initiators: the ramp ended before the knee` };
}

/** p-th percentile (nearest rank) of plain samples; 0 for none. */
export function samplePercentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return 0;
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** A latency summary and histogram (power-of-two ms buckets) of one control-plane stage. */
export interface StageHistogram {
  n: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Upper bound in ms ("<=1", "<=2", ...) → count. */
  buckets: Record<string, number>;
}

export function stageHistogram(samples: readonly number[]): StageHistogram {
  const buckets: Record<string, number> = {};
  for (const ms of samples) {
    let bound = 1;
    while (ms > bound) bound *= 2;
    buckets[`<=${bound}`] = (buckets[`<=${bound}`] ?? 0) + 1;
  }
  return { n: samples.length, p50Ms: samplePercentile(samples, 50), p95Ms: samplePercentile(samples, 95), p99Ms: samplePercentile(samples, 99), maxMs: samples.length ? Math.max(...samples) : 0, buckets };
}

/** Least-squares slope of y over x (ms per added export): the k-th export's extra cost. */
export function slope(ys: readonly number[]): number {
  const n = ys.length;
  if (n < 2) return 0;
  const mx = (n - 1) / 2;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  ys.forEach((y, x) => {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  });
  return num / den;
}

