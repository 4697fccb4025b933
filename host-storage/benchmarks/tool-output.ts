/** What the benchmark parsers share: reading a tool's numbers and quoting its output in errors. */
import { VcstorError } from '../../common/errors.js';

/** A decimal as the tools print it ("1138", "8670", "99.5"); anything else is a format change. */
export function parseDecimal(text: string, what: string): number {
  if (!/^\d+(?:\.\d+)?$/.test(text)) throw new VcstorError('INTERNAL', `${what} "${text}" is not a number`);
  return Number(text);
}

/** The first line of a tool's output, to end an error message with, or " (no output)". */
export function describeOutput(output: string): string {
  const firstLine = output
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l !== '');
  if (firstLine === undefined) return ' (no output)';
  return `; its output starts: ${firstLine.length > 120 ? `${firstLine.slice(0, 117)}...` : firstLine}`;
}
