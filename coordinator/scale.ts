import type * as grpc from '@grpc/grpc-js';
import { setMaxListeners } from 'node:events';
import { open, readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { channelCredentials, getAgentInfo, makeClient, unary, type Dom0Client, type GuestClient, type StorageClient } from '../common/clients.js';
import { fromGrpcError, VcstorError } from '../common/errors.js';
import type { LoadSessionSpec } from '../common/generated/vcstor/v1/LoadSessionSpec.js';
import type { RunLoadRequest } from '../common/generated/vcstor/v1/RunLoadRequest.js';
import type { RunLoadResponse__Output } from '../common/generated/vcstor/v1/RunLoadResponse.js';
import type { RunLoadResult__Output } from '../common/generated/vcstor/v1/RunLoadResult.js';
import type { StartLoadSessionsResponse__Output } from '../common/generated/vcstor/v1/StartLoadSessionsResponse.js';
import { histogramPercentile, mergeHistogram, type Histogram } from '../host-storage/load-fio.js';
import type { Logger } from '../common/log.js';
import type { RunEvents } from './campaign.js';
import type { MeasurementRecord, ProgressInfo, RunEventRecord, RunRecord, StepState } from './model.js';
import type { ScalePlan } from './scale-plan.js';
import type { RunStore } from './store.js';

/**
 * The scale test (paper section 5): one target, a ramp of initiator counts spread over
 * the plan's dom0/guest agents. Per step every initiator logs in at once (a login storm,
 * each its own IQN: the agents' load sessions), the target is asked whom it lists, every
 * initiator runs the same fio job, all log out, and the target must list none of them.
 * Each step's figures are a measurement (`scale-step`) of the run; the knee — the count
 * beyond which aggregate throughput stops growing or p99 latency passes the threshold —
 * is one more (`scale-knee`). Optionally the control plane is measured the same way:
 * N volumes, exports and logins at once, with a latency histogram per stage.
 */

type InitiatorClient = GuestClient | Dom0Client;

/** What one step of the ramp measured. Kept as the `result` of a `scale-step` measurement. */
export interface ScaleStepResult {
  count: number;
  /** Sessions per initiator agent. */
  perAgent: Record<string, number>;
  loggedIn: number;
  failedLogins: number;
  loginP50Ms: number;
  loginP99Ms: number;
  loginMaxMs: number;
  stormMs: number;
  /** Of this step's initiator IQNs, how many the target listed while they were logged in. */
  targetSessions: number;
  /** ... and how many it still listed after the logout (0 when all logged out). */
  targetSessionsAfterLogout: number;
  bytesPerSecond: number;
  iops: number;
  perInitiatorBytesPerSecond: { mean: number; min: number; max: number };
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  fioFailed: number;
  /** The initiator side's processes (qemu-storage-daemon) at the peak of the step. */
  initiatorRssBytes: number;
  initiatorFds: number;
  initiatorDaemons: number;
  logoutMs: number;
  errors: string[];
}

export interface Knee {
  /** The largest count that still grew throughput enough with p99 under the threshold; 0 when even the first step failed the rule. */
  count: number;
  /** False when the ramp ended before the knee (throughput still growing at its last count). */
  reached: boolean;
  limitedBy: 'throughput' | 'latency' | 'logins' | 'none';
  reason: string;
}

/**
 * The knee of a ramp. Steps are taken in count order, up to the first whose p99 passes
 * `p99LatencyMs` or where a login failed. Among those, throughput "still grows" at a step
 * that beats the best so far by at least `minGainPercent`: the knee is the last such step
 * — the count beyond which more initiators bring no more throughput. Comparing with the
 * best so far, not the previous step, keeps one noisy step (a 2-core lab) from ending the
 * ramp early. Pure: the unit tests feed it figures.
 */
export function findKnee(
  steps: ReadonlyArray<Pick<ScaleStepResult, 'count' | 'bytesPerSecond' | 'p99Ms' | 'failedLogins'>>,
  rule: { p99LatencyMs: number; minGainPercent: number },
): Knee {
  const sorted = [...steps].sort((a, b) => a.count - b.count);
  const cutAt = sorted.findIndex((s) => s.failedLogins > 0 || s.p99Ms > rule.p99LatencyMs);
  const usable = cutAt < 0 ? sorted : sorted.slice(0, cutAt);
  const cut = cutAt < 0 ? undefined : sorted[cutAt]!;
  const cutReason = (c: (typeof sorted)[number]) =>
    c.failedLogins > 0 ? `${c.failedLogins} of ${c.count} logins failed` : `p99 ${c.p99Ms.toFixed(2)} ms at ${c.count} initiators passes ${rule.p99LatencyMs} ms`;
  if (usable.length === 0) {
    return cut ? { count: 0, reached: true, limitedBy: cut.failedLogins > 0 ? 'logins' : 'latency', reason: cutReason(cut) } : { count: 0, reached: false, limitedBy: 'none', reason: 'no steps' };
  }
  let best = usable[0]!;
  for (const s of usable.slice(1)) if (s.bytesPerSecond >= best.bytesPerSecond * (1 + rule.minGainPercent / 100)) best = s;
  const beyond = usable.filter((s) => s.count > best.count);
  if (beyond.length > 0) {
    const most = Math.max(...beyond.map((s) => s.bytesPerSecond));
    const gain = best.bytesPerSecond > 0 ? (100 * (most - best.bytesPerSecond)) / best.bytesPerSecond : 0;
    return {
      count: best.count,
      reached: true,
      limitedBy: 'throughput',
      reason: `throughput peaked at ${(best.bytesPerSecond / 1e6).toFixed(1)} MB/s with ${best.count} initiators; up to ${beyond[beyond.length - 1]!.count} gained at most ${gain.toFixed(1)}% (less than ${rule.minGainPercent}%)`,
    };
  }
  if (cut) return { count: best.count, reached: true, limitedBy: cut.failedLogins > 0 ? 'logins' : 'latency', reason: cutReason(cut) };
  return { count: best.count, reached: false, limitedBy: 'none', reason: `still growing at ${best.count} initiators: the ramp ended before the knee` };
}

/** p-th percentile (nearest rank) of plain samples; 0 for none. */
export function samplePercentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return 0;
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** A latency summary and histogram (power-of-two ms buckets) of one control-plane stage. */
export interface StageHistogram {
  n: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Upper bound in ms ("<=1", "<=2", ...) → count. */
  buckets: Record<string, number>;
}

export function stageHistogram(samples: readonly number[]): StageHistogram {
  const buckets: Record<string, number> = {};
  for (const ms of samples) {
    let bound = 1;
    while (ms > bound) bound *= 2;
    buckets[`<=${bound}`] = (buckets[`<=${bound}`] ?? 0) + 1;
  }
  return { n: samples.length, p50Ms: samplePercentile(samples, 50), p95Ms: samplePercentile(samples, 95), p99Ms: samplePercentile(samples, 99), maxMs: samples.length ? Math.max(...samples) : 0, buckets };
}

/** Least-squares slope of y over x (ms per added export): the k-th export's extra cost. */
export function slope(ys: readonly number[]): number {
  const n = ys.length;
  if (n < 2) return 0;
  const mx = (n - 1) / 2;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  ys.forEach((y, x) => {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  });
  return num / den;
}

/** An undo entry of a scale run, journaled before the change it undoes. */
interface ScaleUndo {
  kind: 'volume' | 'export' | 'load-set';
  /** Volume name, or load set id. */
  name: string;
  /** For load sets: the initiator agent's index in the plan. */
  agent?: number;
}

/** The scale run's journal: scale-undo.json in the run's directory. */
class ScaleJournal {
  private readonly pending = new Map<string, ScaleUndo>();
  private writes: Promise<unknown> = Promise.resolve();

  constructor(private readonly file: string) {}

  static async load(file: string): Promise<ScaleJournal> {
    const journal = new ScaleJournal(file);
    const entries = JSON.parse(await readFile(file, 'utf8').catch(() => '[]')) as ScaleUndo[];
    for (const e of entries) journal.pending.set(ScaleJournal.key(e), e);
    return journal;
  }

  private static key(e: ScaleUndo): string {
    return `${e.kind}:${e.agent ?? ''}:${e.name}`;
  }

  entries(): ScaleUndo[] {
    return [...this.pending.values()];
  }

  add(e: ScaleUndo): Promise<void> {
    this.pending.set(ScaleJournal.key(e), e);
    return this.flush();
  }

  done(e: ScaleUndo): Promise<void> {
    this.pending.delete(ScaleJournal.key(e));
    return this.flush();
  }

  private flush(): Promise<void> {
    const text = `${JSON.stringify(this.entries(), null, 1)}\n`;
    const write = this.writes.then(async () => {
      const tmp = `${this.file}.tmp`;
      const handle = await open(tmp, 'w', 0o600);
      try {
        await handle.writeFile(text);
      } finally {
        await handle.close();
      }
      await rename(tmp, this.file);
    });
    this.writes = write.catch(() => undefined);
    return write;
  }
}

interface ScaleAgents {
  storage: StorageClient;
  initiators: Array<{ name: string; iqnPrefix: string; client: InitiatorClient }>;
  credentials: grpc.ChannelCredentials;
  close(): void;
}

async function scaleAgents(plan: ScalePlan): Promise<ScaleAgents> {
  const credentials = await channelCredentials('insecure' in plan.tls ? { insecure: true } : { ca: plan.tls.ca, cert: plan.tls.cert, key: plan.tls.key });
  const storage = makeClient('storage', plan.agents.storage.address, credentials);
  const initiators = plan.agents.initiators.map((a) => ({ name: a.name, iqnPrefix: a.iqnPrefix, client: a.role === 'guest' ? makeClient('guest', a.address, credentials) : makeClient('dom0', a.address, credentials) }));
  return { storage, initiators, credentials, close: () => [storage, ...initiators.map((i) => i.client)].forEach((c) => c.close()) };
}

/** RunLoad to its result, passing progress on. */
function runLoad(client: InitiatorClient, request: RunLoadRequest, timeoutMs: number, signal: AbortSignal, onProgress: (p: ProgressInfo) => void): Promise<RunLoadResult__Output> {
  return new Promise((resolve, reject) => {
    const call = client.RunLoad(request, { deadline: Date.now() + timeoutMs });
    const onAbort = () => call.cancel();
    signal.addEventListener('abort', onAbort, { once: true });
    let result: RunLoadResult__Output | undefined;
    call.on('data', (m: RunLoadResponse__Output) => {
      if (m.progress) onProgress({ phase: m.progress.phase, percent: m.progress.percent, bytesDone: 0, bytesTotal: 0, elapsedMs: m.progress.elapsedMs, message: m.progress.message });
      if (m.result) result = m.result;
    });
    call.on('error', (err: grpc.ServiceError) => {
      signal.removeEventListener('abort', onAbort);
      reject(fromGrpcError(err, 'RunLoad'));
    });
    call.on('end', () => {
      signal.removeEventListener('abort', onAbort);
      if (result) resolve(result);
      else reject(new VcstorError('INTERNAL', 'RunLoad: the stream ended without a result'));
    });
  });
}

/** Run `work` over `items` with at most `limit` at once. */
async function pool<T>(items: readonly T[], limit: number, work: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        await work(items[i]!, i);
      }
    }),
  );
}

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));

