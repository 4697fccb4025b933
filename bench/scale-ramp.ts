/**
 * How many initiators can one target serve here? Runs a scale plan in the namespace lab
 * — a ramp of load sessions (1, 2, 4, ... --to) against one tgtd target, spread over the
 * lab's dom0 and guest agents — and optionally the control plane (--control-plane N
 * volumes + exports + logins at once). Prints live progress, the table per step, the
 * knee, and what tgtd and the initiator side used at their peak. Asserts nothing.
 *
 *   node dist/bench/scale-ramp.js [--from 1] [--to 1024] [--runtime 5] [--per-daemon 64] [--rw randread]
 *     [--bs 4k] [--iodepth 1] [--luns 1] [--control-plane 0] [--p99-ms 100]
 *     [--name vcs --dir /var/lib/vcstor/lab/vcs --subnet 198.51.100.0/24] [--keep]
 *
 * Uses the lab of that name if it is up, else brings it up (and down again unless --keep).
 */
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { readAioBudget, TGT_AIO_EVENTS_PER_LUN } from '../agent-storage/drivers/tgt.js';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { ExecaCommandRunner } from '../common/runner.js';
import { Coordinator } from '../coordinator/coordinator.js';
import { RunEventBus } from '../coordinator/events.js';
import { DEFAULT_LAB, Lab, labClientTls } from '../lab/lab.js';
import { describeEvent } from '../coordinator/run-commands.js';
import { renderReport, scaleResultsTable } from '../coordinator/report/index.js';
import { scaleLabPlan } from '../lab/plan.js';

const { values } = parseArgs({
  options: {
    from: { type: 'string', default: '1' },
    to: { type: 'string', default: '1024' },
    runtime: { type: 'string', default: '5' },
    'per-daemon': { type: 'string', default: '64' },
    rw: { type: 'string', default: 'randread' },
    bs: { type: 'string', default: '4k' },
    iodepth: { type: 'string', default: '1' },
    luns: { type: 'string', default: '1' },
    'control-plane': { type: 'string', default: '0' },
    'cp-concurrency': { type: 'string', default: '32' },
    'p99-ms': { type: 'string', default: '100' },
    name: { type: 'string', default: DEFAULT_LAB.name },
    dir: { type: 'string' },
    subnet: { type: 'string', default: DEFAULT_LAB.subnet },
    keep: { type: 'boolean', default: false },
  },
});

/** Peak memory and fds of a process, sampled every second while the ramp runs. */
class Peak {
  rss = 0;
  fds = 0;
  threads = 0;
  async sample(pid: number): Promise<void> {
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    this.rss = Math.max(this.rss, Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024);
    this.threads = Math.max(this.threads, Number(/Threads:\s+(\d+)/.exec(status)?.[1] ?? 0));
    this.fds = Math.max(this.fds, (await readdir(`/proc/${pid}/fd`).catch(() => [])).length);
  }
}

/**
 * Every tgt aio LUN takes a kernel AIO context of 128 events from the machine-wide
 * fs.aio-max-nr (65536 by default: 512 LUNs, fewer when anything else uses AIO). The
 * control plane needs one LUN per volume, so the budget is raised first, and said so.
 */
async function ensureAioBudget(luns: number): Promise<void> {
  const budget = await readAioBudget();
  const needed = budget.inUse + luns * TGT_AIO_EVENTS_PER_LUN;
  if (needed <= budget.max) return;
  const max = Math.max(needed * 2, 1_048_576);
  await writeFile('/proc/sys/fs/aio-max-nr', `${max}\n`);
  console.log(`fs.aio-max-nr raised from ${budget.max} to ${max}: ${luns} tgt aio LUNs need ${luns * TGT_AIO_EVENTS_PER_LUN} AIO events, ${budget.inUse} are in use`);
}

async function main(): Promise<void> {
  const log = pino({ level: 'silent' });
  const lab = new Lab(new ExecaCommandRunner(log), log);
  const name = values.name!;
  const dir = values.dir ?? `/var/lib/vcstor/lab/${name}`;
  const ours = (await lab.status(dir)).lab === undefined;
  const record = ours ? await lab.up({ ...DEFAULT_LAB, name, dir, subnet: values.subnet! }) : (await lab.status(dir)).lab!;
  const scratch = await mkdtemp(path.join(tmpdir(), 'vcstor-scale-bench-'));
  const bus = await RunEventBus.connect({ servers: record.natsUrl, name: 'scale bench', log });
  const tgtd = record.processes.find((p) => p.name === 'tgtd');
  const tgtdPeak = new Peak();
  const sampler = setInterval(() => void (tgtd ? tgtdPeak.sample(tgtd.pid) : undefined), 1000);
  try {
    const controlPlane = Number(values['control-plane']);
    await ensureAioBudget(controlPlane + Number(values.luns));
    const plan = scaleLabPlan(record, 'scale-bench', {
      ramp: { from: Number(values.from), to: Number(values.to), factor: 2 },
      luns: Number(values.luns),
      volumeSize: '64MiB',
      fio: { rw: values.rw, blockSize: values.bs, iodepth: Number(values.iodepth), size: '16MiB', runtimeS: Number(values.runtime) },
      sessionsPerDaemon: Number(values['per-daemon']),
      knee: { p99LatencyMs: Number(values['p99-ms']), minGainPercent: 10 },
      ...(controlPlane > 0 ? { controlPlane: { volumes: controlPlane, concurrency: Number(values['cp-concurrency']) } } : {}),
      stepTimeoutS: 900,
    });
    // The lab's agents serve mTLS unless it was made with --insecure.
    plan.tls = labClientTls(record);
    const coordinator = new Coordinator({ runsDir: path.join(scratch, 'runs'), log, publisher: bus });
    const { run } = await coordinator.submit(JSON.stringify(plan), { source: 'scale-bench' });
    console.log(`run ${run.runId}: ramp to ${values.to} initiators over ${record.hosts.filter((h) => h.role !== 'storage').map((h) => h.name).join(', ')}; events on ${record.natsUrl}`);
    for await (const e of coordinator.watch(run.runId)) if (e.state !== 'progress') console.log(describeEvent(e));
    const final = await coordinator.wait(run.runId);
    const { measurements } = await coordinator.results(run.runId);
    console.log(`\n${scaleResultsTable(final, measurements)}`);
    const limits = tgtd ? await readFile(`/proc/${tgtd.pid}/limits`, 'utf8').catch(() => '') : '';
    const nofile = /Max open files\s+(\d+)\s+(\d+)/.exec(limits);
    console.log(`tgtd peak: RSS ${(tgtdPeak.rss / 1e6).toFixed(1)} MB, ${tgtdPeak.fds} fds (limit ${nofile?.[1] ?? '?'}), ${tgtdPeak.threads} threads`);
    const report = path.join(scratch, 'report.html');
    await writeFile(report, renderReport(final, measurements));
    console.log(`report: ${report}`);
  } finally {
    clearInterval(sampler);
    await bus.close();
    if (ours && !values.keep) await lab.down(name, dir);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
