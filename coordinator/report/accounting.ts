/**
 * "Where the bytes went": the per-layer I/O accounting of a campaign's benchmarks, as a
 * text table for the terminal and an HTML table for the report. Pure functions.
 */

import type { IoAccounting, LayerIo } from '../accounting.js';
import type { MeasurementRecord } from '../model.js';
import { KNOWN_ROWS } from './analysis.js';
import { alignColumns, escapeMarkup } from './format.js';

/** One method x benchmark: the accounting of every repetition that has one. */
export interface AccountingRow {
  method: string;
  benchmark: string;
  repetitions: number;
  /** Means over the repetitions (bytes). */
  writtenBytes: number;
  backingBytes: number;
  absorbedBytes: number;
  /** reached_backing_percent: lowest and highest over the repetitions. */
  reachedMinPercent: number;
  reachedMaxPercent: number;
  heldBy: string;
  /** The layers of the path, top to bottom, with the mean bytes written at each. */
  path: Array<{ host: string; layer: string; writeBytes: number; writeChars: number; readBytes: number }>;
  /** Where caches were dropped before the runs (the scopes). */
  dropScopes: string[];
}

/** Rows in paper order of the methods, then by benchmark. */
export function accountingRows(measurements: readonly MeasurementRecord[]): AccountingRow[] {
  const groups = new Map<string, Array<MeasurementRecord & { accounting: IoAccounting }>>();
  for (const m of measurements) {
    if (!m.accounting || m.error !== '') continue;
    const key = JSON.stringify([m.method, m.benchmark]);
    groups.set(key, [...(groups.get(key) ?? []), m as MeasurementRecord & { accounting: IoAccounting }]);
  }
  const rows = [...groups.values()].map((ms) => {
    const accounts = ms.map((m) => m.accounting);
    const mean = (f: (a: IoAccounting) => number) => accounts.reduce((sum, a) => sum + f(a), 0) / accounts.length;
    const percents = accounts.map((a) => a.reachedBackingPercent);
    // The path's layers in the order the first repetition listed them (top to bottom).
    const layerKeys: string[] = [];
    for (const a of accounts) for (const l of a.layers) if (!l.layer.endsWith(' memory') && !layerKeys.includes(layerKey(l))) layerKeys.push(layerKey(l));
    const path = layerKeys.map((key) => {
      const of = accounts.flatMap((a) => a.layers.filter((l) => layerKey(l) === key));
      const sum = (f: (l: LayerIo) => number) => of.reduce((s, l) => s + f(l), 0) / accounts.length;
      const [host, layer] = JSON.parse(key) as [string, string];
      return { host, layer, writeBytes: sum((l) => l.writeBytes), writeChars: sum((l) => l.writeChars), readBytes: sum((l) => l.readBytes) };
    });
    return {
      method: ms[0]!.method,
      benchmark: ms[0]!.benchmark,
      repetitions: accounts.length,
      writtenBytes: mean((a) => a.benchmarkWriteBytes),
      backingBytes: mean((a) => a.backingWriteBytes),
      absorbedBytes: mean((a) => a.absorbedBytes),
      reachedMinPercent: Math.min(...percents),
      reachedMaxPercent: Math.max(...percents),
      heldBy: accounts.map((a) => a.heldBy).filter((h) => h !== '').pop() ?? '',
      path,
      dropScopes: [...new Set(accounts.flatMap((a) => a.drops.map((d) => `${d.host}: ${d.scope}`)))],
    };
  });
  const rank = (m: string) => (KNOWN_ROWS.includes(m) ? KNOWN_ROWS.indexOf(m) : KNOWN_ROWS.length);
  return rows.sort((a, b) => rank(a.method) - rank(b.method) || a.method.localeCompare(b.method) || a.benchmark.localeCompare(b.benchmark));
}

function layerKey(l: Pick<LayerIo, 'host' | 'layer'>): string {
  return JSON.stringify([l.host, l.layer]);
}

function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(bytes >= 100 * 2 ** 20 ? 0 : 1);
}

function percentRange(row: AccountingRow): string {
  // A few KiB (PostMark's small files, created and deleted in the guest's cache) make a
  // percentage of noise (0-1755% was printed): say what it is instead.
  if (row.writtenBytes < 2 ** 20) return 'stayed in cache';
  const lo = row.reachedMinPercent.toFixed(0);
  const hi = row.reachedMaxPercent.toFixed(0);
  return lo === hi ? `${lo}%` : `${lo}-${hi}%`;
}

