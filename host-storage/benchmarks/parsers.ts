/**
 * Pure parsers of what the benchmark tools print: bonnie++'s CSV line, postmark's terse
 * report and fio's JSON. Every format detail here was checked against real runs of the
 * tools installed in the lab (bonnie++ 2.00a writing CSV format 1.98, postmark "v1.51"
 * from Debian's 1.53 package, fio 3.33); the captures are test/fixtures/benchmarks/.
 */
import type { BonnieFigure__Output } from '../../common/generated/vcstor/v1/BonnieFigure.js';
import type { BonnieResult__Output } from '../../common/generated/vcstor/v1/BonnieResult.js';
import type { FioDirectionResult__Output } from '../../common/generated/vcstor/v1/FioDirectionResult.js';
import type { FioResult__Output } from '../../common/generated/vcstor/v1/FioResult.js';
import type { LatencyPercentile__Output } from '../../common/generated/vcstor/v1/LatencyPercentile.js';
import type { PostmarkResult__Output } from '../../common/generated/vcstor/v1/PostmarkResult.js';
import { VcstorError } from '../../common/errors.js';

// ---------------------------------------------------------------------------------------
// bonnie++
// ---------------------------------------------------------------------------------------

/** The only CSV format this parser knows (field 0 of every line bonnie++ 1.9x-2.x prints). */
const BONNIE_CSV_FORMAT = '1.98';

/**
 * Column positions of bonnie++'s CSV format 1.98 (0-based), from bon_csv2html(1) and
 * bonnie++'s BonTimer::PrintHeader, and verified on real lines (always 50 fields).
 * 7 and 8 are the seek count and seeker processes; 21-25 the -n parameters.
 */
const BonnieColumn = {
  formatVersion: 0,
  bonnieVersion: 1,
  machineName: 2,
  fileSize: 5,
  // Documented as the I/O chunk size, but bonnie++ 2.00a always leaves it empty.
  chunkSize: 6,
} as const;

/** Where one figure's rate, CPU and latency sit in the CSV line. */
interface BonnieFigureColumns {
  rate: number;
  cpu: number;
  latency: number;
}

type BonnieFigureName =
  | 'writePerChar'
  | 'writeBlock'
  | 'rewrite'
  | 'readPerChar'
  | 'readBlock'
  | 'randomSeeks'
  | 'sequentialCreate'
  | 'sequentialStat'
  | 'sequentialDelete'
  | 'randomCreate'
  | 'randomStat'
  | 'randomDelete';

const bonnieFigureColumns: Record<BonnieFigureName, BonnieFigureColumns> = {
  writePerChar: { rate: 9, cpu: 10, latency: 38 },
  writeBlock: { rate: 11, cpu: 12, latency: 39 },
  rewrite: { rate: 13, cpu: 14, latency: 40 },
  readPerChar: { rate: 15, cpu: 16, latency: 41 },
  readBlock: { rate: 17, cpu: 18, latency: 42 },
  randomSeeks: { rate: 19, cpu: 20, latency: 43 },
  sequentialCreate: { rate: 26, cpu: 27, latency: 44 },
  sequentialStat: { rate: 28, cpu: 29, latency: 45 },
  sequentialDelete: { rate: 30, cpu: 31, latency: 46 },
  randomCreate: { rate: 32, cpu: 33, latency: 47 },
  randomStat: { rate: 34, cpu: 35, latency: 48 },
  randomDelete: { rate: 36, cpu: 37, latency: 49 },
};

/** Fields in a format-1.98 line: the last latency column plus one. */
const BONNIE_CSV_FIELDS = 50;

/** bonnie++'s chunk size when -s gives none; its text report then omits ":chunk". */
const BONNIE_DEFAULT_CHUNK_BYTES = 8192;

/** What bonnie++ prints instead of a rate (5 '+') or CPU (3 '+') too fast to time. */
const TOO_FAST_TO_MEASURE = /^\++$/;

