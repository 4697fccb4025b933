/**
 * The statistics as HTML tables: every repetition's value with the mean, its 95% interval
 * and cv (Results), and the ratios against phy-local and against each method's dom0
 * baseline. Pure functions.
 */

import { NOISY_CV } from '../statistics.js';
import { rowMethods, DOM0_BASELINE_OF, type Scopes } from './analysis.js';
import { missingReason } from './figure-charts.js';
import { figureKey, figureLabel, type FigureSpec } from './figures.js';
import { cpuText, esc, formatGrouped, percent, ratioTableSection } from './format.js';
import type { ShownFigure } from './paper-figures.js';
import { BASELINE_METHOD, dom0PairsText, dom0RatioFigures, ratioEntry, ratioFigures, ratiosOf, type PhyLocalRatio } from './ratios.js';

/** Each guest method's mean over phy-local's, per figure, with the method's own mean and spread under it; empty without guest methods. */
export function renderRatioTable(scopes: Scopes): string {
  const analysis = scopes.guest;
  if (analysis.methods.length === 0) return '';
  return ratioSection({
    className: 'ratios',
    heading: `Ratio against ${BASELINE_METHOD}`,
    intro: `Each method's mean over its repetitions divided by ${BASELINE_METHOD}'s (1.00 is as fast as ${BASELINE_METHOD}; higher is better), ± the ratio's 95% interval (delta method, Student's t); under it the method's mean ± its 95% confidence interval and its coefficient of variation. "!" marks a method whose repetitions vary by more than ${percent(NOISY_CV)}. Skipped and failed repetitions are left out of the mean. dom0's baselines are ceilings, not methods: they have no ratio here (see "vs dom0").`,
    methods: analysis.methods,
    figures: ratioFigures(analysis),
    ratios: ratiosOf(scopes),
    cell: (spec, method, entry) => {
      const attributes = `data-method="${esc(method)}" data-figure="${esc(figureKey(spec))}"`;
      if (entry?.ratio === undefined) {
        const title = entry?.mean === undefined ? `no ${method} value` : `no ${BASELINE_METHOD} value`;
        return `<td class="missing" ${attributes} title="${esc(title)}">-</td>`;
      }
      const spread = entry.summary ? ` ±${formatGrouped(entry.summary.ci95 ?? 0)}, cv ${percent(entry.summary.cv ?? 0)}` : '';
      const mean = entry.mean === undefined ? '' : `<span class="mean">${esc(`${formatGrouped(entry.mean)}${spread} ${spec.unit}`)}</span>`;
      const noisy = (entry.summary?.cv ?? 0) > NOISY_CV;
      return `<td class="ratio${noisy ? ' noisy' : ''}" ${attributes}${ratioAttributes(entry.ratio, entry.ratioCi95)}${noisy ? ` title="${esc(`${method}'s repetitions vary by more than ${percent(NOISY_CV)} (cv ${percent(entry.summary!.cv!)})`)}"` : ''}>${ratioContent(entry.ratio, entry.ratioCi95)}${noisy ? ' !' : ''}${mean}</td>`;
    },
  });
}

/** Each guest method against its dom0 baseline (local → dom0-local, iSCSI → dom0-iscsi, NFS → dom0-nfs); empty without dom0 rows. */
export function renderDom0RatioTable(scopes: Scopes): string {
  const ratios = ratiosOf(scopes);
  const figures = dom0RatioFigures(scopes.guest, ratios);
  if (figures.length === 0) return '';
  const methods = scopes.guest.methods;
  return ratioSection({
    className: 'dom0-ratios',
    heading: 'vs dom0',
    intro: `Each method's mean divided by its dom0 baseline's — dom0 doing the same I/O itself over the same transport (Figs. 3 and 5): ${esc(dom0PairsText(methods))}. 1.00 is as fast as dom0 itself; ± the ratio's 95% interval.`,
    methods,
    figures,
    ratios,
    cell: (spec, method, entry) => {
      const baseline = DOM0_BASELINE_OF[method];
      const attributes = `data-method="${esc(method)}" data-figure="${esc(figureKey(spec))}"${baseline ? ` data-baseline="${esc(baseline)}"` : ''}`;
      if (entry?.dom0Ratio === undefined) {
        const title = !baseline ? `${method} has no dom0 baseline` : entry?.mean === undefined ? `no ${method} value` : `no ${baseline} value`;
        return `<td class="missing" ${attributes} title="${esc(title)}">-</td>`;
      }
      return `<td class="dom0-ratio" ${attributes}${ratioAttributes(entry.dom0Ratio, entry.dom0RatioCi95)}>${ratioContent(entry.dom0Ratio, entry.dom0RatioCi95)}<span class="mean">vs ${esc(baseline ?? '')}</span></td>`;
    },
  });
}

/** A ratio cell's data-ratio and, where the ratio has one, data-ci95. */
function ratioAttributes(ratio: number, ci95: number | undefined): string {
  return ` data-ratio="${ratio}"${ci95 === undefined ? '' : ` data-ci95="${ci95}"`}`;
}

