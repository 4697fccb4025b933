/**
 * The coordinator's NATS layer: every event and result of a run goes to the JetStream
 * stream VCSTOR_RUNS (subjects `vcstor.run.<runId>.event|result`), with a message id per
 * event so that a retried publish is stored once. Watchers replay a run from the stream
 * and then follow it live.
 *
 * NATS being down must never stop a campaign: publishes go through an in-memory buffer
 * that one pump drains, one message at a time and in order, whenever the connection is
 * up. nats.js reconnects by itself; its status() iterator tells the pump when to go on.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import {
  connect,
  DiscardPolicy,
  nkeyAuthenticator,
  ErrorCode as NatsErrorCode,
  Events,
  JSONCodec,
  NatsError,
  nanos,
  RetentionPolicy,
  StorageType,
  type ConnectionOptions,
  type ConsumerMessages,
  type JetStreamClient,
  type NatsConnection,
  type StreamConfig,
} from 'nats';
import { z } from 'zod';
import { VcstorError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { eventSubject, resultSubject, type MeasurementRecord, type RunEventRecord, type RunState, type StepState } from './model.js';

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

const DEFAULT_MAX_BUFFERED = 10_000;
const DEFAULT_PUBLISH_TIMEOUT_MS = 5_000;
const DEFAULT_RECONNECT_WAIT_MS = 1_000;
const RETRY_BACKOFF_FIRST_MS = 200;
const RETRY_BACKOFF_MAX_MS = 5_000;

/**
 * Everything the coordinator publishes is under this prefix: a NATS account can then
 * allow the coordinator `vcstor.>` (and JetStream's API) and nothing else.
 */
export const VCSTOR_SUBJECT_PREFIX = 'vcstor.';

/** TLS to the NATS server: the CA that signed its certificate; a client cert if it verifies clients. */
export interface NatsTlsOptions {
  ca: string;
  cert?: string;
  key?: string;
}

/** Options of {@link RunEventBus.connect}. */
export interface RunEventBusOptions {
  /** One NATS URL, or several separated by commas (e.g. "nats://10.0.0.2:4222"). */
  servers: string;
  /** User/password auth. At most one of user, token and nkeySeed. */
  user?: string;
  pass?: string;
  /** Token auth (the server's `authorization { token }`). */
  token?: string;
  /** Nkey auth: the user's seed ("SU..."); only a signature of the server's nonce leaves this process. */
  nkeySeed?: string;
  /** TLS (PEM files); the connection then refuses a server whose certificate `ca` did not sign. */
  tls?: NatsTlsOptions;
  /** The connection's name, as the server's monitoring shows it. */
  name?: string;
  log?: Logger;
  /**
   * How many publishes the buffer holds while NATS is unreachable (default 10,000).
   * Beyond that the oldest progress events are dropped; step state changes, final events
   * and results are never dropped, even if that means going over this bound.
   */
  maxBufferedEvents?: number;
  /** How long one publish waits for JetStream's acknowledgement (default 5 s). */
  publishTimeoutMs?: number;
  /** Pause between reconnect attempts (default 1 s); nats.js retries forever. */
  reconnectWaitMs?: number;
}

/** What {@link RunEventBus.flush} found when it returned. */
export interface FlushReport {
  /** Publishes still buffered (not yet acknowledged by JetStream). 0: all stored. */
  pending: number;
  /** Progress events dropped since the bus was connected because the buffer was full. */
  droppedProgress: number;
  /** Publishes JetStream refused for good (e.g. too large), logged and discarded. */
  rejected: number;
  /** Whether the NATS connection is up right now. */
  connected: boolean;
}

/** Options of {@link RunEventBus.watch}. */
export interface WatchOptions {
  /** Skip events with seq <= afterSeq (the run's event seq, not JetStream's). */
  afterSeq?: number;
  /** Ends the watch; the iteration then throws a CANCELLED VcstorError. */
  signal?: AbortSignal;
}

/** One buffered publish. */
interface PendingPublish {
  subject: string;
  msgId: string;
  payload: Uint8Array;
  /** Progress events may be dropped when the buffer is full; nothing else may. */
  droppable: boolean;
  /** Lets a waiting publishEvent()/publishResult() return: stored, or left buffered. */
  release?: () => void;
}

const codec = JSONCodec<unknown>();

/**
 * Publishes a run's events and results to JetStream and replays them to watchers.
 * Create with {@link RunEventBus.connect}; one per coordinator process.
 */
