/**
 * Pure parsers of what the benchmark tools print, one module per tool: bonnie++'s CSV
 * line (bonnie-csv.ts), postmark's terse report (postmark-terse.ts) and fio's JSON
 * (fio-json.ts). Every format detail was checked against real runs of the tools
 * installed in the lab (bonnie++ 2.00a writing CSV format 1.98, postmark "v1.51" from
 * Debian's 1.53 package, fio 3.33); the captures are test/fixtures/benchmarks/.
 */
export { bonnieStderrReason, parseBonnieCsv } from './bonnie-csv.js';
export { parseFioJson } from './fio-json.js';
export { parsePostmarkTerse } from './postmark-terse.js';
