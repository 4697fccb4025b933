import type * as grpc from '@grpc/grpc-js';
import { channelCredentials, getAgentInfo, makeClient, unary, type Dom0Client, type GuestClient } from '../common/clients.js';
import { fromGrpcError, VcstorError } from '../common/errors.js';
import type { GetInfoResponse__Output } from '../common/generated/vcstor/v1/GetInfoResponse.js';
import type { RunBenchmarkRequest } from '../common/generated/vcstor/v1/RunBenchmarkRequest.js';
import type { RunBenchmarkResponse__Output } from '../common/generated/vcstor/v1/RunBenchmarkResponse.js';
import { formatIscsiValue, iscsiSessionParamsFromProto, iscsiSessionParamsToProto, setIscsiSessionParams, type IscsiSessionParamValues } from '../common/iscsi-params.js';
import type { Logger } from '../common/log.js';
import { account, benchmarkRole, bonnieWriteBytes, describeDrops, dropCaches, sampleHosts, type AccountingPaths } from './accounting.js';
import { provisionMethod, runUndoSteps, type AgentSet, type BaselineName, type IscsiSessionFacts, type MethodName, type MethodTarget, type ProvisionedMethod, type UndoStep } from './methods.js';
import type { MeasurementRecord, ProgressInfo, RunEventRecord, RunRecord, RunSetup, RunState, StepState } from './model.js';
import type { Plan } from './plan.js';
import type { RunStore } from './store.js';

/** Where events go besides the run's store: NATS (JetStream). Must not throw when NATS is down. */
export interface EventPublisher {
  publishEvent(event: RunEventRecord): Promise<void>;
  publishResult(measurement: MeasurementRecord & { seq: number }): Promise<void>;
}

export type ResolvedPlan = Plan & { chapPassword: string };

/** Events of one run: numbered, stored, published, and handed to live listeners. */
export class RunEvents {
  private seq = 0;
  private queue: Promise<unknown> = Promise.resolve();
  readonly listeners = new Set<(event: RunEventRecord) => void>();

  constructor(
    private readonly runId: string,
    private readonly store: RunStore,
    private readonly publisher?: EventPublisher,
    startSeq = 0,
  ) {
    this.seq = startSeq;
  }

  /** Record an event; resolves once it is stored (events are written in order). */
  emit(event: Omit<RunEventRecord, 'runId' | 'seq' | 'timeUnixMs'>): Promise<RunEventRecord> {
    const full: RunEventRecord = { runId: this.runId, seq: ++this.seq, timeUnixMs: Date.now(), ...event };
    const done = this.queue.then(async () => {
      await this.store.appendEvent(full);
      for (const listener of this.listeners) listener(full);
      await this.publisher?.publishEvent(full);
      if (full.measurement) await this.publisher?.publishResult({ ...full.measurement, seq: full.seq });
      return full;
    });
    this.queue = done.catch(() => undefined);
    return done;
  }
}

/** Clients for the plan's agents. Close them when done. */
export async function planAgents(plan: Plan): Promise<AgentSet & { credentials: grpc.ChannelCredentials; close(): void }> {
  const credentials = await channelCredentials('insecure' in plan.tls ? { insecure: true } : { ca: plan.tls.ca, cert: plan.tls.cert, key: plan.tls.key });
  const agents = {
    storage: makeClient('storage', plan.agents.storage.address, credentials),
    dom0: makeClient('dom0', plan.agents.dom0.address, credentials),
    guest: makeClient('guest', plan.agents.guest.address, credentials),
  };
  return { ...agents, credentials, close: () => Object.values(agents).forEach((c) => c.close()) };
}

/** The methods whose guest disk is an image file: the section 4.3 test runs on them. */
export const SPARSE_DISK_METHODS: readonly string[] = ['file-local', 'file-iscsi', 'file-nfs'];

export function provisioningName(sparse: boolean): 'sparse' | 'zero-filled' {
  return sparse ? 'sparse' : 'zero-filled';
}

/**
 * The section 4.3 test's request over an image provisioned `sparse` or zero-filled; its
 * measurements are named `sparse-disk:sparse` and `sparse-disk:zero-filled`.
 */
