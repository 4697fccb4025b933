import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { dataPaths, ratiosVsPhyLocal, renderReport, resultsCsv, resultsTable, sparseComparison } from '../../coordinator/report/index.js';
import type { MeasurementRecord, RunSetup, RunRecord } from '../../coordinator/model.js';

const RUN_ID = 'run-0042';
const PAPER_ORDER = ['file-local', 'phy-local', 'file-nfs', 'file-iscsi', 'phy-iscsi', 'nfs', 'iscsi'];
/** The nfs method's bonnie runs failed with this: a comma, quotes, markup and an ampersand. */
const NFS_ERROR = 'mount.nfs: access denied by server while mounting "storage:/export/r42-nfs", <rep> & retry';

const RUN: RunRecord = {
  runId: RUN_ID,
  planName: 'paper-campaign',
  kind: 'campaign',
  state: 'failed',
  createdUnixMs: Date.UTC(2024, 4, 2, 10, 0, 0),
  // 1 h 02 min 03 s later.
  finishedUnixMs: Date.UTC(2024, 4, 2, 11, 2, 3),
  stepsTotal: 120,
  stepsSucceeded: 117,
  stepsFailed: 3,
  error: '3 steps failed',
};

/** bonnie++'s CPU % beside every figure of {@link bonnieResult}. */
const BONNIE_CPU = 12;

/** A BenchmarkResult as JSON, the way the coordinator records it. */
function bonnieResult(writeKBps: number, readKBps: number | undefined): Record<string, unknown> {
  const figure = (perSecond: number | undefined): Record<string, unknown> =>
    perSecond === undefined ? { measured: false, perSecond: 0, cpuPercent: 0, latencyUs: 0 } : { measured: true, perSecond, cpuPercent: BONNIE_CPU, latencyUs: 3400 };
  return { bonnie: { version: '2.00a', fileSizeBytes: 1 << 30, chunkSizeBytes: 8192, writeBlock: figure(writeKBps), readBlock: figure(readKBps) }, startedUnixMs: 1, elapsedMs: 60_000, label: '', result: 'bonnie' };
}

/** A postmark result whose whole run (agent-timed) did `transactionsPerWallSecond`; the tool's own rate is whole seconds. */
function postmarkResult(transactionsPerWallSecond: number): Record<string, unknown> {
  return { postmark: { totalSeconds: 300, transactionSeconds: 250, transactionsPerSecond: 40000, wallMs: 300_000, transactionsPerWallSecond }, startedUnixMs: 1, elapsedMs: 300_000, label: '', result: 'postmark' };
}

function sparseResult(passesMBps: number[]): Record<string, unknown> {
  const passes = passesMBps.map((mb, i) => ({ pass: i + 1, writeBytesPerSecond: mb * 1e6, elapsedMs: 1000, imageAllocatedBytes: (i + 1) * 1e9 }));
  return { sparseImage: { imageSizeBytes: 2 ** 31, passes }, startedUnixMs: 1, elapsedMs: 10_000, label: '', result: 'sparseImage' };
}

function ok(method: string, benchmark: string, repetition: number, result: Record<string, unknown>): MeasurementRecord {
  return { runId: RUN_ID, method, benchmark, repetition, guest: 'vc-guest1', result, error: '' };
}

function failed(method: string, benchmark: string, repetition: number, error: string): MeasurementRecord {
  return { runId: RUN_ID, method, benchmark, repetition, guest: 'vc-guest1', error };
}

/**
 * Seven methods × two repetitions, numbers of the paper's magnitude, with the holes a real
 * campaign has: nfs's bonnie failed in both repetitions, file-iscsi's rep 2 block read was
 * not measured ("+++++"), iscsi's postmark rep 2 was never recorded. Recorded in a
 * shuffled order (iscsi first) so the paper's order has to come from the report.
 */
const BONNIE: Record<string, [[number, number | undefined], [number, number | undefined]] | 'failed'> = {
  'file-local': [[58000, 70000], [59220, 71000]],
  'phy-local': [[60000, 72000], [62000, 74000]],
  'file-nfs': [[30500, 40000], [31500, 42000]],
  'file-iscsi': [[45000, 55000], [46000, undefined]],
  'phy-iscsi': [[50000, 60000], [52000, 61000]],
  nfs: 'failed',
  iscsi: [[48800, 58000], [48000, 58400]],
};
const POSTMARK: Record<string, [number, number | undefined]> = {
  'file-local': [400, 410],
  'phy-local': [500, 520],
  'file-nfs': [120, 130],
  'file-iscsi': [300, 310],
  'phy-iscsi': [450, 460],
  nfs: [200, 210],
  iscsi: [420, undefined],
};
/** MB/s per pass (three passes), per repetition. */
const SPARSE: Record<string, [number[], number[]]> = {
  'file-local': [[40, 60, 80], [44, 62, 80]],
  'phy-local': [[80, 80, 80], [80, 80, 80]],
  'file-nfs': [[20, 25, 30], [22, 25, 28]],
  'file-iscsi': [[30, 40, 50], [30, 40, 50]],
  'phy-iscsi': [[60, 60, 60], [62, 62, 62]],
  nfs: [[35, 35, 35], [37, 37, 37]],
  iscsi: [[50, 55, 60], [50, 55, 60]],
};

function campaign(): MeasurementRecord[] {
  const records: MeasurementRecord[] = [];
  for (const method of [...PAPER_ORDER].reverse()) {
    for (const repetition of [1, 2]) {
      const bonnie = BONNIE[method]!;
      if (bonnie === 'failed') records.push(failed(method, 'bonnie', repetition, NFS_ERROR));
      else {
        const [write, read] = bonnie[repetition - 1]!;
        records.push(ok(method, 'bonnie', repetition, bonnieResult(write, read)));
      }
      const tps = POSTMARK[method]![repetition - 1];
      if (tps !== undefined) records.push(ok(method, 'postmark', repetition, postmarkResult(tps)));
      records.push(ok(method, 'sparse-image', repetition, sparseResult(SPARSE[method]![repetition - 1]!)));
    }
  }
  return records;
}

/** The cells of a fixed-width row: columns are at least two spaces apart. */
function columns(line: string): string[] {
  return line.trim().split(/ {2,}/);
}

function tableRow(table: string, method: string, figure: string): string[] {
  const line = table.split('\n').find((l) => l.startsWith(`${method} `) && columns(l)[1] === figure);
  assert.ok(line, `a row for ${method} ${figure}`);
  return columns(line);
}

/** The chart <svg> elements of a page, each with its figure key. */
function charts(html: string): Array<{ figure: string; svg: string }> {
  return [...html.matchAll(/<svg\b[^>]*data-figure="([^"]*)"[\s\S]*?<\/svg>/g)].map((m) => ({ figure: m[1]!, svg: m[0] }));
}

/** The method groups of a chart, each with its own markup (up to the next group). */
function groups(svg: string): Array<{ method: string; markup: string }> {
  const starts = [...svg.matchAll(/<g class="method" data-method="([^"]*)">/g)];
  return starts.map((m, i) => ({ method: m[1]!, markup: svg.slice(m.index, starts[i + 1]?.index ?? svg.length) }));
}

const bars = (markup: string): string[] => [...markup.matchAll(/<rect class="bar"[^>]*>/g)].map((m) => m[0]);
const missingSlots = (markup: string): string[] => [...markup.matchAll(/<g class="missing"[^>]*>[\s\S]*?<\/g>/g)].map((m) => m[0]);

