/**
 * fio's JSON report, parsed into totals over its jobs. Checked against fio 3.33; the
 * captures are test/fixtures/benchmarks/.
 */
import type { FioDirectionResult__Output } from '../../common/generated/vcstor/v1/FioDirectionResult.js';
import type { FioResult__Output } from '../../common/generated/vcstor/v1/FioResult.js';
import type { LatencyPercentile__Output } from '../../common/generated/vcstor/v1/LatencyPercentile.js';
import { VcstorError } from '../../common/errors.js';
import { describeOutput } from './tool-output.js';

/** The parts of one direction ("read", "write") of a job in fio's JSON that we read. */
interface FioJsonDirection {
  io_bytes: number;
  bw_bytes?: number;
  /** KiB/s; only used when bw_bytes is missing. */
  bw: number;
  iops: number;
  runtime: number;
  clat_ns: { mean: number; N: number; percentile?: Record<string, number> };
}

interface FioJsonJob {
  error: number;
  read: FioJsonDirection;
  write: FioJsonDirection;
}

interface FioJsonReport {
  version: string;
  jobs: FioJsonJob[];
}

/**
 * Parse fio's `--output-format=json` output into totals over all jobs.
 *
 * With `--status-interval`, fio prints one cumulative JSON object per interval and a
 * final one, each from a "{" line to a "}" line: the last complete object is parsed.
 * Lines outside objects are ignored (the nbd engine prints "fio: connected to NBD
 * server" first). Per direction: bytes, bandwidth (bytes/s) and IOPS are summed over
 * jobs; the mean completion latency is the mean over all their I/Os (weighted by each
 * job's count); each completion-latency percentile is the worst over the jobs, an upper
 * bound, since fio's JSON has no histogram to merge. runtime_ms is the longest read or
 * write runtime of any job: the time fio divides bytes by for bandwidth (its job_runtime
 * can be a millisecond shorter). error is the first job's non-zero error.
 *
 * fio's exit status is not in its output: a job that never started (e.g. an nbd
 * connection refused, exit code 1) can report error 0 with no I/O. Check both.
 * @throws VcstorError INTERNAL when there is no complete JSON object or it is not fio's.
 */