export class RunEventBus {
  private readonly nc: NatsConnection;
  private readonly js: JetStreamClient;
  private readonly log: Logger | undefined;
  private readonly maxBuffered: number;
  private readonly publishTimeoutMs: number;

  /** Publishes not yet acknowledged, oldest first; queue[0] is the next (or the one in flight). */
  private readonly queue: PendingPublish[] = [];
  private inFlight: PendingPublish | undefined;
  private pumpRunning: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryBackoffMs = RETRY_BACKOFF_FIRST_MS;
  /** After a reconnect or failure, make sure the stream is there before publishing again. */
  private streamCheckDue = false;
  private connected = true;
  /** Called when the connection drops, so an in-flight publish stops waiting for its ack. */
  private readonly connectionLostListeners = new Set<() => void>();
  private readonly flushWaiters = new Set<() => void>();
  private droppedProgress = 0;
  private rejected = 0;
  private overCapacityWarned = false;
  private failureStreak = 0;
  private closing = false;

  private constructor(nc: NatsConnection, options: RunEventBusOptions) {
    this.nc = nc;
    this.js = nc.jetstream({ timeout: options.publishTimeoutMs ?? DEFAULT_PUBLISH_TIMEOUT_MS });
    this.log = options.log;
    this.maxBuffered = Math.max(1, options.maxBufferedEvents ?? DEFAULT_MAX_BUFFERED);
    this.publishTimeoutMs = options.publishTimeoutMs ?? DEFAULT_PUBLISH_TIMEOUT_MS;
  }

  /**
   * Connects to NATS and creates or updates the stream VCSTOR_RUNS (idempotent). Once
   * connected, the bus reconnects by itself for as long as it lives.
   *
   * @throws VcstorError UNAVAILABLE (retryable) when no server answers or JetStream is not
   *   enabled; PERMISSION_DENIED when the credentials are refused; FAILED_PRECONDITION
   *   when an existing VCSTOR_RUNS cannot be changed to this configuration.
   */
  static async connect(options: RunEventBusOptions): Promise<RunEventBus> {
    const servers = options.servers
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    if (servers.length === 0) throw new VcstorError('INVALID_ARGUMENT', 'servers: at least one NATS URL is needed');
    const connectionOptions: ConnectionOptions = {
      servers,
      // nats.js gives up after 10 attempts by default, and then the bus would buffer forever.
      maxReconnectAttempts: -1,
      reconnectTimeWait: options.reconnectWaitMs ?? DEFAULT_RECONNECT_WAIT_MS,
      // The default (2 min x 2 pings) takes 4 minutes to notice a silent network; publishes
      // would time out one by one meanwhile.
      pingInterval: 10_000,
      maxPingOut: 3,
      timeout: 5_000,
    };
    if (options.user !== undefined) connectionOptions.user = options.user;
    if (options.pass !== undefined) connectionOptions.pass = options.pass;
    if (options.token !== undefined) connectionOptions.token = options.token;
    if (options.nkeySeed !== undefined) connectionOptions.authenticator = nkeyAuthenticator(new TextEncoder().encode(options.nkeySeed));
    if (options.tls !== undefined) {
      connectionOptions.tls = { caFile: options.tls.ca, ...(options.tls.cert ? { certFile: options.tls.cert } : {}), ...(options.tls.key ? { keyFile: options.tls.key } : {}) };
    }
    if (options.name !== undefined) connectionOptions.name = options.name;
    let nc: NatsConnection;
    try {
      nc = await connect(connectionOptions);
    } catch (err) {
      throw natsFailure(`connecting to NATS at ${servers.map(withoutCredentials).join(',')}`, err);
    }
    const bus = new RunEventBus(nc, options);
    // Before anything else, so that no status change goes unseen.
    bus.followConnectionStatus();
    try {
      await bus.ensureStream();
    } catch (err) {
      bus.closing = true;
      await nc.close().catch(() => undefined);
      throw err;
    }
    bus.log?.info({ servers: servers.map(withoutCredentials), stream: RUN_STREAM_NAME }, 'connected to NATS');
    return bus;
  }

