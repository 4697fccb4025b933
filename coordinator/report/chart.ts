/**
 * A grouped bar chart as inline SVG: a group per method, a slot per repetition (or pass),
 * a bar or a dashed "n/a" slot saying why, the group's mean and 95% interval over it,
 * round y-axis ticks, colours told apart in colour-blindness and greyscale. Pure functions.
 */

import type { Summary } from '../statistics.js';
import { esc, formatGrouped, groupThousands, percent } from './format.js';

/** One slot of a chart group: a bar, or an empty slot saying why there is none. */
export type Slot =
  | { kind: 'bar'; value: number; tooltip: string; attributes: Array<[string, string]>; points: number[] }
  | { kind: 'missing'; reason: string; attributes: Array<[string, string]> };

/** One chart panel: what it is, how to read it, and a group of slots per method. */
export interface ChartSpec {
  /** data-figure of the <svg>. */
  key: string;
  title: string;
  unit: string;
  /** The panel's name in its figure: "block write". */
  panel: string;
  /** How to read its bars, for the figure's caption: "one bar per repetition". */
  reading: string;
  /** Legend entries, one per slot of a group. */
  series: string[];
  methods: string[];
  slots: (method: string) => Slot[];
  /** A group's mean and its 95% interval, drawn over its bars (two or more repetitions). */
  interval?: (method: string) => Summary | undefined;
}

/**
 * Okabe-Ito colours (without its yellow, too pale on paper): told apart with common
 * colour-blindness and, with the dark outline, in greyscale print.
 */
const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#000000', '#999999'];

// Chart geometry, in SVG user units (the chart scales to the page width).
const CHART_WIDTH = 800;
/** A figure's height with one panel, and with several (shorter, so that a figure fits a page). */
export const CHART_HEIGHT = 360;
export const PANEL_HEIGHT = 280;
const MARGIN_LEFT = 78;
const MARGIN_RIGHT = 16;
const MARGIN_BOTTOM = 58;
const LEGEND_ITEM_WIDTH = 72;
const LEGEND_ROW_HEIGHT = 18;