export function sparseDiskBenchmark(plan: Plan, sparse: boolean): { name: string; request: Omit<RunBenchmarkRequest, 'directory'> } | undefined {
  const d = plan.campaign.benchmarks.sparseDisk;
  if (!d) return undefined;
  return { name: `sparse-disk:${provisioningName(sparse)}`, request: { sparseImage: { fileSizeBytes: d.fileSize, blockSizeBytes: d.blockSize, passes: d.passes, inPlace: true } } };
}

/** The benchmark requests of a campaign, by the name measurements carry. */
export function benchmarkRequests(plan: Plan): Array<{ name: string; request: Omit<RunBenchmarkRequest, 'directory'> }> {
  const b = plan.campaign.benchmarks;
  const out: Array<{ name: string; request: Omit<RunBenchmarkRequest, 'directory'> }> = [];
  if (b.bonnie) out.push({ name: 'bonnie', request: { bonnie: { fileSizeBytes: b.bonnie.fileSize, chunkSizeBytes: b.bonnie.chunk, directIo: b.bonnie.directIo, ...(b.bonnie.ram ? { ramBytes: b.bonnie.ram } : {}) } } });
  if (b.postmark) {
    const p = b.postmark;
    out.push({ name: 'postmark', request: { postmark: { transactions: p.transactions, files: p.files, subdirectories: p.subdirectories, minFileSizeBytes: p.minFileSize, maxFileSizeBytes: p.maxFileSize } } });
  }
  if (b.fio) {
    const f = b.fio;
    out.push({ name: 'fio', request: { fio: { rw: f.rw, blockSizeBytes: f.blockSize, iodepth: f.iodepth, sizeBytes: f.size, runtimeS: f.runtimeS, ioengine: f.ioengine, direct: f.direct } } });
  }
  if (b.sparseImage) {
    const s = b.sparseImage;
    out.push({ name: 'sparse-image', request: { sparseImage: { imageSizeBytes: s.imageSize, fileSizeBytes: s.fileSize, blockSizeBytes: s.blockSize, passes: s.passes } } });
  }
  return out;
}

/**
 * Run a campaign: for each repetition and method, set the method up through the agents,
 * run every benchmark on the guest's filesystem, tear it down — also when a step fails
 * (recorded with why) or the run is cancelled. Everything provisioned is journaled in
 * the store first, so `cleanupRun` can remove it after a crash.
 */