const BINARY_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/**
 * Parse bonnie++'s CSV result line (format 1.98, as bonnie++ 1.98-2.00a print it).
 *
 * Every figure comes back with `measured: false` where bonnie++ printed "+++++" (the
 * test ran faster than it can time) or left the field empty (the test did not run: -f
 * skips per-char, -n 0 the file tests); the worst latency is kept even then, since
 * bonnie++ still reports it. Rates are KB/s (KiB/s) for throughput, per second for seeks
 * and files; latencies "11847us", "310ms", "2s" become microseconds.
 *
 * bonnie++ 2.00a never fills the CSV's chunk-size column: the chunk only appears in its
 * text report ("64M:4k"), which goes to stderr with -q and to stdout without. Pass that
 * stderr as `textReport` to get `chunkSizeBytes`; without any report it is 0 (unknown).
 *
 * With -x N, the last of the N result lines is parsed.
 * @param stdout everything bonnie++ wrote to stdout.
 * @param textReport bonnie++'s stderr (or any text holding its human-readable report).
 * @throws VcstorError INTERNAL when there is no result line (e.g. bonnie++ refused to run)
 *   or the line is not format 1.98.
 */
export function parseBonnieCsv(stdout: string, textReport?: string): BonnieResult__Output {
  const line = lastBonnieCsvLine(stdout);
  if (line === undefined) {
    throw new VcstorError('INTERNAL', `bonnie++ printed no CSV result line${describeOutput(stdout)}`);
  }
  const fields = line.split(',');
  const formatVersion = fields[BonnieColumn.formatVersion] ?? '';
  if (formatVersion !== BONNIE_CSV_FORMAT) {
    throw new VcstorError('INTERNAL', `bonnie++ CSV format ${formatVersion} is not supported (expected ${BONNIE_CSV_FORMAT}): ${line}`);
  }
  if (fields.length < BONNIE_CSV_FIELDS) {
    throw new VcstorError('INTERNAL', `bonnie++ CSV line has ${fields.length} fields, expected ${BONNIE_CSV_FIELDS}: ${line}`);
  }
  const field = (index: number): string => fields[index]?.trim() ?? '';
  const figure = (name: BonnieFigureName): BonnieFigure__Output => {
    const columns = bonnieFigureColumns[name];
    return parseBonnieFigure(field(columns.rate), field(columns.cpu), field(columns.latency), name);
  };
  const fileSize = field(BonnieColumn.fileSize);
  const chunkInCsv = field(BonnieColumn.chunkSize);
  return {
    version: field(BonnieColumn.bonnieVersion),
    fileSizeBytes: fileSize === '' ? 0 : parseSize(fileSize, 'm', 'bonnie++ file size'),
    chunkSizeBytes: chunkInCsv !== '' ? parseSize(chunkInCsv, '', 'bonnie++ chunk size') : chunkFromTextReport(`${stdout}\n${textReport ?? ''}`),
    writePerChar: figure('writePerChar'),
    writeBlock: figure('writeBlock'),
    rewrite: figure('rewrite'),
    readPerChar: figure('readPerChar'),
    readBlock: figure('readBlock'),
    randomSeeks: figure('randomSeeks'),
    sequentialCreate: figure('sequentialCreate'),
    sequentialStat: figure('sequentialStat'),
    sequentialDelete: figure('sequentialDelete'),
    randomCreate: figure('randomCreate'),
    randomStat: figure('randomStat'),
    randomDelete: figure('randomDelete'),
    rawCsv: line,
  };
}

/** The last line that starts with a CSV format version; the -x header line does not. */
function lastBonnieCsvLine(stdout: string): string | undefined {
  const lines = stdout.split('\n').map((l) => l.replace(/\r$/, ''));
  return lines.filter((l) => /^\d+\.\d+,/.test(l)).at(-1);
}

