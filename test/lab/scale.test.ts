import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { makeClient, unary } from '../../common/clients.js';
import { Coordinator } from '../../coordinator/coordinator.js';
import { RunEventBus } from '../../coordinator/events.js';
import { labClientTls, type LabFile } from '../../lab/lab.js';
import type { RunEventRecord } from '../../coordinator/model.js';
import { renderReport, resultsTable } from '../../coordinator/report/index.js';
import type { Knee, ScaleStepResult } from '../../coordinator/scale.js';
import { scaleLabPlan } from '../../lab/plan.js';
import { labClientCredentials, needsRoot, runner, TEST_LAB, testLab } from '../support/lab.js';

const COUNTS = [1, 2, 4, 8];

describe('the scale plan: how many initiators one target serves, in the lab', { skip: needsRoot }, () => {
  const lab = testLab();
  let record: LabFile;
  let scratch: string;
  let bus: RunEventBus;
  let credentials: grpc.ChannelCredentials;
  const host = (role: string) => record.hosts.find((h) => h.role === role)!;

  before(async () => {
    await lab.down(TEST_LAB.name, TEST_LAB.dir);
    record = await lab.up(TEST_LAB);
    credentials = labClientCredentials(record);
    scratch = await mkdtemp(path.join(tmpdir(), 'vcstor-scale-'));
    bus = await RunEventBus.connect({ servers: record.natsUrl, name: 'scale test' });
  });
  after(async () => {
    await bus?.close();
    await lab.down(TEST_LAB.name, TEST_LAB.dir);
    await rm(scratch, { recursive: true, force: true });
  });

  /** What the target, the agents' state and the machine still hold. */
  async function leftovers(): Promise<string[]> {
    const storage = makeClient('storage', host('storage').agentAddress, credentials);
    try {
      const T = { timeoutMs: 10_000 };
      const targets = (await unary(storage, storage.ListIscsiTargets, {}, T)).targets;
      const loadDirs: string[] = [];
      for (const h of record.hosts.filter((x) => x.role !== 'storage')) {
        const dir = path.join(TEST_LAB.dir, 'hosts', h.name, 'state', 'load');
        loadDirs.push(...(await readdir(dir).catch(() => [] as string[])).map((d) => `${h.name} load set ${d}`));
      }
      return [
        ...(await unary(storage, storage.ListVolumes, {}, T)).volumes.map((v) => `volume ${v.name}`),
        ...targets.map((t) => `target ${t.iqn}`),
        ...targets.flatMap((t) => t.sessions.map((s) => `session ${s.initiatorIqn}`)),
        ...loadDirs,
        ...(await runner.run('pgrep', ['-f', 'qemu-storage-daemon'], { okExitCodes: [0, 1] })).stdout.split('\n').filter(Boolean).map((p) => `qsd ${p}`),
        ...(await runner.run('pgrep', ['-x', 'fio'], { okExitCodes: [0, 1] })).stdout.split('\n').filter(Boolean).map((p) => `fio ${p}`),
      ];
    } finally {
      storage.close();
    }
  }

  it('runs a ramp to 8 initiators over both agents: real logins, results per step, the knee, nothing left', async () => {
    const coordinator = new Coordinator({ runsDir: path.join(scratch, 'runs'), log: pino({ level: 'silent' }), publisher: bus });
    const plan = scaleLabPlan(record, 'scale-ci', {
      counts: COUNTS,
      volumeSize: '16MiB',
      fio: { rw: 'randread', blockSize: '4k', iodepth: 2, size: '8MiB', runtimeS: 2 },
      // Small daemons, so that a step of 8 spreads over several and the storm is concurrent.
      sessionsPerDaemon: 2,
      knee: { p99LatencyMs: 500, minGainPercent: 5 },
      controlPlane: { volumes: 8, concurrency: 4 },
      stepTimeoutS: 120,
    });
    // The lab's agents serve mTLS: the plan carries the lab's client certificate.
    plan.tls = labClientTls(record);
    const file = path.join(scratch, 'scale.json');
    await writeFile(file, JSON.stringify(plan, null, 2));
    const { run } = await coordinator.submit(await readFile(file, 'utf8'), { source: 'scale.json' });
    assert.equal(run.kind, 'scale');
    const final = await coordinator.wait(run.runId);
    const events = await coordinator.store.events(run.runId);
    const failed = events.filter((e) => e.state === 'failed').map((e) => `${e.stepId}: ${e.message}`);
    assert.equal(final.state, 'succeeded', failed.join('\n') || final.error);

    const { measurements } = await coordinator.results(run.runId);
    const steps = measurements.filter((m) => m.benchmark === 'scale-step').map((m) => m.result as unknown as ScaleStepResult);
    assert.deepEqual(steps.map((s) => s.count), COUNTS, 'one result per step');
    for (const s of steps) {
      assert.equal(s.loggedIn, s.count, `${s.count}: every initiator logged in`);
      assert.equal(s.failedLogins, 0);
      assert.equal(s.targetSessions, s.count, `${s.count}: the target listed every session while logged in`);
      assert.equal(s.targetSessionsAfterLogout, 0, `${s.count}: the target lists none after logout`);
      assert.ok(s.bytesPerSecond > 0 && s.iops > 0, `${s.count}: fio moved data`);
      assert.ok(s.p50Ms > 0 && s.p50Ms <= s.p95Ms && s.p95Ms <= s.p99Ms, `${s.count}: percentiles in order (${s.p50Ms}, ${s.p95Ms}, ${s.p99Ms})`);
      assert.ok(s.perInitiatorBytesPerSecond.min > 0, `${s.count}: every initiator moved data`);
      assert.ok(Math.abs(s.perInitiatorBytesPerSecond.mean * s.count - s.bytesPerSecond) / s.bytesPerSecond < 0.01, 'per-initiator throughput adds up to the aggregate');
      assert.ok(s.loginP50Ms > 0 && s.loginP50Ms <= s.loginP99Ms);
      const daemons = Math.ceil(Math.ceil(s.count / 2) / 2) + Math.ceil(Math.floor(s.count / 2) / 2);
      assert.equal(s.initiatorDaemons, daemons, `${s.count}: daemons of at most 2 sessions on each agent`);
      assert.ok(s.initiatorRssBytes > 0 && s.initiatorFds > 0);
    }
    // Spread over both agents from 2 initiators on.
    assert.deepEqual(Object.values(steps[3]!.perAgent).sort(), [4, 4]);

    const kneeRecord = measurements.find((m) => m.benchmark === 'scale-knee');
    const knee = (kneeRecord?.result as { knee: Knee } | undefined)?.knee;
    assert.ok(knee, 'the knee is recorded');
    assert.ok(knee.count === 0 || COUNTS.includes(knee.count), `knee ${knee.count} is one of the counts`);
    assert.ok(knee.reason.length > 0);
    assert.ok(['throughput', 'latency', 'logins', 'none'].includes(knee.limitedBy));

    const cp = measurements.find((m) => m.benchmark === 'control-plane');
    assert.ok(cp?.result && cp.error === '', cp?.error);
    const cpResult = cp.result as { exported: number; loggedIn: number; targetSessions: number; stages: Record<string, { n: number; p50Ms: number }> };
    assert.equal(cpResult.exported, 8);
    assert.equal(cpResult.loggedIn, 8);
    assert.equal(cpResult.targetSessions, 8);
    for (const stage of ['createVolume', 'exportWithAcl', 'login', 'deviceVisible']) assert.equal(cpResult.stages[stage]?.n, 8, `${stage} timed for every volume`);

    // Progress per step reached NATS: a late watcher replays it.
    const replayed: RunEventRecord[] = [];
    for await (const e of bus.watch(run.runId)) replayed.push(e);
    assert.equal(replayed.length, events.length);
    for (const c of COUNTS) {
      assert.ok(replayed.some((e) => e.stepId === `scale/${c}` && e.state === 'progress'), `progress of step ${c} on NATS`);
      assert.ok(replayed.some((e) => e.stepId === `scale/${c}` && e.state === 'succeeded' && e.measurement), `result of step ${c} on NATS`);
    }

    // The report draws throughput and p99 against the initiator count.
    const html = renderReport(final, measurements);
    assert.match(html, /<svg id="throughput"/);
    assert.match(html, /<svg id="p99"/);
    assert.equal((html.match(/class="point"/g) ?? []).length, 2 * COUNTS.length);
    assert.match(resultsTable(final, measurements), /knee: \d+ initiators/);

    assert.deepEqual(await leftovers(), [], 'everything logged out, unexported and deleted');
  });

  it('load sessions at the agent: idempotent by set id, a wrong CHAP counted as a failed login, all gone after stop', async () => {
    const storage = makeClient('storage', host('storage').agentAddress, credentials);
    const guest = makeClient('guest', host('guest').agentAddress, credentials);
    const T = { timeoutMs: 60_000 };
    const chap = { username: 'vcstor', password: (await readFile(path.join(TEST_LAB.dir, 'secrets', 'chap'), 'utf8')).trim() };
    try {
      await unary(storage, storage.CreateVolume, { name: 'load-edge', sizeBytes: 8 * 1024 * 1024, provisioning: 'PROVISIONING_SPARSE' }, T);
      const { target } = await unary(storage, storage.ExportIscsi, { volume: 'load-edge', allowedAddresses: [record.subnet], chap }, T);
      const ref = { portal: target!.portals[0]!, iqn: target!.iqn, lun: 0 };
      const sessions = [0, 1, 2].map((i) => ({ target: ref, initiatorIqn: `iqn.2026-11.org.vcstor.lab:edge.${i}` }));
      const first = await unary(guest, guest.StartLoadSessions, { setId: 'edge', sessions, chap }, T);
      assert.equal(first.loggedIn, 3);
      assert.equal(first.alreadyStarted, false);
      const again = await unary(guest, guest.StartLoadSessions, { setId: 'edge', sessions, chap }, T);
      assert.equal(again.alreadyStarted, true, 'the same set again changes nothing');
      assert.equal(again.loggedIn, 3);
      await assert.rejects(unary(guest, guest.StartLoadSessions, { setId: 'edge', sessions: sessions.slice(0, 2), chap }, T), (err: Error & { code?: string }) => err.code === 'ALREADY_EXISTS');
      const listed = (await unary(storage, storage.ListIscsiTargets, {}, T)).targets.find((t) => t.iqn === ref.iqn)!;
      assert.deepEqual(listed.sessions.map((s) => s.initiatorIqn).sort(), sessions.map((s) => s.initiatorIqn));

      const wrong = await unary(guest, guest.StartLoadSessions, { setId: 'edge-wrong', sessions: [{ target: ref, initiatorIqn: 'iqn.2026-11.org.vcstor.lab:edge.w' }], chap: { username: 'vcstor', password: 'wrongsecret12' } }, T);
      assert.equal(wrong.failed, 1);
      assert.match(wrong.sessions[0]!.error, /auth|login|fail/i);
      await assert.rejects(unary(guest, guest.StartLoadSessions, { setId: 'Bad Id', sessions, chap }, T), (err: Error & { code?: string }) => err.code === 'INVALID_ARGUMENT' && /set_id/.test(err.message));

      for (const setId of ['edge', 'edge-wrong']) assert.equal((await unary(guest, guest.StopLoadSessions, { setId }, T)).wasStarted, true);
      assert.equal((await unary(guest, guest.StopLoadSessions, { setId: 'edge' }, T)).wasStarted, false, 'stopping what is gone succeeds');
      const after = (await unary(storage, storage.ListIscsiTargets, {}, T)).targets.find((t) => t.iqn === ref.iqn)!;
      assert.deepEqual(after.sessions, [], 'all logged out');
    } finally {
      await unary(storage, storage.UnexportIscsi, { volume: 'load-edge', force: true }, T).catch(() => undefined);
      await unary(storage, storage.DeleteVolume, { name: 'load-edge', force: true }, T).catch(() => undefined);
      storage.close();
      guest.close();
    }
    assert.deepEqual(await leftovers(), []);
  });
});