/**
 * Run a scale plan: set up the target, run every step of the ramp, then the control plane
 * if the plan asks, and take everything down — also after a failure or a cancel. Every
 * volume, export and load set is journaled before it is made (scale-undo.json), so
 * `cleanupScaleRun` removes what a killed coordinator left.
 */
export async function executeScale(o: { run: RunRecord; plan: ScalePlan; store: RunStore; events: RunEvents; log: Logger; signal: AbortSignal }): Promise<RunRecord> {
  const { run, plan, store, events, signal } = o;
  // Every call of a step (up to one per volume, 32 at once) listens on the run's signal.
  setMaxListeners(4096, signal);
  const s = plan.scale;
  const agents = await scaleAgents(plan);
  const journal = await ScaleJournal.load(path.join(store.dir(run.runId), 'scale-undo.json'));
  const measurements: MeasurementRecord[] = [];
  const stepMs = s.stepTimeoutS * 1000;
  const T = { timeoutMs: stepMs, signal };
  const short = run.runId.slice(-6);
  const chap = { username: plan.chap.username, password: plan.chapPassword };
  const step = (stepId: string, state: StepState, message = '', extra: Partial<RunEventRecord> = {}) => events.emit({ stepId, state, message, ...extra });
  const record = async (m: MeasurementRecord, stepId: string, ok: boolean, message: string) => {
    measurements.push(m);
    await store.saveMeasurements(run.runId, measurements);
    if (ok) run.stepsSucceeded++;
    else run.stepsFailed++;
    await store.saveRun(run);
    await step(stepId, ok ? 'succeeded' : signal.aborted ? 'cancelled' : 'failed', message, { measurement: m });
  };
  const initiatorNames = agents.initiators.map((a) => a.name).join(',');
  run.state = 'running';
  run.stepsTotal = plan.counts.length + 1 + (s.controlPlane ? 1 : 0);
  await store.saveRun(run);
  const volumes = Array.from({ length: s.luns }, (_, k) => `sc-${short}-l${k}`);
  const targets: Array<{ portal: string; iqn: string; lun: number }> = [];
  try {
    for (const [role, address] of [['storage', plan.agents.storage.address], ...plan.agents.initiators.map((a) => [a.name, a.address])] as Array<[string, string]>) {
      await getAgentInfo(address, agents.credentials, 10_000).catch((err: unknown) => {
        throw new VcstorError('UNAVAILABLE', `the ${role} agent at ${address} does not answer: ${errorText(err)}`);
      });
    }
    await step('run', 'started', `${plan.counts.length} steps (${plan.counts.join(', ')} initiators) over ${agents.initiators.length} agents, ${s.luns} LUN(s)${s.controlPlane ? `, control plane ${s.controlPlane.volumes} volumes` : ''}`);
    await step('setup', 'started');
    for (const volume of volumes) {
      await journal.add({ kind: 'volume', name: volume });
      await unary(agents.storage, agents.storage.CreateVolume, { name: volume, sizeBytes: s.volumeSize, provisioning: s.sparse ? 'PROVISIONING_SPARSE' : 'PROVISIONING_PREALLOCATED' }, T);
      await journal.add({ kind: 'export', name: volume });
      const exported = await unary(agents.storage, agents.storage.ExportIscsi, { volume, allowedAddresses: [s.allowedAddresses], chap }, T);
      const t = exported.target!;
      targets.push({ portal: t.portals[0] ?? `${plan.agents.storage.host}:3260`, iqn: t.iqn, lun: t.luns[0]?.lun ?? 0 });
    }
    await step('setup', 'succeeded', `${volumes.length} volume(s) exported: ${targets.map((t) => t.iqn).join(', ')}`);

    const stepResults: ScaleStepResult[] = [];
    for (const count of plan.counts) {
      if (signal.aborted) break;
      const stepId = `scale/${count}`;
      const result = await runStep(count, stepId);
      stepResults.push(result);
      const ok = result.errors.length === 0;
      await record(
        { runId: run.runId, method: 'scale', benchmark: 'scale-step', repetition: count, guest: initiatorNames, result: result as unknown as Record<string, unknown>, error: result.errors.join('; ') },
        stepId,
        ok,
        `${result.loggedIn}/${count} logged in (target listed ${result.targetSessions}), ${(result.bytesPerSecond / 1e6).toFixed(1)} MB/s, ${result.iops.toFixed(0)} IOPS, p99 ${result.p99Ms.toFixed(2)} ms, login p99 ${result.loginP99Ms.toFixed(0)} ms`,
      );
    }
    const knee = findKnee(
      stepResults.filter((r) => r.loggedIn > 0),
      s.knee,
    );
    await record(
      { runId: run.runId, method: 'scale', benchmark: 'scale-knee', repetition: 0, guest: initiatorNames, result: { knee, rule: s.knee, counts: stepResults.map((r) => r.count) }, error: '' },
      'knee',
      true,
      `knee at ${knee.count} initiators${knee.reached ? '' : ' (not reached)'}: ${knee.reason}`,
    );
    if (s.controlPlane && !signal.aborted) {
      const cp = await controlPlane(s.controlPlane);
      await record({ runId: run.runId, method: 'scale', benchmark: 'control-plane', repetition: s.controlPlane.volumes, guest: initiatorNames, result: cp.result, error: cp.errors.join('; ') }, 'control-plane', cp.errors.length === 0, cp.summary);
    }
    run.state = signal.aborted ? 'cancelled' : run.stepsFailed > 0 ? 'failed' : 'succeeded';
    if (signal.aborted) run.error = 'cancelled';
  } catch (err) {
    run.state = signal.aborted ? 'cancelled' : 'failed';
    run.error = errorText(err);
  } finally {
    await step('teardown', 'started');
    const left = await undoAll(agents, journal, 120_000);
    await step('teardown', left.length === 0 ? 'succeeded' : 'failed', left.length === 0 ? 'nothing left' : `left behind: ${left.join('; ')}; run vcstor cleanup ${run.runId}`);
    if (left.length > 0 && run.state === 'succeeded') {
      run.state = 'failed';
      run.error = `teardown left ${left.length} behind`;
    }
    agents.close();
  }
  run.finishedUnixMs = Date.now();
  await store.saveRun(run);
  await step('run', run.state === 'succeeded' ? 'succeeded' : run.state === 'cancelled' ? 'cancelled' : 'failed', run.error || `${run.stepsSucceeded} steps ok, ${run.stepsFailed} failed`, { runState: run.state });
  return run;

  /** One step: storm, target check, fio, logout, target check. */
  async function runStep(count: number, stepId: string): Promise<ScaleStepResult> {
    const errors: string[] = [];
    const A = agents.initiators.length;
    const sets = agents.initiators.map((a, k) => ({ agent: k, a, setId: `sc-${short}-c${count}`, sessions: [] as LoadSessionSpec[] }));
    for (let i = 0; i < count; i++) {
      const set = sets[i % A]!;
      set.sessions.push({ target: targets[i % targets.length]!, initiatorIqn: `${set.a.iqnPrefix}.${i}` });
    }
    const active = sets.filter((x) => x.sessions.length > 0);
    const iqns = new Set(active.flatMap((x) => x.sessions.map((y) => y.initiatorIqn!)));
    await step(stepId, 'started', `${count} initiators: ${active.map((x) => `${x.a.name} ${x.sessions.length}`).join(', ')}`);
    const logins: StartLoadSessionsResponse__Output[] = [];
    let fio: RunLoadResult__Output[] = [];
    let targetSessions = 0;
    let logoutMs = 0;
    try {
      for (const x of active) await journal.add({ kind: 'load-set', name: x.setId, agent: x.agent });
      // The storm: every agent at once.
      const started = await Promise.allSettled(
        active.map((x) =>
          unary(x.a.client, x.a.client.StartLoadSessions, { setId: x.setId, sessions: x.sessions, chap, sessionsPerDaemon: s.sessionsPerDaemon, loginTimeoutMs: s.loginTimeoutS * 1000 }, T),
        ),
      );
      for (const [k, r] of started.entries()) {
        if (r.status === 'fulfilled') logins.push(r.value);
        else errors.push(`${active[k]!.a.name}: ${errorText(r.reason)}`);
      }
      const loggedIn = logins.reduce((n, l) => n + l.loggedIn, 0);
      await step(stepId, 'progress', '', { progress: { phase: 'logged in', percent: 10, bytesDone: 0, bytesTotal: 0, elapsedMs: 0, message: `${loggedIn}/${count} logged in` } });
      // What the target itself lists: every session must really be there.
      const listed = await unary(agents.storage, agents.storage.ListIscsiTargets, {}, T);
      targetSessions = listed.targets.flatMap((t) => t.sessions).filter((x) => iqns.has(x.initiatorIqn)).length;
      if (errors.length === 0 && loggedIn > 0) {
        let lastProgress = 0;
        const loadStarted = Date.now();
        const runs = await Promise.allSettled(
          active.map((x) =>
            runLoad(x.a.client, { setId: x.setId, fio: { rw: s.fio.rw, blockSizeBytes: s.fio.blockSize, iodepth: s.fio.iodepth, sizeBytes: s.fio.size, runtimeS: s.fio.runtimeS, rwmixRead: s.fio.rwmixRead } }, stepMs, signal, (p) => {
              if (Date.now() - lastProgress < 1000) return;
              lastProgress = Date.now();
              void step(stepId, 'progress', '', { progress: { ...p, percent: 10 + 0.8 * p.percent, elapsedMs: Date.now() - loadStarted, message: `fio on ${count} initiators` } });
            }),
          ),
        );
        fio = runs.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
        runs.forEach((r, k) => {
          if (r.status === 'rejected') errors.push(`${active[k]!.a.name}: ${errorText(r.reason)}`);
        });
      }
    } catch (err) {
      errors.push(errorText(err));
    } finally {
      const t0 = performance.now();
      for (const x of active) {
        try {
          await unary(x.a.client, x.a.client.StopLoadSessions, { setId: x.setId }, { timeoutMs: 120_000 });
          await journal.done({ kind: 'load-set', name: x.setId, agent: x.agent });
        } catch (err) {
          errors.push(`stop ${x.a.name}: ${errorText(err)}`);
        }
      }
      logoutMs = performance.now() - t0;
    }
    // The target must have dropped every session (tgtd notices closed connections at once).
    let after = -1;
    for (let tries = 0; tries < 50; tries++) {
      const listed = await unary(agents.storage, agents.storage.ListIscsiTargets, {}, { timeoutMs: 30_000 }).catch(() => undefined);
      if (listed) after = listed.targets.flatMap((t) => t.sessions).filter((x) => iqns.has(x.initiatorIqn)).length;
      if (after === 0) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    if (after !== 0) errors.push(`the target still lists ${after} of this step's sessions after logout`);
    const histogram: Histogram = new Map();
    for (const f of fio) mergeHistogram(histogram, f.latencyHistogram);
    const perInitiator = fio.flatMap((f) => f.sessions.map((x) => x.readBytesPerSecond + x.writeBytesPerSecond));
    const loginMs = logins.flatMap((l) => l.sessions.filter((x) => x.loggedIn).map((x) => x.loginMs));
    const failedLogins = logins.reduce((n, l) => n + l.failed, 0) + (count - logins.reduce((n, l) => n + l.sessions.length, 0));
    const loggedIn = logins.reduce((n, l) => n + l.loggedIn, 0);
    if (failedLogins > 0) {
      const first = logins.flatMap((l) => l.sessions).find((x) => !x.loggedIn && x.error);
      if (first) errors.push(`${failedLogins} logins failed (first: ${first.initiatorIqn}: ${first.error})`);
    }
    if (targetSessions !== loggedIn) errors.push(`the target listed ${targetSessions} of the ${loggedIn} sessions the initiators logged in`);
    const usage = fio.length > 0 ? fio.map((f) => f.usage) : logins.map((l) => l.usage);
    return {
      count,
      perAgent: Object.fromEntries(active.map((x) => [x.a.name, x.sessions.length])),
      loggedIn,
      failedLogins,
      loginP50Ms: samplePercentile(loginMs, 50),
      loginP99Ms: samplePercentile(loginMs, 99),
      loginMaxMs: loginMs.length ? Math.max(...loginMs) : 0,
      stormMs: Math.max(0, ...logins.map((l) => l.stormMs)),
      targetSessions,
      targetSessionsAfterLogout: after,
      bytesPerSecond: fio.reduce((n, f) => n + f.bytesPerSecond, 0),
      iops: fio.reduce((n, f) => n + f.iops, 0),
      perInitiatorBytesPerSecond: {
        mean: perInitiator.length ? perInitiator.reduce((a, b) => a + b, 0) / perInitiator.length : 0,
        min: perInitiator.length ? Math.min(...perInitiator) : 0,
        max: perInitiator.length ? Math.max(...perInitiator) : 0,
      },
      p50Ms: histogramPercentile(histogram, 50) / 1e6,
      p95Ms: histogramPercentile(histogram, 95) / 1e6,
      p99Ms: histogramPercentile(histogram, 99) / 1e6,
      fioFailed: fio.reduce((n, f) => n + f.failed, 0),
      initiatorRssBytes: usage.reduce((n, u) => n + (u?.rssBytes ?? 0), 0),
      initiatorFds: usage.reduce((n, u) => n + (u?.openFds ?? 0), 0),
      initiatorDaemons: usage.reduce((n, u) => n + (u?.daemons ?? 0), 0),
      logoutMs,
      errors,
    };
  }

  /** N volumes + exports + logins, all at once (bounded), timed per stage; then all removed. */
  async function controlPlane(cp: NonNullable<ScalePlan['scale']['controlPlane']>): Promise<{ result: Record<string, unknown>; errors: string[]; summary: string }> {
    const stepId = 'control-plane';
    const errors: string[] = [];
    const names = Array.from({ length: cp.volumes }, (_, k) => `cp-${short}-${k}`);
    const createMs: number[] = [];
    const exportMs: number[] = [];
    /** Export latency by completion order: is the k-th export as fast as the first? */
    const exportByOrder: number[] = [];
    const cpTargets = new Map<string, { portal: string; iqn: string; lun: number }>();
    await step(stepId, 'started', `${cp.volumes} volumes, exports and logins, ${cp.concurrency} at a time`);
    const started = performance.now();
    let done = 0;
    const ticker = setInterval(() => {
      void step(stepId, 'progress', '', { progress: { phase: 'provision', percent: (50 * done) / cp.volumes, bytesDone: 0, bytesTotal: 0, elapsedMs: Math.round(performance.now() - started), message: `${done}/${cp.volumes} exported; create p50 ${samplePercentile(createMs, 50).toFixed(0)} ms, export p50 ${samplePercentile(exportMs, 50).toFixed(0)} ms` } });
    }, 1000);
    let loginMs: number[] = [];
    let visibleMs: number[] = [];
    let loginWallMs = 0;
    let failedLogins = 0;
    let targetSessions = 0;
    const setId = `cp-${short}`;
    try {
      await pool(names, cp.concurrency, async (name) => {
        if (signal.aborted) return;
        try {
          await journal.add({ kind: 'volume', name });
          let t = performance.now();
          await unary(agents.storage, agents.storage.CreateVolume, { name, sizeBytes: cp.volumeSize, provisioning: 'PROVISIONING_SPARSE' }, T);
          createMs.push(performance.now() - t);
          await journal.add({ kind: 'export', name });
          t = performance.now();
          const exported = await unary(agents.storage, agents.storage.ExportIscsi, { volume: name, allowedAddresses: [s.allowedAddresses], chap }, T);
          const ms = performance.now() - t;
          exportMs.push(ms);
          exportByOrder.push(ms);
          const target = exported.target!;
          cpTargets.set(name, { portal: target.portals[0] ?? `${plan.agents.storage.host}:3260`, iqn: target.iqn, lun: target.luns[0]?.lun ?? 0 });
          done++;
        } catch (err) {
          errors.push(`${name}: ${errorText(err)}`);
        }
      });
      const provisionWallMs = performance.now() - started;
      // One login per volume, spread over the initiator agents, all at once.
      const A = agents.initiators.length;
      const sets = agents.initiators.map((a, k) => ({ agent: k, a, sessions: [] as LoadSessionSpec[] }));
      names.forEach((name, i) => {
        const target = cpTargets.get(name);
        if (target) sets[i % A]!.sessions.push({ target, initiatorIqn: `${sets[i % A]!.a.iqnPrefix}.cp${i}` });
      });
      const active = sets.filter((x) => x.sessions.length > 0);
      const iqns = new Set(active.flatMap((x) => x.sessions.map((y) => y.initiatorIqn!)));
      for (const x of active) await journal.add({ kind: 'load-set', name: setId, agent: x.agent });
      const t = performance.now();
      const logins = await Promise.allSettled(
        active.map((x) => unary(x.a.client, x.a.client.StartLoadSessions, { setId, sessions: x.sessions, chap, sessionsPerDaemon: s.sessionsPerDaemon, loginTimeoutMs: s.loginTimeoutS * 1000 }, T)),
      );
      loginWallMs = performance.now() - t;
      for (const [k, r] of logins.entries()) {
        if (r.status === 'rejected') errors.push(`${active[k]!.a.name}: ${errorText(r.reason)}`);
        else {
          loginMs.push(...r.value.sessions.filter((x) => x.loggedIn).map((x) => x.loginMs));
          visibleMs = visibleMs.concat(r.value.sessions.filter((x) => x.loggedIn).map((x) => x.exportMs));
          failedLogins += r.value.failed;
          const first = r.value.sessions.find((x) => !x.loggedIn);
          if (first) errors.push(`${active[k]!.a.name}: ${r.value.failed} logins failed (first: ${first.initiatorIqn} to ${first.target?.iqn}: ${first.error})`);
        }
      }
      const listed = await unary(agents.storage, agents.storage.ListIscsiTargets, {}, T);
      targetSessions = listed.targets.flatMap((x) => x.sessions).filter((x) => iqns.has(x.initiatorIqn)).length;
      const totalWallMs = performance.now() - started;
      for (const x of active) {
        await unary(x.a.client, x.a.client.StopLoadSessions, { setId }, { timeoutMs: 120_000 }).catch((err: unknown) => errors.push(`stop ${x.a.name}: ${errorText(err)}`));
        await journal.done({ kind: 'load-set', name: setId, agent: x.agent });
      }
      clearInterval(ticker);
      const tenth = Math.max(1, Math.floor(exportByOrder.length / 10));
      const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
      const removeStarted = performance.now();
      await pool(names, cp.concurrency, async (name) => {
        try {
          await unary(agents.storage, agents.storage.UnexportIscsi, { volume: name, force: true }, { timeoutMs: 120_000 });
          await journal.done({ kind: 'export', name });
          await unary(agents.storage, agents.storage.DeleteVolume, { name, force: true }, { timeoutMs: 120_000 });
          await journal.done({ kind: 'volume', name });
        } catch (err) {
          errors.push(`remove ${name}: ${errorText(err)}`);
        }
      });
      const result = {
        volumes: cp.volumes,
        concurrency: cp.concurrency,
        exported: cpTargets.size,
        loggedIn: loginMs.length,
        failedLogins,
        targetSessions,
        provisionWallMs,
        loginWallMs,
        totalWallMs,
        removeWallMs: performance.now() - removeStarted,
        stages: { createVolume: stageHistogram(createMs), exportWithAcl: stageHistogram(exportMs), login: stageHistogram(loginMs), deviceVisible: stageHistogram(visibleMs) },
        kthExport: { firstTenthMeanMs: mean(exportByOrder.slice(0, tenth)), lastTenthMeanMs: mean(exportByOrder.slice(-tenth)), slopeMsPerExport: slope(exportByOrder) },
      };
      if (targetSessions !== loginMs.length) errors.push(`the target listed ${targetSessions} of ${loginMs.length} control-plane sessions`);
      return {
        result,
        errors,
        summary: `${cpTargets.size} volumes+exports in ${(provisionWallMs / 1000).toFixed(1)} s, ${loginMs.length} logins in ${(loginWallMs / 1000).toFixed(1)} s, total ${(totalWallMs / 1000).toFixed(1)} s; export first 10% ${result.kthExport.firstTenthMeanMs.toFixed(0)} ms, last 10% ${result.kthExport.lastTenthMeanMs.toFixed(0)} ms`,
      };
    } finally {
      clearInterval(ticker);
    }
  }
}

/** Undo every journaled entry: load sets first, then exports, then volumes. Returns what is left. */
async function undoAll(agents: ScaleAgents, journal: ScaleJournal, timeoutMs: number): Promise<string[]> {
  const left: string[] = [];
  const order: ScaleUndo['kind'][] = ['load-set', 'export', 'volume'];
  for (const kind of order) {
    await pool(journal.entries().filter((e) => e.kind === kind), 16, async (e) => {
      try {
        if (kind === 'load-set') {
          const a = agents.initiators[e.agent ?? -1];
          if (!a) throw new VcstorError('INTERNAL', `no initiator agent ${e.agent}`);
          await unary(a.client, a.client.StopLoadSessions, { setId: e.name }, { timeoutMs });
        } else if (kind === 'export') {
          await unary(agents.storage, agents.storage.UnexportIscsi, { volume: e.name, force: true }, { timeoutMs });
        } else {
          await unary(agents.storage, agents.storage.DeleteVolume, { name: e.name, force: true }, { timeoutMs });
        }
        await journal.done(e);
      } catch (err) {
        left.push(`${kind} ${e.name}: ${errorText(err)}`);
      }
    });
  }
  return left;
}

/**
 * Remove what a killed scale run left (its journal, replayed). Idempotent.
 */
export async function cleanupScaleRun(runId: string, plan: ScalePlan, store: RunStore): Promise<{ removed: string[]; leftBehind: string[] }> {
  const journal = await ScaleJournal.load(path.join(store.dir(runId), 'scale-undo.json'));
  const before = journal.entries().map((e) => `${e.kind} ${e.name}`);
  const agents = await scaleAgents(plan);
  try {
    const leftBehind = await undoAll(agents, journal, 120_000);
    const left = new Set(journal.entries().map((e) => `${e.kind} ${e.name}`));
    return { removed: before.filter((b) => !left.has(b)), leftBehind };
  } finally {
    agents.close();
  }
}
