import { createHash, randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { mkdir } from 'node:fs/promises';
import { VcstorError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { UndoJournal, type CleanupReport } from './journal.js';
import type { MeasurementRecord, RunEventRecord, RunRecord, RunSetup } from './model.js';
import { RunEvents, type EventPublisher } from './run-events.js';
import type { ParsedPlan, RunContext } from './run-kind.js';
import { parsePlanText } from './run-kinds.js';
import { RunStore } from './store.js';

/**
 * The coordinator: accepts plans, runs them in the background, and answers for every
 * run it has (in its store): state, events (replayed, then live), results, cleanup.
 * The gRPC service and the CLI are thin layers over it.
 */
export class Coordinator {
  readonly store: RunStore;
  private readonly active = new Map<string, { abort: AbortController; events: RunEvents; done: Promise<RunRecord> }>();

  constructor(
    private readonly o: { runsDir: string; log: Logger; publisher?: EventPublisher },
  ) {
    this.store = new RunStore(o.runsDir);
  }

  /**
   * Validate a plan and start it: its text, or a plan already parsed (parsePlanText; the
   * CLI reads it first to connect to its NATS). With a request id, a second submit
   * returns the first run (created=false). A plan whose kind gives its runs one id (a
   * cluster: `cl-<name>`) is run again under that id, its journal and records kept: its
   * events follow the last run's (`afterSeq`: the last event before this run's); one
   * still running is returned as it is (created=false). Nothing is provisioned unless
   * the whole plan is valid.
   * @throws VcstorError INVALID_ARGUMENT naming the field and line at fault; FAILED_PRECONDITION
   * when the plan's run id is a run of another kind.
   */
  async submit(planText: string | ParsedPlan, options: { requestId?: string; dryRun?: boolean; source?: string } = {}): Promise<{ run: RunRecord; created: boolean; afterSeq: number }> {
    const plan = typeof planText === 'string' ? await parsePlanText(planText, options.source ?? 'plan') : planText;
    const runId = plan.runId
      ? plan.runId
      : options.requestId
        ? `q-${createHash('sha256').update(options.requestId).digest('hex').slice(0, 16)}`
        : `r-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
    const existing = await this.store.run(runId).catch(() => undefined);
    let afterSeq = 0;
    if (existing && !plan.runId) return { run: existing, created: false, afterSeq };
    if (existing) {
      if (this.active.has(runId)) return { run: existing, created: false, afterSeq };
      if (existing.kind !== plan.kind && existing.kind !== 'teardown') throw new VcstorError('FAILED_PRECONDITION', `run ${runId} is a ${existing.kind} run, not a ${plan.kind} run`);
      afterSeq = (await this.store.events(runId)).at(-1)?.seq ?? 0;
    }
    const run: RunRecord = { runId, planName: plan.header.name, kind: plan.kind, state: 'pending', createdUnixMs: existing?.createdUnixMs ?? Date.now(), finishedUnixMs: 0, stepsTotal: 0, stepsSucceeded: 0, stepsFailed: 0, error: '' };
    if (options.dryRun) return { run, created: false, afterSeq };
    await mkdir(this.o.runsDir, { recursive: true });
    await this.store.create(run, plan.text);
    this.start(run, (context) => plan.execute(context), afterSeq);
    return { run, created: true, afterSeq };
  }

  /**
   * Tear down what a run left on purpose (a cluster's storage), as that run's next act:
   * its kind becomes `teardown`, its events follow the last ones. Idempotent: a run with
   * nothing left succeeds doing nothing.
   * @throws VcstorError NOT_FOUND for no such run; FAILED_PRECONDITION when it is running,
   * or of a kind that leaves nothing on purpose (use cleanup).
   */
  async teardown(runId: string): Promise<{ run: RunRecord; afterSeq: number }> {
    const previous = await this.store.run(runId);
    if (this.active.has(runId)) throw new VcstorError('FAILED_PRECONDITION', `run ${runId} is still running; cancel it first`);
    const plan = await parsePlanText(await this.store.planText(runId), `plan of ${runId}`);
    if (!plan.teardown) throw new VcstorError('FAILED_PRECONDITION', `run ${runId} is a ${previous.kind} run, which leaves nothing provisioned on purpose: use vcstor cleanup ${runId}`);
    const afterSeq = (await this.store.events(runId)).at(-1)?.seq ?? 0;
    const run: RunRecord = { ...previous, kind: 'teardown', state: 'pending', finishedUnixMs: 0, stepsTotal: 0, stepsSucceeded: 0, stepsFailed: 0, error: '' };
    await this.store.saveRun(run);
    const teardown = plan.teardown.bind(plan);
    this.start(run, (context) => teardown(context), afterSeq);
    return { run, afterSeq };
  }

  /** Run `execute` in the background as `run`, its events numbered after `afterSeq`. */
  private start(run: RunRecord, execute: (context: RunContext) => Promise<RunRecord>, afterSeq: number): void {
    const { runId } = run;
    const abort = new AbortController();
    // Every remote call of the run listens on this signal; a campaign has a dozen in
    // flight at once (set-up steps, a benchmark stream, three hosts sampled): not a leak.
    setMaxListeners(256, abort.signal);
    const events = new RunEvents(runId, this.store, this.o.publisher, afterSeq);
    const log = this.o.log.child({ runId });
    const done = UndoJournal.open(this.store, runId)
      .then((journal) => execute({ run, store: this.store, events, journal, log, signal: abort.signal }))
      .catch((err: unknown) => {
        this.o.log.error({ err, runId }, 'run crashed');
        return { ...run, state: 'failed' as const, error: String(err) };
      })
      .finally(() => this.active.delete(runId));
    this.active.set(runId, { abort, events, done });
  }

  /** Wait for a run this coordinator is running. */
  async wait(runId: string): Promise<RunRecord> {
    const active = this.active.get(runId);
    return active ? active.done : this.store.run(runId);
  }

  get(runId: string): Promise<RunRecord> {
    return this.store.run(runId);
  }

  list(limit?: number): Promise<RunRecord[]> {
    return this.store.list(limit);
  }

  /** Cancel a running run (its current setup is torn down). A finished one is left as it is. */
  async cancel(runId: string): Promise<RunRecord> {
    const active = this.active.get(runId);
    if (!active) return this.store.run(runId);
    active.abort.abort();
    return active.done;
  }

  async results(runId: string): Promise<{ run: RunRecord; measurements: MeasurementRecord[]; setup?: RunSetup }> {
    const setup = await this.store.setup(runId);
    return { run: await this.store.run(runId), measurements: await this.store.measurements(runId), ...(setup ? { setup } : {}) };
  }

  /**
   * Every event of a run after `afterSeq`, then live ones until the run's last. A run
   * this process is not running (finished, or left by a crashed coordinator) ends with
   * what the store has.
   */
  async *watch(runId: string, afterSeq = 0, signal?: AbortSignal): AsyncGenerator<RunEventRecord> {
    await this.store.run(runId);
    const active = this.active.get(runId);
    const queue: RunEventRecord[] = [];
    let wake: (() => void) | undefined;
    const listener = (e: RunEventRecord) => {
      queue.push(e);
      wake?.();
    };
    active?.events.listeners.add(listener);
    try {
      let last = afterSeq;
      for (const e of await this.store.events(runId, afterSeq)) {
        yield e;
        last = e.seq;
        if (e.runState) return;
      }
      if (!active) return;
      for (;;) {
        while (queue.length > 0) {
          const e = queue.shift()!;
          if (e.seq <= last) continue;
          yield e;
          last = e.seq;
          if (e.runState) return;
        }
        if (signal?.aborted) return;
        await new Promise<void>((resolve) => {
          wake = resolve;
          signal?.addEventListener('abort', () => resolve(), { once: true });
        });
      }
    } finally {
      active?.events.listeners.delete(listener);
    }
  }

  /** Tear down what a run left (after a crash). A run still running here is refused. */
  async cleanup(runId: string): Promise<CleanupReport> {
    if (this.active.has(runId)) throw new VcstorError('FAILED_PRECONDITION', `run ${runId} is still running; cancel it first`);
    const plan = await parsePlanText(await this.store.planText(runId), `plan of ${runId}`);
    return plan.cleanup(await UndoJournal.open(this.store, runId));
  }

  /** Cancel every running run (shutdown). */
  async stop(): Promise<void> {
    await Promise.all([...this.active.keys()].map((id) => this.cancel(id)));
  }
}
