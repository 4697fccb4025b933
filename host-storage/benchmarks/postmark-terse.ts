/**
 * postmark's terse report, parsed. Checked against postmark "v1.51" from Debian's 1.53
 * package; the captures are test/fixtures/benchmarks/.
 */
import type { PostmarkResult__Output } from '../../common/generated/vcstor/v1/PostmarkResult.js';
import { VcstorError } from '../../common/errors.js';
import { describeOutput } from './tool-output.js';

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