export async function executeCampaign(o: { run: RunRecord; plan: ResolvedPlan; store: RunStore; events: RunEvents; log: Logger; signal: AbortSignal }): Promise<RunRecord> {
  const { run, plan, store, events, signal } = o;
  const c = plan.campaign;
  const benchmarks = benchmarkRequests(plan);
  const agents = await planAgents(plan);
  const measurements: MeasurementRecord[] = [];
  const undo: Record<string, UndoStep[]> = await store.undo(run.runId);
  let undoWrites: Promise<unknown> = Promise.resolve();
  const step = (stepId: string, state: StepState, message = '', extra: Partial<RunEventRecord> = {}) => events.emit({ stepId, state, message, ...extra });
  /** Methods this deployment cannot run (a driver not available), with why. */
  let skipReasons = new Map<string, string>();
  /** Table 1 and 2 of the run (setup.json): the agents' words, then each method's data path as set up. */
  let setup: RunSetup | undefined;
  /** Table 2: a method's NFS client and options, as the first set-up of it reported them. */
  const recordDataPath = async (method: string, provisioned: ProvisionedMethod) => {
    if (!setup) return;
    let changed = false;
    if (provisioned.nfsClient && !setup.nfsClients?.some((c) => c.method === method)) {
      setup.nfsClients = [...(setup.nfsClients ?? []), { method, ...provisioned.nfsClient }];
      changed = true;
    }
    const session = provisioned.iscsiSession;
    if (session && !setup.iscsiSessions?.some((c) => c.method === method)) {
      setup.iscsiSessions = [...(setup.iscsiSessions ?? []), { method, ...iscsiSessionRow(session) }];
      changed = true;
    }
    if (changed) await store.saveSetup(run.runId, setup);
  };
  const count = async (ok: boolean) => {
    if (ok) run.stepsSucceeded++;
    else run.stepsFailed++;
    await store.saveRun(run);
  };
  run.state = 'running';
  // The section 4.3 test: a file method also runs it over the other provisioning.
  const sparseDiskMethods = c.benchmarks.sparseDisk ? c.methods.filter((m) => SPARSE_DISK_METHODS.includes(m)) : [];
  // dom0's baselines run the benchmarks of a filesystem (Fig. 3, 5), not the image tests.
  const baselineBenchmarks = benchmarks.filter((b) => DOM0_BENCHMARKS.includes(b.name));
  run.stepsTotal = c.repetitions * (c.methods.length * (benchmarks.length + 2) + sparseDiskMethods.length * (1 + 3) + c.baselines.length * (baselineBenchmarks.length + 2));
  await store.saveRun(run);
  try {
    // Every agent must answer before anything is provisioned.
    const infos: Partial<Record<'storage' | 'dom0' | 'guest', GetInfoResponse__Output>> = {};
    for (const role of ['storage', 'dom0', 'guest'] as const) {
      const address = plan.agents[role].address;
      infos[role] = await getAgentInfo(address, agents.credentials, 10_000).catch((err: unknown) => {
        throw new VcstorError('UNAVAILABLE', `the ${role} agent at ${address} does not answer: ${err instanceof Error ? err.message : String(err)}`);
      });
    }
    skipReasons = unavailableMethods(infos);
    setup = await describeSetup(plan, agents, infos);
    await store.saveSetup(run.runId, setup);
    const baselinesText = c.baselines.length > 0 ? ` (and ${c.baselines.length} dom0 baselines)` : '';
    await step('run', 'started', `${c.methods.length} methods${baselinesText} x ${c.repetitions} repetitions x ${benchmarks.length} benchmarks`);
    const short = run.runId.slice(-6);
    for (let rep = 1; rep <= c.repetitions && !signal.aborted; rep++) {
      // The ceilings first: what dom0 itself gets from each kind of storage.
      for (const baseline of c.baselines) {
        if (signal.aborted) break;
        await runOne(baseline, rep, short, { sparse: c.sparse, benchmarks: baselineBenchmarks, suffix: '' });
      }
      for (const method of c.methods) {
        if (signal.aborted) break;
        const withSparseDisk = sparseDiskMethods.includes(method);
        await runOne(method as MethodName, rep, short, { sparse: c.sparse, benchmarks: withSparseDisk ? [...benchmarks, sparseDiskBenchmark(plan, c.sparse)!] : benchmarks, suffix: '' });
        if (withSparseDisk && !signal.aborted) {
          await runOne(method as MethodName, rep, short, { sparse: !c.sparse, benchmarks: [sparseDiskBenchmark(plan, !c.sparse)!], suffix: `/${provisioningName(!c.sparse)}` });
        }
      }
    }
    run.state = signal.aborted ? 'cancelled' : run.stepsFailed > 0 ? 'failed' : 'succeeded';
    if (signal.aborted) run.error = 'cancelled';
  } catch (err) {
    run.state = 'failed';
    run.error = err instanceof Error ? err.message : String(err);
  } finally {
    agents.close();
    await undoWrites;
  }
  run.finishedUnixMs = Date.now();
  await store.saveRun(run);
  await step('run', run.state === 'succeeded' ? 'succeeded' : run.state === 'cancelled' ? 'cancelled' : 'failed', run.error || `${run.stepsSucceeded} steps ok, ${run.stepsFailed} failed`, { runState: run.state });
  return run;

  /** One method set up (sparse or zero-filled), its benchmarks run, torn down. */
  async function runOne(method: MethodName | BaselineName, rep: number, short: string, variant: { sparse: boolean; benchmarks: typeof benchmarks; suffix: string }): Promise<void> {
    const benchmarks = variant.benchmarks;
    const key = `${method}/rep${rep}${variant.suffix}`;
    const target: MethodTarget = {
      ...agents,
      storageHost: plan.agents.storage.host,
      dom0InitiatorIqn: plan.agents.dom0.initiatorIqn,
      guestInitiatorIqn: plan.agents.guest.initiatorIqn,
      nfsClients: plan.nfsClients,
      nfsMountOptions: c.nfsMountOptions,
      ...(c.iscsi ? { iscsiSessionParams: iscsiSessionParamsToProto(c.iscsi) } : {}),
      dom0ImageDir: plan.agents.dom0.imageDir,
      dom0MountDir: plan.agents.dom0.mountDir,
      guestMountDir: plan.agents.guest.mountDir,
      domain: plan.agents.guest.domain,
      prefix: `${short}-${rep}${variant.suffix ? variant.sparse ? 's' : 'z' : ''}`,
      sizeBytes: c.volumeSize,
      sparse: variant.sparse,
      chap: { username: plan.chap.username, password: plan.chapPassword },
      timeoutMs: c.stepTimeoutS * 1000,
    };
    const journal = (pending: readonly UndoStep[]) => {
      if (pending.length > 0) undo[key] = [...pending];
      else delete undo[key];
      const write = undoWrites.then(() => store.saveUndo(run.runId, undo));
      undoWrites = write.catch(() => undefined);
      return write;
    };
    /** The measurement's host: the guest's domain, or "dom0" for a baseline. */
    const host = benchmarkRole(method) === 'dom0' ? 'dom0' : plan.agents.guest.domain;
    const skip = skipReasons.get(method);
    if (skip) {
      for (const name of ['setup', ...benchmarks.map((b) => b.name), 'teardown']) {
        const m: MeasurementRecord | undefined =
          name === 'setup' || name === 'teardown' ? undefined : { runId: run.runId, method, benchmark: name, repetition: rep, guest: host, error: `skipped: ${skip}` };
        if (m) measurements.push(m);
        await step(`${key}/${name}`, 'skipped', skip, m ? { measurement: m } : {});
      }
      run.stepsTotal -= benchmarks.length + 2;
      await store.saveMeasurements(run.runId, measurements);
      await store.saveRun(run);
      return;
    }
    await step(`${key}/setup`, 'started');
    let provisioned;
    try {
      provisioned = await provisionMethod(method, target, signal, journal);
      await recordDataPath(method, provisioned);
      await step(`${key}/setup`, 'succeeded', provisioned.setup.map((s) => `${s.step} ${s.ms} ms`).join(', '));
      await count(true);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      await step(`${key}/setup`, 'failed', why);
      await count(false);
      for (const b of benchmarks) {
        const m: MeasurementRecord = { runId: run.runId, method, benchmark: b.name, repetition: rep, guest: host, error: `setup failed: ${why}` };
        measurements.push(m);
        await step(`${key}/${b.name}`, 'skipped', m.error, { measurement: m });
        await count(false);
      }
      await store.saveMeasurements(run.runId, measurements);
      await step(`${key}/teardown`, 'skipped', 'nothing was left to tear down');
      await count(true);
      return;
    }
    for (const b of benchmarks) {
      const stepId = `${key}/${b.name}`;
      const m: MeasurementRecord = { runId: run.runId, method, benchmark: b.name, repetition: rep, guest: host, error: '' };
      if (signal.aborted) break;
      await step(stepId, 'started');
      try {
        // Every host starts cold, and every layer's counters are read around the run:
        // where the figure came from is part of the result. Agents without these calls
        // (older releases) run the benchmark unaccounted, and the event says so.
        const paths: AccountingPaths =
          provisioned.runsOn === 'dom0'
            ? { guest: [], dom0: [provisioned.benchmarkDirectory] }
            : { guest: [provisioned.guestMountpoint], dom0: provisioned.image?.path ? [provisioned.image.path] : [] };
        let before: Awaited<ReturnType<typeof sampleHosts>> | undefined;
        let drops: Awaited<ReturnType<typeof dropCaches>> = [];
        try {
          drops = await dropCaches(agents, target.timeoutMs, signal);
          await step(`${stepId}/drop-caches`, 'succeeded', describeDrops(drops));
          before = await sampleHosts(agents, paths, target.timeoutMs, signal);
        } catch (err) {
          await step(`${stepId}/drop-caches`, 'failed', `the run is not accounted: ${err instanceof Error ? err.message : String(err)}`);
        }
        const started = performance.now();
        const runner: BenchmarkRunner = provisioned.runsOn === 'dom0' ? { role: 'dom0', client: agents.dom0 } : { role: 'guest', client: agents.guest };
        m.result = await runBenchmark(runner, { ...b.request, directory: provisioned.benchmarkDirectory, label: `${method} rep ${rep}` }, target.timeoutMs, signal, (p) => void step(stepId, 'progress', '', { progress: p }));
        const elapsedMs = Math.round(performance.now() - started);
        if (before) {
          const after = await sampleHosts(agents, paths, target.timeoutMs, signal).catch(() => undefined);
          const written = b.name === 'bonnie' ? bonnieWriteBytes(b.request as Parameters<typeof bonnieWriteBytes>[0]) : undefined;
          if (after) m.accounting = account({ method, before, after, drops, elapsedMs, ...(written !== undefined ? { benchmarkWriteBytes: written } : {}) });
        }
        measurements.push(m);
        await store.saveMeasurements(run.runId, measurements);
        await step(stepId, 'succeeded', '', { measurement: m });
        await count(true);
      } catch (err) {
        m.error = err instanceof Error ? err.message : String(err);
        measurements.push(m);
        await store.saveMeasurements(run.runId, measurements);
        await step(stepId, signal.aborted ? 'cancelled' : 'failed', m.error, { measurement: m });
        await count(false);
      }
    }
    await step(`${key}/teardown`, 'started');
    try {
      const timings = await provisioned.teardown();
      await step(`${key}/teardown`, 'succeeded', timings.map((s) => `${s.step} ${s.ms} ms`).join(', '));
      await count(true);
    } catch (err) {
      await step(`${key}/teardown`, 'failed', `${err instanceof Error ? err.message : String(err)}; run vcstor cleanup ${run.runId}`);
      await count(false);
    }
  }
}

