import type { RunBenchmarkRequest } from '../common/generated/vcstor/v1/RunBenchmarkRequest.js';
import type { RunBenchmarkResponse__Output } from '../common/generated/vcstor/v1/RunBenchmarkResponse.js';
import { account, bonnieWriteBytes, describeDrops, dropCaches, sampleHosts, type AccountingPaths, type IoAccounting } from './accounting.js';
import { provisioningName } from './campaign-setup.js';
import type { AgentSet, ProvisionedMethod } from './methods.js';
import type { ProgressInfo } from './model.js';
import type { Plan } from './plan.js';
import type { StepEmitter } from './run-events.js';
import { serverStream } from './stream.js';

/** One benchmark of a campaign: the name its measurements carry, and its request. */
export interface CampaignBenchmark {
  name: string;
  request: Omit<RunBenchmarkRequest, 'directory'>;
}

/** The benchmarks of a filesystem (Fig. 3, 5): what dom0's baselines run; the rest test images. */
export const FILESYSTEM_BENCHMARKS: readonly string[] = ['bonnie', 'postmark', 'fio'];

/**
 * The section 4.3 test's request over an image provisioned `sparse` or zero-filled; its
 * measurements are named `sparse-disk:sparse` and `sparse-disk:zero-filled`.
 */
export function sparseDiskBenchmark(plan: Plan, sparse: boolean): CampaignBenchmark | undefined {
  const d = plan.campaign.benchmarks.sparseDisk;
  if (!d) return undefined;
  return { name: `sparse-disk:${provisioningName(sparse)}`, request: { sparseImage: { fileSizeBytes: d.fileSize, blockSizeBytes: d.blockSize, passes: d.passes, inPlace: true } } };
}

/** The benchmark requests of a campaign, by the name measurements carry. */
export function benchmarkRequests(plan: Plan): CampaignBenchmark[] {
  const b = plan.campaign.benchmarks;
  const out: CampaignBenchmark[] = [];
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
 * Run one benchmark where `provisioned` says, to its result, accounted: every host starts
 * cold, and every layer's counters are read around the run — where the figure came from
 * is part of the result. Agents without these calls (older releases) run it
 * unaccounted, and the `<stepId>/drop-caches` event says so. Progress goes out at most
 * once a second. Not idempotent (a benchmark writes); within `timeoutMs` per call.
 * @throws VcstorError of the benchmark call (CANCELLED when `signal` aborted it).
 */
export async function measureBenchmark(o: {
  agents: AgentSet;
  provisioned: ProvisionedMethod;
  benchmark: CampaignBenchmark;
  label: string;
  stepId: string;
  step: StepEmitter;
  timeoutMs: number;
  signal: AbortSignal;
}): Promise<{ result: Record<string, unknown>; accounting?: IoAccounting }> {
  const { agents, provisioned, benchmark: b, stepId, step, timeoutMs, signal } = o;
  const paths: AccountingPaths =
    provisioned.runsOn === 'dom0' ? { guest: [], dom0: [provisioned.benchmarkDirectory] } : { guest: [provisioned.guestMountpoint], dom0: provisioned.image?.path ? [provisioned.image.path] : [] };
  let before: Awaited<ReturnType<typeof sampleHosts>> | undefined;
  let drops: Awaited<ReturnType<typeof dropCaches>> = [];
  try {
    drops = await dropCaches(agents, timeoutMs, signal);
    await step(`${stepId}/drop-caches`, 'succeeded', describeDrops(drops));
    before = await sampleHosts(agents, paths, timeoutMs, signal);
  } catch (err) {
    await step(`${stepId}/drop-caches`, 'failed', `the run is not accounted: ${err instanceof Error ? err.message : String(err)}`);
  }
  const started = performance.now();
  const result = await runBenchmark(agents, provisioned.runsOn, { ...b.request, directory: provisioned.benchmarkDirectory, label: o.label }, timeoutMs, signal, (p) => void step(stepId, 'progress', '', { progress: p }));
  const elapsedMs = Math.round(performance.now() - started);
  if (!before) return { result };
  const after = await sampleHosts(agents, paths, timeoutMs, signal).catch(() => undefined);
  if (!after) return { result };
  const written = b.name === 'bonnie' ? bonnieWriteBytes(b.request as Parameters<typeof bonnieWriteBytes>[0]) : undefined;
  return { result, accounting: account({ method: provisioned.method, before, after, drops, elapsedMs, ...(written !== undefined ? { benchmarkWriteBytes: written } : {}) }) };
}

/** Run one benchmark on the guest (methods) or dom0 (baselines) to its result, passing progress on at most once a second. */
function runBenchmark(agents: AgentSet, role: 'guest' | 'dom0', request: RunBenchmarkRequest, timeoutMs: number, signal: AbortSignal, onProgress: (p: ProgressInfo) => void): Promise<Record<string, unknown>> {
  const client = agents[role];
  let lastProgress = 0;
  return serverStream((options) => client.RunBenchmark(request, options), {
    // Say where: "Connection dropped" alone does not tell that the guest agent went away.
    what: `the benchmark on the ${role} agent at ${client.getChannel().getTarget().replace(/^dns:/, '')}`,
    timeoutMs,
    signal,
    onMessage: (m: RunBenchmarkResponse__Output) => {
      if (m.progress && Date.now() - lastProgress >= 1000) {
        lastProgress = Date.now();
        const p = m.progress;
        onProgress({ phase: p.phase, percent: p.percent, bytesDone: p.bytesDone, bytesTotal: p.bytesTotal, elapsedMs: p.elapsedMs, message: p.message });
      }
      return m.result ? (m.result as unknown as Record<string, unknown>) : undefined;
    },
  });
}
