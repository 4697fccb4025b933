import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { VcstorError } from '../../common/errors.js';
import { isRunning } from '../../common/processes.js';
import { Coordinator } from '../../coordinator/coordinator.js';
import { RunEventBus } from '../../coordinator/events.js';
import type { LabFile } from '../../lab/lab.js';
import { labPlan } from '../../lab/plan.js';
import type { RunEventRecord } from '../../coordinator/model.js';
import { FaultTally, settledLeftovers } from '../support/faults.js';
import { needsRoot, TEST_LAB, testLab } from '../support/lab.js';

/**
 * Fault suite: NATS down. Killed (SIGKILL) in the middle of a run and started again
 * 3 s later, the coordinator must buffer events and results and send them, in order,
 * when it returns: a late watcher replays exactly what the run's store holds. Down
 * before a run, connecting must fail clearly and at once.
 */

describe('fault suite: NATS down during a run', { skip: needsRoot }, () => {
  const lab = testLab();
  const tally = new FaultTally('faults-nats');
  let record: LabFile;
  let scratch: string;

  before(async () => {
    await lab.down(TEST_LAB.name, TEST_LAB.dir);
    record = await lab.up(TEST_LAB);
    scratch = await mkdtemp(path.join(tmpdir(), 'vcstor-faults-nats-'));
  });
  after(async () => {
    tally.print();
    await lab.down(TEST_LAB.name, TEST_LAB.dir);
    await rm(scratch, { recursive: true, force: true });
  });

  async function killNats(): Promise<void> {
    const nats = record.processes.find((p) => p.name === 'nats-server')!;
    process.kill(nats.pid, 'SIGKILL');
    for (let i = 0; i < 100 && (await isRunning(nats)); i++) await new Promise((r) => setTimeout(r, 20));
  }

  it('killed mid-run and back 3 s later: every event and result reaches JetStream, in order', async (t) => {
    const bus = await RunEventBus.connect({ servers: record.natsUrl, name: 'faults-nats', reconnectWaitMs: 250 });
    try {
      const coordinator = new Coordinator({ runsDir: path.join(scratch, 'runs'), log: pino({ level: 'silent' }), publisher: bus });
      const campaign = { methods: ['iscsi'], repetitions: 2, volumeSize: '32MiB', sparse: true, benchmarks: { fio: { rw: 'write', blockSize: '64k', size: '8MiB', runtimeS: 3 } }, stepTimeoutS: 30 };
      const { run } = await coordinator.submit(JSON.stringify(labPlan(record, 'nats-down', campaign)), { source: 'nats-down.json' });
      let outage: Promise<void> | undefined;
      let buffered = 0;
      for await (const e of coordinator.watch(run.runId)) {
        // Down from the first result to 3 s later: rep 2's setup and benchmark happen meanwhile.
        if (!outage && e.measurement?.result) {
          outage = (async () => {
            await killNats();
            await new Promise((r) => setTimeout(r, 3000));
            buffered = (await bus.flush(1)).pending;
            record = await lab.up(TEST_LAB);
          })();
        }
      }
      await outage;
      const final = await coordinator.wait(run.runId);
      assert.equal(final.state, 'succeeded', final.error);
      const flushed = await bus.flush(30_000);
      assert.equal(flushed.pending, 0, 'everything buffered was published once NATS returned');
      const stored = await coordinator.store.events(run.runId);
      const replayed: RunEventRecord[] = [];
      for await (const e of bus.watch(run.runId)) replayed.push(e);
      // Progress may be dropped only when the buffer is full (10,000): not here.
      assert.deepEqual(replayed.map((e) => `${e.seq} ${e.stepId} ${e.state}`), stored.map((e) => `${e.seq} ${e.stepId} ${e.state}`), 'NATS holds every stored event, once, in order');
      const results = stored.filter((e) => e.measurement?.result).length;
      const lost = results - replayed.filter((e) => e.measurement?.result).length;
      assert.equal(results, 2, 'both repetitions recorded a result');
      const left = await settledLeftovers(record);
      const outcome = `run succeeded; ${buffered} publishes buffered while NATS was down, all ${stored.length} events (${results} results) replayed from JetStream in order`;
      tally.record('nats-server killed for 3 s mid-run', outcome, left.length, lost);
      t.diagnostic(outcome);
      assert.ok(buffered > 0, 'events were buffered during the outage');
      assert.equal(lost, 0);
      assert.deepEqual(left, []);
    } finally {
      await bus.close();
    }
  });

  it('down before a run: connecting fails at once with a clear reason', async (t) => {
    await killNats();
    try {
      const started = Date.now();
      const err = await RunEventBus.connect({ servers: record.natsUrl, name: 'faults-nats-down' }).then(
        async (bus) => {
          await bus.close();
          return undefined;
        },
        (e: unknown) => e,
      );
      const took = Date.now() - started;
      assert.ok(err instanceof VcstorError, String(err));
      assert.equal(err.code, 'UNAVAILABLE');
      assert.match(err.message, new RegExp(`connecting to NATS at ${record.natsUrl.replace(/[.]/g, '\\.')}`));
      assert.ok(took < 10_000, `failed within its 5 s connect timeout: ${took} ms`);
      const outcome = `connect failed in ${took} ms: ${err.message.slice(0, 120)}`;
      tally.record('nats-server down before a run', outcome, 0, 0);
      t.diagnostic(outcome);
    } finally {
      record = await lab.up(TEST_LAB);
    }
  });
});
