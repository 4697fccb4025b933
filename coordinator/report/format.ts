/**
 * How the report writes numbers, times and text: the formatting every section shares, so
 * that a value reads the same in the terminal table, the CSV's neighbours and the page.
 * Pure functions.
 */

/** A JSON object (not null, not an array): what a recorded benchmark result is read as. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A fraction as a percentage: one decimal below 10%, none above ("4.2%", "15%"). */
export function percent(fraction: number): string {
  return `${(fraction * 100).toFixed(fraction < 0.1 ? 1 : 0)}%`;
}

/** The arithmetic mean; undefined for no values (never a division by zero). */
export function meanOf(values: number[]): number | undefined {
  return values.length === 0 ? undefined : values.reduce((sum, v) => sum + v, 0) / values.length;
}

/**
 * Text for HTML content and double-quoted attribute values. The scale and accounting
 * sections have always escaped only these four characters; {@link esc} adds the apostrophe.
 */
export function escapeMarkup(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Text for HTML content and attribute values alike, single-quoted ones too. */
export function esc(text: string): string {
  return escapeMarkup(text).replace(/'/g, '&#39;');
}

/** About three significant digits, no grouping: 58610, 420, 61.0, 0.50. */
export function formatNumber(n: number): string {
  const magnitude = Math.abs(n);
  return n.toFixed(magnitude >= 100 ? 0 : magnitude >= 10 ? 1 : 2);
}

/** {@link formatNumber} with thousands separated: 58,610. */
export function formatGrouped(n: number): string {
  return groupThousands(formatNumber(n));
}

/** "58610.5" → "58,610.5": commas in the whole part only. */
export function groupThousands(text: string): string {
  const [whole = '', fraction] = text.split('.');
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return fraction === undefined ? grouped : `${grouped}.${fraction}`;
}

/** An instant in UTC, whole seconds without ".000": "2024-05-02T10:00:00Z". */
export function isoTime(unixMs: number): string {
  return new Date(unixMs).toISOString().replace('.000Z', 'Z');
}

/** "12.3 s", "4 min 05 s", "1 h 02 min 03 s". */
export function formatDuration(ms: number): string {
  if (ms < 0) return '-';
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const totalSeconds = Math.round(ms / 1000);
  const hours = Math.floor(totalSeconds / 3600);
  const minutes = Math.floor((totalSeconds % 3600) / 60);
  const seconds = String(totalSeconds % 60).padStart(2, '0');
  return hours > 0 ? `${hours} h ${String(minutes).padStart(2, '0')} min ${seconds} s` : `${minutes} min ${seconds} s`;
}

/** bonnie++'s CPU %: "12%", "4.5%". */
export function cpuText(cpu: number): string {
  return `${cpu.toFixed(cpu >= 10 ? 0 : 1)}%`;
}

/** A ratio with its 95% interval where there is one: "0.97±0.03", "0.97", or "-" for none. */
export function ratioText(ratio: number | undefined, ci95: number | undefined): string {
  if (ratio === undefined) return '-';
  return ci95 === undefined ? ratio.toFixed(2) : `${ratio.toFixed(2)}±${ci95.toFixed(2)}`;
}

/** Columns padded to their widest cell (header included), two spaces apart, no trailing blanks. */
export function alignColumns(header: string[], rows: string[][], alignRight: readonly boolean[]): string[] {
  const widths = columnWidths(header, rows);
  const line = (cells: string[]): string =>
    cells
      .map((text, i) => (alignRight[i] ? text.padStart(widths[i] ?? 0) : text.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)];
}

/** {@link alignColumns} with a dashed rule under the header. */
export function fixedWidth(header: string[], rows: string[][], alignRight: readonly boolean[]): string[] {
  // The rule's cells are exactly as wide as their columns, so they change no width.
  const rule = columnWidths(header, rows).map((w) => '-'.repeat(w));
  return alignColumns(header, [rule, ...rows], alignRight);
}

function columnWidths(header: string[], rows: string[][]): number[] {
  return header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
}

/** A page section holding one table of ratios: its heading, what the numbers are (HTML), the header row and the body rows (<tr> elements). */
export function ratioTableSection(section: { className: string; heading: string; intro: string; headerRow: string; rows: string[] }): string {
  return [
    `<section class="${section.className}">`,
    `<h2>${section.heading}</h2>`,
    `<p>${section.intro}</p>`,
    '<table class="ratios">',
    `<thead>${section.headerRow}</thead>`,
    `<tbody>${section.rows.join('\n')}</tbody>`,
    '</table>',
    '</section>',
  ].join('\n');
}
