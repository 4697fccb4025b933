import { setMaxListeners } from 'node:events';
import { unary } from '../common/clients.js';
import type { RunBenchmarkResponse__Output } from '../common/generated/vcstor/v1/RunBenchmarkResponse.js';
import { grpcClusterAgents, type ClusterAgents } from './cluster-records.js';
import type { ClusterGuest } from './cluster-plan.js';
import type { CleanupReport, UndoJournal } from './journal.js';
import type { MeasurementRecord, RunRecord } from './model.js';
import { renderSharedReport, sharedResultsTable } from './report/index.js';
import type { RunContext, RunKind } from './run-kind.js';
import { finishRun, settleRun, type StepEmitter } from './run-events.js';
import { sharedGuests, validateSharedPlan, type SharedPlan, type SpaceName } from './shared-plan.js';
import { MEASUREMENT, phaseResult, postmarkResult, storageIoBetween, type GuestPhase, type GuestPostmark, type SharedPhaseResult } from './shared-figures.js';
import { setUpSpace, spaceDataPath, spaceGroups, spaceUnavailable, tearDownSpace, type SpaceOnGuests } from './shared-spaces.js';
import { serverStream } from './stream.js';

/**
 * The shared-space comparison (paper section 5) as a kind of run: for each space of the
 * plan — set up once for all its guests — and each guest count N, the first N guests
 * write a file each at once (fio, O_DIRECT, a crc32c header in every block), every cache
 * on their path is dropped, then each reads back at once the file *another* guest wrote
 * (on a per-guest method, its own: nobody else can see it) and checks every block's
 * pattern and offset. Per phase the run keeps each guest's fio figures and the aggregate:
 * all bytes over the span from the first guest's first I/O to the last guest's last (fio's
 * own clocks), which overlapping jobs cannot inflate. The space is then taken down before
 * the next one, so the run leaves nothing.
 */

interface SharedRun {
  run: RunRecord;
  plan: SharedPlan;
  agents: ClusterAgents;
  journal: UndoJournal;
  signal: AbortSignal;
  step: StepEmitter;
  measurements: MeasurementRecord[];
  count(ok: boolean): Promise<void>;
  save(): Promise<void>;
}

/**
 * Run a shared-space plan: each space set up, measured at every guest count and
 * repetition, and taken down — also after a failure or a cancel.
 * @throws only when the run store cannot be written.
 */
export async function executeShared(plan: SharedPlan, context: RunContext, agents?: ClusterAgents): Promise<RunRecord> {
  const { run, store, events, journal, signal } = context;
  setMaxListeners(1024, signal);
  const step: StepEmitter = (stepId, state, message = '', extra = {}) => events.emit({ stepId, state, message, ...extra });
  const s = plan.shared;
  const reach = agents ?? (await grpcClusterAgents(plan));
  const k: SharedRun = {
    run,
    plan,
    agents: reach,
    journal,
    signal,
    step,
    measurements: [],
    count: async (ok) => {
      if (ok) run.stepsSucceeded++;
      else run.stepsFailed++;
      await store.saveRun(run);
    },
    save: () => store.saveMeasurements(run.runId, k.measurements),
  };
  const guests = sharedGuests(plan);
  run.state = 'running';
  const phasesPerCount = s.postmark ? 3 : 2;
  run.stepsTotal = s.spaces.length * (1 + s.guestCounts.length * s.repetitions * phasesPerCount);
  await store.saveRun(run);
  try {
    await step('run', 'started', `${s.spaces.join(', ')} with ${s.guestCounts.join(', ')} guests at once, ${s.repetitions} repetition(s), ${mib(s.fio.size)} per guest in ${mib(s.fio.blockSize)} blocks`);
    // Every agent must answer before anything is made; their drivers say which spaces can run.
    const infos = await Promise.all([
      ...plan.cluster.storage.map(async (x) => ({ role: 'storage' as const, name: x.name, info: await reach.info('storage', x.address) })),
      ...guests.map(async (g) => ({ role: 'guest' as const, name: g.name, info: await reach.info('guest', g.address) })),
    ]);
    for (const space of s.spaces) {
      if (signal.aborted) break;
      const why = spaceUnavailable(space, infos);
      if (why) {
        await step(`${space}/setup`, 'skipped', `${space} cannot run on these hosts: ${why}`);
        run.stepsTotal -= 1 + s.guestCounts.length * s.repetitions * phasesPerCount;
        await store.saveRun(run);
        continue;
      }
      await measureSpace(k, space, guests);
    }
    settleRun(run, signal);
  } catch (err) {
    settleRun(run, signal, err);
  } finally {
    if (!agents) reach.close();
    await journal.settled();
  }
  return finishRun(run, store, step);
}