  /**
   * Publishes one event of a run to JetStream, on eventSubject(runId) with message id
   * `${runId}-${seq}`: publishing the same event again stores it once (within the stream's
   * duplicate window of 10 minutes).
   *
   * Buffers: resolves once JetStream acknowledged the event or, when NATS is unreachable
   * or earlier publishes are still waiting, once it is buffered; buffered events are sent
   * in order when the connection comes back (see {@link flush}). Never rejects because
   * NATS is down.
   *
   * @throws VcstorError INVALID_ARGUMENT for a run id that is not a NATS subject token or
   *   a seq that is not a positive integer; FAILED_PRECONDITION after close().
   */
  async publishEvent(event: RunEventRecord): Promise<void> {
    this.assertOpen();
    checkRunId(event.runId);
    checkSeq(event.seq);
    const droppable = event.state === 'progress' && event.runState === undefined && event.measurement === undefined;
    await this.enqueue({ subject: eventSubject(event.runId), msgId: `${event.runId}-${event.seq}`, payload: codec.encode(event), droppable });
  }

  /**
   * Publishes one result of a run to JetStream, on resultSubject(runId) with message id
   * `${runId}-r${seq}` (stored once however often it is published). Buffers like
   * {@link publishEvent}; results are never dropped.
   *
   * @throws VcstorError INVALID_ARGUMENT, FAILED_PRECONDITION as publishEvent().
   */
  async publishResult(measurement: MeasurementRecord & { seq: number }): Promise<void> {
    this.assertOpen();
    checkRunId(measurement.runId);
    checkSeq(measurement.seq);
    await this.enqueue({
      subject: resultSubject(measurement.runId),
      msgId: `${measurement.runId}-r${measurement.seq}`,
      payload: codec.encode(measurement),
      droppable: false,
    });
  }

