import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { checkServerIdentity } from 'node:tls';
import { pino } from 'pino';
import { makeClient, unary } from '../../common/clients.js';
import { VcstorError } from '../../common/errors.js';
import { Coordinator } from '../../coordinator/coordinator.js';
import type { LabFile } from '../../lab/lab.js';
import { labPlan } from '../../lab/plan.js';
import { provisionMethod } from '../../coordinator/methods.js';
import type { RunEventRecord } from '../../coordinator/model.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { FaultTally, settledLeftovers } from '../support/faults.js';
import { needsRoot, runner, TEST_LAB, testLab } from '../support/lab.js';
import { labMethodTarget } from '../support/methods.js';

/**
 * Fault suite: the network. A user-space proxy adds delay and loss between the
 * coordinator and the agents (netem is not in this kernel) and then swallows
 * everything; the guest's link is cut for a few seconds, and throttled with tbf, while
 * it runs a benchmark over iSCSI. Deadlines must fire, nothing may hang past them,
 * nothing may leak, and no result already recorded may be lost.
 */

const MIB = 1024 * 1024;

describe('fault suite: delay, loss, a cut link and a throttled link', { skip: needsRoot }, () => {
  const lab = testLab();
  const tally = new FaultTally('faults-network');
  let record: LabFile;
  let scratch: string;
  const proxies: FaultProxy[] = [];

  before(async () => {
    await lab.down(TEST_LAB.name, TEST_LAB.dir);
    record = await lab.up(TEST_LAB);
    scratch = await mkdtemp(path.join(tmpdir(), 'vcstor-faults-network-'));
  });
  after(async () => {
    tally.print();
    for (const p of proxies) await p.close();
    // A link left down or shaped by a failed test goes with the lab's namespaces.
    await lab.down(TEST_LAB.name, TEST_LAB.dir);
    await rm(scratch, { recursive: true, force: true });
  });

  const host = (role: string) => record.hosts.find((h) => h.role === role)!;

  /**
   * mTLS credentials that check the agent's certificate against its real address while
   * connecting to a proxy: the proxy forwards bytes, it cannot (and must not) present
   * the agent's certificate for its own address.
   */
  function credentialsFor(agentIp: string): grpc.ChannelCredentials {
    const tls = record.tls!;
    return grpc.credentials.createSsl(readFileSync(tls.ca), readFileSync(tls.key), readFileSync(tls.cert), {
      checkServerIdentity: (_host, cert) => checkServerIdentity(agentIp, cert),
    });
  }

  it('delay and loss between the coordinator and every agent: a method sets up and tears down; a swallowed path hits its deadline', async (t) => {
    const via: Record<'storage' | 'dom0' | 'guest', FaultProxy> = {
      storage: await FaultProxy.start('127.0.0.1', host('storage').agentAddress, { delayMs: 20, lossRate: 0.05, retransmitMs: 200 }, 1),
      dom0: await FaultProxy.start('127.0.0.1', host('dom0').agentAddress, { delayMs: 20, lossRate: 0.05, retransmitMs: 200 }, 2),
      guest: await FaultProxy.start('127.0.0.1', host('guest').agentAddress, { delayMs: 20, lossRate: 0.05, retransmitMs: 200 }, 3),
    };
    proxies.push(...Object.values(via));
    const base = labMethodTarget(record, TEST_LAB, { prefix: 'fn', sizeBytes: 32 * MIB, sparse: true, timeoutMs: 20_000 });
    for (const c of [base.storage, base.dom0, base.guest]) c.close();
    const target = {
      ...base,
      storage: makeClient('storage', via.storage.address, credentialsFor(host('storage').address)),
      dom0: makeClient('dom0', via.dom0.address, credentialsFor(host('dom0').address)),
      guest: makeClient('guest', via.guest.address, credentialsFor(host('guest').address)),
    };
    try {
      const started = Date.now();
      const provisioned = await provisionMethod('phy-iscsi', target);
      await provisioned.teardown();
      const lossy = Date.now() - started;
      const lost = Object.values(via).reduce((n, p) => n + p.stats.lost, 0);
      assert.ok(lost > 0, 'the proxies lost (delayed) some chunks');
      let left = await settledLeftovers(record);
      const outcome1 = `phy-iscsi set up and torn down in ${lossy} ms through 20 ms one-way delay and 5% loss (${lost} chunks held 200 ms)`;
      tally.record('delay 20 ms + 5% loss on the coordinator-agent paths', outcome1, left.length, 0);
      t.diagnostic(outcome1);
      assert.deepEqual(left, []);

      // Swallow everything to the storage agent: the call's deadline fires, on time.
      via.storage.set({ blackhole: true });
      const callStarted = Date.now();
      const code = await unary(target.storage, target.storage.ListVolumes, {}, { timeoutMs: 2000 }).then(() => 'OK', (err: unknown) => (err instanceof VcstorError ? err.code : String(err)));
      const took = Date.now() - callStarted;
      via.storage.set({ blackhole: false });
      assert.equal(code, 'DEADLINE_EXCEEDED');
      assert.ok(took >= 1900 && took < 3000, `the deadline fired on time: ${took} ms for a 2000 ms deadline`);
      // The path comes back: the next call works.
      await unary(target.storage, target.storage.ListVolumes, {}, { timeoutMs: 5000 });
      left = await settledLeftovers(record);
      const outcome2 = `a 2000 ms deadline fired after ${took} ms (DEADLINE_EXCEEDED); the next call worked once the path returned`;
      tally.record('blackhole (100% loss) to the storage agent', outcome2, left.length, 0);
      t.diagnostic(outcome2);
    } finally {
      for (const c of [target.storage, target.dom0, target.guest]) c.close();
    }
  });

  /**
   * A campaign (iscsi method: the guest's own session, so its link carries the data)
   * with `fault` injected at the benchmark's first progress and `heal` at its end.
   */
  async function campaignWithLinkFault(name: string, campaign: Record<string, unknown>, fault: () => Promise<void>, heal: () => Promise<void>) {
    const coordinator = new Coordinator({ runsDir: path.join(scratch, name), log: pino({ level: 'silent' }) });
    const { run } = await coordinator.submit(JSON.stringify(labPlan(record, name, campaign)), { source: `${name}.json` });
    let injected = false;
    let healed = false;
    let resultsBefore = 0;
    const started = Date.now();
    let benchEnded = 0;
    try {
      for await (const e of coordinator.watch(run.runId)) {
        const ev: RunEventRecord = e;
        if (!injected && ev.stepId.endsWith('/fio') && ev.state === 'progress' && ev.stepId.includes('rep2')) {
          injected = true;
          resultsBefore = (await coordinator.store.measurements(run.runId)).filter((m) => m.result).length;
          await fault();
        }
        if (injected && !healed && ev.stepId.endsWith('rep2/fio') && ev.state !== 'progress' && ev.state !== 'started') {
          benchEnded = Date.now();
          healed = true;
          await heal();
        }
      }
    } finally {
      if (!healed) await heal();
    }
    const final = await coordinator.wait(run.runId);
    const events = await coordinator.store.events(run.runId);
    const { leftBehind } = await coordinator.cleanup(run.runId);
    const left = await settledLeftovers(record);
    const after = (await coordinator.store.measurements(run.runId)).filter((m) => m.result).length;
    return { final, events, leftBehind, left, injected, lost: Math.max(0, resultsBefore - after), ms: Date.now() - started, benchEnded, started, resultsBefore };
  }

  const guestLink = () => ({ sw: record.switchNamespace, port: host('guest').name, ns: host('guest').namespace });

  it('the guest\'s link cut for 3 s during a benchmark over iSCSI: the run goes on or fails clearly, nothing lost or leaked', async (t) => {
    const l = guestLink();
    const r = await campaignWithLinkFault(
      'cut',
      { methods: ['iscsi'], repetitions: 2, volumeSize: '32MiB', sparse: true, benchmarks: { fio: { rw: 'write', blockSize: '64k', size: '8MiB', runtimeS: 4 } }, stepTimeoutS: 30 },
      async () => {
        await runner.run('ip', ['-n', l.sw, 'link', 'set', l.port, 'down']);
        await new Promise((resolve) => setTimeout(resolve, 3000));
        await runner.run('ip', ['-n', l.sw, 'link', 'set', l.port, 'up']);
      },
      async () => undefined,
    );
    assert.ok(r.injected);
    const bench = r.events.filter((e) => e.stepId === 'iscsi/rep2/fio' && (e.state === 'succeeded' || e.state === 'failed')).map((e) => `${e.state}${e.message ? `: ${e.message.slice(0, 120)}` : ''}`);
    const outcome = `run ${r.final.state} in ${(r.ms / 1000).toFixed(1)} s; the benchmark across the cut ${bench.join('')}`;
    tally.record('guest link down 3 s during fio over iSCSI', outcome, r.left.length + r.leftBehind.length, r.lost);
    t.diagnostic(outcome);
    assert.ok(['succeeded', 'failed'].includes(r.final.state));
    assert.deepEqual(r.leftBehind, []);
    assert.deepEqual(r.left, []);
    assert.equal(r.lost, 0);
    assert.equal(r.resultsBefore, 1, 'rep 1 recorded its result before the cut');
  });

  it('the guest\'s link throttled by tbf during a benchmark: the step\'s deadline fires on time, nothing hangs, leaks or is lost', async (t) => {
    const l = guestLink();
    const tbf = (ns: string, dev: string) => ['-n', ns, 'qdisc', 'replace', 'dev', dev, 'root', 'tbf', 'rate', '256kbit', 'burst', '16kb', 'latency', '2s'];
    const stepTimeoutS = 10;
    const r = await campaignWithLinkFault(
      'tbf',
      // Not time-based and O_DIRECT: the benchmark has to push its 16 MiB through the link.
      { methods: ['iscsi'], repetitions: 2, volumeSize: '32MiB', sparse: true, benchmarks: { fio: { rw: 'write', blockSize: '64k', size: '16MiB', direct: true } }, stepTimeoutS },
      async () => {
        await runner.run('tc', tbf(l.sw, l.port));
        await runner.run('tc', tbf(l.ns, 'eth0'));
      },
      async () => {
        await runner.run('tc', ['-n', l.sw, 'qdisc', 'del', 'dev', l.port, 'root'], { okExitCodes: [0, 2] });
        await runner.run('tc', ['-n', l.ns, 'qdisc', 'del', 'dev', 'eth0', 'root'], { okExitCodes: [0, 2] });
      },
    );
    assert.ok(r.injected);
    const startedEvent = r.events.find((e) => e.stepId === 'iscsi/rep2/fio' && e.state === 'started')!;
    const ended = r.events.find((e) => e.stepId === 'iscsi/rep2/fio' && (e.state === 'failed' || e.state === 'succeeded'))!;
    const benchMs = ended.timeUnixMs - startedEvent.timeUnixMs;
    const outcome = `run ${r.final.state}; the throttled benchmark ${ended.state} after ${(benchMs / 1000).toFixed(1)} s (deadline ${stepTimeoutS} s): ${ended.message.slice(0, 120)}`;
    tally.record('guest link throttled to 256 kbit/s (tbf) during fio over iSCSI', outcome, r.left.length + r.leftBehind.length, r.lost);
    t.diagnostic(outcome);
    assert.equal(ended.state, 'failed', 'a 16 MiB direct write cannot pass 256 kbit/s within 10 s');
    assert.match(ended.message, /deadline/i);
    assert.ok(benchMs < (stepTimeoutS + 3) * 1000, `the benchmark step ended within its deadline (+3 s): ${benchMs} ms`);
    assert.deepEqual(r.leftBehind, []);
    assert.deepEqual(r.left, []);
    assert.equal(r.lost, 0);
    assert.equal(r.resultsBefore, 1, 'rep 1 recorded its result before the throttle');
  });
});