/** A ratio cell's text: "0.97 ±0.03", or "0.97" without an interval. */
function ratioContent(ratio: number, ci95: number | undefined): string {
  return `${ratio.toFixed(2)}${ci95 === undefined ? '' : ` ±${ci95.toFixed(2)}`}`;
}

/** A section of ratios: its heading and intro, then a row per figure and a column per method, each cell as `cell` writes it. */
function ratioSection(table: {
  className: string;
  heading: string;
  /** HTML: what the table's numbers are. */
  intro: string;
  methods: string[];
  figures: FigureSpec[];
  ratios: PhyLocalRatio[];
  cell: (spec: FigureSpec, method: string, entry: PhyLocalRatio | undefined) => string;
}): string {
  const rows = table.figures.map((spec) => {
    const cells = table.methods.map((method) => table.cell(spec, method, ratioEntry(table.ratios, spec, method)));
    return `<tr><th scope="row">${esc(figureLabel(spec))} (${esc(spec.unit)})</th>${cells.join('')}</tr>`;
  });
  return ratioTableSection({
    className: table.className,
    heading: table.heading,
    intro: table.intro,
    headerRow: `<tr><th>figure</th>${table.methods.map((m) => `<th scope="col">${esc(m)}</th>`).join('')}</tr>`,
    rows,
  });
}

/**
 * The results as tables, one per figure drawn: a row per method and figure, a cell per
 * repetition (the value and, for bonnie++, its CPU %; or the outcome, its reason as the
 * title), the mean ± its 95% interval, the cv and the mean CPU %.
 */
export function renderResults(figures: ShownFigure[]): string {
  const drawn = figures.filter((f) => f.specs.length > 0);
  if (drawn.length === 0) return '';
  const tables = drawn.map((shown) => {
    const analysis = shown.analysis;
    const withCpu = shown.specs.some((spec) => spec.cpu !== undefined);
    const rows = shown.specs.flatMap((spec) =>
      rowMethods(analysis, spec).map((method) => {
        const cells = analysis.repetitions.map((r) => {
          const c = analysis.cell(method, spec, r);
          const at = `data-method="${esc(method)}" data-repetition="${r}"`;
          if (c.kind === 'value') {
            const cpu = analysis.cpu(method, spec, r);
            return `<td class="num" ${at} data-outcome="ok" data-value="${c.value}"${cpu === undefined ? '' : ` data-cpu="${cpu}"`}>${esc(formatGrouped(c.value))}${cpu === undefined ? '' : `<span class="cpu">CPU ${esc(cpuText(cpu))}</span>`}</td>`;
          }
          if (c.kind === 'absent') return `<td class="missing" ${at} title="no measurement recorded">-</td>`;
          const outcome = c.kind === 'failed' ? c.outcome : 'n/a';
          return `<td class="missing ${c.kind === 'failed' ? c.outcome : 'unmeasured'}" ${at}${c.kind === 'failed' ? ` data-outcome="${c.outcome}"` : ''} title="${esc(missingReason(c, spec.benchmark))}">${outcome}</td>`;
        });
        const summary = analysis.summary(method, spec);
        const cpu = analysis.cpuSummary(method, spec);
        const noisy = (summary?.cv ?? 0) > NOISY_CV;
        return (
          `<tr data-method="${esc(method)}" data-figure="${esc(figureKey(spec))}"><th scope="row">${esc(method)}</th><td>${esc(spec.figure)}</td><td>${esc(spec.unit)}</td>${cells.join('')}` +
          `<td class="num">${summary ? esc(formatGrouped(summary.mean)) : '-'}</td><td class="num">${summary?.ci95 === undefined ? '-' : `±${esc(formatGrouped(summary.ci95))}`}</td>` +
          `<td class="num${noisy ? ' warn' : ''}">${summary?.cv === undefined ? '-' : `${percent(summary.cv)}${noisy ? ' !' : ''}`}</td>` +
          `${withCpu ? `<td class="num cpu-mean">${cpu ? esc(cpuText(cpu.mean)) : '-'}</td>` : ''}</tr>`
        );
      }),
    );
    return [
      `<h3>${esc(shown.heading)}</h3>`,
      `<table class="results" data-paper-figure="${esc(shown.paperFigure)}">`,
      `<thead><tr><th>${shown.group.scope === 'dom0' ? 'baseline' : 'method'}</th><th>figure</th><th>unit</th>${analysis.repetitions.map((r) => `<th scope="col">rep ${r}</th>`).join('')}<th>mean</th><th>95% CI</th><th>cv</th>${withCpu ? '<th>CPU %</th>' : ''}</tr></thead>`,
      `<tbody>${rows.join('\n')}</tbody>`,
      '</table>',
    ].join('\n');
  });
  return [
    '<section class="results">',
    '<h2>Results</h2>',
    `<p>Every repetition of every figure drawn: its value (bonnie++: with the CPU % it reported beside it), or its outcome — "skipped" (these agents cannot run it), "failed" — or "n/a" (it ran, the tool did not measure the figure), its reason as the cell's tooltip; then the mean, its 95% confidence interval and cv ("!" above ${percent(NOISY_CV)}), and bonnie++'s mean CPU %.</p>`,
    ...tables,
    '</section>',
  ].join('\n');
}
