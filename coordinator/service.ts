import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { startGrpcServer, type RunningServer } from '../common/server.js';
import { VcstorError } from '../common/errors.js';
import type { CoordinatorHandlers } from '../common/generated/vcstor/v1/Coordinator.js';
import type { Measurement } from '../common/generated/vcstor/v1/Measurement.js';
import type { Run } from '../common/generated/vcstor/v1/Run.js';
import type { RunEvent } from '../common/generated/vcstor/v1/RunEvent.js';
import { makeHandlers, type Operations } from '../common/handlers.js';
import { createLogger, type Logger } from '../common/log.js';
import { API_VERSION, loadVcstorProto, SERVICE_NAMES } from '../common/proto.js';
import { parseStructured } from '../common/structured.js';
import { VCSTOR_VERSION } from '../common/version.js';
import { hostname } from 'node:os';
import type { EventPublisher } from './run-events.js';
import { Coordinator } from './coordinator.js';
import { natsOptionsFromSettings, natsSettingsSchema, RunEventBus } from './events.js';
import type { MeasurementRecord, RunEventRecord, RunRecord } from './model.js';

const STATES: Record<RunRecord['state'], Run['state']> = {
  pending: 'RUN_STATE_PENDING',
  running: 'RUN_STATE_RUNNING',
  succeeded: 'RUN_STATE_SUCCEEDED',
  failed: 'RUN_STATE_FAILED',
  cancelled: 'RUN_STATE_CANCELLED',
};
const STEP_STATES: Record<RunEventRecord['state'], RunEvent['state']> = {
  started: 'STEP_STATE_STARTED',
  progress: 'STEP_STATE_PROGRESS',
  succeeded: 'STEP_STATE_SUCCEEDED',
  failed: 'STEP_STATE_FAILED',
  skipped: 'STEP_STATE_SKIPPED',
  cancelled: 'STEP_STATE_CANCELLED',
};

const KINDS: Record<RunRecord['kind'], Run['kind']> = {
  provision: 'PLAN_KIND_PROVISION',
  teardown: 'PLAN_KIND_TEARDOWN',
  campaign: 'PLAN_KIND_CAMPAIGN',
  scale: 'PLAN_KIND_SCALE',
  shared: 'PLAN_KIND_SHARED',
};

function toRun(r: RunRecord): Run {
  return { ...r, kind: KINDS[r.kind], state: STATES[r.state] };
}

function toMeasurement(m: MeasurementRecord): Measurement {
  return { ...m, ...(m.result ? { result: m.result as Measurement['result'] } : {}) };
}

function toEvent(e: RunEventRecord): RunEvent {
  return {
    runId: e.runId,
    seq: e.seq,
    timeUnixMs: e.timeUnixMs,
    stepId: e.stepId,
    state: STEP_STATES[e.state],
    message: e.message,
    ...(e.progress ? { progress: e.progress } : {}),
    ...(e.measurement ? { measurement: toMeasurement(e.measurement) } : {}),
    ...(e.runState ? { runState: STATES[e.runState] } : {}),
  };
}

const RUN_ID = /^[a-z0-9-]{1,64}$/;
function runId(value: string): string {
  if (!RUN_ID.test(value)) throw new VcstorError('INVALID_ARGUMENT', `run_id: ${JSON.stringify(value)} is not a run id`);
  return value;
}

/** The Coordinator gRPC service over a Coordinator: programs drive campaigns with it. */
export function coordinatorOperations(coordinator: Coordinator, startedUnixMs: number): Operations<CoordinatorHandlers> {
  return {
    GetInfo: async () => ({ name: 'coordinator', role: 'ROLE_COORDINATOR', version: VCSTOR_VERSION, apiVersion: API_VERSION, hostname: hostname(), startedUnixMs, drivers: [] }),
    SubmitPlan: async (request) => {
      if (request.plan.length > 1_000_000) throw new VcstorError('INVALID_ARGUMENT', 'plan: longer than 1 MB');
      if (request.requestId.length > 200) throw new VcstorError('INVALID_ARGUMENT', 'request_id: longer than 200 characters');
      const { run, created } = await coordinator.submit(request.plan, { ...(request.requestId ? { requestId: request.requestId } : {}), dryRun: request.dryRun, source: 'plan' });
      return { run: toRun(run), created };
    },
    WatchRun: async (request, { signal }, send) => {
      for await (const event of coordinator.watch(runId(request.runId), request.afterSeq, signal)) await send(toEvent(event));
    },
    GetRun: async (request) => ({ run: toRun(await coordinator.get(runId(request.runId))) }),
    ListRuns: async (request) => ({ runs: (await coordinator.list(request.limit || 50)).map(toRun) }),
    CancelRun: async (request) => ({ run: toRun(await coordinator.cancel(runId(request.runId))) }),
    GetResults: async (request) => {
      const { run, measurements } = await coordinator.results(runId(request.runId));
      return { run: toRun(run), measurements: measurements.map(toMeasurement) };
    },
    // On a cluster run (PLAN_KIND_PROVISION, submitted as any plan) this is its teardown:
    // the journal replayed per guest, idempotent (vcstor teardown adds events).
    CleanupRun: async (request) => {
      const { removed, leftBehind } = await coordinator.cleanup(runId(request.runId));
      return { removed, leftBehind };
    },
  };
}

const configSchema = z
  .object({
    listen: z.string().default('127.0.0.1:50050'),
    tls: z.union([z.object({ insecure: z.literal(true) }).strict(), z.object({ ca: z.string(), cert: z.string(), key: z.string() }).strict()]),
    runsDir: z.string().default('/var/lib/vcstor/runs'),
    nats: natsSettingsSchema.optional(),
    logLevel: z.string().default('info'),
  })
  .strict();

/** `vcstor coordinator --config FILE`: serve the Coordinator API until SIGTERM. */
export async function serveCoordinator(configFile: string): Promise<void> {
  const config = parseStructured(configSchema, await readFile(configFile, 'utf8'), configFile);
  const log: Logger = createLogger({ name: 'coordinator', level: config.logLevel });
  let publisher: (EventPublisher & { close(): Promise<void> }) | undefined;
  if (config.nats) {
    publisher = await RunEventBus.connect({ ...(await natsOptionsFromSettings(config.nats, configFile)), name: 'vcstor coordinator', log });
  }
  const coordinator = new Coordinator({ runsDir: config.runsDir, log, ...(publisher ? { publisher } : {}) });
  const shutdown = new AbortController();
  const definition = loadVcstorProto().grpcObject.vcstor.v1.Coordinator.service;
  const implementation = makeHandlers(definition, coordinatorOperations(coordinator, Date.now()), { log, maxCallMs: 7 * 86_400_000, shutdownSignal: shutdown.signal });
  const tls = 'insecure' in config.tls ? { insecure: true } : { insecure: false, ...config.tls };
  const server: RunningServer = await startGrpcServer({ listen: config.listen, tls, services: [{ name: SERVICE_NAMES.coordinator, definition, implementation }], log });
  await new Promise<void>((resolve) => {
    const stop = () => {
      shutdown.abort();
      void coordinator
        .stop()
        .then(() => server.shutdown())
        .then(() => publisher?.close())
        .finally(resolve);
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}