/** The benchmarks dom0's baselines run (the rest test images, which dom0 has no guest disk for). */
const DOM0_BENCHMARKS: readonly string[] = ['bonnie', 'postmark', 'fio'];

/** What each method needs, as the agents' GetInfo reports drivers (concern on a role). */
const NEEDS: Record<string, Array<['storage' | 'dom0' | 'guest', string]>> = {
  'dom0-local': [['dom0', 'benchmark']],
  'dom0-iscsi': [['storage', 'iscsi-target'], ['dom0', 'iscsi-initiator'], ['dom0', 'filesystem']],
  'dom0-nfs': [['storage', 'nfs-server'], ['dom0', 'nfs-client']],
  'file-local': [['dom0', 'hypervisor'], ['guest', 'filesystem']],
  'phy-local': [['dom0', 'hypervisor'], ['guest', 'filesystem']],
  'file-nfs': [['storage', 'nfs-server'], ['dom0', 'nfs-client'], ['dom0', 'hypervisor']],
  'file-iscsi': [['storage', 'iscsi-target'], ['dom0', 'iscsi-initiator'], ['dom0', 'filesystem'], ['dom0', 'hypervisor']],
  'phy-iscsi': [['storage', 'iscsi-target'], ['dom0', 'iscsi-initiator'], ['dom0', 'hypervisor']],
  nfs: [['storage', 'nfs-server'], ['guest', 'nfs-client']],
  iscsi: [['storage', 'iscsi-target'], ['guest', 'iscsi-initiator']],
};

