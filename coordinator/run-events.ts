import type { MeasurementRecord, RunEventRecord, RunRecord, StepState } from './model.js';
import type { RunStore } from './store.js';

/** Where events go besides the run's store: NATS (JetStream). Must not throw when NATS is down. */
export interface EventPublisher {
  publishEvent(event: RunEventRecord): Promise<void>;
  publishResult(measurement: MeasurementRecord & { seq: number }): Promise<void>;
}

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

  /**
   * Record an event; resolves once it is stored (events are written in order).
   * @throws the store's error when the event cannot be written.
   */
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

/** An event of a run's step: state, message, and progress or a measurement. */
export type StepEmitter = (stepId: string, state: StepState, message?: string, extra?: Partial<RunEventRecord>) => Promise<unknown>;

/**
 * The run's last event, after its record is saved: its final state, and why.
 * @throws when the store cannot be written.
 */
/**
 * A run's end state once its work is over: cancelled when its signal aborted; with `err`
 * (the work threw) failed with its message; else failed when a step failed, succeeded
 * when none did.
 */
export function settleRun(run: RunRecord, signal: AbortSignal, err?: unknown): void {
  if (signal.aborted) {
    run.state = 'cancelled';
    run.error = err === undefined ? 'cancelled' : err instanceof Error ? err.message : String(err);
  } else if (err !== undefined) {
    run.state = 'failed';
    run.error = err instanceof Error ? err.message : String(err);
  } else {
    run.state = run.stepsFailed > 0 ? 'failed' : 'succeeded';
  }
}

export async function finishRun(run: RunRecord, store: RunStore, step: StepEmitter): Promise<RunRecord> {
  run.finishedUnixMs = Date.now();
  await store.saveRun(run);
  await step('run', run.state === 'succeeded' ? 'succeeded' : run.state === 'cancelled' ? 'cancelled' : 'failed', run.error || `${run.stepsSucceeded} steps ok, ${run.stepsFailed} failed`, { runState: run.state });
  return run;
}