/** One space: set up, every count and repetition measured, taken down (a failed teardown fails the run). */
async function measureSpace(k: SharedRun, space: SpaceName, guests: ClusterGuest[]): Promise<void> {
  const { plan, step } = k;
  const short = k.run.runId.slice(-6).toLowerCase().replace(/[^a-z0-9]/g, '');
  let onGuests: SpaceOnGuests | undefined;
  try {
    await step(`${space}/setup`, 'started', spaceDataPath(space, plan.cluster.storage.length));
    try {
      onGuests = await setUpSpace(space, { plan, guests, agents: k.agents, journal: k.journal, signal: k.signal, prefix: `sh-${short}`, say: async (m) => void (await step(`${space}/setup`, 'progress', m)) });
      await step(`${space}/setup`, 'succeeded', onGuests.setup.map((t) => `${t.step} ${t.ms} ms`).join(', '));
      await k.count(true);
    } catch (err) {
      await step(`${space}/setup`, k.signal.aborted ? 'cancelled' : 'failed', err instanceof Error ? err.message : String(err));
      await k.count(false);
      return;
    }
    for (const n of plan.shared.guestCounts) {
      for (let rep = 1; rep <= plan.shared.repetitions; rep++) {
        if (k.signal.aborted) return;
        const participants = guests.slice(0, n);
        for (const phase of ['write', 'read'] as const) {
          const stepId = `${space}/${n}/${rep}/${phase}`;
          await step(stepId, 'started', `${n} guest(s) ${phase === 'write' ? 'write' : 'read back'} at once: ${participants.map((g) => g.name).join(', ')}`);
          try {
            const result = await runPhase(k, onGuests, participants, phase);
            const m: MeasurementRecord = { runId: k.run.runId, method: space, benchmark: MEASUREMENT[phase], repetition: rep, guest: participants.map((g) => g.name).join(','), result: result as unknown as Record<string, unknown>, error: '' };
            k.measurements.push(m);
            await k.save();
            await step(stepId, 'succeeded', `${mb(result.aggregateBytesPerSecond)} MB/s in all, ${result.perGuest.map((p) => `${p.guest} ${mb(p.bytesPerSecond)}`).join(', ')} MB/s; overlap ${(result.overlap * 100).toFixed(0)}%${phase === 'read' ? (onGuests.shared && n > 1 ? '; every file read intact by another guest' : '; every file read intact') : ''}`, { measurement: m });
            await k.count(true);
          } catch (err) {
            const message = err instanceof Error ? err.message : String(err);
            const m: MeasurementRecord = { runId: k.run.runId, method: space, benchmark: MEASUREMENT[phase], repetition: rep, guest: participants.map((g) => g.name).join(','), error: message };
            k.measurements.push(m);
            await k.save();
            await step(stepId, k.signal.aborted ? 'cancelled' : 'failed', message, { measurement: m });
            await k.count(false);
            // A read needs the write before it.
            if (phase === 'write') {
              await step(`${space}/${n}/${rep}/read`, 'skipped', 'its write phase failed');
              await k.count(false);
              break;
            }
          }
        }
        if (plan.shared.postmark) await postmarkPhase(k, onGuests, participants, rep);
      }
    }
  } finally {
    await step(`${space}/teardown`, 'started');
    const left = await tearDownSpace(space, { plan, agents: k.agents, journal: k.journal });
    await step(`${space}/teardown`, left.length === 0 ? 'succeeded' : 'failed', left.length === 0 ? 'nothing left' : `left behind: ${left.join('; ')}; run vcstor cleanup ${k.run.runId}`);
    if (left.length > 0) await k.count(false);
  }
}

