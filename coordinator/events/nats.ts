/**
 * The JetStream side of the run event bus: the stream VCSTOR_RUNS (subjects
 * `vcstor.run.<runId>.event|result`), what may be published on it, and NATS failures as
 * VcstorErrors.
 */
import { DiscardPolicy, ErrorCode as NatsErrorCode, JSONCodec, NatsError, nanos, RetentionPolicy, StorageType, type NatsConnection, type StreamConfig } from 'nats';
import { VcstorError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';

/** The JetStream stream that holds every run's events and results. */
export const RUN_STREAM_NAME = 'VCSTOR_RUNS';
/** Subjects of {@link RUN_STREAM_NAME}: eventSubject() and resultSubject() of every run. */
export const RUN_STREAM_SUBJECTS = 'vcstor.run.>';

const DAY_MS = 24 * 60 * 60 * 1000;
/** Runs are looked at for weeks, not forever; the lab's disk is small. */
const RUN_STREAM_MAX_AGE_MS = 30 * DAY_MS;
const RUN_STREAM_MAX_BYTES = 1024 * 1024 * 1024;
/**
 * How long JetStream remembers message ids. A retry after a longer outage than this
 * could store an event twice; watch() skips such repeats by seq.
 */
const DUPLICATE_WINDOW_MS = 10 * 60 * 1000;

/**
 * Everything the coordinator publishes is under this prefix: a NATS account can then
 * allow the coordinator `vcstor.>` (and JetStream's API) and nothing else.
 */
export const VCSTOR_SUBJECT_PREFIX = 'vcstor.';

/** Events and results travel as JSON. */
export const codec = JSONCodec<unknown>();

/**
 * Creates VCSTOR_RUNS, or updates it when it exists with other limits. Idempotent.
 * @throws VcstorError as RunEventBus.connect().
 */
export async function ensureRunStream(nc: NatsConnection, timeoutMs: number, log: Logger | undefined): Promise<void> {
  const config: Partial<StreamConfig> & { name: string } = {
    name: RUN_STREAM_NAME,
    subjects: [RUN_STREAM_SUBJECTS],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    max_age: nanos(RUN_STREAM_MAX_AGE_MS),
    max_bytes: RUN_STREAM_MAX_BYTES,
    duplicate_window: nanos(DUPLICATE_WINDOW_MS),
    num_replicas: 1,
  };
  try {
    const jsm = await nc.jetstreamManager({ timeout: timeoutMs });
    try {
      // The server answers an add of an identical stream with success.
      await jsm.streams.add(config);
    } catch (err) {
      if (apiErrorCode(err) !== STREAM_NAME_IN_USE) throw err;
      const { name, storage: _storage, retention: _retention, ...changeable } = config;
      await jsm.streams.update(name, changeable);
      log?.info({ stream: name }, 'updated the run stream to the current limits');
    }
  } catch (err) {
    throw natsFailure(`ensuring the JetStream stream ${RUN_STREAM_NAME}`, err);
  }
}

/** JetStream's error code for "stream name already in use with a different configuration". */
const STREAM_NAME_IN_USE = 10058;

function apiErrorCode(err: unknown): number | undefined {
  return err instanceof NatsError ? err.api_error?.err_code : undefined;
}

/**
 * Errors after which the same publish cannot succeed: a JetStream API error that is not
 * about availability (e.g. message too large), or a payload over the server's maximum.
 * Everything else (timeouts, no responders, a dropped connection) is retried.
 */
export function isPermanentPublishError(err: unknown): boolean {
  if (!(err instanceof NatsError)) return false;
  if (err.code === NatsErrorCode.MaxPayloadExceeded) return true;
  const apiError = err.api_error;
  return apiError !== undefined && apiError.code >= 400 && apiError.code < 500;
}

/** A NATS failure as a VcstorError with a code the caller can act on. */
export function natsFailure(what: string, err: unknown): VcstorError {
  if (err instanceof VcstorError) return err;
  const detail = err instanceof Error ? err.message : String(err);
  if (err instanceof NatsError) {
    if (err.isAuthError() || err.isPermissionError() || err.code === NatsErrorCode.BadAuthentication) {
      return new VcstorError('PERMISSION_DENIED', `${what}: ${detail}`, { cause: err });
    }
    const apiError = err.api_error;
    if (apiError !== undefined && apiError.code !== 503) {
      return new VcstorError('FAILED_PRECONDITION', `${what}: ${apiError.description} (JetStream error ${apiError.err_code})`, { cause: err });
    }
    if (err.code === NatsErrorCode.JetStreamNotEnabled || err.code === NatsErrorCode.NoResponders || err.code === '503') {
      return new VcstorError('UNAVAILABLE', `${what}: JetStream does not answer (is the server started with -js?)`, { cause: err });
    }
  }
  return new VcstorError('UNAVAILABLE', `${what}: ${detail}`, { cause: err });
}

/**
 * A run id becomes one token of a NATS subject: it must not contain what separates
 * tokens or acts as a wildcard.
 */
export function checkRunId(runId: string): void {
  if (typeof runId !== 'string' || !/^[^\s.*>]+$/.test(runId)) {
    throw new VcstorError('INVALID_ARGUMENT', `runId: ${JSON.stringify(runId)} cannot be a NATS subject token (empty, or has whitespace, ".", "*" or ">")`);
  }
}

export function checkSeq(seq: number): void {
  if (!Number.isSafeInteger(seq) || seq < 1) throw new VcstorError('INVALID_ARGUMENT', `seq: ${seq} is not a positive integer`);
}

/**
 * The coordinator publishes only under `vcstor.>`: a subject elsewhere is a bug here,
 * refused before it reaches the wire (and a NATS account should refuse it too).
 */
export function assertVcstorSubject(subject: string): void {
  if (!subject.startsWith(VCSTOR_SUBJECT_PREFIX) || /[\s*>]/.test(subject) || subject.split('.').some((token) => token === '')) {
    throw new VcstorError('INTERNAL', `refusing to publish on ${JSON.stringify(subject)}: the coordinator publishes only on literal subjects under ${VCSTOR_SUBJECT_PREFIX}>`);
  }
}

