/**
 * What running bonnie++ through the guest agent costs, against running it directly on
 * the same filesystem: several alternating runs of each, wall time and block
 * throughput, and their ratios. Prints numbers; asserts nothing.
 *
 *   node dist/bench/bonnie-overhead.js [--runs 3] [--size-mib 256]
 *
 * Both run O_DIRECT (-D, so -f): otherwise this machine's page cache makes bonnie++
 * print "+++++" for every throughput.
 *
 * Uses the lab named "vcs" if it is up, else brings it up (and down again afterwards);
 * the filesystem is the file-local method's (an image on dom0 given to the guest).
 */
import type * as grpc from '@grpc/grpc-js';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import type { BenchmarkResult__Output } from '../common/generated/vcstor/v1/BenchmarkResult.js';
import type { RunBenchmarkResponse__Output } from '../common/generated/vcstor/v1/RunBenchmarkResponse.js';
import { ExecaCommandRunner } from '../common/runner.js';
import { parseBonnieCsv } from '../host-storage/benchmarks/parsers.js';
import { DEFAULT_LAB, Lab } from '../lab/lab.js';
import { provisionMethod } from '../coordinator/methods.js';
import { labMethodTarget } from '../lab/plan.js';
import { labCredentials } from '../lab/lab.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' }, 'size-mib': { type: 'string', default: '256' } } });
const runs = Number(values.runs);
const sizeMib = Number(values['size-mib']);
const MIB = 1024 * 1024;

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

async function main(): Promise<void> {
  const log = pino({ level: 'silent' });
  const runner = new ExecaCommandRunner(log);
  const lab = new Lab(runner, log);
  const dir = `/var/lib/vcstor/lab/${DEFAULT_LAB.name}`;
  const ours = (await lab.status(dir)).lab === undefined;
  const record = ours ? await lab.up({ ...DEFAULT_LAB, dir }) : (await lab.status(dir)).lab!;
  const target = labMethodTarget(record, await labCredentials(record), { sizeBytes: (sizeMib * 2 + 64) * MIB, prefix: 'ovh' });
  const disk = await provisionMethod('file-local', target);
  const guestNs = record.hosts.find((h) => h.role === 'guest')!.namespace;
  const direct: Array<{ ms: number; write: number; read: number }> = [];
  const agent: Array<{ ms: number; write: number; read: number }> = [];
  try {
    for (let i = 0; i < runs; i++) {
      // Directly: the same bonnie++ command the agent runs, in the guest's namespace.
      const work = await mkdtemp(path.join(disk.guestMountpoint, 'direct-'));
      let started = performance.now();
      const { stdout } = await runner.run('nsenter', [`--net=/run/netns/${guestNs}`, '--', 'bonnie++', '-d', work, '-s', `${sizeMib}:8192`, '-r', String(Math.floor(sizeMib / 2)), '-n', '0', '-u', 'root', '-q', '-m', 'vcstor', '-f', '-D'], { timeoutMs: 600_000 });
      const ms = performance.now() - started;
      await rm(work, { recursive: true, force: true });
      const d = parseBonnieCsv(stdout);
      direct.push({ ms, write: d.writeBlock!.perSecond, read: d.readBlock!.perSecond });

      // Through the agent: RunBenchmark, streamed.
      started = performance.now();
      const result = await new Promise<BenchmarkResult__Output>((resolve, reject) => {
        let last: BenchmarkResult__Output | undefined;
        const call = target.guest.RunBenchmark({ directory: disk.guestMountpoint, bonnie: { fileSizeBytes: sizeMib * MIB, directIo: true } }, { deadline: Date.now() + 600_000 });
        call.on('data', (m: RunBenchmarkResponse__Output) => (last = m.result ?? last));
        call.on('error', (err: grpc.ServiceError) => reject(new Error(err.details)));
        call.on('end', () => (last ? resolve(last) : reject(new Error('no result'))));
      });
      agent.push({ ms: performance.now() - started, write: result.bonnie!.writeBlock!.perSecond, read: result.bonnie!.readBlock!.perSecond });
      console.log(`run ${i + 1}: direct ${direct[i]!.ms.toFixed(0)} ms (write ${direct[i]!.write} KB/s, read ${direct[i]!.read} KB/s) | agent ${agent[i]!.ms.toFixed(0)} ms (write ${agent[i]!.write} KB/s, read ${agent[i]!.read} KB/s)`);
    }
    // bonnie++ prints "+++++" (parsed as 0) for what it could not time: no ratio then.
    const ratio = (f: (x: { ms: number; write: number; read: number }) => number) => {
      const a = mean(agent.map(f));
      const d = mean(direct.map(f));
      return a > 0 && d > 0 ? (a / d).toFixed(3) : 'not measured (page cache)';
    };
    console.log(`bonnie++ ${sizeMib} MiB, ${runs} runs each: agent/direct wall time ${ratio((x) => x.ms)}, block write ${ratio((x) => x.write)}, block read ${ratio((x) => x.read)}`);
  } finally {
    await disk.teardown();
    for (const c of [target.storage, target.dom0, target.guest]) c.close();
    if (ours) await lab.down(DEFAULT_LAB.name, dir);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
