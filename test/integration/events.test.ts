import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from 'nats';
import { VcstorError } from '../../common/errors.js';
import { RUN_STREAM_NAME, RunEventBus } from '../../coordinator/events.js';
import { eventSubject, resultSubject, type MeasurementRecord, type RunEventRecord, type StepState } from '../../coordinator/model.js';
import { freePort } from '../support/nats.js';

/** A nats-server with JetStream on 127.0.0.1, which a test can kill and start again. */
class NatsServerProcess {
  private child: ChildProcess | undefined;
  private stderrTail = '';

  private constructor(
    readonly port: number,
    readonly storeDir: string,
  ) {}

  static async start(): Promise<NatsServerProcess> {
    const storeDir = await mkdtemp(path.join(tmpdir(), 'vcstor-nats-'));
    const server = new NatsServerProcess(await freePort(), storeDir);
    await server.start();
    return server;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** Starts nats-server (again) on the same port and store dir; resolves once it is ready. */
  async start(): Promise<void> {
    const child = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(this.port), '-js', '-sd', this.storeDir], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`nats-server not ready within 10 s: ${this.stderrTail}`)), 10_000);
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`nats-server exited (${code ?? signal}) before it was ready: ${this.stderrTail}`));
      });
      // Keep reading stderr for the server's whole life, or its pipe fills and it blocks.
      child.stderr?.on('data', (chunk: Buffer) => {
        this.stderrTail = (this.stderrTail + chunk.toString()).slice(-4000);
        if (this.stderrTail.includes('Server is ready')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    this.stderrTail = '';
  }

  /** Sends `signal` and waits for the exit; SIGKILL after 5 s. Idempotent. */
  async kill(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill(signal);
    const forceKill = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(forceKill);
  }

  /** Stops the server and removes its store dir. */
  async destroy(): Promise<void> {
    await this.kill('SIGTERM');
    await rm(this.storeDir, { recursive: true, force: true });
  }
}

/** How many messages the stream holds on `subject`, asked over a connection of its own. */
async function storedCount(url: string, subject: string): Promise<number> {
  const nc = await connect({ servers: url });
  try {
    const jsm = await nc.jetstreamManager();
    const info = await jsm.streams.info(RUN_STREAM_NAME, { subjects_filter: subject });
    return info.state.subjects?.[subject] ?? 0;
  } finally {
    await nc.close();
  }
}

/** Event `seq` of a run whose last event is `last`: steps of five events, progress in between. */
function runEvent(runId: string, seq: number, last: number): RunEventRecord {
  const step = Math.ceil(seq / 5);
  const state: StepState = seq === last || seq % 5 === 0 ? 'succeeded' : seq % 5 === 1 ? 'started' : 'progress';
  const event: RunEventRecord = { runId, seq, timeUnixMs: Date.now(), stepId: `file-nfs/rep1/step${step}`, state, message: `event ${seq}` };
  if (state === 'progress') event.progress = { phase: 'write', percent: (seq % 5) * 25, bytesDone: seq, bytesTotal: 100, elapsedMs: seq, message: '' };
  if (seq === last) event.runState = 'succeeded';
  return event;
}

function measurement(runId: string, seq: number): MeasurementRecord & { seq: number } {
  return { runId, seq, method: 'file-nfs', benchmark: 'fio', repetition: seq, guest: 'guest0', result: { fio: { write: { bandwidthBytesPerSecond: 1e8 } } }, error: '' };
}

/** Every event a watch yields until it ends. */
async function collect(events: AsyncIterable<RunEventRecord>): Promise<RunEventRecord[]> {
  const seen: RunEventRecord[] = [];
  for await (const event of events) seen.push(event);
  return seen;
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

async function waitUntil(condition: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Gives a watch a deadline: a hang shows as CANCELLED instead of a stuck test. */
const watchDeadline = (): AbortSignal => AbortSignal.timeout(15_000);

describe('RunEventBus against a real nats-server', () => {
  let server: NatsServerProcess;
  let bus: RunEventBus;
  const extraServers: NatsServerProcess[] = [];
  const extraBuses: RunEventBus[] = [];

  before(async () => {
    server = await NatsServerProcess.start();
    bus = await RunEventBus.connect({ servers: server.url, name: 'events-test', reconnectWaitMs: 100 });
  });
  after(async () => {
    await Promise.all([bus, ...extraBuses].map((b) => b?.close()));
    await Promise.all([server, ...extraServers].map((s) => s?.destroy()));
  });

  it('connect rejects with a retryable UNAVAILABLE when no server listens', async () => {
    const port = await freePort();
    await assert.rejects(RunEventBus.connect({ servers: `nats://127.0.0.1:${port}` }), (err: unknown) => {
      assert.ok(err instanceof VcstorError, String(err));
      assert.equal(err.code, 'UNAVAILABLE');
      assert.equal(err.retryable, true);
      assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
      return true;
    });
  });

  it('connect creates the stream idempotently: a second bus connects and the limits hold', async () => {
    const second = await RunEventBus.connect({ servers: server.url });
    extraBuses.push(second);
    const nc = await connect({ servers: server.url });
    try {
      const info = await (await nc.jetstreamManager()).streams.info(RUN_STREAM_NAME);
      assert.deepEqual(info.config.subjects, ['vcstor.run.>']);
      assert.equal(info.config.storage, 'file');
      assert.equal(info.config.max_bytes, 1024 ** 3);
      assert.equal(info.config.max_age, 30 * 24 * 3600 * 1e9);
    } finally {
      await nc.close();
    }
  });

  it('a watcher started after 50 events and their results replays all 50 in order and ends at the final event', async () => {
    const runId = 'run-replay';
    const published: RunEventRecord[] = [];
    for (const seq of range(1, 50)) {
      published.push(runEvent(runId, seq, 50));
      await bus.publishEvent(published[seq - 1]!);
      if (seq % 10 === 0) await bus.publishResult(measurement(runId, seq / 10));
    }
    assert.deepEqual(await bus.flush(5_000), { pending: 0, droppedProgress: 0, rejected: 0, connected: true });

    const seen = await collect(bus.watch(runId, { signal: watchDeadline() }));
    assert.deepEqual(
      seen.map((e) => e.seq),
      range(1, 50),
    );
    assert.equal(seen.at(-1)?.runState, 'succeeded');
    assert.deepEqual(seen, published, 'every field as published');
    assert.equal(await storedCount(server.url, eventSubject(runId)), 50);
    assert.equal(await storedCount(server.url, resultSubject(runId)), 5);
  });

  it('a watcher with afterSeq replays only the events after it', async () => {
    const seen = await collect(bus.watch('run-replay', { afterSeq: 45, signal: watchDeadline() }));
    assert.deepEqual(
      seen.map((e) => e.seq),
      range(46, 50),
    );
  });

  it('a live watcher sees each event before the next one is published', async () => {
    const runId = 'run-live';
    const watcher = bus.watch(runId, { signal: watchDeadline() })[Symbol.asyncIterator]();
    // Pull once before anything exists: the watch must wait, not end.
    let next = watcher.next();
    for (const seq of range(1, 8)) {
      await bus.publishEvent(runEvent(runId, seq, 8));
      const step = await next;
      assert.equal(step.done, false, `the watch ended before event ${seq}`);
      assert.equal(step.value?.seq, seq);
      next = watcher.next();
    }
    assert.deepEqual(await next, { done: true, value: undefined }, 'the watch ends after the event with runState');
  });

  it('publishing the same event or result twice stores it once', async () => {
    const runId = 'run-dedup';
    for (const seq of [1, 1, 2, 3, 2, 3]) await bus.publishEvent(runEvent(runId, seq, 3));
    await bus.publishResult(measurement(runId, 1));
    await bus.publishResult(measurement(runId, 1));
    assert.equal((await bus.flush(5_000)).pending, 0);
    assert.equal(await storedCount(server.url, eventSubject(runId)), 3);
    assert.equal(await storedCount(server.url, resultSubject(runId)), 1);
    const seen = await collect(bus.watch(runId, { signal: watchDeadline() }));
    assert.deepEqual(
      seen.map((e) => e.seq),
      [1, 2, 3],
    );
  });

  it('an aborted watch ends with CANCELLED', async () => {
    const runId = 'run-abort';
    await bus.publishEvent(runEvent(runId, 1, 10));
    const abort = new AbortController();
    const seen: number[] = [];
    await assert.rejects(
      (async () => {
        for await (const event of bus.watch(runId, { signal: abort.signal })) {
          seen.push(event.seq);
          setTimeout(() => abort.abort(), 50);
        }
      })(),
      (err: unknown) => err instanceof VcstorError && err.code === 'CANCELLED',
    );
    assert.deepEqual(seen, [1]);
  });

  it('rejects run ids that are not a subject token', async () => {
    await assert.rejects(bus.publishEvent(runEvent('run.a', 1, 1)), (err: unknown) => err instanceof VcstorError && err.code === 'INVALID_ARGUMENT');
    await assert.rejects(collect(bus.watch('run>', {})), (err: unknown) => err instanceof VcstorError && err.code === 'INVALID_ARGUMENT');
  });

  it('survives a SIGKILLed nats-server: 20 events published meanwhile are buffered and stored in order once it is back', async () => {
    const runId = 'run-outage';
    for (const seq of range(1, 50)) await bus.publishEvent(runEvent(runId, seq, 70));
    assert.equal((await bus.flush(5_000)).pending, 0);
    // A watcher that follows the run live across the outage (nats.js recreates its
    // ordered consumer after the reconnect). It is under way before the kill.
    // (Iterated by hand: breaking out of a for-await would end the watch.)
    const liveWatch = bus.watch(runId, { signal: watchDeadline() });
    const liveSeqs: number[] = [];
    while (liveSeqs.at(-1) !== 50) {
      const next = await liveWatch.next();
      assert.equal(next.done, false, 'the live watch ended before event 50');
      if (!next.done) liveSeqs.push(next.value.seq);
    }

    await server.kill('SIGKILL');
    try {
      const started = Date.now();
      for (const seq of range(51, 70)) {
        await bus.publishEvent(runEvent(runId, seq, 70)); // must neither throw nor wait for NATS
        if (seq === 60) await bus.publishResult(measurement(runId, 1));
      }
      assert.ok(Date.now() - started < 3_000, `publishing while NATS is down took ${Date.now() - started} ms`);
      assert.deepEqual(await bus.flush(300), { pending: 21, droppedProgress: 0, rejected: 0, connected: false });
    } finally {
      // Later tests need the server, whatever happened above.
      await server.start();
    }
    assert.deepEqual(await bus.flush(20_000), { pending: 0, droppedProgress: 0, rejected: 0, connected: true });
    for (let next = await liveWatch.next(); !next.done; next = await liveWatch.next()) liveSeqs.push(next.value.seq);
    assert.deepEqual(liveSeqs, range(1, 70), 'the live watcher');

    const seen = await collect(bus.watch(runId, { signal: watchDeadline() }));
    assert.deepEqual(
      seen.map((e) => e.seq),
      range(1, 70),
    );
    assert.equal(seen.at(-1)?.runState, 'succeeded');
    assert.equal(await storedCount(server.url, eventSubject(runId)), 70, 'none lost, none stored twice');
    assert.equal(await storedCount(server.url, resultSubject(runId)), 1);
    // What was stored before the kill survived it.
    const replay = await collect(bus.watch('run-replay', { afterSeq: 48, signal: watchDeadline() }));
    assert.deepEqual(
      replay.map((e) => e.seq),
      [49, 50],
    );
  });

  it('a full buffer drops the oldest progress events first, never step states or results', async () => {
    const own = await NatsServerProcess.start();
    extraServers.push(own);
    const small = await RunEventBus.connect({ servers: own.url, reconnectWaitMs: 100, maxBufferedEvents: 5 });
    extraBuses.push(small);
    await own.kill('SIGKILL');
    await waitUntil(async () => !(await small.flush(0)).connected, 'the bus notices the server is gone');

    const runId = 'run-bounded';
    const event = (seq: number, state: StepState, runState?: 'succeeded'): RunEventRecord => ({
      runId,
      seq,
      timeUnixMs: Date.now(),
      stepId: 'file-nfs/rep1/bonnie',
      state,
      message: '',
      ...(runState ? { runState } : {}),
    });
    await small.publishEvent(event(1, 'started'));
    for (const seq of range(2, 8)) await small.publishEvent(event(seq, 'progress'));
    await small.publishResult(measurement(runId, 1));
    await small.publishEvent(event(9, 'succeeded'));
    await small.publishEvent(event(10, 'started'));
    await small.publishEvent(event(11, 'succeeded'));
    // The buffer holds 1, the result, 9, 10, 11: no progress left to drop, and the final
    // event is kept beyond the bound.
    await small.publishEvent(event(12, 'succeeded', 'succeeded'));
    assert.deepEqual(await small.flush(100), { pending: 6, droppedProgress: 7, rejected: 0, connected: false });

    await own.start();
    assert.equal((await small.flush(20_000)).pending, 0);
    const seen = await collect(small.watch(runId, { signal: watchDeadline() }));
    assert.deepEqual(
      seen.map((e) => e.seq),
      [1, 9, 10, 11, 12],
    );
    assert.equal(await storedCount(own.url, resultSubject(runId)), 1);
  });

  it('close drains and is idempotent; publishing afterwards is refused', async () => {
    const closing = await RunEventBus.connect({ servers: server.url });
    await closing.publishEvent(runEvent('run-close', 1, 1));
    await closing.close();
    await closing.close();
    await assert.rejects(closing.publishEvent(runEvent('run-close', 2, 2)), (err: unknown) => err instanceof VcstorError && err.code === 'FAILED_PRECONDITION');
    assert.equal(await storedCount(server.url, eventSubject('run-close')), 1);
  });
});