/** PostMark on every participant at once, each in a private directory of the space: a `shared-postmark` measurement. */
async function postmarkPhase(k: SharedRun, space: SpaceOnGuests, participants: ClusterGuest[], rep: number): Promise<void> {
  const p = k.plan.shared.postmark!;
  const stepId = `${space.space}/${participants.length}/${rep}/postmark`;
  const guests = participants.map((g) => g.name).join(',');
  await k.step(stepId, 'started', `${participants.length} guest(s) run PostMark at once: ${guests}`);
  try {
    const cacheDropped = await dropCaches(k, participants);
    const before = await sampleStorage(k);
    const perGuest = await Promise.all(
      participants.map(async (g): Promise<GuestPostmark> => {
        const client = k.agents.client('guest', g.address);
        const request = {
          directory: space.directories.get(g.name)!,
          label: `${space.space} ${participants.length} guests postmark`,
          postmark: { transactions: p.transactions, files: p.files, subdirectories: p.subdirectories, minFileSizeBytes: p.minFileSize, maxFileSizeBytes: p.maxFileSize },
        };
        const result = await serverStream((options) => client.RunBenchmark(request, options), {
          what: `PostMark on ${g.name}`,
          timeoutMs: k.plan.cluster.stepTimeoutS * 1000,
          signal: k.signal,
          onMessage: (m: RunBenchmarkResponse__Output) => m.result ?? undefined,
        });
        const wallMs = Number(result.postmark!.wallMs);
        // The run ended with the benchmark's result; PostMark ran for wallMs before that.
        const finishedUnixMs = Number(result.startedUnixMs) + Number(result.elapsedMs);
        return { guest: g.name, transactions: p.transactions, transactionsPerSecond: result.postmark!.transactionsPerWallSecond, wallMs, startedUnixMs: finishedUnixMs - wallMs, finishedUnixMs };
      }),
    );
    const result = postmarkResult(space.space, space.shared, perGuest, cacheDropped, storageIoBetween(before, await sampleStorage(k)));
    const m: MeasurementRecord = { runId: k.run.runId, method: space.space, benchmark: MEASUREMENT.postmark, repetition: rep, guest: guests, result: result as unknown as Record<string, unknown>, error: '' };
    k.measurements.push(m);
    await k.save();
    await k.step(stepId, 'succeeded', `${result.aggregateTransactionsPerSecond.toFixed(0)} transactions/s in all, ${perGuest.map((x) => `${x.guest} ${x.transactionsPerSecond.toFixed(0)}`).join(', ')}`, { measurement: m });
    await k.count(true);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const m: MeasurementRecord = { runId: k.run.runId, method: space.space, benchmark: MEASUREMENT.postmark, repetition: rep, guest: guests, error: message };
    k.measurements.push(m);
    await k.save();
    await k.step(stepId, k.signal.aborted ? 'cancelled' : 'failed', message, { measurement: m });
    await k.count(false);
  }
}

/** Drop the page cache of every storage server and of the participating guests (their dom0s hold none of a guest's own mounts). */
async function dropCaches(k: SharedRun, participants: ClusterGuest[]): Promise<string> {
  const opts = { timeoutMs: k.plan.cluster.stepTimeoutS * 1000, signal: k.signal };
  const hosts = [
    ...k.plan.cluster.storage.map((s) => ({ name: s.name, client: k.agents.client('storage', s.address) })),
    ...participants.map((g) => ({ name: g.name, client: k.agents.client('guest', g.address) })),
  ];
  const drops = await Promise.all(
    hosts.map(async (h) => {
      const r = await unary(h.client, h.client.DropCaches, {}, opts);
      return `${h.name} ${mib(Number(r.cachedBytesBefore))}`;
    }),
  );
  return drops.join(', ');
}

/**
 * One phase of one count: caches dropped, then every participant's fio job at once.
 * Writes: each guest its own file. Reads: on a shared space each guest the file of the
 * guest after it (the last reads the first's), else its own; fio verifies every block.
 */
