import { VcstorError } from '../common/errors.js';

/**
 * fio for load sessions: the command line of one fio process driving many NBD exports
 * (one job per session), and the reading of its `json+` output, whose per-job
 * completion-latency histograms ("bins") let percentiles be merged exactly across jobs,
 * processes and agents (fio's own percentiles cannot be averaged).
 */

/** A filled-in fio job for load sessions. */
export interface LoadFio {
  rw: string;
  blockSizeBytes: number;
  iodepth: number;
  sizeBytes: number;
  runtimeS: number;
  rwmixRead: number;
}

export const LOAD_FIO_DEFAULTS: Omit<LoadFio, 'rw'> = { blockSizeBytes: 4096, iodepth: 1, sizeBytes: 16 * 1024 * 1024, runtimeS: 5, rwmixRead: 50 };

/** A histogram: latency (ns) → count. */
export type Histogram = Map<number, number>;

export interface LoadJobResult {
  /** The job's name: the session's node name (s<index>). */
  name: string;
  readBytesPerSecond: number;
  writeBytesPerSecond: number;
  readIops: number;
  writeIops: number;
  error: number;
  histogram: Histogram;
}

/**
 * fio's arguments for `jobs` (node name and NBD socket each), writing json+ to `outputFile`.
 * Threads, not processes: a thousand forked jobs cost far more memory than threads.
 */
export function loadFioArgs(spec: LoadFio, jobs: ReadonlyArray<{ name: string; socket: string }>, outputFile: string): string[] {
  const args = [
    '--output-format=json+',
    `--output=${outputFile}`,
    '--thread',
    '--ioengine=nbd',
    `--rw=${spec.rw}`,
    `--bs=${spec.blockSizeBytes}`,
    `--iodepth=${spec.iodepth}`,
    `--size=${spec.sizeBytes}`,
    `--runtime=${spec.runtimeS}`,
    '--time_based',
  ];
  if (spec.rw === 'rw' || spec.rw === 'randrw') args.push(`--rwmixread=${spec.rwmixRead}`);
  for (const job of jobs) args.push(`--name=${job.name}`, `--uri=nbd+unix:///${job.name}?socket=${job.socket}`);
  return args;
}

function asObject(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new VcstorError('INTERNAL', `fio json+: ${where} is not an object`);
  return value as Record<string, unknown>;
}

function numberOf(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : 0;
}

/**
 * Read fio's json+ output (text before the first '{' at column 0 is skipped: the nbd
 * engine may print a line first). One result per job, its histogram the read and write
 * completion-latency bins together.
 * @throws VcstorError INTERNAL when the text holds no fio JSON.
 */
export function parseFioJsonPlus(text: string): LoadJobResult[] {
  const start = text.startsWith('{') ? 0 : text.indexOf('\n{') + 1;
  if (start < 0 || text[start] !== '{') throw new VcstorError('INTERNAL', 'fio printed no JSON result');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text.slice(start));
  } catch (err) {
    throw new VcstorError('INTERNAL', `fio's JSON could not be read: ${(err as Error).message}`);
  }
  const jobs = asObject(parsed, 'the output').jobs;
  if (!Array.isArray(jobs)) throw new VcstorError('INTERNAL', 'fio json+: no jobs array');
  return jobs.map((raw, i) => {
    const job = asObject(raw, `jobs[${i}]`);
    const histogram: Histogram = new Map();
    const direction = (key: 'read' | 'write') => {
      const d = job[key] === undefined ? {} : asObject(job[key], `jobs[${i}].${key}`);
      const clat = d.clat_ns === undefined ? {} : asObject(d.clat_ns, `jobs[${i}].${key}.clat_ns`);
      if (clat.bins !== undefined) {
        for (const [latency, count] of Object.entries(asObject(clat.bins, `jobs[${i}].${key}.clat_ns.bins`))) {
          const ns = Number(latency);
          if (Number.isFinite(ns) && numberOf(count) > 0) histogram.set(ns, (histogram.get(ns) ?? 0) + numberOf(count));
        }
      }
      return { bw: numberOf(d.bw_bytes), iops: numberOf(d.iops) };
    };
    const read = direction('read');
    const write = direction('write');
    return {
      name: String(job.jobname ?? `job${i}`),
      readBytesPerSecond: read.bw,
      writeBytesPerSecond: write.bw,
      readIops: read.iops,
      writeIops: write.iops,
      error: numberOf(job.error),
      histogram,
    };
  });
}

/** Add `from` into `into`. */
export function mergeHistogram(into: Histogram, from: Histogram | Iterable<{ latencyNs: number; count: number }>): Histogram {
  const entries: Iterable<[number, number]> =
    from instanceof Map ? from.entries() : Array.from(from as Iterable<{ latencyNs: number; count: number }>, (b) => [b.latencyNs, b.count] as [number, number]);
  for (const [ns, count] of entries) into.set(ns, (into.get(ns) ?? 0) + count);
  return into;
}

/**
 * The latency at percentile `p` (0-100) of a histogram: the smallest bucket at or below
 * which at least p% of the I/Os completed (fio's own rule). 0 for an empty histogram.
 */
export function histogramPercentile(histogram: Histogram, p: number): number {
  const buckets = [...histogram.entries()].sort((a, b) => a[0] - b[0]);
  const total = buckets.reduce((sum, [, c]) => sum + c, 0);
  if (total === 0) return 0;
  const rank = (p / 100) * total;
  let seen = 0;
  for (const [ns, count] of buckets) {
    seen += count;
    if (seen >= rank) return ns;
  }
  return buckets[buckets.length - 1]![0];
}

/** The histogram as proto LatencyBin messages, in latency order. */
export function histogramBins(histogram: Histogram): Array<{ latencyNs: number; count: number }> {
  return [...histogram.entries()].sort((a, b) => a[0] - b[0]).map(([latencyNs, count]) => ({ latencyNs, count }));
}