/** A minimal RFC 4180 reader, to check the writer's quoting from the other side. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') (field += '"'), i++;
      else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') row.push(field), (field = '');
    else if (ch === '\r' && text[i + 1] === '\n') {
      row.push(field), rows.push(row), (row = []), (field = ''), i++;
    } else field += ch;
  }
  assert.equal(field, '', 'the text ends with a line end');
  return rows;
}

describe('ratiosVsPhyLocal', () => {
  const ratios = ratiosVsPhyLocal(campaign());
  const ratio = (figure: string, method: string) => ratios.find((r) => r.figure === figure && r.method === method);

  it('divides each method mean by phy-local mean, leaving failed and unrecorded repetitions out', () => {
    // bonnie block write: phy-local (60000+62000)/2 = 61000.
    assert.equal(ratio('bonnie block write', 'phy-local')?.ratio, 1);
    assert.equal(ratio('bonnie block write', 'file-local')?.mean, 58610);
    assert.ok(Math.abs(ratio('bonnie block write', 'file-local')!.ratio! - 58610 / 61000) < 1e-12);
    assert.ok(Math.abs(ratio('bonnie block write', 'file-nfs')!.ratio! - 31000 / 61000) < 1e-12);
    // file-iscsi rep 2 block read was "+++++": its mean is rep 1 alone, over phy-local's 73000.
    assert.equal(ratio('bonnie block read', 'file-iscsi')?.mean, 55000);
    assert.ok(Math.abs(ratio('bonnie block read', 'file-iscsi')!.ratio! - 55000 / 73000) < 1e-12);
    // iscsi's postmark rep 2 was never recorded: 420 over phy-local's 510.
    assert.ok(Math.abs(ratio('postmark transactions (whole run)', 'iscsi')!.ratio! - 420 / 510) < 1e-12);
    // sparse: mean of pass means, (60 + 62)/2 = 61 over 80.
    assert.ok(Math.abs(ratio('sparse-image mean pass throughput', 'file-local')!.ratio! - 61 / 80) < 1e-12);
  });

  it('has no mean and no ratio for a method whose runs all failed', () => {
    assert.deepEqual(ratio('bonnie block write', 'nfs'), { figure: 'bonnie block write', unit: 'KB/s', method: 'nfs', mean: undefined, ratio: undefined });
    assert.ok(Math.abs(ratio('postmark transactions (whole run)', 'nfs')!.ratio! - 205 / 510) < 1e-12, 'nfs postmark did run');
  });

  it('lists figures in table order and methods in the paper order, fio left out when never run', () => {
    assert.deepEqual([...new Set(ratios.map((r) => r.figure))], ['bonnie block write', 'bonnie block read', 'postmark transactions (whole run)', 'sparse-image mean pass throughput']);
    assert.deepEqual(ratios.filter((r) => r.figure === 'bonnie block write').map((r) => r.method), PAPER_ORDER);
  });

  it('keeps a retried success over a failure, whichever was recorded first', () => {
    const retried = (first: MeasurementRecord, second: MeasurementRecord) => ratiosVsPhyLocal([first, second, ok('phy-local', 'postmark', 1, postmarkResult(500))]).find((r) => r.method === 'nfs');
    const success = ok('nfs', 'postmark', 1, postmarkResult(250));
    const failure = failed('nfs', 'postmark', 1, 'timed out');
    assert.equal(retried(failure, success)?.ratio, 0.5);
    assert.equal(retried(success, failure)?.ratio, 0.5);
    assert.equal(retried(success, ok('nfs', 'postmark', 1, postmarkResult(100)))?.ratio, 0.2, 'of two successes, the later');
  });

  it('has no ratios when phy-local was not measured', () => {
    const withoutBaseline = ratiosVsPhyLocal(campaign().filter((m) => m.method !== 'phy-local'));
    assert.ok(withoutBaseline.length > 0);
    assert.ok(withoutBaseline.every((r) => r.ratio === undefined));
    assert.equal(withoutBaseline.find((r) => r.method === 'file-local' && r.figure === 'bonnie block write')?.mean, 58610);
  });
});

describe('the set-up (Table 1)', () => {
  const setup: RunSetup = {
    hosts: [
      { role: 'storage', name: 'storage0', hostname: 'lab', version: '0.1.0', memoryScope: 'memory cgroup /vcstor.vcs/storage0', memoryBytes: 192 * 2 ** 20, drivers: ['volumes=filepool', 'iscsi-target=tgt'] },
      { role: 'guest', name: 'guest0', hostname: 'lab', version: '0.1.0', memoryScope: 'machine', memoryBytes: 0, drivers: ['nfs-client=kernel (unavailable)'] },
    ],
    repetitions: 2,
    volumeSizeBytes: 768 * 2 ** 20,
    provisioning: 'zero-filled',
    benchmarks: { bonnie: 'fileSize=402653184 ram=201326592' },
  };

  it('heads the text table: parameters, then each host with its memory', () => {
    const text = resultsTable(RUN, campaign(), setup);
    assert.match(text, /^set-up: 2 repetitions, 768 MiB zero-filled volumes; bonnie \(fileSize=402653184 ram=201326592\)$/m);
    // A set-up of before Table 1's kernel, CPUs, tools and link: "not recorded", never blank.
    assert.deepEqual(columns(text.split('\n').find((l) => l.startsWith('storage '))!), ['storage', 'storage0', 'not recorded', 'not recorded', '192 MiB', 'memory cgroup /vcstor.vcs/storage0', 'not recorded', 'volumes=filepool iscsi-target=tgt']);
    assert.deepEqual(columns(text.split('\n').find((l) => l.startsWith('guest '))!).slice(4, 6), ['unknown', 'machine']);
    assert.doesNotMatch(resultsTable(RUN, campaign()), /set-up:/, 'no set-up section without a setup');
  });

  it('is a section of the report', () => {
    const html = renderReport(RUN, campaign(), { setup });
    assert.match(html, /<h2>Set-up \(Table 1\)<\/h2>/);
    assert.match(html, /<tr data-role="storage"><td>storage<\/td><td>storage0<\/td><td>lab<\/td><td class="not-recorded">not recorded<\/td><td class="not-recorded">not recorded<\/td><td class="num">192 MiB<\/td>/);
    assert.doesNotMatch(renderReport(RUN, campaign()), /Set-up \(Table 1\)/);
  });
});

describe('sparse vs zero-filled (section 4.3)', () => {
  const disk = (method: string, provisioning: string, repetition: number, passesMBps: number[]) => ({ ...ok(method, `sparse-disk:${provisioning}`, repetition, sparseResult(passesMBps)) });
  const measurements = [
    disk('file-local', 'zero-filled', 1, [100, 100]),
    disk('file-local', 'zero-filled', 2, [100, 100]),
    disk('file-local', 'sparse', 1, [20, 90]),
    disk('file-local', 'sparse', 2, [30, 90]),
    disk('file-nfs', 'sparse', 1, [50]),
    failed('file-nfs', 'sparse-disk:zero-filled', 1, 'set-up failed'),
  ];

  it('divides, per method and pass, the sparse mean by the zero-filled mean, with its interval', () => {
    const rows = sparseComparison(measurements);
    const local = rows.filter((r) => r.method === 'file-local');
    assert.deepEqual(local.map((r) => [r.pass, r.ratio]), [[1, 0.25], [2, 0.9]]);
    // Pass 1: sparse 20, 30 (sd 7.07, relative se 5/25), zero-filled without spread: t(1) × 0.25 × 0.2.
    assert.ok(Math.abs(local[0]!.ratioCi95! - 12.706 * 0.25 * 0.2) < 1e-9);
    assert.equal(local[1]!.ratioCi95, 0, 'no spread on either side');
    const nfs = rows.find((r) => r.method === 'file-nfs')!;
    assert.equal(nfs.ratio, undefined, 'no zero-filled run to compare with');
  });

  it('is a section of the text table and a chart and table of the report', () => {
    const text = resultsTable(RUN, measurements);
    assert.match(text, /sparse vs zero-filled \(paper section 4\.3, Fig\. 7\)/);
    assert.deepEqual(tableRow(text.slice(text.indexOf('sparse vs zero-filled')), 'file-local', '0.25±0.64'), ['file-local', '0.25±0.64', '0.90±0.00']);
    const html = renderReport(RUN, measurements);
    assert.match(html, /<svg data-figure="sparse-disk\/ratio"/);
    assert.match(html, /<rect class="bar" data-method="file-local" data-pass="1" data-value="0.25"/);
    assert.match(html, /<td class="ratio" data-method="file-nfs" data-pass="1">-<\/td>/);
  });
});

describe('resultsTable', () => {
  const table = resultsTable(RUN, campaign());

  it('has a header with a column per repetition and the mean', () => {
    const header = table.split('\n').find((l) => l.startsWith('method'));
    assert.ok(header);
    assert.deepEqual(columns(header), ['method', 'figure', 'unit', 'rep1', 'rep2', 'mean', '95% CI', 'cv', 'cpu']);
    assert.match(table, /^run run-0042 \(paper-campaign\): failed$/m);
  });

  it('has a row per method and figure with the repetitions and their mean', () => {
    // Two repetitions: sd = |a - b| / sqrt 2, the 95% interval t(1) = 12.706 times sd / sqrt 2.
    // 58000, 59220: sd 862.7, ±7751, cv 1.5%.
    // bonnie++'s CPU % beside it: the mean over the repetitions that measured the figure.
    assert.deepEqual(tableRow(table, 'file-local', 'bonnie block write'), ['file-local', 'bonnie block write', 'KB/s', '58000', '59220', '58610', '±7751', '1.5%', `${BONNIE_CPU}%`]);
    assert.deepEqual(tableRow(table, 'nfs', 'bonnie block write'), ['nfs', 'bonnie block write', 'KB/s', 'failed', 'failed', '-', '-', '-', '-']);
    // One repetition has no spread to show.
    assert.deepEqual(tableRow(table, 'file-iscsi', 'bonnie block read'), ['file-iscsi', 'bonnie block read', 'KB/s', '55000', 'n/a', '55000', '-', '-', `${BONNIE_CPU}%`]);
    assert.deepEqual(tableRow(table, 'iscsi', 'postmark transactions (whole run)'), ['iscsi', 'postmark transactions (whole run)', 'tx/s', '420', '-', '420', '-', '-']);
    // 60, 62: sd 1.414, ±12.7, cv 2.3%.
    assert.deepEqual(tableRow(table, 'file-local', 'sparse-image mean pass throughput'), ['file-local', 'sparse-image mean pass throughput', 'MB/s', '60.0', '62.0', '61.0', '±12.7', '2.3%']);
    const resultRows = table.split('\n').filter((l) => PAPER_ORDER.some((m) => l.startsWith(`${m} `)));
    assert.equal(resultRows.length, 7 * 4, 'seven methods × four figures (no fio), nothing else starts with a method name');
  });

  it('orders rows by figure, then the methods in the paper order', () => {
    const writeRows = table.split('\n').filter((l) => columns(l)[1] === 'bonnie block write');
    assert.deepEqual(writeRows.map((l) => columns(l)[0]), PAPER_ORDER);
  });

  it('has a ratio section: figures × methods, two decimals, "-" where missing', () => {
    const section = table.slice(table.indexOf('ratio vs phy-local'));
    assert.ok(section.length > 0 && table.includes('ratio vs phy-local'));
    const header = section.split('\n').find((l) => l.startsWith('figure'));
    assert.deepEqual(columns(header!), ['figure', 'unit', ...PAPER_ORDER]);
    const cells = (figure: string): string[] => columns(section.split('\n').find((l) => l.startsWith(`${figure} `))!);
    // The ratio, then its 95% interval where both sides have two repetitions or more.
    const row = (figure: string): string[] => cells(figure).map((c) => c.split('±')[0]!);
    // 58610/61000 = 0.9608, 31000/61000 = 0.5082, 45500/61000 = 0.7459, 51000/61000 = 0.8361, 48400/61000 = 0.7934.
    assert.deepEqual(row('bonnie block write'), ['bonnie block write', 'KB/s', '0.96', '1.00', '0.51', '0.75', '0.84', '-', '0.79']);
    // 405/510 = 0.7941, 125/510 = 0.2451, 305/510 = 0.5980, 455/510 = 0.8922, 205/510 = 0.4020, 420/510 = 0.8235.
    assert.deepEqual(row('postmark transactions (whole run)'), ['postmark transactions (whole run)', 'tx/s', '0.79', '1.00', '0.25', '0.60', '0.89', '0.40', '0.82']);
    assert.match(cells('bonnie block write')[2]!, /^0\.96±0\.\d\d$/, 'file-local: two repetitions on both sides, an interval');
    assert.ok(section.includes('± its 95% interval'));
  });

  it('says skipped where the events do, failed where a run failed', () => {
    const mixed = resultsTable(RUN, [ok('phy-local', 'bonnie', 1, bonnieResult(60000, 70000)), failed('nfs', 'bonnie', 1, 'skipped: no kernel NFS client here'), failed('iscsi', 'bonnie', 1, 'setup failed: login refused')]);
    assert.deepEqual(tableRow(mixed, 'nfs', 'bonnie block write').slice(3, 4), ['skipped']);
    assert.deepEqual(tableRow(mixed, 'iscsi', 'bonnie block write').slice(3, 4), ['failed']);
  });

  it('lists the errors, one line each', () => {
    assert.ok(table.includes(`  nfs bonnie rep1: ${NFS_ERROR}\n`));
    assert.ok(table.includes(`  nfs bonnie rep2: ${NFS_ERROR}\n`));
    const multiline = resultsTable(RUN, [failed('iscsi', 'fio', 1, 'first line\nsecond line')]);
    assert.ok(multiline.includes('  iscsi fio rep1: first line second line\n'));
  });

  it('says so when there are no measurements', () => {
    assert.match(resultsTable(RUN, []), /no measurements/);
  });
});

describe('resultsCsv', () => {
  const csv = resultsCsv(campaign());
  const rows = parseCsv(csv);

  it('has the header and a row per measurement × figure', () => {
    assert.deepEqual(rows[0], ['run_id', 'method', 'benchmark', 'repetition', 'figure', 'unit', 'value', 'error', 'outcome', 'cpu_percent']);
    // bonnie 14 records × 3 figures (block write, block read, rewrite), postmark 13 × 1, sparse-image 14 × (mean + 3 passes).
    assert.equal(rows.length - 1, 14 * 3 + 13 + 14 * 4);
    assert.ok(rows.every((r) => r.length === 10));
  });

  it('quotes an error holding a comma and quotes (RFC 4180) and reads back unchanged', () => {
    const line = `${RUN_ID},nfs,bonnie,1,block write,KB/s,,"mount.nfs: access denied by server while mounting ""storage:/export/r42-nfs"", <rep> & retry",failed,`;
    assert.ok(csv.split('\r\n').includes(line), 'the exact quoted line');
    const nfsRows = rows.filter((r) => r[1] === 'nfs' && r[2] === 'bonnie');
    assert.equal(nfsRows.length, 6);
    assert.ok(nfsRows.every((r) => r[6] === '' && r[7] === NFS_ERROR && r[8] === 'failed' && r[9] === ''));
  });

  it('writes values unrounded and per-pass rows for the sparse test', () => {
    assert.deepEqual(rows.find((r) => r[1] === 'file-local' && r[2] === 'bonnie' && r[3] === '2' && r[4] === 'block write'), [RUN_ID, 'file-local', 'bonnie', '2', 'block write', 'KB/s', '59220', '', 'ok', String(BONNIE_CPU)]);
    assert.deepEqual(rows.find((r) => r[1] === 'file-iscsi' && r[2] === 'bonnie' && r[3] === '2' && r[4] === 'block read')?.slice(6), ['', '', 'ok', ''], 'unmeasured: empty, no error, no CPU');
    assert.deepEqual(rows.filter((r) => r[1] === 'file-local' && r[2] === 'bonnie' && r[3] === '1').map((r) => r[4]), ['block write', 'block read', 'rewrite'], "bonnie++'s figures in the paper's order");
    const sparse = rows.filter((r) => r[1] === 'file-local' && r[2] === 'sparse-image' && r[3] === '1');
    assert.deepEqual(sparse.map((r) => [r[4], r[5], r[6]]), [
      ['mean pass throughput', 'MB/s', '60'],
      ['pass 1 throughput', 'MB/s', '40'],
      ['pass 2 throughput', 'MB/s', '60'],
      ['pass 3 throughput', 'MB/s', '80'],
    ]);
  });

  it('quotes a field with a line break and ends lines with CRLF', () => {
    const text = resultsCsv([failed('iscsi', 'fio', 1, 'line one\r\nline "two"')]);
    assert.equal(text, 'run_id,method,benchmark,repetition,figure,unit,value,error,outcome,cpu_percent\r\n' + `${RUN_ID},iscsi,fio,1,write bandwidth,MB/s,,"line one\r\nline ""two""",failed,\r\n` + `${RUN_ID},iscsi,fio,1,read bandwidth,MB/s,,"line one\r\nline ""two""",failed,\r\n`);
    assert.deepEqual(parseCsv(text)[1]?.[7], 'line one\r\nline "two"');
    assert.ok(resultsCsv([failed('iscsi', 'fio', 1, 'only\na line break')]).includes(',"only\na line break",failed,\r\n'), 'a line break alone is quoted too');
  });
});

describe('renderReport', () => {
  const html = renderReport(RUN, campaign(), { title: 'Paper campaign', generatedUnixMs: Date.UTC(2024, 4, 2, 12, 0, 0) });
  const chartList = charts(html);

  it('is one self-contained page: no script, nothing fetched', () => {
    assert.match(html, /^<!DOCTYPE html>\n<html lang="en">/);
    assert.match(html, /<\/html>\n$/);
    assert.doesNotMatch(html, /<script/i);
    assert.doesNotMatch(html, /\b(src|href)=/i);
    assert.doesNotMatch(html, /https?:|url\(|@import/i);
    assert.match(html, /<style>[\s\S]+<\/style>/);
    assert.match(html, /<title>Paper campaign<\/title>/);
    assert.match(html, /generated 2024-05-02T12:00:00Z/);
  });

  it('draws one chart per figure present', () => {
    assert.deepEqual(chartList.map((c) => c.figure), ['bonnie/block write', 'bonnie/block read', 'postmark/transactions (whole run)', 'sparse-image/pass throughput']);
  });

  it('has a group per method in the paper order and a bar or an empty slot per repetition', () => {
    for (const chart of chartList.slice(0, 3)) {
      const methodGroups = groups(chart.svg);
      assert.deepEqual(methodGroups.map((g) => g.method), PAPER_ORDER, chart.figure);
      for (const group of methodGroups) {
        assert.equal(bars(group.markup).length + missingSlots(group.markup).length, 2, `${chart.figure} ${group.method}: two slots`);
        for (const bar of bars(group.markup)) assert.match(bar, new RegExp(`data-method="${group.method}" data-repetition="[12]" data-value="[0-9.]+"`));
      }
    }
    const write = groups(chartList[0]!.svg);
    assert.deepEqual(bars(write[0]!.markup).map((b) => b.match(/data-value="([^"]*)"/)?.[1]), ['58000', '59220']);
    assert.equal(bars(groups(chartList[1]!.svg).find((g) => g.method === 'file-iscsi')!.markup).length, 1, 'the "+++++" repetition is a slot, not a bar');
    assert.equal(bars(groups(chartList[2]!.svg).find((g) => g.method === 'iscsi')!.markup).length, 1, 'the unrecorded repetition is a slot, not a bar');
  });

  it('draws the failed method as n/a slots with the escaped error as their title', () => {
    const nfs = groups(chartList[0]!.svg).find((g) => g.method === 'nfs')!;
    assert.equal(bars(nfs.markup).length, 0);
    const slots = missingSlots(nfs.markup);
    assert.equal(slots.length, 2);
    const escaped = 'mount.nfs: access denied by server while mounting &quot;storage:/export/r42-nfs&quot;, &lt;rep&gt; &amp; retry';
    for (const slot of slots) {
      assert.match(slot, />n\/a<\/text>/);
      assert.ok(slot.includes(`<title>nfs, rep `) && slot.includes(`${escaped}</title>`), slot);
    }
    assert.ok(!html.includes(NFS_ERROR) && !html.includes('<rep>'), 'the raw error appears nowhere');
  });

  it('draws the sparse test as a bar per pass in each method group, with each repetition as a dot', () => {
    const sparse = chartList.find((c) => c.figure === 'sparse-image/pass throughput')!;
    const sparseGroups = groups(sparse.svg);
    assert.deepEqual(sparseGroups.map((g) => g.method), PAPER_ORDER);
    for (const group of sparseGroups) {
      const groupBars = bars(group.markup);
      assert.deepEqual(groupBars.map((b) => b.match(/data-pass="(\d+)"/)?.[1]), ['1', '2', '3'], group.method);
      assert.equal((group.markup.match(/<circle class="point"/g) ?? []).length, 6, 'two repetitions × three passes');
    }
    // file-local pass 1: (40 + 44) / 2.
    assert.match(bars(sparseGroups[0]!.markup)[0]!, /data-repetition="mean" data-pass="1" data-repetitions="1 2" data-value="42"/);
    assert.match(sparse.svg, /<text x="[0-9.]+" y="[0-9.]+">pass 3<\/text>/, 'a legend entry per pass');
  });

  it('has a y axis with round ticks and the unit, method names and a legend per repetition', () => {
    const write = chartList[0]!.svg;
    const ticks = [...write.matchAll(/<text class="tick"[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);
    // The highest bar is 62000: a 20,000 step up to 80,000.
    assert.deepEqual(ticks, ['0', '20,000', '40,000', '60,000', '80,000']);
    assert.match(write, /<text class="unit"[^>]*>KB\/s<\/text>/);
    assert.deepEqual([...write.matchAll(/<text class="method-name"[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]), PAPER_ORDER);
    assert.deepEqual([...write.matchAll(/<g class="legend">([\s\S]*?)<\/g>/g)].flatMap((m) => [...m[1]!.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((t) => t[1])), ['rep 1', 'rep 2']);
  });

  it('draws each method\'s mean and 95% interval over its bars when it has two repetitions', () => {
    const write = charts(html).find((c) => c.figure === 'bonnie/block write')!.svg;
    // 58000 and 59220: mean 58610, t(1) × sd / √2 = 12.706 × 862.67 / √2.
    const bar = /<g class="errorbar" data-method="file-local" data-mean="([^"]+)" data-ci95="([^"]+)"/.exec(write);
    assert.ok(bar, 'file-local has an error bar');
    assert.equal(Number(bar[1]), 58610);
    assert.ok(Math.abs(Number(bar[2]) - (12.706 * (1220 / Math.SQRT2)) / Math.SQRT2) < 1e-6);
    assert.doesNotMatch(write, /class="errorbar" data-method="nfs"/, 'no bar for a method with no value');
    assert.match(html, /whisker its 95% confidence interval/);
  });

  it('has the ratio table against phy-local', () => {
    const ratioOf = (method: string, figure: string): number => Number(html.match(new RegExp(`data-method="${method}" data-figure="${figure.replace(/[()]/g, '\\$&')}" data-ratio="([^"]+)"`))?.[1]);
    assert.ok(Math.abs(ratioOf('file-local', 'bonnie/block write') - 58610 / 61000) < 1e-12);
    assert.ok(Math.abs(ratioOf('file-nfs', 'postmark/transactions (whole run)') - 125 / 510) < 1e-12);
    assert.equal(ratioOf('phy-local', 'bonnie/block read'), 1);
    assert.match(html, /data-method="file-local" data-figure="bonnie\/block write" data-ratio="[^"]+" data-ci95="[^"]+"[^>]*>0\.96 ±0\.\d\d</);
    assert.match(html, /<td class="missing" data-method="nfs" data-figure="bonnie\/block write"[^>]*>-<\/td>/);
    assert.equal((html.match(/<td class="ratio[ "]/g) ?? []).length, 4 * 7 - 2, 'every cell but nfs bonnie write and read');
  });

  it('has the run summary with the escaped errors', () => {
    const summary = html.slice(html.indexOf('<section class="summary">'));
    for (const text of ['<dd>paper-campaign</dd>', '<dd>run-0042</dd>', '<dd>failed</dd>', '<dd>2024-05-02T10:00:00Z</dd>', '<dd>2024-05-02T11:02:03Z</dd>', '<dd>1 h 02 min 03 s</dd>', '<dd>117 ok, 3 failed, of 120</dd>']) {
      assert.ok(summary.includes(text), text);
    }
    assert.ok(summary.includes('<li>run: 3 steps failed</li>'));
    assert.equal((summary.match(/<li>nfs \/ bonnie \/ rep [12]: mount\.nfs: access denied by server while mounting &quot;storage:\/export\/r42-nfs&quot;, &lt;rep&gt; &amp; retry<\/li>/g) ?? []).length, 2);
  });

  it('escapes method names everywhere', () => {
    const hostile = '<img onerror="x">&';
    const page = renderReport({ ...RUN, planName: '<b>plan</b>' }, [ok(hostile, 'postmark', 1, postmarkResult(100)), ok('phy-local', 'postmark', 1, postmarkResult(200))]);
    assert.ok(!page.includes('<img') && !page.includes('<b>plan'));
    assert.ok(page.includes('data-method="&lt;img onerror=&quot;x&quot;&gt;&amp;"'));
    const chart = charts(page)[0]!;
    assert.deepEqual(groups(chart.svg).map((g) => g.method), ['phy-local', '&lt;img onerror=&quot;x&quot;&gt;&amp;'], 'an unknown method after the paper ones');
  });

  it('slants method names too wide for their group', () => {
    const longName = 'file-iscsi-over-a-very-long-name';
    const page = (names: string[]): string => charts(renderReport(RUN, names.map((name) => ok(name, 'postmark', 1, postmarkResult(100)))))[0]!.svg;
    assert.doesNotMatch(page(PAPER_ORDER), /class="method-name"[^>]*rotate/);
    assert.match(page([...PAPER_ORDER, longName]), /class="method-name"[^>]*rotate\(-30 /);
  });

  it('keeps a bonnie++ figure no run could time, as n/a saying why, never dropping its chart', () => {
    const untimed = [ok('phy-local', 'bonnie', 1, bonnieResult(60000, undefined)), ok('iscsi', 'bonnie', 1, bonnieResult(30000, undefined))];
    const read = charts(renderReport(RUN, untimed)).find((c) => c.figure === 'bonnie/block read');
    assert.ok(read, 'the block read chart is there');
    assert.equal((read.svg.match(/<g class="missing"/g) ?? []).length, 2);
    assert.match(read.svg, /bonnie\+\+ printed \+\+\+\+\+: the test ended within its 0\.5 s timer/);
    assert.deepEqual(tableRow(resultsTable(RUN, untimed), 'iscsi', 'bonnie block read').slice(3, 4), ['n/a']);
  });

  it('draws fio bandwidths only when a run produced them', () => {
    const fio = (method: string, writeBytesPerSecond: number): MeasurementRecord =>
      ok(method, 'fio', 1, { fio: { version: 'fio-3.33', write: { ioBytes: 1, bandwidthBytesPerSecond: writeBytesPerSecond, iops: 1, meanLatencyNs: 1, completionLatency: [] }, read: { ioBytes: 0, bandwidthBytesPerSecond: 0, iops: 0, meanLatencyNs: 0, completionLatency: [] }, runtimeMs: 1000, error: 0, rawJson: '{}' } });
    const measurements = [fio('phy-local', 120e6), fio('file-nfs', 60e6)];
    assert.deepEqual(charts(renderReport(RUN, measurements)).map((c) => c.figure), ['fio/write bandwidth'], 'a write-only job has no read chart');
    assert.deepEqual(tableRow(resultsTable(RUN, measurements), 'file-nfs', 'fio write bandwidth'), ['file-nfs', 'fio write bandwidth', 'MB/s', '60.0', '60.0', '-', '-']);
    assert.ok(!resultsTable(RUN, measurements).includes('fio read bandwidth'));
    const onlyFailures = [failed('phy-local', 'fio', 1, 'fio: no space left')];
    assert.deepEqual(charts(renderReport(RUN, onlyFailures)).map((c) => c.figure), ['fio/write bandwidth', 'fio/read bandwidth'], 'a benchmark that only failed is drawn, to show it');
  });

  it('can be written to a file and read back as it is', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'vcstor-report-'));
    try {
      const file = path.join(dir, 'report-sample.html');
      await writeFile(file, html);
      assert.equal(await readFile(file, 'utf8'), html);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("the paper's figures, dom0's baselines and Tables 1-2", () => {
  /** bonnie++ with all three figures and a CPU % of its own beside each. */
  function bonnieFull(write: [number, number], read: [number, number], rewrite: [number, number]): Record<string, unknown> {
    const figure = ([perSecond, cpuPercent]: [number, number]) => ({ measured: true, perSecond, cpuPercent, latencyUs: 1 });
    return { bonnie: { version: '2.00a', writeBlock: figure(write), readBlock: figure(read), rewrite: figure(rewrite) }, result: 'bonnie' };
  }
  /** [KB/s, CPU %] per figure and repetition. */
  const DOM0_BONNIE: Record<string, Array<{ write: [number, number]; read: [number, number]; rewrite: [number, number] }>> = {
    'dom0-local': [
      { write: [90000, 11], read: [95000, 7], rewrite: [40000, 23] },
      { write: [92000, 13], read: [97000, 9], rewrite: [42000, 25] },
    ],
    'dom0-iscsi': [
      { write: [70000, 20], read: [75000, 30], rewrite: [30000, 40] },
      { write: [72000, 22], read: [77000, 32], rewrite: [32000, 42] },
    ],
  };
  const DOM0_POSTMARK: Record<string, [number, number]> = { 'dom0-local': [900, 920], 'dom0-iscsi': [700, 720] };
  const SKIP_REASON = "the dom0 agent's nfs-client driver (libnfs) reaches image files only";

  function dom0Rows(): MeasurementRecord[] {
    const rows: MeasurementRecord[] = [];
    for (const repetition of [1, 2]) {
      for (const [method, reps] of Object.entries(DOM0_BONNIE)) {
        const r = reps[repetition - 1]!;
        rows.push(ok(method, 'bonnie', repetition, bonnieFull(r.write, r.read, r.rewrite)));
        rows.push(ok(method, 'postmark', repetition, postmarkResult(DOM0_POSTMARK[method]![repetition - 1]!)));
      }
      for (const benchmark of ['bonnie', 'postmark']) rows.push(failed('dom0-nfs', benchmark, repetition, `skipped: ${SKIP_REASON}`));
    }
    return rows;
  }
  const withDom0 = (): MeasurementRecord[] => [...dom0Rows(), ...campaign()];

  /** A lab's set-up with every Table 1/2 field. */
  const FULL_SETUP: RunSetup = {
    hosts: [
      { role: 'storage', name: 'storage0', hostname: 'lab', version: '0.1.0', memoryScope: 'memory cgroup /vcstor.vcs/storage0', memoryBytes: 128 * 2 ** 20, drivers: ['volumes=filepool', 'iscsi-target=tgt', 'nfs-server=ganesha'], kernel: '6.1.0-18-amd64', cpus: 4, tools: { tgtadm: '1:1.0.85-1', 'ganesha.nfsd': '4.3-8' } },
      { role: 'dom0', name: 'host0', hostname: 'lab', version: '0.1.0', memoryScope: 'memory cgroup /vcstor.vcs/host0', memoryBytes: 128 * 2 ** 20, drivers: ['iscsi-initiator=qsd', 'nfs-client=libnfs', 'hypervisor=sandbox', 'filesystem=ext4'], kernel: '6.1.0-18-amd64', cpus: 2, tools: { 'qemu-storage-daemon': '1:7.2+dfsg-7' } },
      { role: 'guest', name: 'guest0', hostname: 'lab', version: '0.1.0', memoryScope: 'memory cgroup /vcstor.vcs/guest0', memoryBytes: 128 * 2 ** 20, drivers: ['iscsi-initiator=qsd', 'nfs-client=kernel (unavailable)', 'filesystem=ext4'], kernel: '6.1.0-18-amd64', cpus: 1, tools: { 'bonnie++': '2.00a', fio: '3.33-3' } },
    ],
    linkRate: '1gbit',
    iscsiParams: { MaxRecvDataSegmentLength: '262144', ImmediateData: 'Yes' },
    iscsiSessions: [
      { method: 'phy-iscsi', initiator: 'iqn.2024-05.org.vcstor:host0', target: 'iqn.2024-05.org.vcstor:r1-phy-iscsi', params: { MaxRecvDataSegmentLength: '262144', ImmediateData: 'Yes', HeaderDigest: 'None' } },
      { method: 'iscsi', initiator: 'iqn.2024-05.org.vcstor:guest0', target: 'iqn.2024-05.org.vcstor:r1-iscsi', params: { MaxRecvDataSegmentLength: '65536', ImmediateData: 'No' } },
    ],
    nfsClients: [{ method: 'file-nfs', client: 'libnfs', options: 'nfs://storage0/export/r1-file-nfs?version=3' }],
    repetitions: 2,
    volumeSizeBytes: 768 * 2 ** 20,
    provisioning: 'zero-filled',
    benchmarks: { bonnie: 'fileSize=402653184 chunk=8192', postmark: 'transactions=1000 files=100', sparseImage: 'passes=3' },
  };
  /** The same hosts with a real host's drivers. */
  const REAL_SETUP: RunSetup = {
    ...FULL_SETUP,
    hosts: FULL_SETUP.hosts.map((h) => ({
      ...h,
      drivers: h.role === 'storage' ? ['volumes=lvm', 'iscsi-target=lio', 'nfs-server=kernel'] : h.role === 'dom0' ? ['iscsi-initiator=open-iscsi', 'nfs-client=kernel', 'hypervisor=xen'] : ['iscsi-initiator=open-iscsi', 'nfs-client=kernel'],
    })),
  };
  /** A set-up recorded before Table 1's new fields and Table 2. */
  const OLD_SETUP: RunSetup = { hosts: FULL_SETUP.hosts.map(({ kernel: _k, cpus: _c, tools: _t, ...h }) => h), repetitions: 2, volumeSizeBytes: 768 * 2 ** 20, provisioning: 'zero-filled', benchmarks: { bonnie: 'fileSize=402653184' } };

  const FIGURE_TITLES = [
    'Fig. 3 — dom0 sequential I/O (bonnie++ block write, block read, rewrite): local disk, NFS, iSCSI',
    'Fig. 4 — guest sequential I/O per method (block write, read, rewrite)',
    'Fig. 5 — PostMark in dom0',
    'Fig. 6 — PostMark in the guest per method',
    'Fig. 7 — the sparse test (section 4.3)',
  ];

  /** Each figure of a page, in order: its data-paper-figure, whether drawn, its markup. */
  function paperFigures(html: string): Array<{ number: string; drawn: boolean; markup: string }> {
    return [...html.matchAll(/<figure class="chart" [^>]*data-paper-figure="([^"]+)">[\s\S]*?<\/figure>|<p class="not-measured" [^>]*data-paper-figure="([^"]+)">[\s\S]*?<\/p>/g)].map((m) => ({ number: (m[1] ?? m[2])!, drawn: m[1] !== undefined, markup: m[0] }));
  }
  const title = (markup: string) => markup.match(/<h3 class="figure-title">([^<]*)<\/h3>|<strong>([^<]*)<\/strong>/)?.slice(1).find((t) => t !== undefined);

  /** Tags balance, void and self-closed ones aside; ids are unique. */
  function assertWellFormed(html: string): void {
    const stack: string[] = [];
    const voids = new Set(['meta', 'br', 'hr', 'img', 'input', 'link']);
    const body = html.replace(/<style>[\s\S]*?<\/style>/, '');
    for (const m of body.matchAll(/<(\/?)([a-zA-Z][a-zA-Z0-9-]*)\b[^>]*?(\/?)>/g)) {
      const [, closing, name, selfClosed] = m;
      if (voids.has(name!.toLowerCase()) || selfClosed === '/') continue;
      if (closing) assert.equal(stack.pop(), name, `</${name}> closes what was opened at ${m.index}`);
      else stack.push(name!);
    }
    assert.deepEqual(stack, [], 'every element closed');
    const ids = [...body.matchAll(/\sid="([^"]*)"/g)].map((m) => m[1]);
    assert.equal(new Set(ids).size, ids.length, 'ids are unique');
    assert.doesNotMatch(body.replace(/<[^>]*>/g, ''), /[<>]/, 'no stray angle bracket in text');
  }

  it("numbers and titles Figs. 3-7 in the paper's order, extras after, unnumbered", () => {
    const fio = ok('phy-local', 'fio', 1, { fio: { write: { bandwidthBytesPerSecond: 50e6 }, read: { bandwidthBytesPerSecond: 60e6 } } });
    const html = renderReport(RUN, [...withDom0(), fio], { setup: FULL_SETUP });
    const figures = paperFigures(html);
    assert.deepEqual(figures.map((f) => f.number), ['3', '4', '5', '6', '7', 'extra']);
    assert.deepEqual(figures.map((f) => title(f.markup)), [...FIGURE_TITLES, 'Extra: fio in the guest per method']);
    assert.ok(figures.every((f) => f.drawn), 'every figure has rows');
    const panels = (f: { markup: string }) => charts(f.markup).map((c) => c.figure);
    assert.deepEqual(panels(figures[0]!), ['dom0/bonnie/block write', 'dom0/bonnie/block read', 'dom0/bonnie/rewrite']);
    assert.deepEqual(panels(figures[1]!), ['bonnie/block write', 'bonnie/block read']);
    assert.deepEqual(panels(figures[2]!), ['dom0/postmark/transactions (whole run)']);
    assert.deepEqual(panels(figures[3]!), ['postmark/transactions (whole run)']);
    assert.deepEqual(panels(figures[4]!), ['sparse-image/pass throughput']);
    assert.deepEqual(panels(figures[5]!), ['fio/write bandwidth', 'fio/read bandwidth']);
    // dom0's figures hold the baselines alone, the guest's the methods alone.
    for (const chart of charts(figures[0]!.markup)) assert.deepEqual(groups(chart.svg).map((g) => g.method), ['dom0-local', 'dom0-nfs', 'dom0-iscsi']);
    for (const chart of charts(figures[1]!.markup)) assert.deepEqual(groups(chart.svg).map((g) => g.method), PAPER_ORDER);
    assertWellFormed(html);
  });

  it('lists a figure without rows as not measured in this run, and why', () => {
    const html = renderReport(RUN, campaign(), { setup: OLD_SETUP });
    const figures = paperFigures(html);
    assert.deepEqual(figures.map((f) => [f.number, f.drawn]), [['3', false], ['4', true], ['5', false], ['6', true], ['7', true]]);
    for (const f of [figures[0]!, figures[2]!]) {
      assert.ok(f.markup.includes('not measured in this run: no dom0 rows: the plan ran none of the dom0 baselines (dom0-local, dom0-nfs, dom0-iscsi)'), f.markup);
      assert.equal(charts(f.markup).length, 0);
    }
    assert.equal(charts(html).filter((c) => c.figure.startsWith('dom0/')).length, 0, 'no dom0 chart at all');
    const text = resultsTable(RUN, campaign(), OLD_SETUP);
    assert.ok(text.includes(`${FIGURE_TITLES[0]}: not measured in this run: no dom0 rows`));
    assert.ok(text.includes(`${FIGURE_TITLES[2]}: not measured in this run: no dom0 rows`));
    // The guest's sparse test missing from a plan that names other benchmarks: it says which.
    const noSparse = renderReport(RUN, campaign().filter((m) => m.benchmark !== 'sparse-image'), { setup: OLD_SETUP });
    assert.match(paperFigures(noSparse)[4]!.markup, /not measured in this run: no method ran the sparse test \(sparse-image or sparse-disk\): not among the plan&#39;s benchmarks \(bonnie\)/);
    assertWellFormed(html);
  });

  it('captions every figure: its number, what it shows with the plan parameters, how to read it', () => {
    const html = renderReport(RUN, withDom0(), { setup: FULL_SETUP });
    const figures = paperFigures(html);
    for (const f of figures) {
      const caption = f.markup.match(/<figcaption>([\s\S]*?)<\/figcaption>/)?.[1];
      assert.ok(caption?.startsWith(`Fig. ${f.number}. `), `Fig. ${f.number}'s caption: ${caption}`);
      assert.match(caption!, /&quot;Data paths&quot; below/);
      assert.match(caption!, /&quot;n\/a&quot; marks a value that is missing \(skipped, failed, or not measured by the tool\)/);
    }
    const caption = (n: number) => figures[n - 3]!.markup.match(/<figcaption>([\s\S]*?)<\/figcaption>/)![1]!;
    assert.ok(caption(3).includes(`bonnie++ (${FULL_SETUP.benchmarks.bonnie})`) && caption(3).includes('dom0-local'));
    assert.ok(caption(4).includes(`bonnie++ (${FULL_SETUP.benchmarks.bonnie}) in the guest`));
    assert.ok(caption(6).includes(`PostMark (${FULL_SETUP.benchmarks.postmark}) in the guest`));
    assert.match(caption(3), /Panels: \(a\) block write, \(b\) block read, \(c\) rewrite\./);
    assert.match(caption(3), /whisker its 95% confidence interval/);
    assert.match(caption(3), /CPU %/);
    assert.doesNotMatch(caption(5), /CPU %/, 'PostMark reports no CPU');
    assert.match(caption(7), /a bar per pass/);
  });

  it("shows bonnie++'s CPU % beside each throughput: bars, the results tables, the text table", () => {
    const measurements = withDom0();
    const html = renderReport(RUN, measurements, { setup: FULL_SETUP });
    const text = resultsTable(RUN, measurements, FULL_SETUP);
    const fields = { 'block write': 'write', 'block read': 'read', rewrite: 'rewrite' } as const;
    for (const [method, reps] of Object.entries(DOM0_BONNIE)) {
      for (const [figure, field] of Object.entries(fields)) {
        const svg = charts(html).find((c) => c.figure === `dom0/bonnie/${figure}`)!.svg;
        const groupBars = bars(groups(svg).find((g) => g.method === method)!.markup);
        assert.deepEqual(groupBars.map((b) => [b.match(/data-value="([^"]*)"/)?.[1], b.match(/data-cpu="([^"]*)"/)?.[1]]), reps.map((r) => r[field].map(String)), `${method} ${figure}`);
        // The results table: each repetition's value with its CPU %, then the mean CPU %.
        const row = html.match(new RegExp(`<tr data-method="${method}" data-figure="bonnie/${figure}">[\\s\\S]*?</tr>`))![0];
        assert.deepEqual([...row.matchAll(/data-cpu="([^"]*)"/g)].map((m) => Number(m[1])), reps.map((r) => r[field][1]));
        const meanCpu = (reps[0]![field][1] + reps[1]![field][1]) / 2;
        const shown = `${meanCpu.toFixed(meanCpu >= 10 ? 0 : 1)}%`;
        assert.ok(row.includes(`<td class="num cpu-mean">${shown}</td>`), `${method} ${figure}: ${row}`);
        assert.equal(tableRow(text, method, `bonnie ${figure}`).at(-1), shown);
      }
    }
    // Where bonnie++ did not measure a figure ("+++++"), no CPU beside it either.
    const untimed = bars(groups(charts(html).find((c) => c.figure === 'bonnie/block read')!.svg).find((g) => g.method === 'file-iscsi')!.markup);
    assert.equal(untimed.length, 1);
    assert.deepEqual(tableRow(text, 'file-iscsi', 'bonnie block read').slice(3, 5), ['55000', 'n/a']);
    const fig5 = text.slice(text.indexOf('Fig. 5 — PostMark in dom0\n'));
    assert.deepEqual(columns(fig5.split('\n')[1]!), ['method', 'figure', 'unit', 'rep1', 'rep2', 'mean', '95% CI', 'cv'], 'no CPU column for PostMark');
  });

  it('says ok, skipped, failed (and cancelled for a run) in the text and the page alike', () => {
    const measurements = [...withDom0(), failed('iscsi', 'bonnie', 3, 'setup failed: login refused')];
    const okRun: RunRecord = { ...RUN, state: 'succeeded', error: '' };
    const text = resultsTable(okRun, measurements, FULL_SETUP);
    const html = renderReport(okRun, measurements, { setup: FULL_SETUP });
    assert.match(text, /^run run-0042 \(paper-campaign\): ok$/m);
    assert.deepEqual(tableRow(text, 'dom0-nfs', 'bonnie block write').slice(3, 5), ['skipped', 'skipped']);
    assert.deepEqual(tableRow(text, 'nfs', 'bonnie block write').slice(3, 5), ['failed', 'failed']);
    assert.equal(tableRow(text, 'iscsi', 'bonnie block write')[5], 'failed', 'rep 3');
    const section = (name: string) => text.slice(text.indexOf(`\n${name}\n`) + 1).split('\n\n')[0]!.split('\n').slice(1);
    assert.deepEqual(section('skipped'), ['bonnie', 'postmark'].flatMap((b) => [1, 2].map((r) => `  dom0-nfs ${b} rep${r}: skipped: ${SKIP_REASON}`)));
    assert.ok(section('failed').includes('  iscsi bonnie rep3: setup failed: login refused'));
    assert.ok(section('failed').every((l) => !l.includes('skipped:')));

    const count = (outcome: string) => measurements.filter((m) => (m.error === '' ? 'ok' : m.error.startsWith('skipped:') ? 'skipped' : 'failed') === outcome).length;
    assert.ok(html.includes(`<dt>measurements</dt><dd>${count('ok')} ok, ${count('skipped')} skipped, ${count('failed')} failed</dd>`));
    assert.ok(html.includes('<dt>state</dt><dd>ok</dd>') && html.includes('state ok'));
    const skippedSlots = missingSlots(groups(charts(html).find((c) => c.figure === 'dom0/bonnie/block write')!.svg).find((g) => g.method === 'dom0-nfs')!.markup);
    assert.equal(skippedSlots.length, 2);
    for (const slot of skippedSlots) assert.ok(slot.includes('data-outcome="skipped"') && slot.includes(`skipped: ${SKIP_REASON.replace(/'/g, '&#39;')}</title>`), slot);
    const failedSlot = missingSlots(groups(charts(html).find((c) => c.figure === 'bonnie/block write')!.svg).find((g) => g.method === 'iscsi')!.markup);
    assert.ok(failedSlot.some((s) => s.includes('data-outcome="failed"') && s.includes('failed: setup failed: login refused</title>')));
    assert.match(html, /<td class="missing skipped" data-method="dom0-nfs" data-repetition="1" data-outcome="skipped" title="[^"]*">skipped<\/td>/);
    assert.match(html, /<ul class="errors" data-outcome="skipped">/);
    // The words of a run's states: no "succeeded" anywhere a reader looks.
    assert.doesNotMatch(html.replace(/<[^>]*>/g, ' '), /\bsucceeded\b/);
    assert.doesNotMatch(text, /\bsucceeded\b/);
    const cancelled = { ...RUN, state: 'cancelled' as const };
    assert.match(resultsTable(cancelled, measurements), /: cancelled$/m);
    assert.ok(renderReport(cancelled, measurements).includes('<dt>state</dt><dd>cancelled</dd>'));
    assertWellFormed(html);
  });

  it("says each row's data path in this run, from the set-up's drivers", () => {
    const measurements = withDom0();
    const lab = new Map(dataPaths(measurements, FULL_SETUP).map((p) => [p.method, p]));
    assert.deepEqual([...lab.keys()], ['dom0-local', 'dom0-nfs', 'dom0-iscsi', ...PAPER_ORDER]);
    assert.match(lab.get('dom0-local')!.text, /directory on dom0's own local filesystem/);
    assert.match(lab.get('dom0-iscsi')!.text, /tgtd .*qemu-storage-daemon \+ libiscsi.*ext4 mounted in dom0/);
    assert.match(lab.get('dom0-nfs')!.text, /kernel NFS mount in dom0 — not available where dom0's NFS client is libnfs/);
    assert.ok(lab.get('dom0-nfs')!.text.endsWith(`Skipped in this run: ${SKIP_REASON}`));
    assert.match(lab.get('file-local')!.text, /qemu-storage-daemon \(driver=file, buffered/);
    assert.match(lab.get('phy-iscsi')!.text, /dom0's initiator \(qemu-storage-daemon \+ libiscsi/);
    assert.match(lab.get('iscsi')!.text, /the guest's own initiator/);
    assert.match(lab.get('file-nfs')!.text, /libnfs, NFSv3/);
    assert.match(lab.get('nfs')!.basis, /guest nfs-client=kernel \(unavailable\)/);
    assert.match(lab.get('phy-iscsi')!.basis, /^from the set-up: .*dom0 iscsi-initiator=qsd.*dom0 hypervisor=sandbox/);

    const real = new Map(dataPaths(measurements, REAL_SETUP).map((p) => [p.method, p]));
    assert.match(real.get('phy-iscsi')!.text, /LIO .*open-iscsi/);
    assert.doesNotMatch(real.get('phy-iscsi')!.text, /qemu-storage-daemon/);
    assert.match(real.get('file-local')!.text, /Xen file: VBD/);
    // The path as a kernel client makes it; the reason it was skipped is the measurement's own.
    assert.ok(real.get('dom0-nfs')!.text.startsWith("a storage-server volume (an LV), ext4 on it, exported by the kernel's nfsd → a kernel NFS mount in dom0. Skipped in this run: "));
    assert.match(real.get('file-nfs')!.text, /kernel NFS mount in dom0 → image file → Xen file: VBD/);

    const unknown = new Map(dataPaths(measurements).map((p) => [p.method, p]));
    assert.match(unknown.get('phy-iscsi')!.text, /^in the namespace lab, .*qemu-storage-daemon.*; on a real host, .*open-iscsi/);
    assert.equal(unknown.get('phy-iscsi')!.basis, 'drivers not recorded (no set-up)');

    const html = renderReport(RUN, measurements, { setup: FULL_SETUP });
    const section = html.slice(html.indexOf('<section class="data-paths">'), html.indexOf('</section>', html.indexOf('<section class="data-paths">')));
    assert.deepEqual([...section.matchAll(/<li data-method="([^"]*)">/g)].map((m) => m[1]), [...lab.keys()]);
    assert.ok(html.indexOf('<section class="data-paths">') > html.indexOf('data-paper-figure="7"'), 'after the figures');
  });

  it('shows Table 1 per host and Table 2, or "not recorded" for a run without them', () => {
    const html = renderReport(RUN, withDom0(), { setup: FULL_SETUP });
    for (const h of FULL_SETUP.hosts) {
      const row = html.match(new RegExp(`<tr data-role="${h.role}">[\\s\\S]*?</tr>`))![0];
      const cells = [...row.matchAll(/<td[^>]*>([^<]*)<\/td>/g)].map((m) => m[1]);
      assert.deepEqual(cells.slice(0, 5), [h.role, h.name, h.hostname, h.kernel, String(h.cpus)]);
      assert.equal(cells[7], esc(Object.entries(h.tools!).map(([t, v]) => `${t}: ${v}`).join('; ')));
      assert.equal(cells[8], FULL_SETUP.linkRate);
    }
    const iscsi = html.match(/<table class="iscsi-params"[\s\S]*?<\/table>/)![0];
    const param = (name: string, method?: string) => iscsi.match(new RegExp(`<td${method ? ` data-method="${method}"` : ''} data-param="${name}">([^<]*)</td>`))?.[1];
    for (const [name, value] of Object.entries(FULL_SETUP.iscsiParams!)) assert.equal(param(name), value, `requested ${name}`);
    for (const s of FULL_SETUP.iscsiSessions!) for (const [name, value] of Object.entries(s.params)) assert.equal(param(name, s.method), value, `${s.method} ${name}`);
    assert.equal(param('HeaderDigest'), "the driver's default".replace("'", '&#39;'), 'asked for by none');
    assert.equal(param('HeaderDigest', 'iscsi'), '-', 'not reported by that session');
    const nfs = html.match(/<table class="nfs-clients"[\s\S]*?<\/table>/)![0];
    assert.ok(nfs.includes(`<tr data-method="file-nfs"><td>file-nfs</td><td>libnfs</td><td>${FULL_SETUP.nfsClients![0]!.options}</td></tr>`));
    const text = resultsTable(RUN, withDom0(), FULL_SETUP);
    assert.deepEqual(columns(text.split('\n').find((l) => l.startsWith('dom0 '))!).slice(0, 7), ['dom0', 'host0', '6.1.0-18-amd64', '2', '128 MiB', 'memory cgroup /vcstor.vcs/host0', '1gbit']);
    assert.ok(text.includes('  tools on guest0: bonnie++: 2.00a; fio: 3.33-3'));
    assert.ok(text.includes('  iSCSI requested: MaxRecvDataSegmentLength=262144 ImmediateData=Yes'));
    assert.ok(text.includes('  iSCSI session, iscsi (iqn.2024-05.org.vcstor:guest0 → iqn.2024-05.org.vcstor:r1-iscsi): MaxRecvDataSegmentLength=65536 ImmediateData=No'));
    assert.ok(text.includes(`  NFS client, file-nfs (libnfs): ${FULL_SETUP.nfsClients![0]!.options}`));
    assertWellFormed(html);

    const old = renderReport(RUN, campaign(), { setup: OLD_SETUP });
    assert.match(old, /<p class="not-recorded" data-table2="iscsi">iSCSI session parameters: not recorded\.<\/p>/);
    assert.match(old, /<p class="not-recorded" data-table2="nfs">NFS client options: not recorded\.<\/p>/);
    const oldRow = old.match(/<tr data-role="guest">[\s\S]*?<\/tr>/)![0];
    assert.equal((oldRow.match(/<td class="not-recorded">not recorded<\/td>/g) ?? []).length, 4, 'kernel, CPUs, tools, link');
    const oldText = resultsTable(RUN, campaign(), OLD_SETUP);
    assert.ok(oldText.includes('  iSCSI requested: not recorded') && oldText.includes('  iSCSI negotiated: not recorded') && oldText.includes('  NFS clients: not recorded'));
    assertWellFormed(old);
  });

  it("gives dom0's baselines no ratio against phy-local, and each method its ratio against its baseline", () => {
    const measurements = withDom0();
    const ratios = ratiosVsPhyLocal(measurements);
    assert.ok(ratios.every((r) => !r.method.startsWith('dom0-')), 'no dom0 row among the ratios');
    const entry = (method: string, figure: string) => ratios.find((r) => r.method === method && r.figure === figure)!;
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const dom0Local = mean(DOM0_BONNIE['dom0-local']!.map((r) => r.write[0]));
    const dom0Iscsi = mean(DOM0_BONNIE['dom0-iscsi']!.map((r) => r.write[0]));
    for (const method of ['file-local', 'phy-local'] as const) {
      const e = entry(method, 'bonnie block write');
      assert.equal(e.dom0Baseline, 'dom0-local');
      assert.ok(Math.abs(e.dom0Ratio! - mean((BONNIE[method] as Array<[number, number]>).map((r) => r[0])) / dom0Local) < 1e-12);
      assert.ok(e.dom0RatioCi95! > 0);
    }
    const iscsi = entry('iscsi', 'bonnie block write');
    assert.equal(iscsi.dom0Baseline, 'dom0-iscsi');
    assert.ok(Math.abs(iscsi.dom0Ratio! - mean((BONNIE.iscsi as Array<[number, number]>).map((r) => r[0])) / dom0Iscsi) < 1e-12);
    assert.ok(Math.abs(entry('phy-iscsi', 'postmark transactions (whole run)').dom0Ratio! - mean(POSTMARK['phy-iscsi']! as number[]) / mean(DOM0_POSTMARK['dom0-iscsi']!)) < 1e-12);
    assert.equal(entry('file-nfs', 'bonnie block write').dom0Ratio, undefined, 'dom0-nfs was skipped');
    assert.equal(entry('file-nfs', 'bonnie block write').dom0Baseline, undefined);
    assert.equal(entry('file-local', 'sparse-image mean pass throughput').dom0Ratio, undefined, 'dom0 ran no sparse test');
    // phy-local's own ratio is untouched by the dom0 rows.
    assert.equal(entry('phy-local', 'bonnie block write').ratio, 1);

    const html = renderReport(RUN, measurements);
    assert.match(html, new RegExp(`<td class="dom0-ratio" data-method="file-local" data-figure="bonnie/block write" data-baseline="dom0-local" data-ratio="${entry('file-local', 'bonnie block write').dom0Ratio}"`));
    assert.match(html, /<td class="missing" data-method="file-nfs" data-figure="bonnie\/block write" data-baseline="dom0-nfs" title="no dom0-nfs value">-<\/td>/);
    const phyTable = html.slice(html.indexOf('<section class="ratios">'), html.indexOf('</section>', html.indexOf('<section class="ratios">')));
    assert.doesNotMatch(phyTable, /data-method="dom0-/);
    const text = resultsTable(RUN, measurements);
    const vsDom0 = text.slice(text.indexOf('\nvs dom0 ('));
    assert.deepEqual(columns(vsDom0.split('\n').find((l) => l.startsWith('bonnie block write'))!).map((c) => c.split('±')[0]), ['bonnie block write', 'KB/s', ...PAPER_ORDER.map((m) => {
      const r = entry(m, 'bonnie block write').dom0Ratio;
      return r === undefined ? '-' : r.toFixed(2);
    })]);
    assert.doesNotMatch(resultsTable(RUN, campaign()), /\nvs dom0 \(/, 'no such table without dom0 rows');
  });
});

/** As the report escapes text. */
function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

describe('a figure that measured a cache says so under its chart', () => {
  /** An accounting of a run that wrote `written` bytes, of which `reached` reached the backing disk. */
  const accounted = (m: MeasurementRecord, written: number, reached: number): MeasurementRecord => ({
    ...m,
    accounting: { benchmarkWriteBytes: written, backingWriteBytes: reached, reachedBackingPercent: written > 0 ? Math.round((1000 * reached) / written) / 10 : 0, absorbedBytes: Math.max(0, written - reached), heldBy: '', layers: [], drops: [], elapsedMs: 1000 },
  });
  const MIB = 2 ** 20;
  const measurements = ['file-local', 'phy-local', 'iscsi'].flatMap((method) =>
    [1, 2].flatMap((r) => [
      accounted(ok(method, 'bonnie', r, bonnieResult(80_000 + r, 80_000)), 768 * MIB, 775 * MIB),
      // PostMark's few files never left the page cache in one of the methods' runs.
      accounted(ok(method, 'postmark', r, postmarkResult(40_000 + r)), method === 'iscsi' ? 64 * MIB : 0, method === 'iscsi' ? 64 * MIB : 0),
    ]),
  );
  const html = renderReport(RUN, measurements);
  const warnings = [...html.matchAll(/<p class="cache-warning" data-benchmark="([^"]+)">([^<]*)<\/p>/g)].map((w) => [w[1], w[2]]);

  it('warns under the PostMark figure, counting the runs that stayed in a cache, and not under bonnie++ whose bytes reached the disk', () => {
    assert.deepEqual(
      warnings.map(([benchmark]) => benchmark),
      ['postmark'],
    );
    const cached = measurements.filter((m) => m.benchmark === 'postmark' && m.accounting!.backingWriteBytes < MIB).length;
    const all = measurements.filter((m) => m.benchmark === 'postmark').length;
    assert.match(warnings[0]![1]!, new RegExp(`^Measured a cache: in ${cached} of ${all} accounted PostMark runs`));
    const figure = html.slice(html.indexOf('data-paper-figure="6"'));
    assert.ok(figure.indexOf('class="cache-warning"') < figure.indexOf('</figure>'), 'inside Fig. 6');
  });
});