function parseBonnieFigure(rate: string, cpu: string, latency: string, name: string): BonnieFigure__Output {
  const latencyUs = parseBonnieLatency(latency, name);
  if (rate === '' || TOO_FAST_TO_MEASURE.test(rate)) {
    return { measured: false, perSecond: 0, cpuPercent: 0, latencyUs };
  }
  return {
    measured: true,
    perSecond: parseDecimal(rate, `bonnie++ ${name} rate`),
    // Rate and CPU are timed together, but read CPU defensively: "+++" means untimed.
    cpuPercent: cpu === '' || TOO_FAST_TO_MEASURE.test(cpu) ? 0 : parseDecimal(cpu, `bonnie++ ${name} CPU`),
    latencyUs,
  };
}

/** bonnie++ prints whole microseconds below 0.1 s, milliseconds below 100 s, else seconds. */
function parseBonnieLatency(text: string, name: string): number {
  if (text === '') return 0;
  const match = /^(\d+)(us|ms|s)$/.exec(text);
  if (!match) throw new VcstorError('INTERNAL', `bonnie++ ${name} latency "${text}" is not a number with us, ms or s`);
  const value = Number(match[1]);
  const unit = match[2];
  return unit === 's' ? value * 1_000_000 : unit === 'ms' ? value * 1_000 : value;
}

/**
 * The chunk size from bonnie++'s text report: the row after the "Name:Size etc" header
 * starts with the machine name and "SIZE[:CHUNK]" in its first 19 columns; no ":CHUNK"
 * means the default. 0 when there is no report.
 */
function chunkFromTextReport(text: string): number {
  const lines = text.split('\n');
  const header = lines.findIndex((l) => l.startsWith('Name:Size etc'));
  const row = header >= 0 ? lines[header + 1] : undefined;
  if (row === undefined) return 0;
  // The size ends the first 19 columns, after the name; a name too long for them is cut,
  // a size too long pushes the name out: the last size-like token there is the size.
  const sizeToken = row
    .slice(0, 19)
    .trim()
    .split(/\s+/)
    .reverse()
    .find((t) => /^\d+[MG](:\d+[km]?)?$/.test(t));
  const chunk = sizeToken?.split(':')[1];
  return chunk === undefined ? BONNIE_DEFAULT_CHUNK_BYTES : parseSize(chunk, '', 'bonnie++ chunk size');
}

/** "64M", "2G", "4k", "8192" with binary units; `defaultUnit` applies to a bare number. */
function parseSize(text: string, defaultUnit: string, what: string): number {
  const match = /^(\d+)([kmgt]?)$/i.exec(text);
  const unit = (match?.[2] || defaultUnit).toLowerCase();
  const multiplier = BINARY_UNITS[unit];
  if (!match || multiplier === undefined) throw new VcstorError('INTERNAL', `${what} "${text}" is not a size`);
  return Number(match[1]) * multiplier;
}

/**
 * A short reason from what bonnie++ wrote to stderr when it failed, e.g. "File size
 * should be double RAM for good results, RAM is 64M." or "Can't open file ./Bonnie.2081":
 * its messages without the usage text that follows some of them, the progress lines
 * ("Writing intelligently...") it prints without -q, and the result report.
 * @returns undefined when stderr holds nothing but those.
 */
export function bonnieStderrReason(stderr: string): string | undefined {
  const messages: string[] = [];
  for (const rawLine of stderr.split('\n')) {
    const line = rawLine.replace(/\r$/, '');
    // The usage text ends the useful part; the report header starts the result table.
    if (/^usage:/.test(line) || /^Version\s+\S+\s+-{3,}/.test(line)) break;
    if (/^Using uid:/.test(line)) continue;
    // Progress: "Writing intelligently...done", "start 'em...done...done..."; an error can
    // follow on the same line ("Writing intelligently...Can't write block.: ...").
    const message = line.replace(/^(?:[^.]*\.\.\.(?:done)?)+/, '').trim();
    if (message !== '') messages.push(message);
  }
  if (messages.length === 0) return undefined;
  const reason = messages.join('; ');
  return reason.length > MAX_REASON_CHARS ? `${reason.slice(0, MAX_REASON_CHARS - 3)}...` : reason;
}

/** Reasons end up in error messages: keep them to a line. */
const MAX_REASON_CHARS = 300;

