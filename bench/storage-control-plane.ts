/**
 * Control-plane speed of the storage agent in the lab: latency of create+export and of
 * unexport+delete over many volumes, one at a time, then throughput with several
 * concurrent clients. Prints numbers; asserts nothing.
 *
 *   node dist/bench/storage-control-plane.js [--volumes 100] [--clients 8] [--size-mib 16] [--preallocated]
 *
 * Uses the lab named "vcs" if it is up, else brings it up (and down again afterwards).
 */
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { makeClient, unary, type StorageClient } from '../common/clients.js';
import { ExecaCommandRunner } from '../common/runner.js';
import { DEFAULT_LAB, Lab, labCredentials } from '../lab/lab.js';

const { values } = parseArgs({
  options: {
    volumes: { type: 'string', default: '100' },
    clients: { type: 'string', default: '8' },
    'size-mib': { type: 'string', default: '16' },
    preallocated: { type: 'boolean', default: false },
  },
});
const volumes = Number(values.volumes);
const clients = Number(values.clients);
const sizeBytes = Number(values['size-mib']) * 1024 * 1024;
const provisioning = values.preallocated ? ('PROVISIONING_PREALLOCATED' as const) : ('PROVISIONING_SPARSE' as const);
const T = { timeoutMs: 60_000 };
const IQN_PREFIX = 'iqn.2026-11.org.vcstor.lab';

function percentile(sortedMs: number[], p: number): number {
  return sortedMs[Math.min(sortedMs.length - 1, Math.ceil((p / 100) * sortedMs.length) - 1)] ?? NaN;
}

function summary(label: string, samples: number[]): string {
  const sorted = [...samples].sort((a, b) => a - b);
  const mean = sorted.reduce((a, b) => a + b, 0) / sorted.length;
  return `${label.padEnd(24)} n=${String(sorted.length).padStart(4)}  p50 ${percentile(sorted, 50).toFixed(1).padStart(7)} ms  p99 ${percentile(sorted, 99).toFixed(1).padStart(7)} ms  mean ${mean.toFixed(1).padStart(7)} ms`;
}

async function provision(client: StorageClient, name: string): Promise<void> {
  await unary(client, client.CreateVolume, { name, sizeBytes, provisioning }, T);
  await unary(client, client.ExportIscsi, { volume: name, allowedInitiators: [`${IQN_PREFIX}:guest0`], chap: { username: 'bench', password: 'benchsecret12' } }, T);
}

async function release(client: StorageClient, name: string): Promise<void> {
  await unary(client, client.UnexportIscsi, { volume: name }, T);
  await unary(client, client.DeleteVolume, { name }, T);
}

async function timed(work: () => Promise<void>): Promise<number> {
  const started = performance.now();
  await work();
  return performance.now() - started;
}

async function main(): Promise<void> {
  const log = pino({ level: 'silent' });
  const lab = new Lab(new ExecaCommandRunner(log), log);
  const dir = `/var/lib/vcstor/lab/${DEFAULT_LAB.name}`;
  const ours = (await lab.status(dir)).lab === undefined;
  const record = ours ? await lab.up({ ...DEFAULT_LAB, dir }) : (await lab.status(dir)).lab!;
  const address = record.hosts.find((h) => h.role === 'storage')!.agentAddress;
  const credentials = await labCredentials(record);
  const pool = Array.from({ length: clients }, () => makeClient('storage', address, credentials));
  try {
    const client = pool[0]!;
    console.log(`storage agent ${address}; ${volumes} volumes of ${values['size-mib']} MiB, ${provisioning === 'PROVISIONING_SPARSE' ? 'sparse' : 'zero-filled'}; ${clients} concurrent clients`);
    const up: number[] = [];
    const down: number[] = [];
    for (let i = 0; i < volumes; i++) up.push(await timed(() => provision(client, `bench-${i}`)));
    for (let i = 0; i < volumes; i++) down.push(await timed(() => release(client, `bench-${i}`)));
    console.log(summary('create+export', up));
    console.log(summary('unexport+delete', down));
    const firstTen = up.slice(0, 10).reduce((a, b) => a + b, 0) / Math.min(10, up.length);
    const lastTen = up.slice(-10).reduce((a, b) => a + b, 0) / Math.min(10, up.length);
    console.log(`${'k-th export'.padEnd(24)} first 10 mean ${firstTen.toFixed(1)} ms, last 10 mean ${lastTen.toFixed(1)} ms`);

    // Each client works through its own volumes: 4 RPCs per volume.
    const perClient = Math.ceil(volumes / clients);
    const started = performance.now();
    await Promise.all(
      pool.map(async (c, k) => {
        for (let i = 0; i < perClient; i++) {
          await provision(c, `bench-c${k}-${i}`);
          await release(c, `bench-c${k}-${i}`);
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const rpcs = perClient * clients * 4;
    console.log(`${`${clients} clients`.padEnd(24)} ${rpcs} RPCs in ${seconds.toFixed(2)} s: ${(rpcs / seconds).toFixed(1)} ops/s (${((perClient * clients) / seconds).toFixed(1)} volume lifecycles/s)`);
  } finally {
    for (const c of pool) c.close();
    if (ours) await lab.down(DEFAULT_LAB.name, dir);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
