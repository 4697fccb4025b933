/**
 * Watching a run on NATS: its events replayed from the stream VCSTOR_RUNS, then followed
 * live, up to the run's last event.
 */
import type { ConsumerMessages, JetStreamClient } from 'nats';
import { VcstorError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { eventSubject, type RunEventRecord, type RunState, type StepState } from '../model.js';
import { checkRunId, codec, natsFailure, RUN_STREAM_NAME } from './nats.js';

/** Options of {@link RunEventBus.watch}. */
export interface WatchOptions {
  /** Skip events with seq <= afterSeq (the run's event seq, not JetStream's). */
  afterSeq?: number;
  /** Ends the watch; the iteration then throws a CANCELLED VcstorError. */
  signal?: AbortSignal;
}

/**
 * Replays every stored event of a run in order (from the start, or after
 * `options.afterSeq`), then follows live events, and ends after the event that carries
 * runState (the run's last). Uses an ordered consumer (ephemeral, no acks) filtered to
 * the run's event subject; events repeated in the stream are skipped by seq.
 *
 * Does not buffer: a watch needs NATS to start (the consumer is created at the first
 * next(), not when watch() is called); once started it rides out reconnects, as
 * nats.js recreates the ordered consumer.
 *
 * @throws (while iterating) VcstorError CANCELLED when `options.signal` aborts;
 *   UNAVAILABLE when NATS cannot be reached to start the watch, or the connection
 *   closes before the run's last event; INVALID_ARGUMENT for a bad run id.
 */
export async function* watchRun(js: JetStreamClient, runId: string, options: WatchOptions, log: Logger | undefined): AsyncGenerator<RunEventRecord, void, undefined> {
  checkRunId(runId);
  const { signal } = options;
  if (signal?.aborted) throw watchCancelled(runId);
  let messages: ConsumerMessages;
  let deleteConsumer: () => Promise<unknown>;
  try {
    const consumer = await js.consumers.get(RUN_STREAM_NAME, {
      filterSubjects: eventSubject(runId),
      // A watcher that vanished without cleanup leaves a consumer for this long only.
      inactive_threshold: 60_000,
    });
    deleteConsumer = () => consumer.delete();
    messages = await consumer.consume({ max_messages: 256 });
  } catch (err) {
    throw natsFailure(`starting a watch of run ${runId}`, err);
  }
  const stop = (): void => messages.stop();
  signal?.addEventListener('abort', stop, { once: true });
  let lastSeq = options.afterSeq ?? 0;
  try {
    for await (const message of messages) {
      const event = decodeEvent(message.data);
      if (event === undefined || event.runId !== runId) {
        log?.warn({ runId, subject: message.subject, streamSeq: message.seq }, 'skipping a message on a run event subject that is not an event of that run');
        continue;
      }
      if (event.seq <= lastSeq) continue;
      lastSeq = event.seq;
      yield event;
      if (event.runState !== undefined) return;
    }
  } finally {
    signal?.removeEventListener('abort', stop);
    messages.stop();
    // The server would remove it after inactive_threshold anyway; this spares it the wait.
    deleteConsumer().catch(() => undefined);
  }
  if (signal?.aborted) throw watchCancelled(runId);
  throw new VcstorError('UNAVAILABLE', `the watch of run ${runId} ended before the run's last event: the NATS connection closed`);
}

function watchCancelled(runId: string): VcstorError {
  return new VcstorError('CANCELLED', `the watch of run ${runId} was cancelled`);
}

const STEP_STATES: ReadonlySet<string> = new Set<StepState>(['started', 'progress', 'succeeded', 'failed', 'skipped', 'cancelled']);
const RUN_STATES: ReadonlySet<string> = new Set<RunState>(['pending', 'running', 'succeeded', 'failed', 'cancelled']);

/** A stored message as a RunEventRecord, or undefined when it is not one. */
function decodeEvent(data: Uint8Array): RunEventRecord | undefined {
  let value: unknown;
  try {
    value = codec.decode(data);
  } catch {
    return undefined;
  }
  if (value === null || typeof value !== 'object') return undefined;
  const e = value as Record<string, unknown>;
  const valid =
    typeof e.runId === 'string' &&
    typeof e.seq === 'number' &&
    Number.isSafeInteger(e.seq) &&
    typeof e.timeUnixMs === 'number' &&
    typeof e.stepId === 'string' &&
    typeof e.state === 'string' &&
    STEP_STATES.has(e.state) &&
    typeof e.message === 'string' &&
    (e.runState === undefined || (typeof e.runState === 'string' && RUN_STATES.has(e.runState)));
  return valid ? (value as RunEventRecord) : undefined;
}