/**
 * Methods whose drivers are not available on these agents (the selected driver of a
 * concern it needs), with the agent's own words for why: skipped, not failed — a lab of
 * namespaces has no kernel NFS client for the nfs method, and says so.
 */
export function unavailableMethods(infos: Partial<Record<'storage' | 'dom0' | 'guest', GetInfoResponse__Output>>): Map<string, string> {
  const out = new Map<string, string>();
  // libnfs reaches files on an export (file-nfs's image), not directories: dom0 has no
  // NFS mount to run a benchmark in.
  const dom0Nfs = infos.dom0?.drivers.find((d) => d.concern === 'nfs-client' && d.selected);
  if (dom0Nfs && dom0Nfs.driver !== 'kernel') {
    out.set('dom0-nfs', `dom0's NFS client here is ${dom0Nfs.driver} (qemu's NFS driver), which reaches image files on an export but mounts no directory to run a benchmark in; dom0-nfs needs the kernel client (the VM tier, or a real host)`);
  }
  for (const [method, needs] of Object.entries(NEEDS)) {
    if (out.has(method)) continue;
    for (const [role, concern] of needs) {
      const driver = infos[role]?.drivers.find((d) => d.concern === concern && d.selected);
      if (driver && !driver.available) {
        out.set(method, `the ${role} agent's ${concern} driver (${driver.driver}) is not available: ${driver.detail}`);
        break;
      }
    }
  }
  return out;
}

