import { escapeMarkup } from './format.js';

/**
 * A line chart against a ramp of counts as inline SVG (the scale test's and the shared-
 * space comparison's): one line per series, its points carrying data-count and
 * data-value, an optional threshold and knee. Counts are evenly spaced (the ramps are
 * geometric). Pure.
 */

/** Okabe-Ito colours, as the bar charts use them. */
const COLOURS = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00'];

export interface LineSeries {
  name: string;
  /** One per count; NaN: no value at that count (the line breaks there). */
  values: number[];
  /** Drawn dashed (a derived series: a per-guest mean beside an aggregate). */
  dashed?: boolean;
}

export function lineChart(o: { id: string; title: string; unit: string; xLabel: string; counts: number[]; series: LineSeries[]; kneeCount?: number; threshold?: number }): string {
  const W = 560;
  const H = 260 + (o.series.length > 1 ? 18 : 0);
  const left = 60;
  const right = 20;
  const top = 30 + (o.series.length > 1 ? 18 : 0);
  const bottom = 40;
  const finite = o.series.flatMap((s) => s.values.filter((v) => Number.isFinite(v)));
  const max = niceCeiling(Math.max(...finite, o.threshold ?? 0, 1e-9) * 1.1);
  const x = (i: number) => left + (o.counts.length === 1 ? (W - left - right) / 2 : (i * (W - left - right)) / (o.counts.length - 1));
  const y = (v: number) => top + (H - top - bottom) * (1 - v / max);
  const parts: string[] = [`<svg id="${o.id}" class="chart" xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${escapeMarkup(o.title)}">`];
  parts.push(`<text x="${W / 2}" y="18" text-anchor="middle" font-weight="bold">${escapeMarkup(o.title)}</text>`);
  if (o.series.length > 1) {
    o.series.forEach((s, i) => {
      const lx = left + i * 120;
      parts.push(`<line x1="${lx}" y1="32" x2="${lx + 18}" y2="32" stroke="${COLOURS[i % COLOURS.length]}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 3"' : ''}/><text x="${lx + 22}" y="36" font-size="11">${escapeMarkup(s.name)}</text>`);
    });
  }
  parts.push(`<line x1="${left}" y1="${H - bottom}" x2="${W - right}" y2="${H - bottom}" stroke="#000"/><line x1="${left}" y1="${top}" x2="${left}" y2="${H - bottom}" stroke="#000"/>`);
  for (let t = 0; t <= 4; t++) {
    const v = (max * t) / 4;
    parts.push(`<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end" font-size="11">${v >= 100 ? v.toFixed(0) : v.toFixed(2)}</text><line x1="${left}" y1="${y(v)}" x2="${W - right}" y2="${y(v)}" stroke="#ddd"/>`);
  }
  o.counts.forEach((c, i) => parts.push(`<text x="${x(i)}" y="${H - bottom + 16}" text-anchor="middle" font-size="11">${c}</text>`));
  parts.push(`<text x="${W / 2}" y="${H - 6}" text-anchor="middle" font-size="12">${escapeMarkup(o.xLabel)}</text><text x="14" y="${H / 2}" transform="rotate(-90 14 ${H / 2})" text-anchor="middle" font-size="12">${escapeMarkup(o.unit)}</text>`);
  if (o.threshold !== undefined) parts.push(`<line class="threshold" x1="${left}" y1="${y(o.threshold)}" x2="${W - right}" y2="${y(o.threshold)}" stroke="#c00" stroke-dasharray="4 3"><title>threshold ${o.threshold} ${escapeMarkup(o.unit)}</title></line>`);
  const kneeIndex = o.kneeCount === undefined ? -1 : o.counts.indexOf(o.kneeCount);
  if (kneeIndex >= 0) parts.push(`<line class="knee" x1="${x(kneeIndex)}" y1="${top}" x2="${x(kneeIndex)}" y2="${H - bottom}" stroke="#e80" stroke-dasharray="6 3"><title>knee: ${o.kneeCount} ${escapeMarkup(o.xLabel)}</title></line>`);
  o.series.forEach((s, si) => {
    const colour = COLOURS[si % COLOURS.length];
    const runs: string[][] = [[]];
    s.values.forEach((v, i) => (Number.isFinite(v) ? runs[runs.length - 1]!.push(`${x(i)},${y(v)}`) : runs.push([])));
    for (const points of runs.filter((r) => r.length > 0)) parts.push(`<polyline fill="none" stroke="${colour}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 3"' : ''} points="${points.join(' ')}"/>`);
    s.values.forEach((v, i) => {
      if (Number.isFinite(v)) parts.push(`<circle class="point" cx="${x(i)}" cy="${y(v)}" r="4" fill="${colour}" data-series="${escapeMarkup(s.name)}" data-count="${o.counts[i]}" data-value="${v}"><title>${escapeMarkup(s.name)}, ${o.counts[i]} ${escapeMarkup(o.xLabel)}: ${v.toFixed(2)} ${escapeMarkup(o.unit)}</title></circle>`);
    });
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** The smallest of 1, 2, 2.5, 5 times a power of ten at or above `v`: round ticks (a quarter of it each). */
function niceCeiling(v: number): number {
  const power = 10 ** Math.floor(Math.log10(v));
  return ([1, 2, 2.5, 5, 10].find((m) => m * power >= v) ?? 10) * power;
}