/** A chart as an <svg>. */
export function renderChart(chart: ChartSpec, height = CHART_HEIGHT): { svg: string } {
  const plotWidth = CHART_WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
  const legendPerRow = Math.max(1, Math.floor(plotWidth / LEGEND_ITEM_WIDTH));
  const legendRows = Math.ceil(chart.series.length / legendPerRow);
  const top = 14 + legendRows * LEGEND_ROW_HEIGHT;
  const plotHeight = height - top - MARGIN_BOTTOM;
  const baseline = top + plotHeight;

  const slotsByMethod = chart.methods.map((method) => ({ method, slots: chart.slots(method) }));
  const intervals = new Map(chart.methods.map((method) => [method, chart.interval?.(method)]));
  const highest = Math.max(
    0,
    ...slotsByMethod.flatMap(({ slots }) => slots.flatMap((s) => (s.kind === 'bar' ? [s.value, ...s.points] : []))),
    ...[...intervals.values()].map((i) => (i ? i.mean + (i.ci95 ?? 0) : 0)),
  );
  const axis = niceAxis(highest);
  const y = (value: number): number => baseline - (value / axis.max) * plotHeight;

  const parts: string[] = [];
  parts.push(
    `<svg data-figure="${esc(chart.key)}" viewBox="0 0 ${CHART_WIDTH} ${height}" width="${CHART_WIDTH}" height="${height}" role="img" aria-label="${esc(`${chart.title} (${chart.unit})`)}">`,
  );
  parts.push(`<title>${esc(`${chart.title} (${chart.unit})`)}</title>`);

  // Y axis: grid lines at round values, their labels, and the unit.
  for (const tick of axis.ticks) {
    const ty = fix(y(tick));
    parts.push(`<line class="grid" x1="${MARGIN_LEFT}" x2="${CHART_WIDTH - MARGIN_RIGHT}" y1="${ty}" y2="${ty}"/>`);
    parts.push(`<text class="tick" x="${MARGIN_LEFT - 6}" y="${ty}" text-anchor="end" dominant-baseline="middle">${esc(formatTick(tick, axis.decimals))}</text>`);
  }
  parts.push(`<line class="axis" x1="${MARGIN_LEFT}" x2="${MARGIN_LEFT}" y1="${top}" y2="${baseline}"/>`);
  parts.push(`<line class="axis" x1="${MARGIN_LEFT}" x2="${CHART_WIDTH - MARGIN_RIGHT}" y1="${baseline}" y2="${baseline}"/>`);
  parts.push(`<text class="unit" x="16" y="${fix(top + plotHeight / 2)}" text-anchor="middle" transform="rotate(-90 16 ${fix(top + plotHeight / 2)})">${esc(chart.unit)}</text>`);

  // Legend: one swatch per repetition (or pass), above the plot.
  parts.push('<g class="legend">');
  chart.series.forEach((label, i) => {
    const lx = MARGIN_LEFT + (i % legendPerRow) * LEGEND_ITEM_WIDTH;
    const ly = 8 + Math.floor(i / legendPerRow) * LEGEND_ROW_HEIGHT;
    parts.push(`<rect class="swatch" x="${lx}" y="${ly}" width="12" height="12" fill="${colour(i)}" stroke="#222" stroke-width="0.6"/>`);
    parts.push(`<text x="${lx + 17}" y="${ly + 10}">${esc(label)}</text>`);
  });
  parts.push('</g>');

  // Groups: one per method, the slots side by side inside it.
  const groupWidth = plotWidth / Math.max(1, chart.methods.length);
  const groupPadding = groupWidth * 0.1;
  const slotWidth = (groupWidth - 2 * groupPadding) / Math.max(1, chart.series.length);
  const barWidth = slotWidth * 0.86;
  const longestName = Math.max(0, ...chart.methods.map((m) => m.length));
  // Names wider than their group (about 6.5 units a character) are slanted, not overlapped.
  const slantNames = longestName * 6.5 + 6 > groupWidth;
  slotsByMethod.forEach(({ method, slots }, g) => {
    const groupX = MARGIN_LEFT + g * groupWidth;
    parts.push(`<g class="method" data-method="${esc(method)}">`);
    slots.forEach((slot, i) => {
      const x = groupX + groupPadding + i * slotWidth + (slotWidth - barWidth) / 2;
      const attributes = slot.attributes.map(([name, value]) => ` ${name}="${esc(value)}"`).join('');
      if (slot.kind === 'bar') {
        const barTop = y(slot.value);
        parts.push(
          `<rect class="bar"${attributes} x="${fix(x)}" y="${fix(barTop)}" width="${fix(barWidth)}" height="${fix(baseline - barTop)}" fill="${colour(i)}"><title>${esc(slot.tooltip)}</title></rect>`,
        );
        for (const point of slot.points) parts.push(`<circle class="point" cx="${fix(x + barWidth / 2)}" cy="${fix(y(point))}" r="${fix(Math.min(3, barWidth / 3))}"/>`);
      } else {
        // An empty, dashed slot where the bar would be; the reason is its tooltip.
        const narrow = barWidth < 16;
        const slotHeight = narrow ? 30 : 22;
        const cx = x + barWidth / 2;
        const label = narrow
          ? `<text class="na" x="${fix(cx)}" y="${fix(baseline - 15)}" text-anchor="middle" dominant-baseline="middle" transform="rotate(-90 ${fix(cx)} ${fix(baseline - 15)})">n/a</text>`
          : `<text class="na" x="${fix(cx)}" y="${fix(baseline - 8)}" text-anchor="middle">n/a</text>`;
        parts.push(
          `<g class="missing"${attributes}><title>${esc(slot.reason)}</title><rect class="slot" x="${fix(x)}" y="${fix(baseline - slotHeight)}" width="${fix(barWidth)}" height="${slotHeight}"/>${label}</g>`,
        );
      }
    });
    // The group's mean (a line across its bars) and its 95% interval (a whisker).
    const interval = intervals.get(method);
    if (interval?.ci95 !== undefined) {
      const left = groupX + groupPadding;
      const right = groupX + groupWidth - groupPadding;
      const cx = (left + right) / 2;
      const low = y(Math.max(0, interval.mean - interval.ci95));
      const high = y(interval.mean + interval.ci95);
      const cap = Math.min(8, (right - left) / 4);
      const tip = `${method}: mean ${formatGrouped(interval.mean)} ${chart.unit}, 95% interval ±${formatGrouped(interval.ci95)}, cv ${percent(interval.cv ?? 0)} (${interval.n} repetitions)`;
      parts.push(
        `<g class="errorbar" data-method="${esc(method)}" data-mean="${interval.mean}" data-ci95="${interval.ci95}"><title>${esc(tip)}</title>` +
          `<line class="errorbar" x1="${fix(left)}" x2="${fix(right)}" y1="${fix(y(interval.mean))}" y2="${fix(y(interval.mean))}" stroke-dasharray="4 2"/>` +
          `<path class="errorbar" d="M${fix(cx)} ${fix(low)}V${fix(high)}M${fix(cx - cap)} ${fix(low)}H${fix(cx + cap)}M${fix(cx - cap)} ${fix(high)}H${fix(cx + cap)}"/></g>`,
      );
    }
    const nameX = groupX + groupWidth / 2;
    const nameY = baseline + 16;
    parts.push(
      slantNames
        ? `<text class="method-name" x="${fix(nameX)}" y="${nameY}" text-anchor="end" transform="rotate(-30 ${fix(nameX)} ${nameY})">${esc(method)}</text>`
        : `<text class="method-name" x="${fix(nameX)}" y="${nameY}" text-anchor="middle">${esc(method)}</text>`,
    );
    parts.push('</g>');
  });
  parts.push('</svg>');

  return { svg: parts.join('\n') };
}

function colour(index: number): string {
  return PALETTE[index % PALETTE.length] ?? '#777777';
}

/** Coordinates to two decimals: enough for a screen, and stable output. */
function fix(n: number): string {
  return String(Math.round(n * 100) / 100);
}

function formatTick(value: number, decimals: number): string {
  return groupThousands(value.toFixed(decimals));
}

/**
 * A y axis from 0 to a round value above `highest`, ticks at a 1, 2, 2.5 or 5 times a
 * power of ten step: four to six gridlines, as a reader would draw them.
 */
function niceAxis(highest: number): { max: number; ticks: number[]; decimals: number } {
  if (!(highest > 0)) return { max: 1, ticks: [0, 0.25, 0.5, 0.75, 1], decimals: 2 };
  const rough = highest / 5;
  const power = 10 ** Math.floor(Math.log10(rough));
  const multiple = [1, 2, 2.5, 5, 10].find((m) => m * power >= rough) ?? 10;
  const step = multiple * power;
  const steps = Math.max(1, Math.ceil(highest / step - 1e-9));
  const ticks = Array.from({ length: steps + 1 }, (_, i) => i * step);
  let decimals = 0;
  while (decimals < 6 && Math.abs(Math.round(step * 10 ** decimals) - step * 10 ** decimals) > 1e-6) decimals++;
  return { max: steps * step, ticks, decimals };
}