/** An agent that runs benchmarks: the guest (methods) or dom0 (baselines). */
type BenchmarkRunner = { role: 'guest'; client: GuestClient } | { role: 'dom0'; client: Dom0Client };

/** Run one benchmark to its result, passing progress on at most once a second. */
function runBenchmark(runner: BenchmarkRunner, request: RunBenchmarkRequest, timeoutMs: number, signal: AbortSignal, onProgress: (p: ProgressInfo) => void): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const call = runner.client.RunBenchmark(request, { deadline: Date.now() + timeoutMs });
    const onAbort = () => call.cancel();
    signal.addEventListener('abort', onAbort, { once: true });
    let result: Record<string, unknown> | undefined;
    let lastProgress = 0;
    call.on('data', (m: RunBenchmarkResponse__Output) => {
      if (m.progress && Date.now() - lastProgress >= 1000) {
        lastProgress = Date.now();
        const p = m.progress;
        onProgress({ phase: p.phase, percent: p.percent, bytesDone: p.bytesDone, bytesTotal: p.bytesTotal, elapsedMs: p.elapsedMs, message: p.message });
      }
      if (m.result) result = m.result as unknown as Record<string, unknown>;
    });
    call.on('error', (err: grpc.ServiceError) => {
      signal.removeEventListener('abort', onAbort);
      // Say where: "Connection dropped" alone does not tell that the guest agent went away.
      const e = fromGrpcError(err, `the benchmark on the ${runner.role} agent at ${runner.client.getChannel().getTarget().replace(/^dns:/, '')}`);
      reject(signal.aborted ? new VcstorError('CANCELLED', e.message) : e);
    });
    call.on('end', () => {
      signal.removeEventListener('abort', onAbort);
      if (result) resolve(result);
      else reject(new VcstorError('INTERNAL', 'the benchmark stream ended without a result'));
    });
  });
}

/**
 * Tear down whatever a run provisioned and did not remove (after a crash or kill): the
 * journaled undo steps, replayed in reverse. Idempotent.
 */