async function runPhase(k: SharedRun, space: SpaceOnGuests, participants: ClusterGuest[], phase: 'write' | 'read'): Promise<SharedPhaseResult> {
  const f = k.plan.shared.fio;
  const cacheDropped = await dropCaches(k, participants);
  const before = await sampleStorage(k);
  const fileOf = (g: ClusterGuest) => `w-${g.name}`;
  const perGuest = await Promise.all(
    participants.map(async (g, i): Promise<GuestPhase> => {
      const writer = phase === 'read' && space.shared ? participants[(i + 1) % participants.length]! : g;
      const client = k.agents.client('guest', g.address);
      const request = {
        directory: space.directories.get(g.name)!,
        label: `${space.space} ${participants.length} guests ${phase}`,
        fio: {
          // The reader runs the writer's job with verify_only: it reads and checks every block.
          rw: 'write',
          blockSizeBytes: f.blockSize,
          sizeBytes: f.size,
          iodepth: 1,
          numjobs: 1,
          ioengine: 'psync',
          direct: f.direct,
          verify: true,
          sharedFile: fileOf(writer),
          verifyOnly: phase === 'read',
          // The write is timed until it is on the servers' disks (a NAS head's NFS server
          // answers UNSTABLE writes from its memory: 340 MB/s over an 80 MiB/s disk without it).
          endFsync: phase === 'write',
        },
      };
      const result = await serverStream((options) => client.RunBenchmark(request, options), {
        what: `fio on ${g.name}`,
        timeoutMs: k.plan.cluster.stepTimeoutS * 1000,
        signal: k.signal,
        onMessage: (m: RunBenchmarkResponse__Output) => m.result ?? undefined,
      });
      const fio = result.fio!;
      const direction = phase === 'write' ? fio.write : fio.read;
      const bytes = Number(direction?.ioBytes ?? 0);
      const runtimeMs = Number(fio.runtimeMs);
      const finishedUnixMs = Number(fio.finishedUnixMs);
      return {
        guest: g.name,
        file: fileOf(writer),
        writtenBy: writer.name,
        bytes,
        bytesPerSecond: direction?.bandwidthBytesPerSecond ?? 0,
        runtimeMs,
        startedUnixMs: finishedUnixMs - runtimeMs,
        finishedUnixMs,
      };
    }),
  );
  return phaseResult(space.space, space.shared, phase, perGuest, cacheDropped, storageIoBetween(before, await sampleStorage(k)));
}

/** Each storage server's processes' block-layer counters (/proc/PID/io), by host and process. */
async function sampleStorage(k: SharedRun): Promise<Map<string, Map<string, { read: number; write: number }>>> {
  const opts = { timeoutMs: k.plan.cluster.stepTimeoutS * 1000, signal: k.signal };
  const samples = await Promise.all(
    k.plan.cluster.storage.map(async (s) => {
      const client = k.agents.client('storage', s.address);
      const r = await unary(client, client.SampleIo, { paths: [] }, opts);
      const processes = r.counters.filter((c) => c.kind === 'IO_COUNTER_KIND_PROCESS').map((c) => [c.id, { read: Number(c.readBytes), write: Number(c.writeBytes) }] as const);
      return [s.name, new Map(processes)] as const;
    }),
  );
  return new Map(samples);
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(0)} MiB`;
}

function mb(bytesPerSecond: number): string {
  return (bytesPerSecond / 1e6).toFixed(1);
}

/** Undo what a killed shared-space run left (its journal, every space). Idempotent. */
export async function cleanupShared(plan: SharedPlan, journal: UndoJournal, agents?: ClusterAgents): Promise<CleanupReport> {
  const reach = agents ?? (await grpcClusterAgents(plan));
  try {
    const before = journal.pending();
    const left: string[] = [];
    for (const space of plan.shared.spaces) left.push(...(await tearDownSpace(space, { plan, agents: reach, journal })));
    // Groups of spaces the plan no longer names cannot be found by space: say so.
    const known = new Set(plan.shared.spaces.flatMap((space) => spaceGroups(space, journal)));
    for (const group of Object.keys(journal.pending())) if (!known.has(group)) left.push(`${group}: not a space of the plan`);
    const removed = Object.entries(before).flatMap(([group, steps]) => steps.filter((st) => !(journal.pending()[group] ?? []).some((x) => x.step === st.step)).map((st) => `${group}: ${st.step}`));
    return { removed, leftBehind: left };
  } finally {
    if (!agents) reach.close();
  }
}

/** The shared-space comparison as a kind of run: a plan with a `shared` section (and its hosts in `cluster`). */
export const sharedKind: RunKind<SharedPlan> = {
  kind: 'shared',
  claims: (value) => typeof value === 'object' && value !== null && 'shared' in value,
  parse: validateSharedPlan,
  describe: (plan) => `shared spaces ${plan.shared.spaces.join(', ')} with ${plan.shared.guestCounts.join(', ')} guests at once`,
  execute: (plan, context) => executeShared(plan, context),
  cleanup: (plan, journal) => cleanupShared(plan, journal),
  report: {
    table: (run, measurements) => sharedResultsTable(run, measurements),
    html: (run, measurements) => renderSharedReport(run, measurements),
  },
};
