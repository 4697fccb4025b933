/**
 * The data path of each method, from one run: per method the guest's bonnie++ block
 * write, rewrite and block read (MB/s), the ratio to phy-local, and the bytes that
 * each layer of the method's path wrote (kernel counters, caches dropped first), with
 * the share that reached the backing disk. Prints numbers; asserts nothing.
 *
 *   npm run bench:paths [-- --size 512MiB --repetitions 1 --methods file-local,phy-local]
 *
 * Runs plans/lab-small.yaml's agents with only bonnie++ (O_DIRECT, 8 KiB chunks) in the
 * lab named "vcs": uses it if it is up, else brings it up with the paper's 1 Gbit/s
 * links and the default memory per host (and takes it down again afterwards).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { createLogger } from '../common/log.js';
import { ExecaCommandRunner } from '../common/runner.js';
import { accountingRows, pathText } from '../coordinator/report/index.js';
import { Coordinator } from '../coordinator/coordinator.js';
import { DEFAULT_LAB, Lab } from '../lab/lab.js';
import { REPORT_FIGURES } from '../coordinator/model.js';
import { parseSize } from '../coordinator/plan.js';

const { values } = parseArgs({ options: { size: { type: 'string' }, repetitions: { type: 'string', default: '1' }, methods: { type: 'string' } } });
const PLAN = fileURLToPath(new URL('../../plans/lab-small.yaml', import.meta.url));

async function main(): Promise<void> {
  const log = createLogger({ name: 'bench-paths', level: 'warn' });
  const runner = new ExecaCommandRunner(log);
  const lab = new Lab(runner, log);
  const dir = DEFAULT_LAB.dir;
  const ours = (await lab.status(dir)).lab === undefined;
  if (ours) await lab.up({ ...DEFAULT_LAB, rate: '1gbit' });
  const runsDir = await mkdtemp(path.join(tmpdir(), 'vcstor-bench-paths-'));
  try {
    const plan = parseYaml(await readFile(PLAN, 'utf8')) as { campaign: Record<string, unknown>; nats?: unknown };
    // Twice a host's memory by default, and bonnie++ told that memory: no cache holds the file.
    const ram = DEFAULT_LAB.memoryBytes ?? 0;
    const fileSize = values.size ? parseSize(values.size) : 2 * ram;
    plan.campaign.repetitions = Number(values.repetitions);
    if (values.methods) plan.campaign.methods = values.methods.split(',');
    plan.campaign.benchmarks = { bonnie: { fileSize, chunk: 8192, directIo: true, ...(ram && fileSize >= 2 * ram ? { ram } : {}) } };
    // The guest's filesystem must hold the file; nested images take 3/4 of the volume.
    plan.campaign.volumeSize = Math.max(parseSize(String(plan.campaign.volumeSize)), Math.ceil((fileSize * 1.6) / 2 ** 20) * 2 ** 20);
    delete plan.nats;
    const coordinator = new Coordinator({ runsDir, log });
    const started = performance.now();
    const { run } = await coordinator.submit(JSON.stringify(plan), { source: 'bench:paths' });
    for await (const e of coordinator.watch(run.runId)) if (e.state === 'failed') console.log(`failed: ${e.stepId}: ${e.message}`);
    const final = await coordinator.wait(run.runId);
    const { measurements } = await coordinator.results(run.runId);
    console.log(`bench:paths: bonnie++ ${fileSize / 2 ** 20} MiB O_DIRECT, ${values.repetitions} repetition(s), ${final.state} in ${((performance.now() - started) / 1000).toFixed(0)} s`);

    const figures = REPORT_FIGURES.filter((f) => f.benchmark === 'bonnie');
    const mean = (method: string, read: (r: Record<string, unknown>) => number | undefined) => {
      const xs = measurements.filter((m) => m.method === method && m.benchmark === 'bonnie' && m.result).map((m) => read(m.result!)).filter((x): x is number => x !== undefined);
      return xs.length > 0 ? xs.reduce((a, b) => a + b, 0) / xs.length : undefined;
    };
    const methods = [...new Set(measurements.map((m) => m.method))];
    const rows = accountingRows(measurements);
    const header = ['method', ...figures.map((f) => `${f.figure} MB/s (x phy-local)`), 'written MiB', 'reached disk'];
    console.log(header.join(' | '));
    for (const method of methods) {
      const cells = figures.map((f) => {
        const v = mean(method, f.read);
        const base = mean('phy-local', f.read);
        if (v === undefined) return 'not measured';
        return `${(v / 1000).toFixed(1)} (${base ? (v / base).toFixed(2) : '-'})`;
      });
      const row = rows.find((r) => r.method === method);
      const skipped = measurements.find((m) => m.method === method && m.error.startsWith('skipped'));
      if (skipped) {
        console.log(`${method} | skipped: ${skipped.error.replace(/^skipped: /, '')}`);
        continue;
      }
      console.log([method, ...cells, row ? (row.writtenBytes / 2 ** 20).toFixed(0) : '-', row ? `${row.reachedMinPercent.toFixed(0)}-${row.reachedMaxPercent.toFixed(0)}%` : '-'].join(' | '));
      if (row) console.log(`    ${pathText(row)}`);
    }
  } finally {
    await rm(runsDir, { recursive: true, force: true });
    if (ours) await lab.down(DEFAULT_LAB.name, dir);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
