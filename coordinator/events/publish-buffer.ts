/**
 * The run event bus's buffer: NATS being down must never stop a run, so publishes go
 * into memory and one pump drains them, one message at a time and in order, whenever the
 * connection is up. The bus tells the buffer when the connection drops and comes back.
 */
import { VcstorError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { assertVcstorSubject, isPermanentPublishError, RUN_STREAM_NAME } from './nats.js';

const RETRY_BACKOFF_FIRST_MS = 200;
const RETRY_BACKOFF_MAX_MS = 5_000;

/** One buffered publish. */
export interface PendingPublish {
  subject: string;
  msgId: string;
  payload: Uint8Array;
  /** Progress events may be dropped when the buffer is full; nothing else may. */
  droppable: boolean;
  /** Lets a waiting publishEvent()/publishResult() return: stored, or left buffered. */
  release?: () => void;
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

/** How the buffer reaches JetStream. */
export interface PublishSink {
  /** Publish one message and resolve on JetStream's acknowledgement. */
  send(item: PendingPublish): Promise<unknown>;
  /** Make sure the stream exists (after a reconnect or a failure). */
  ensureStream(): Promise<void>;
}

/** The in-memory buffer of publishes and the pump that drains it. One per bus. */
export class PublishBuffer {
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

  constructor(
    private readonly sink: PublishSink,
    private readonly maxBuffered: number,
    private readonly log: Logger | undefined,
  ) {}

  /** How many publishes wait. */
  get size(): number {
    return this.queue.length;
  }

  /** Whether the connection is up, as the bus last told. */
  get isConnected(): boolean {
    return this.connected;
  }

  /**
   * Adds a publish to the buffer, dropping the oldest progress event if it is full.
   * Waits for the acknowledgement only when nothing else is waiting and NATS is up, so a
   * caller is never held up by an outage or a backlog.
   * @throws VcstorError INTERNAL for a subject outside `vcstor.>`.
   */
  enqueue(item: PendingPublish): Promise<void> {
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

  /** Waits until the buffer is empty, or `timeoutMs` passed. Never throws. */
  async drain(timeoutMs: number): Promise<void> {
    if (this.queue.length === 0 || this.closing) return;
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

  report(connectionOpen: boolean): FlushReport {
    return { pending: this.queue.length, droppedProgress: this.droppedProgress, rejected: this.rejected, connected: this.connected && connectionOpen };
  }

  /** The connection dropped: stop waiting for acks, let publishers go on; keep the buffer. */
  connectionDropped(): void {
    this.connected = false;
    for (const abandon of [...this.connectionLostListeners]) abandon();
    this.releaseWaiters();
  }

  /** The connection is back: check the stream, then send what is buffered. */
  reconnected(): void {
    this.connected = true;
    this.streamCheckDue = true;
    this.retryBackoffMs = RETRY_BACKOFF_FIRST_MS;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.kick();
  }

  /**
   * Stops the pump (after the publish in flight) and lets every waiter go. What is still
   * buffered is discarded, and logged. Idempotent.
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
          await this.sink.ensureStream();
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
    const ack = this.sink.send(item);
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
}
