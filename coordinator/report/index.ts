/**
 * What a campaign's (or a scale run's) measurements say: a text table for a terminal, a
 * CSV for a spreadsheet, the ratios against phy-local and against each method's dom0
 * baseline, each row's data path, the section 4.3 comparison, where the bytes went, and
 * one self-contained HTML report that reads like the paper. Pure functions: nothing here
 * reads a clock or touches a file.
 *
 * The modules beside this one, each importing only those before it: format (numbers,
 * text, columns); figures (what is read from a result); analysis (the measurements
 * indexed, outcomes, row order); paper-figures (Figs. 3-7 and the extras); ratios;
 * data-paths; setup-tables (Tables 1-2); accounting; scale (a scale run's own report);
 * chart (SVG); sparse (section 4.3); figure-charts; statistics-tables (HTML); text (table,
 * CSV); page (the HTML page).
 */

export { accountingHtml, accountingRows, accountingText, pathText, type AccountingRow } from './accounting.js';
export { measurementOutcome, type Outcome } from './analysis.js';
export { dataPaths, type DataPath } from './data-paths.js';
export { renderReport, type ReportOptions } from './page.js';
export { ratiosVsPhyLocal, type PhyLocalRatio } from './ratios.js';
export { renderScaleReport, scaleResultsTable } from './scale.js';
export { renderSharedReport, sharedResultsTable } from './shared.js';
export { sparseComparison, type SparseComparisonPass } from './sparse.js';
export { resultsCsv, resultsTable } from './text.js';