/** The order data flows through the layers, guest to disk. */
const FLOW = ['guest benchmark (agent)', 'guest device', 'dom0 benchmark (agent)', 'dom0 device', 'guest initiator', 'guest link', 'dom0 link', 'dom0 agent', 'dom0 backend', 'dom0 image device', 'dom0 loop device', 'storage link', 'storage daemon', 'storage agent', 'storage volume device', 'backing disk'];
const flowIndex = (layer: string) => (FLOW.includes(layer) ? FLOW.indexOf(layer) : FLOW.length);

/** The layers a path's bytes passed, guest to disk, as one line: "guest device 1024 > dom0 backend 1024 > ...". */
export function pathText(row: AccountingRow): string {
  return [...row.path]
    .sort((a, b) => flowIndex(a.layer) - flowIndex(b.layer))
    // Under a MiB is control traffic (RPCs, NFS metadata), not the benchmark's data.
    .filter((p) => Math.max(p.writeBytes, p.writeChars) >= 2 ** 20)
    .map((p) => `${p.layer} ${mib(p.writeBytes || p.writeChars)}`)
    .join(' > ');
}

/** Terminal lines (empty when nothing was accounted). */
export function accountingText(measurements: readonly MeasurementRecord[]): string[] {
  const rows = accountingRows(measurements);
  if (rows.length === 0) return [];
  const lines = ['', 'where the bytes went (MiB, mean over repetitions; kernel counters before/after each run, caches dropped first)'];
  const header = ['method', 'benchmark', 'written', 'reached disk', 'reached', 'absorbed', 'held by'];
  const body = rows.map((r) => [r.method, r.benchmark, mib(r.writtenBytes), mib(r.backingBytes), percentRange(r), mib(r.absorbedBytes), r.heldBy || '-']);
  lines.push(...alignColumns(header, body, header.map((_, i) => i >= 2 && i <= 5)));
  lines.push('', 'path of the bytes written (MiB written at each layer; processes: bytes through their write calls)');
  for (const r of rows.filter((x) => x.benchmark === 'bonnie' || rows.every((y) => y.benchmark !== 'bonnie'))) lines.push(`  ${r.method.padEnd(10)} ${pathText(r)}`);
  return lines;
}

/** The report's section (empty when nothing was accounted). */
export function accountingHtml(measurements: readonly MeasurementRecord[]): string {
  const rows = accountingRows(measurements);
  if (rows.length === 0) return '';
  const body = rows.map(
    (r) =>
      `<tr data-method="${escapeMarkup(r.method)}" data-benchmark="${escapeMarkup(r.benchmark)}" data-reached="${r.reachedMinPercent}"><td>${escapeMarkup(r.method)}</td><td>${escapeMarkup(r.benchmark)}</td>` +
      `<td class="num">${mib(r.writtenBytes)}</td><td class="num">${mib(r.backingBytes)}</td><td class="num${r.reachedMinPercent < 90 || r.writtenBytes < 2 ** 20 ? ' warn' : ''}">${percentRange(r)}</td>` +
      `<td class="num">${mib(r.absorbedBytes)}</td><td>${escapeMarkup(r.heldBy || '-')}</td><td class="path">${escapeMarkup(pathText(r))}</td></tr>`,
  );
  const scopes = [...new Set(rows.flatMap((r) => r.dropScopes))];
  return [
    '<section class="accounting">',
    '<h2>Where the bytes went</h2>',
    '<p>For every benchmark run, the kernel\'s own counters at each layer of the method\'s path (block devices\' <code>/sys/block/*/stat</code>, the daemons\' <code>/proc/PID/io</code>, each host\'s link and memory cgroup), read before and after the run, after the caches were dropped. <em>Written</em> is what the benchmark wrote (bonnie++: its block write and rewrite); <em>reached disk</em> what the backing disk wrote meanwhile; <em>absorbed</em> what a cache still held, and <em>held by</em> which. A figure whose bytes did not reach the disk measured a cache (marked below 90%).</p>',
    '<table class="accounting">',
    '<thead><tr><th>method</th><th>benchmark</th><th>written MiB</th><th>reached disk MiB</th><th>reached</th><th>absorbed MiB</th><th>held by</th><th>path (MiB written at each layer)</th></tr></thead>',
    `<tbody>${body.join('\n')}</tbody>`,
    '</table>',
    `<p class="note">Caches dropped before each run: ${escapeMarkup(scopes.join('; '))}.</p>`,
    '</section>',
  ].join('\n');
}
