/**
 * The coordinator's NATS layer: every event and result of a run goes to the JetStream
 * stream VCSTOR_RUNS (subjects `vcstor.run.<runId>.event|result`), with a message id per
 * event so that a retried publish is stored once. Watchers replay a run from the stream
 * and then follow it live.
 *
 * NATS being down must never stop a campaign: publishes go through an in-memory buffer
 * that one pump drains, one message at a time and in order, whenever the connection is
 * up (events/publish-buffer.ts). nats.js reconnects by itself; its status() iterator
 * tells the buffer when to go on. Watchers: events/watch.ts. The `nats:` section of
 * plans and configs: events/settings.ts.
 */
import { connect, Events, nkeyAuthenticator, type ConnectionOptions, type JetStreamClient, type NatsConnection } from 'nats';
import { VcstorError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { eventSubject, resultSubject, type MeasurementRecord, type RunEventRecord } from './model.js';
import { checkRunId, checkSeq, codec, ensureRunStream, natsFailure, RUN_STREAM_NAME } from './events/nats.js';
import { PublishBuffer, type FlushReport } from './events/publish-buffer.js';
import { withoutCredentials, type NatsConnectOptions } from './events/settings.js';
import { watchRun, type WatchOptions } from './events/watch.js';

export { assertVcstorSubject, RUN_STREAM_NAME, RUN_STREAM_SUBJECTS, VCSTOR_SUBJECT_PREFIX } from './events/nats.js';
export type { FlushReport } from './events/publish-buffer.js';
export { natsOptionsFromSettings, natsSettingsSchema, type NatsConnectOptions, type NatsSettings, type NatsTlsOptions } from './events/settings.js';
export type { WatchOptions } from './events/watch.js';

const DEFAULT_MAX_BUFFERED = 10_000;
const DEFAULT_PUBLISH_TIMEOUT_MS = 5_000;
const DEFAULT_RECONNECT_WAIT_MS = 1_000;

/** Options of {@link RunEventBus.connect}. */
export interface RunEventBusOptions extends NatsConnectOptions {
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

/**
 * Publishes a run's events and results to JetStream and replays them to watchers.
 * Create with {@link RunEventBus.connect}; one per coordinator process.
 */
export class RunEventBus {
  private readonly nc: NatsConnection;
  private readonly js: JetStreamClient;
  private readonly log: Logger | undefined;
  private readonly publishTimeoutMs: number;
  private readonly buffer: PublishBuffer;
  private closing = false;

  private constructor(nc: NatsConnection, options: RunEventBusOptions) {
    this.nc = nc;
    this.js = nc.jetstream({ timeout: options.publishTimeoutMs ?? DEFAULT_PUBLISH_TIMEOUT_MS });
    this.log = options.log;
    this.publishTimeoutMs = options.publishTimeoutMs ?? DEFAULT_PUBLISH_TIMEOUT_MS;
    const sink = {
      send: (item: { subject: string; payload: Uint8Array; msgId: string }) => this.js.publish(item.subject, item.payload, { msgID: item.msgId, expect: { streamName: RUN_STREAM_NAME }, timeout: this.publishTimeoutMs }),
      ensureStream: () => ensureRunStream(this.nc, this.publishTimeoutMs, this.log),
    };
    this.buffer = new PublishBuffer(sink, Math.max(1, options.maxBufferedEvents ?? DEFAULT_MAX_BUFFERED), this.log);
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
      await ensureRunStream(nc, bus.publishTimeoutMs, bus.log);
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
    await this.buffer.enqueue({ subject: eventSubject(event.runId), msgId: `${event.runId}-${event.seq}`, payload: codec.encode(event), droppable });
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
    await this.buffer.enqueue({
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
    await this.buffer.drain(timeoutMs);
    return this.buffer.report(!this.nc.isClosed());
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
    yield* watchRun(this.js, runId, options, this.log);
  }

  /**
   * Drains the NATS connection (pending acks and watchers finish) and closes it.
   * Idempotent. What is still buffered is discarded and logged: call flush() first to
   * wait for it.
   */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    await this.buffer.close();
    if (this.nc.isClosed()) return;
    if (this.buffer.isConnected) {
      await this.nc.drain().catch((err: unknown) => this.log?.warn({ err }, 'draining the NATS connection failed'));
    }
    // drain() needs the server; when it is gone, or drain failed, close outright.
    if (!this.nc.isClosed()) await this.nc.close().catch(() => undefined);
  }

  private assertOpen(): void {
    if (this.closing) throw new VcstorError('FAILED_PRECONDITION', 'the run event bus is closed');
  }

  /** Watches nats.js's connection status for as long as the connection lives. */
  private followConnectionStatus(): void {
    void (async () => {
      for await (const status of this.nc.status()) {
        switch (status.type) {
          case Events.Disconnect:
            this.buffer.connectionDropped();
            this.log?.warn({ server: withoutCredentials(String(status.data)), buffered: this.buffer.size }, 'NATS connection lost; buffering run events');
            break;
          case Events.Reconnect:
            this.log?.info({ server: withoutCredentials(String(status.data)), buffered: this.buffer.size }, 'NATS connection back; sending buffered run events');
            this.buffer.reconnected();
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
      this.buffer.connectionDropped();
      if (!this.closing) this.log?.error({ err: err?.message, buffered: this.buffer.size }, 'NATS connection closed for good; run events stay buffered');
    });
  }
}