export function parseFioJson(stdout: string): FioResult__Output {
  const rawJson = lastFioJsonObject(stdout);
  if (rawJson === undefined) {
    throw new VcstorError('INTERNAL', `fio printed no JSON report${describeOutput(stdout)}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(rawJson);
  } catch (err) {
    throw new VcstorError('INTERNAL', `fio's JSON report does not parse: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const report = readFioReport(parsed);
  const runtimes = report.jobs.map((job) => Math.max(job.read.runtime, job.write.runtime));
  return {
    version: report.version.replace(/^fio-/, ''),
    read: sumFioDirection(report.jobs.map((job) => job.read)),
    write: sumFioDirection(report.jobs.map((job) => job.write)),
    runtimeMs: Math.max(0, ...runtimes),
    error: report.jobs.find((job) => job.error !== 0)?.error ?? 0,
    rawJson,
    // The runner fills these in: they depend on the job, not only on fio's report.
    verifiedBytes: 0,
    sharedFilePath: '',
    sharedFileSizeBytes: 0,
    finishedUnixMs: reportTimestamp(parsed),
  };
}

/** fio's `timestamp_ms` (when it printed the report), or 0 when the report has none. */
function reportTimestamp(report: unknown): number {
  const ms = typeof report === 'object' && report !== null ? (report as { timestamp_ms?: unknown }).timestamp_ms : undefined;
  return typeof ms === 'number' && Number.isFinite(ms) ? ms : 0;
}

/**
 * What fio said about a failed verify, from its stderr: the lines naming the block and
 * the check that failed, at most `maxLines`, joined with " | "; undefined when there are
 * none. fio 3.33 prints, for a changed data byte (crc32c):
 *
 *     crc32c: verify failed at file F offset 5242880, length 8192 (requested block: offset=5242880, length=8192, flags=88)
 *            Expected CRC: e74ed32f
 *            Received CRC: 1244e16d
 *
 * and for a bad header (a block written elsewhere, a different block size, zeros):
 * "verify: bad header offset 0, wanted 8192 at file F offset 8192, length 8192 (...)",
 * "verify: bad header length 8192, wanted 16384 ...", "verify: bad magic header 0,
 * wanted acca ..."; a different verify type adds "fio: verify type mismatch (5 media, 2
 * given)". The job's error is then 84 (EILSEQ) and fio exits 1. Captures:
 * test/fixtures/benchmarks/fio-verify-only-*.
 */
export function fioVerifyFailure(stderr: string, maxLines = 6): string | undefined {
  const lines = stderr
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => /^(verify: |[\w-]+: verify failed|Expected |Received |fio: verify )/.test(line));
  return lines.length === 0 ? undefined : lines.slice(0, maxLines).join(' | ');
}

/** The text of the last object that opens with "{" and closes with "}" at column 0. */
function lastFioJsonObject(stdout: string): string | undefined {
  const lines = stdout.split('\n');
  let start: number | undefined;
  let last: string | undefined;
  lines.forEach((line, index) => {
    const text = line.replace(/\r$/, '');
    if (text === '{') start = index;
    else if (text === '}' && start !== undefined) {
      last = lines.slice(start, index + 1).join('\n');
      start = undefined;
    }
  });
  return last;
}

function sumFioDirection(directions: FioJsonDirection[]): FioDirectionResult__Output {
  const completions = directions.reduce((sum, d) => sum + d.clat_ns.N, 0);
  const worstByPercentile = new Map<number, number>();
  for (const direction of directions) {
    if (direction.clat_ns.N === 0) continue;
    for (const [key, latencyNs] of Object.entries(direction.clat_ns.percentile ?? {})) {
      const percentile = Number(key);
      worstByPercentile.set(percentile, Math.max(worstByPercentile.get(percentile) ?? 0, latencyNs));
    }
  }
  const completionLatency: LatencyPercentile__Output[] = [...worstByPercentile.entries()]
    .sort(([a], [b]) => a - b)
    .map(([percentile, latencyNs]) => ({ percentile, latencyNs }));
  return {
    ioBytes: directions.reduce((sum, d) => sum + d.io_bytes, 0),
    bandwidthBytesPerSecond: directions.reduce((sum, d) => sum + (d.bw_bytes ?? d.bw * 1024), 0),
    iops: directions.reduce((sum, d) => sum + d.iops, 0),
    meanLatencyNs: completions === 0 ? 0 : directions.reduce((sum, d) => sum + d.clat_ns.mean * d.clat_ns.N, 0) / completions,
    completionLatency,
  };
}

/** Check the shape of fio's JSON where we read it; fio adds fields freely, we ignore those. */
function readFioReport(value: unknown): FioJsonReport {
  const report = asRecord(value, 'fio report');
  const version = report['fio version'];
  if (typeof version !== 'string') throw fioShapeError('"fio version" is missing');
  const jobs = report['jobs'];
  if (!Array.isArray(jobs)) throw fioShapeError('"jobs" is missing');
  return {
    version,
    jobs: jobs.map((job: unknown, index): FioJsonJob => {
      const fields = asRecord(job, `jobs[${index}]`);
      return {
        error: numberAt(fields, 'error', `jobs[${index}]`),
        read: readFioDirection(fields['read'], `jobs[${index}].read`),
        write: readFioDirection(fields['write'], `jobs[${index}].write`),
      };
    }),
  };
}

function readFioDirection(value: unknown, where: string): FioJsonDirection {
  const fields = asRecord(value, where);
  const clat = asRecord(fields['clat_ns'], `${where}.clat_ns`);
  const percentiles = clat['percentile'];
  const bwBytes = fields['bw_bytes'];
  return {
    io_bytes: numberAt(fields, 'io_bytes', where),
    ...(typeof bwBytes === 'number' ? { bw_bytes: bwBytes } : {}),
    bw: numberAt(fields, 'bw', where),
    iops: numberAt(fields, 'iops', where),
    runtime: numberAt(fields, 'runtime', where),
    clat_ns: {
      mean: numberAt(clat, 'mean', `${where}.clat_ns`),
      N: numberAt(clat, 'N', `${where}.clat_ns`),
      ...(percentiles === undefined ? {} : { percentile: readPercentiles(percentiles, `${where}.clat_ns.percentile`) }),
    },
  };
}

function readPercentiles(value: unknown, where: string): Record<string, number> {
  const fields = asRecord(value, where);
  const percentiles: Record<string, number> = {};
  for (const key of Object.keys(fields)) percentiles[key] = numberAt(fields, key, where);
  return percentiles;
}

function asRecord(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw fioShapeError(`${where} is not an object`);
  return value as Record<string, unknown>;
}

function numberAt(fields: Record<string, unknown>, key: string, where: string): number {
  const value = fields[key];
  if (typeof value !== 'number' || !Number.isFinite(value)) throw fioShapeError(`${where}.${key} is not a number`);
  return value;
}

function fioShapeError(problem: string): VcstorError {
  return new VcstorError('INTERNAL', `fio's JSON report is not in the expected form: ${problem}`);
}
