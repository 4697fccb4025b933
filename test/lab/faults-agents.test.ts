import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { isRunning } from '../../common/processes.js';
import { Coordinator } from '../../coordinator/coordinator.js';
import type { LabFile } from '../../lab/lab.js';
import { labPlan } from '../../lab/plan.js';
import type { RunEventRecord } from '../../coordinator/model.js';
import { FaultTally, settledLeftovers } from '../support/faults.js';
import { needsRoot, TEST_LAB, testLab } from '../support/lab.js';

/**
 * Fault suite: kill -9 each agent, in turn, during each phase of a campaign step
 * (provision, benchmark, teardown), restart it at once (as systemd would), and check
 * that the coordinator resumes or fails the step with a clear reason, that nothing
 * hangs, that `cleanup` leaves nothing provisioned or running, and that no result
 * recorded before the fault is lost.
 *
 * phy-iscsi is the method that goes through all three agents (a LUN on storage, a
 * session and a VBD on dom0, a filesystem in the guest). A time-based fio run of 3 s
 * gives the benchmark phase a window wide enough to hit.
 */

const CAMPAIGN = {
  methods: ['phy-iscsi'],
  repetitions: 1,
  volumeSize: '32MiB',
  sparse: true,
  benchmarks: { fio: { rw: 'write', blockSize: '64k', size: '8MiB', runtimeS: 3 } },
  stepTimeoutS: 30,
};
/** No run may take longer than this, whatever was killed: the deadlines must fire first. */
const RUN_BOUND_MS = 3 * CAMPAIGN.stepTimeoutS * 1000;

type Role = 'storage' | 'dom0' | 'guest';
type Phase = 'provision' | 'benchmark' | 'teardown';

const TRIGGERS: Record<Phase, (e: RunEventRecord) => boolean> = {
  provision: (e) => e.stepId.endsWith('/setup') && e.state === 'started',
  // The first progress message: the benchmark is running in the guest.
  benchmark: (e) => e.stepId.endsWith('/fio') && e.state === 'progress',
  teardown: (e) => e.stepId.endsWith('/teardown') && e.state === 'started',
};

describe('fault suite: agents killed with SIGKILL during each phase of a campaign step', { skip: needsRoot }, () => {
  const lab = testLab();
  const tally = new FaultTally('faults-agents');
  let record: LabFile;
  let scratch: string;

  before(async () => {
    await lab.down(TEST_LAB.name, TEST_LAB.dir);
    record = await lab.up(TEST_LAB);
    scratch = await mkdtemp(path.join(tmpdir(), 'vcstor-faults-agents-'));
  });
  after(async () => {
    tally.print();
    await lab.down(TEST_LAB.name, TEST_LAB.dir);
    await rm(scratch, { recursive: true, force: true });
  });

  /** SIGKILL the agent of `role`, wait for it to be gone, start it again (lab up converges). */
  async function killAndRestart(role: Role): Promise<void> {
    const host = record.hosts.find((h) => h.role === role)!;
    const agent = record.processes.find((p) => p.host === host.name && p.name === 'agent')!;
    process.kill(agent.pid, 'SIGKILL');
    for (let i = 0; i < 100 && (await isRunning(agent)); i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(await isRunning(agent), false, `the ${role} agent died`);
    record = await lab.up(TEST_LAB);
    assert.notEqual(record.processes.find((p) => p.host === host.name && p.name === 'agent')!.pid, agent.pid, `the ${role} agent was restarted`);
  }

  for (const phase of ['provision', 'benchmark', 'teardown'] as const) {
    for (const role of ['storage', 'dom0', 'guest'] as const) {
      it(`kill -9 the ${role} agent during ${phase}: the step resumes or fails clearly, cleanup leaves nothing`, async (t) => {
        const coordinator = new Coordinator({ runsDir: path.join(scratch, `${role}-${phase}`), log: pino({ level: 'silent' }) });
        const { run } = await coordinator.submit(JSON.stringify(labPlan(record, `fault-${role}-${phase}`, CAMPAIGN)), { source: `${role}-${phase}.json` });
        const started = Date.now();
        let killed: Promise<void> | undefined;
        let resultsBefore = 0;
        const watching = (async () => {
          for await (const e of coordinator.watch(run.runId)) {
            if (killed === undefined && TRIGGERS[phase](e)) {
              killed = killAndRestart(role);
              resultsBefore = (await coordinator.store.measurements(run.runId)).filter((m) => m.result).length;
            }
          }
        })();
        let timer: NodeJS.Timeout | undefined;
        const bound = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`the run hung: not finished after ${RUN_BOUND_MS} ms`)), RUN_BOUND_MS);
        });
        try {
          await Promise.race([Promise.all([coordinator.wait(run.runId), watching]), bound]);
        } finally {
          clearTimeout(timer);
        }
        const final = await coordinator.wait(run.runId);
        assert.ok(killed, `the fault was injected during ${phase}`);
        await killed;
        const ms = Date.now() - started;

        const events = await coordinator.store.events(run.runId);
        const failed = events.filter((e) => e.state === 'failed' && e.stepId !== 'run');
        const stepStates = events.filter((e) => e.stepId.startsWith('phy-iscsi/') && e.state !== 'progress' && e.state !== 'started').map((e) => `${e.stepId.split('/').pop()} ${e.state}`);

        // The agent is back: cleanup replays whatever the journal still holds (before any
        // assertion, so a failing check does not leave the next case a dirty lab).
        const { leftBehind } = await coordinator.cleanup(run.runId);
        const left = await settledLeftovers(record);
        const after = (await coordinator.store.measurements(run.runId)).filter((m) => m.result).length;
        const lost = Math.max(0, resultsBefore - after);
        const outcome = `${final.state} in ${(ms / 1000).toFixed(1)} s (${stepStates.join(', ')})${failed[0] ? `; first failure: ${failed[0].message.slice(0, 160)}` : ''}`;
        tally.record(`kill -9 ${role} agent during ${phase}`, outcome, left.length + leftBehind.length, lost);
        t.diagnostic(outcome);
        assert.deepEqual(leftBehind, [], 'cleanup removed everything it journaled');
        assert.ok(['succeeded', 'failed'].includes(final.state), final.state);
        for (const e of failed) {
          // A clear reason: what was being done, and why (from the agent or the transport).
          assert.match(e.message, /^(create volume|export iscsi|dom0 iscsi login|write domain config|start domain|guest finds vbd|guest mkfs|guest mount|the benchmark on the guest agent at [^:]+:\d+|teardown stopped at [a-z0-9 ]+): \S.{10,}/, `${e.stepId} failed with a reason that says what was being done: ${e.message}`);
          assert.doesNotMatch(e.message, /\[object |undefined/, e.message);
        }
        assert.deepEqual(left, [], 'nothing leaked');
        assert.equal(lost, 0, 'no recorded result lost');
        assert.deepEqual(await coordinator.store.undo(run.runId), {}, 'the journal is empty');
      });
    }
  }
});
