/**
 * bonnie++'s CSV result line and its stderr, parsed. Checked against real runs of
 * bonnie++ 2.00a writing CSV format 1.98; the captures are test/fixtures/benchmarks/.
 */
import type { BonnieFigure__Output } from '../../common/generated/vcstor/v1/BonnieFigure.js';
import type { BonnieResult__Output } from '../../common/generated/vcstor/v1/BonnieResult.js';
import { VcstorError } from '../../common/errors.js';
import { describeOutput, parseDecimal } from './tool-output.js';

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

/**
 * The figures in the order of the CSV line. Each has a rate and a CPU column side by side:
 * the six throughput figures from column 9, the six file figures from column 26 (after
 * the -n parameters, 21-25); the worst latencies follow from column 38, in the same order.
 */
const BONNIE_FIGURES: readonly BonnieFigureName[] = [
  'writePerChar',
  'writeBlock',
  'rewrite',
  'readPerChar',
  'readBlock',
  'randomSeeks',
  'sequentialCreate',
  'sequentialStat',
  'sequentialDelete',
  'randomCreate',
  'randomStat',
  'randomDelete',
];

function bonnieFigureColumns(name: BonnieFigureName): BonnieFigureColumns {
  const index = BONNIE_FIGURES.indexOf(name);
  const rate = index < 6 ? 9 + 2 * index : 26 + 2 * (index - 6);
  return { rate, cpu: rate + 1, latency: 38 + index };
}

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
    const columns = bonnieFigureColumns(name);
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