  /**
   * Waits until every buffered publish is stored, or `timeoutMs` passed. Never throws.
   *
   * @returns what is still buffered (pending 0: everything published so far is stored).
   */
  async flush(timeoutMs: number): Promise<FlushReport> {
    if (this.queue.length > 0 && !this.closing) {
      this.kick();
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.flushWaiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, Math.max(0, timeoutMs));
        this.flushWaiters.add(done);
      });
    }
    return this.report();
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
   *   closes before the run's last event; INVALID_ARGUMENT for a bad run id;
   *   FAILED_PRECONDITION after close().
   */
  async *watch(runId: string, options: WatchOptions = {}): AsyncGenerator<RunEventRecord, void, undefined> {
    this.assertOpen();
    checkRunId(runId);
    const { signal } = options;
    if (signal?.aborted) throw watchCancelled(runId);
    let messages: ConsumerMessages;
    let deleteConsumer: () => Promise<unknown>;
    try {
      const consumer = await this.js.consumers.get(RUN_STREAM_NAME, {
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
          this.log?.warn({ runId, subject: message.subject, streamSeq: message.seq }, 'skipping a message on a run event subject that is not an event of that run');
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

  /**
   * Drains the NATS connection (pending acks and watchers finish) and closes it.
   * Idempotent. What is still buffered is discarded and logged: call flush() first to
   * wait for it.
   */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    await this.pumpRunning;
    if (this.queue.length > 0) {
      this.log?.warn({ discarded: this.queue.length, stream: RUN_STREAM_NAME }, 'closing the NATS connection with publishes still buffered; they are lost');
    }
    this.releaseWaiters();
    for (const wake of [...this.flushWaiters]) wake();
    if (this.nc.isClosed()) return;
    if (this.connected) {
      await this.nc.drain().catch((err: unknown) => this.log?.warn({ err }, 'draining the NATS connection failed'));
    }
    // drain() needs the server; when it is gone, or drain failed, close outright.
    if (!this.nc.isClosed()) await this.nc.close().catch(() => undefined);
  }

  private report(): FlushReport {
    return { pending: this.queue.length, droppedProgress: this.droppedProgress, rejected: this.rejected, connected: this.connected && !this.nc.isClosed() };
  }

  private assertOpen(): void {
    if (this.closing) throw new VcstorError('FAILED_PRECONDITION', 'the run event bus is closed');
  }

  /**
   * Adds a publish to the buffer, dropping the oldest progress event if it is full.
   * Waits for the acknowledgement only when nothing else is waiting and NATS is up, so a
   * caller is never held up by an outage or a backlog.
   */
  private enqueue(item: PendingPublish): Promise<void> {
    assertVcstorSubject(item.subject);
    const waitForAck = this.connected && this.queue.length === 0 && this.retryTimer === undefined;
    if (this.queue.length >= this.maxBuffered) {
      const victim = this.queue.findIndex((p) => p.droppable && p !== this.inFlight);
      if (victim >= 0) {
        const [dropped] = this.queue.splice(victim, 1);
        dropped?.release?.();
        this.countDropped();
      } else if (item.droppable) {
        this.countDropped();
        return Promise.resolve();
      } else if (!this.overCapacityWarned) {
        this.overCapacityWarned = true;
        this.log?.warn({ buffered: this.queue.length, maxBuffered: this.maxBuffered }, 'NATS publish buffer is full of state changes and results, which are never dropped: buffering beyond the bound');
      }
    }
    this.queue.push(item);
    if (!waitForAck) {
      this.kick();
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      item.release = resolve;
      this.kick();
    });
  }

  private countDropped(): void {
    this.droppedProgress++;
    // One line at the first drop and then every thousand, not one per event.
    if (this.droppedProgress === 1 || this.droppedProgress % 1000 === 0) {
      this.log?.warn({ droppedProgress: this.droppedProgress, maxBuffered: this.maxBuffered }, 'NATS unreachable and the publish buffer is full: dropping the oldest progress events');
    }
  }

  /** Starts the pump unless it runs already, or has nothing it can do now. */
  private kick(): void {
    if (this.pumpRunning !== undefined || this.closing || !this.connected || this.retryTimer !== undefined || this.queue.length === 0) return;
    this.pumpRunning = this.pump()
      .catch((err: unknown) => this.log?.error({ err }, 'the NATS publish pump failed'))
      .finally(() => {
        this.pumpRunning = undefined;
        // Something may have been enqueued between the loop's last check and here.
        this.kick();
      });
  }

  /**
   * Publishes the buffer head first, one at a time: the stream keeps them in this order,
   * and a failed publish is retried before anything after it is sent.
   */
  private async pump(): Promise<void> {
    while (!this.closing && this.connected && this.retryTimer === undefined && this.queue.length > 0) {
      if (this.streamCheckDue) {
        try {
          await this.ensureStream();
          this.streamCheckDue = false;
        } catch (err) {
          this.failed(err);
          return;
        }
      }
      const item = this.queue[0];
      if (item === undefined) return;
      this.inFlight = item;
      try {
        await this.publishOnce(item);
      } catch (err) {
        if (!isPermanentPublishError(err)) {
          this.failed(err);
          return;
        }
        this.rejected++;
        this.log?.error({ err, subject: item.subject, msgId: item.msgId }, 'JetStream refused a run event for good; discarding it');
      } finally {
        this.inFlight = undefined;
      }
      this.remove(item);
      item.release?.();
      if (this.failureStreak > 0) {
        this.log?.info({ buffered: this.queue.length }, 'publishing run events to JetStream again');
        this.failureStreak = 0;
      }
      this.retryBackoffMs = RETRY_BACKOFF_FIRST_MS;
      if (this.queue.length === 0) {
        this.overCapacityWarned = false;
        for (const wake of [...this.flushWaiters]) wake();
      }
    }
  }

  private async publishOnce(item: PendingPublish): Promise<void> {
    const ack = this.js.publish(item.subject, item.payload, {
      msgID: item.msgId,
      expect: { streamName: RUN_STREAM_NAME },
      timeout: this.publishTimeoutMs,
    });
    // When the connection drops the request would sit until its timeout; stop waiting at
    // once. The message id makes the retry safe if the old request still gets through.
    ack.catch(() => undefined);
    let abandon: () => void = () => undefined;
    const lost = new Promise<never>((_resolve, reject) => {
      abandon = () => reject(new VcstorError('UNAVAILABLE', 'the NATS connection dropped while publishing'));
    });
    this.connectionLostListeners.add(abandon);
    try {
      await Promise.race([ack, lost]);
    } finally {
      this.connectionLostListeners.delete(abandon);
    }
  }

  private connectionDropped(): void {
    this.connected = false;
    for (const abandon of [...this.connectionLostListeners]) abandon();
    this.releaseWaiters();
  }

  private remove(item: PendingPublish): void {
    const index = this.queue.indexOf(item);
    if (index >= 0) this.queue.splice(index, 1);
  }

  /** A publish failed for a reason that may pass: keep the buffer, retry later. */
  private failed(err: unknown): void {
    this.failureStreak++;
    // The stream may be gone (a server that came back empty): check it before retrying.
    this.streamCheckDue = true;
    const fields = { err: err instanceof Error ? err.message : String(err), buffered: this.queue.length, connected: this.connected };
    if (this.failureStreak === 1) this.log?.warn(fields, 'publishing to JetStream failed; buffering run events until it works again');
    else this.log?.debug(fields, 'publishing to JetStream failed again');
    this.releaseWaiters();
    // While disconnected the reconnect status restarts the pump; no timer needed.
    if (this.connected && !this.closing) {
      const delay = this.retryBackoffMs;
      this.retryBackoffMs = Math.min(RETRY_BACKOFF_MAX_MS, this.retryBackoffMs * 2);
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.kick();
      }, delay);
      this.retryTimer.unref();
    }
  }

  /** Lets every publisher that waits for an ack go on; their publishes stay buffered. */
  private releaseWaiters(): void {
    for (const item of this.queue) {
      item.release?.();
      delete item.release;
    }
  }

  /** Watches nats.js's connection status for as long as the connection lives. */
  private followConnectionStatus(): void {
    void (async () => {
      for await (const status of this.nc.status()) {
        switch (status.type) {
          case Events.Disconnect:
            this.connectionDropped();
            this.log?.warn({ server: withoutCredentials(String(status.data)), buffered: this.queue.length }, 'NATS connection lost; buffering run events');
            break;
          case Events.Reconnect:
            this.connected = true;
            this.streamCheckDue = true;
            this.retryBackoffMs = RETRY_BACKOFF_FIRST_MS;
            clearTimeout(this.retryTimer);
            this.retryTimer = undefined;
            this.log?.info({ server: withoutCredentials(String(status.data)), buffered: this.queue.length }, 'NATS connection back; sending buffered run events');
            this.kick();
            break;
          case Events.Error:
            this.log?.warn({ err: String(status.data) }, 'NATS reported an error');
            break;
          default:
            this.log?.debug({ status: status.type, data: String(status.data) }, 'NATS connection status');
        }
      }
    })().catch((err: unknown) => this.log?.error({ err }, 'following the NATS connection status failed'));
    void this.nc.closed().then((err) => {
      this.connectionDropped();
      if (!this.closing) this.log?.error({ err: err?.message, buffered: this.queue.length }, 'NATS connection closed for good; run events stay buffered');
    });
  }

  /**
   * Creates VCSTOR_RUNS, or updates it when it exists with other limits. Idempotent.
   * @throws VcstorError as connect().
   */
  private async ensureStream(): Promise<void> {
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
      const jsm = await this.nc.jetstreamManager({ timeout: this.publishTimeoutMs });
      try {
        // The server answers an add of an identical stream with success.
        await jsm.streams.add(config);
      } catch (err) {
        if (apiErrorCode(err) !== STREAM_NAME_IN_USE) throw err;
        const { name, storage: _storage, retention: _retention, ...changeable } = config;
        await jsm.streams.update(name, changeable);
        this.log?.info({ stream: name }, 'updated the run stream to the current limits');
      }
    } catch (err) {
      throw natsFailure(`ensuring the JetStream stream ${RUN_STREAM_NAME}`, err);
    }
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
function isPermanentPublishError(err: unknown): boolean {
  if (!(err instanceof NatsError)) return false;
  if (err.code === NatsErrorCode.MaxPayloadExceeded) return true;
  const apiError = err.api_error;
  return apiError !== undefined && apiError.code >= 400 && apiError.code < 500;
}