export async function cleanupRun(runId: string, plan: Plan, store: RunStore): Promise<{ removed: string[]; leftBehind: string[] }> {
  const undo = await store.undo(runId);
  const agents = await planAgents(plan);
  const removed: string[] = [];
  const leftBehind: string[] = [];
  try {
    for (const [key, steps] of Object.entries(undo)) {
      const pending = [...steps];
      try {
        const timings = await runUndoSteps(pending, agents, 120_000, async (left) => {
          if (left.length > 0) undo[key] = [...left];
          else delete undo[key];
          await store.saveUndo(runId, undo);
        });
        removed.push(...timings.map((t) => `${key}: ${t.step}`));
      } catch (err) {
        leftBehind.push(`${key}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  } finally {
    agents.close();
  }
  return { removed, leftBehind };
}

export type { RunState };

/**
 * The run's set-up (Table 1): each agent's own description, the memory its host has
 * (from its memory counter; 0 when the agent cannot say), and the campaign's parameters.
 */
async function describeSetup(plan: Plan, agents: AgentSet, infos: Partial<Record<'storage' | 'dom0' | 'guest', GetInfoResponse__Output>>): Promise<RunSetup> {
  const hosts: RunSetup['hosts'] = [];
  for (const role of ['storage', 'dom0', 'guest'] as const) {
    const info = infos[role];
    const client = agents[role];
    const sample = await unary(client, client.SampleIo, { paths: [] }, { timeoutMs: 10_000 }).catch(() => undefined);
    const memory = sample?.counters.find((c) => c.kind === 'IO_COUNTER_KIND_MEMORY');
    hosts.push({
      role,
      name: info?.name ?? role,
      hostname: info?.hostname ?? '',
      version: info?.version ?? '',
      memoryScope: memory?.detail ?? 'unknown (the agent cannot say)',
      memoryBytes: Number(memory?.limitBytes ?? 0),
      drivers: (info?.drivers ?? []).filter((d) => d.selected).map((d) => `${d.concern}=${d.driver}${d.available ? '' : ' (unavailable)'}`),
      ...(info?.kernel ? { kernel: info.kernel } : {}),
      ...(info?.cpus ? { cpus: info.cpus } : {}),
      tools: Object.fromEntries((info?.drivers ?? []).filter((d) => d.version).map((d) => [d.driver, d.version])),
    });
  }
  const c = plan.campaign;
  const benchmarks: Record<string, string> = {};
  for (const [name, spec] of Object.entries(c.benchmarks)) {
    if (spec) benchmarks[name] = Object.entries(spec).map(([k, v]) => `${k}=${String(v)}`).join(' ');
  }
  return {
    hosts,
    repetitions: c.repetitions,
    volumeSizeBytes: c.volumeSize,
    provisioning: c.sparse ? 'sparse' : 'zero-filled',
    benchmarks,
    linkRate: linkRateOf(infos),
    iscsiParams: iscsiParamsText(c.iscsi ?? {}),
    iscsiSessions: [],
    nfsClients: [],
  };
}

/** Session parameters as Table 2 spells them: RFC 7143 keys, "Yes"/"No" and bytes. */
function iscsiParamsText(values: IscsiSessionParamValues): Record<string, string> {
  return Object.fromEntries(setIscsiSessionParams(values).map(({ key, value }) => [key.rfcKey, formatIscsiValue(value)]));
}

/**
 * A session's row of Table 2: what it negotiated where its initiator can tell
 * (open-iscsi), else what the target offered — for InitialR2T (OR), ImmediateData (AND)
 * and the lengths (minimum) the most the session can have (RFC 7143 6.2) — said so.
 */
export function iscsiSessionRow(session: IscsiSessionFacts): { initiator: string; target: string; params: Record<string, string>; basis: string } {
  const negotiated = iscsiParamsText(iscsiSessionParamsFromProto(session.negotiated));
  if (Object.keys(negotiated).length > 0) return { initiator: session.initiator, target: session.target, params: negotiated, basis: 'negotiated, as the initiator reports it' };
  const offered = iscsiParamsText(iscsiSessionParamsFromProto(session.offered));
  return {
    initiator: session.initiator,
    target: session.target,
    params: offered,
    basis: `the target's offer, read back from it: the session's bound under RFC 7143 (${session.detail || 'the initiator reports no negotiated values'})`,
  };
}

/**
 * Table 1's link rate: each host's links as its agent described them (the rate a tbf
 * holds a link to, else the kernel's speed), one text when all hosts agree.
 */
export function linkRateOf(infos: Partial<Record<'storage' | 'dom0' | 'guest', Pick<GetInfoResponse__Output, 'links'>>>): string {
  const bits = (n: number) => (n >= 1e9 && n % 1e8 === 0 ? `${n / 1e9} Gbit/s` : `${Math.round(n / 1e6)} Mbit/s`);
  const perRole = (['storage', 'dom0', 'guest'] as const).map((role) => {
    const links = infos[role]?.links ?? [];
    const text = links.map((l) => `${l.name} ${Number(l.shapedBitsPerSecond) > 0 ? `${bits(Number(l.shapedBitsPerSecond))} (tc tbf)` : Number(l.speedMbps) > 0 ? bits(Number(l.speedMbps) * 1e6) : 'speed unknown'}`).join(', ');
    return { role, text: text || 'not reported' };
  });
  const texts = new Set(perRole.map((r) => r.text));
  return texts.size === 1 ? `${perRole[0]!.text} (every host)` : perRole.map((r) => `${r.role}: ${r.text}`).join('; ');
}