// ---------------------------------------------------------------------------------------
// postmark
// ---------------------------------------------------------------------------------------

const NUMBER = String.raw`\d+(?:\.\d+)?`;
const POSTMARK_TERSE_LINE = new RegExp(`^${NUMBER}(?: ${NUMBER}){12}$`);

/**
 * Parse postmark's `set report terse` line: 13 space-separated numbers, total seconds,
 * transaction seconds, transactions/s, files created/s, created alone/s, created mixed
 * with transactions/s, read/s, appended/s, deleted/s, deleted alone/s, deleted mixed/s,
 * bytes read/s, bytes written/s (postmark's terse_report()).
 *
 * This postmark times with whole seconds and counts at least 1 s per phase, so small runs
 * report "1 1 ..." and the "alone" rates are then counts.
 *
 * postmark exits 0 even when it cannot write a single file (it prints "Error: ..." per
 * file to stderr and a report of zeros): pass its stderr to have those runs rejected.
 * @param stdout everything postmark wrote to stdout (banner, progress, then the line).
 * @param stderr postmark's stderr; any "Error:" line in it fails the parse.
 * @throws VcstorError INTERNAL when there is no terse line (e.g. postmark ran "out of
 *   files" and printed no report) or stderr reports errors.
 */
export function parsePostmarkTerse(stdout: string, stderr?: string): Omit<PostmarkResult__Output, 'wallMs' | 'transactionsPerWallSecond'> {
  const errors = (stderr ?? '').split('\n').filter((l) => l.startsWith('Error:'));
  const [firstError] = errors;
  if (firstError !== undefined) {
    throw new VcstorError('INTERNAL', `postmark reported ${errors.length} error${errors.length === 1 ? '' : 's'}, first: ${firstError.trim()}`);
  }
  const lines = stdout.split('\n').map((l) => l.trim());
  const line = lines.filter((l) => POSTMARK_TERSE_LINE.test(l)).at(-1);
  if (line === undefined) {
    // It follows the progress dots on the same line: "Performing transactions.out of files!".
    const outOfFiles = lines.some((l) => l.includes('out of files!'));
    throw new VcstorError(
      'INTERNAL',
      outOfFiles
        ? 'postmark ran out of files and printed no report: use more files or fewer transactions'
        : `postmark printed no terse report line${describeOutput(stdout)}`,
    );
  }
  const numbers = line.split(' ').map(Number);
  // The regex guarantees 13 numbers.
  const at = (index: number): number => numbers[index] ?? 0;
  return {
    totalSeconds: at(0),
    transactionSeconds: at(1),
    transactionsPerSecond: at(2),
    filesCreatedPerSecond: at(3),
    filesCreatedAlonePerSecond: at(4),
    filesCreatedMixedPerSecond: at(5),
    filesReadPerSecond: at(6),
    filesAppendedPerSecond: at(7),
    filesDeletedPerSecond: at(8),
    filesDeletedAlonePerSecond: at(9),
    filesDeletedMixedPerSecond: at(10),
    bytesReadPerSecond: at(11),
    bytesWrittenPerSecond: at(12),
  };
}

// ---------------------------------------------------------------------------------------
// fio
// ---------------------------------------------------------------------------------------

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
  };
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

// ---------------------------------------------------------------------------------------
// shared
// ---------------------------------------------------------------------------------------

/** A decimal as the tools print it ("1138", "8670", "99.5"); anything else is a format change. */
function parseDecimal(text: string, what: string): number {
  if (!/^\d+(?:\.\d+)?$/.test(text)) throw new VcstorError('INTERNAL', `${what} "${text}" is not a number`);
  return Number(text);
}

/** The first line of a tool's output, to end an error message with, or " (no output)". */
function describeOutput(output: string): string {
  const firstLine = output
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l !== '');
  if (firstLine === undefined) return ' (no output)';
  return `; its output starts: ${firstLine.length > 120 ? `${firstLine.slice(0, 117)}...` : firstLine}`;
}