/** A NATS failure as a VcstorError with a code the caller can act on. */
function natsFailure(what: string, err: unknown): VcstorError {
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

function watchCancelled(runId: string): VcstorError {
  return new VcstorError('CANCELLED', `the watch of run ${runId} was cancelled`);
}

/**
 * A run id becomes one token of a NATS subject: it must not contain what separates
 * tokens or acts as a wildcard.
 */
function checkRunId(runId: string): void {
  if (typeof runId !== 'string' || !/^[^\s.*>]+$/.test(runId)) {
    throw new VcstorError('INVALID_ARGUMENT', `runId: ${JSON.stringify(runId)} cannot be a NATS subject token (empty, or has whitespace, ".", "*" or ">")`);
  }
}

function checkSeq(seq: number): void {
  if (!Number.isSafeInteger(seq) || seq < 1) throw new VcstorError('INVALID_ARGUMENT', `seq: ${seq} is not a positive integer`);
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

/**
 * The coordinator publishes only under `vcstor.>`: a subject elsewhere is a bug here,
 * refused before it reaches the wire (and a NATS account should refuse it too).
 */
export function assertVcstorSubject(subject: string): void {
  if (!subject.startsWith(VCSTOR_SUBJECT_PREFIX) || /[\s*>]/.test(subject) || subject.split('.').some((token) => token === '')) {
    throw new VcstorError('INTERNAL', `refusing to publish on ${JSON.stringify(subject)}: the coordinator publishes only on literal subjects under ${VCSTOR_SUBJECT_PREFIX}>`);
  }
}

const absolutePath = z.string().refine((p) => path.isAbsolute(p) && path.normalize(p) === p, 'must be an absolute, normalised path');

/**
 * The `nats:` section of a plan and of the coordinator's config. Secrets are files
 * (never values in the plan, which is kept with the run): a password, a token or an
 * nkey seed, at most one way to authenticate.
 */
export const natsSettingsSchema = z
  .object({
    /** nats://host:port or tls://host:port, several separated by commas. */
    url: z.string().regex(/^(nats|tls):\/\/[A-Za-z0-9.:[\]-]+(,(nats|tls):\/\/[A-Za-z0-9.:[\]-]+)*$/, 'must be nats://host:port or tls://host:port (no credentials in the URL: use the *File fields)'),
    user: z.string().regex(/^[A-Za-z0-9._@-]{1,128}$/, 'must be 1-128 letters, digits and . _ @ -').optional(),
    passwordFile: absolutePath.optional(),
    tokenFile: absolutePath.optional(),
    /** A file holding the user's nkey seed (SU...), as `nk -gen user` writes it. */
    nkeySeedFile: absolutePath.optional(),
    tls: z
      .object({ ca: absolutePath, cert: absolutePath.optional(), key: absolutePath.optional() })
      .strict()
      .refine((t) => (t.cert === undefined) === (t.key === undefined), 'give both cert and key (a client certificate), or neither')
      .optional(),
  })
  .strict()
  .refine((n) => [n.user !== undefined, n.tokenFile !== undefined, n.nkeySeedFile !== undefined].filter(Boolean).length <= 1, 'use one of user (with passwordFile), tokenFile or nkeySeedFile')
  .refine((n) => n.passwordFile === undefined || n.user !== undefined, 'passwordFile needs user');

export type NatsSettings = z.output<typeof natsSettingsSchema>;

/**
 * The connection options of a plan's or config's `nats:` section, secrets read from
 * their files (trailing whitespace dropped).
 * @throws VcstorError INVALID_ARGUMENT naming the field whose file cannot be read or
 *   holds no usable secret (the secret itself never appears in the message).
 */
export async function natsOptionsFromSettings(settings: NatsSettings, source: string): Promise<Pick<RunEventBusOptions, 'servers' | 'user' | 'pass' | 'token' | 'nkeySeed' | 'tls'>> {
  const secret = async (file: string, field: string, pattern?: RegExp, what?: string) => {
    let value: string;
    try {
      value = (await readFile(file, 'utf8')).trim();
    } catch (err) {
      throw new VcstorError('INVALID_ARGUMENT', `invalid ${source}: nats.${field}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    if (value === '' || (pattern && !pattern.test(value))) throw new VcstorError('INVALID_ARGUMENT', `invalid ${source}: nats.${field}: ${file} does not hold ${what ?? 'a secret'}`);
    return value;
  };
  return {
    servers: settings.url,
    ...(settings.user !== undefined ? { user: settings.user } : {}),
    ...(settings.passwordFile !== undefined ? { pass: await secret(settings.passwordFile, 'passwordFile') } : {}),
    ...(settings.tokenFile !== undefined ? { token: await secret(settings.tokenFile, 'tokenFile') } : {}),
    ...(settings.nkeySeedFile !== undefined ? { nkeySeed: await secret(settings.nkeySeedFile, 'nkeySeedFile', /^SU[A-Z2-7]{56}$/, 'a user nkey seed (SU...)') } : {}),
    ...(settings.tls !== undefined ? { tls: settings.tls } : {}),
  };
}

/** "nats://user:secret@host:4222" as "nats://***@host:4222", for logs and errors. */
function withoutCredentials(url: string): string {
  return url.replace(/\/\/[^/@]*@/, '//***@');
}
