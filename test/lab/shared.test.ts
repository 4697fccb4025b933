import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { makeClient, unary } from '../../common/clients.js';
import { parseMountinfo } from '../../common/filesystems.js';
import { isWithin } from '../../common/validate.js';
import { Coordinator } from '../../coordinator/coordinator.js';
import { renderReport, sharedResultsTable } from '../../coordinator/report/index.js';
import type { SharedPhaseResult, SharedPostmarkResult } from '../../coordinator/shared-figures.js';
import type { LabFile, LabOptions } from '../../lab/lab.js';
import { sharedLabPlan } from '../../lab/plan.js';
import { labClientCredentials, needsRoot, runner, TEST_LAB, testLab } from '../support/lab.js';

/**
 * The shared-space comparison (paper section 5) in the lab, end to end: 2 storage servers,
 * 2 dom0 hosts and 4 guests (`vcstor lab up --storage 2 --dom0 2 --guests 4`); a GlusterFS
 * volume over both storage servers, mounted by every guest, against each guest its own
 * iSCSI LUN; 1, 2 and 4 guests write at once, then each reads back and checks a file —
 * on the shared space the file another guest wrote. Nothing is left after.
 * Run as root: node --test --test-concurrency=1 dist/test/lab/shared.test.js
 */
const LAB: LabOptions = { ...TEST_LAB, storage: 2, dom0: 2, guests: 4 };
const FILE_BYTES = 16 * 2 ** 20;

describe('shared spaces in the lab: nas-head, parallel-fs and iscsi with 1, 2 and 4 guests at once, ip-san skipped with its reason', { skip: needsRoot }, () => {
  const lab = testLab();
  let record: LabFile;
  let scratch: string;

  before(async () => {
    await lab.down(LAB.name, LAB.dir);
    record = await lab.up(LAB);
    scratch = await mkdtemp(path.join(tmpdir(), 'vcstor-shared-'));
  });
  after(async () => {
    await lab.down(LAB.name, LAB.dir);
    await rm(scratch, { recursive: true, force: true });
  });

  /** What the agents and the machine still hold of a space. */
  async function leftovers(): Promise<string[]> {
    const credentials = labClientCredentials(record);
    const storages = record.hosts.filter((h) => h.role === 'storage').map((h) => [h.name, makeClient('storage', h.agentAddress, credentials)] as const);
    const guests = record.hosts.filter((h) => h.role === 'guest').map((h) => [h.name, makeClient('guest', h.agentAddress, credentials)] as const);
    const T = { timeoutMs: 10_000 };
    try {
      const out: string[] = [];
      for (const [name, s] of storages) {
        out.push(...(await unary(s, s.ListVolumes, {}, T)).volumes.map((v) => `${name} volume ${v.name}`));
        out.push(...(await unary(s, s.ListIscsiTargets, {}, T)).targets.map((t) => `${name} target ${t.iqn}`));
        out.push(...(await unary(s, s.ListNfsExports, {}, T)).exports.map((e) => `${name} export ${e.exportPath}`));
        out.push(...(await unary(s, s.ListIscsiSessions, {}, T)).sessions.map((x) => `${name} session ${x.target?.iqn}`));
        out.push(...(await unary(s, s.ListFilesystems, {}, T)).mounts.map((m) => `${name} mount ${m.mountpoint}`));
        const pfs = await unary(s, s.ListParallelFs, {}, T);
        out.push(...pfs.parallelFs.map((p) => `${name} parallel fs ${p.name}`), ...pfs.bricks.map((b) => `${name} brick ${b.path}`));
      }
      for (const [name, g] of guests) {
        out.push(...(await unary(g, g.ListIscsiSessions, {}, T)).sessions.map((x) => `${name} session ${x.target?.iqn}`));
        out.push(...(await unary(g, g.ListFilesystems, {}, T)).mounts.map((m) => `${name} mount ${m.mountpoint}`));
        out.push(...(await unary(g, g.ListParallelFsMounts, {}, T)).mounts.map((m) => `${name} parallel fs mount ${m.mountpoint}`));
        out.push(...(await unary(g, g.ListNfsMounts, {}, T)).mounts.map((m) => `${name} nfs mount ${m.mountpoint}`));
      }
      out.push(...parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8')).filter((m) => isWithin(LAB.dir, m.mountpoint)).map((m) => `mount ${m.mountpoint}`));
      // The FUSE clients and the bricks' servers (glusterd itself is the lab's daemon).
      out.push(...(await runner.run('pgrep', ['-af', 'glusterfs(d)? .*--volfile-id|vcstor-nfs-fuse|qemu-storage-daemon'], { okExitCodes: [0, 1] })).stdout.split('\n').filter(Boolean).map((p) => `process ${p}`));
      return out;
    } finally {
      for (const [, c] of [...storages, ...guests]) c.close();
    }
  }

  it('every phase and PostMark measured at every count; every file read back intact, on a shared space by another guest; nothing left', async (t) => {
    const baseline = await leftovers();
    const coordinator = new Coordinator({ runsDir: path.join(scratch, 'runs'), log: pino({ level: 'silent' }) });
    const plan = sharedLabPlan(
      record,
      'ci-shared',
      { diskSize: '128MiB', sparse: true, concurrency: { overall: 4, perAgent: 2 }, stepTimeoutS: 300 },
      { spaces: ['nas-head', 'parallel-fs', 'iscsi', 'ip-san'], guestCounts: [1, 2, 4], repetitions: 1, fio: { size: FILE_BYTES, blockSize: '1MiB' }, postmark: { transactions: 300, files: 50, subdirectories: 5 } },
    );
    const { run } = await coordinator.submit(JSON.stringify(plan), { source: 'shared.json' });
    const done = await coordinator.wait(run.runId);
    const events = await coordinator.store.events(run.runId);
    const failed = events.filter((e) => e.state === 'failed').map((e) => `${e.stepId}: ${e.message}`);
    assert.deepEqual(failed, [], 'no step failed');
    assert.equal(done.state, 'succeeded', done.error);
    assert.equal(done.kind, 'shared');

    const { measurements } = await coordinator.results(run.runId);
    const setups = events.filter((e) => e.stepId.endsWith('/setup') && e.state !== 'started' && e.state !== 'progress').map((e) => `${e.stepId} ${e.state}: ${e.message}`);
    assert.equal(measurements.length, 3 * 3 * 3, `three spaces x three counts x write, read and PostMark; set-ups: ${setups.join(' | ')}`);
    const ipSan = events.find((e) => e.stepId === 'ip-san/setup');
    assert.equal(ipSan?.state, 'skipped', 'ip-san needs a cluster file system the namespace guests lack');
    assert.match(ipSan?.message ?? '', /cluster-filesystem driver \(ocfs2\) is not available/);
    for (const m of measurements.filter((x) => x.benchmark === 'shared-postmark')) {
      const r = m.result as unknown as SharedPostmarkResult;
      assert.equal(m.error, '', `${m.method} PostMark ${m.guest}`);
      assert.equal(r.perGuest.length, r.guests);
      assert.ok(r.aggregateTransactionsPerSecond > 0 && r.perGuest.every((p) => p.transactionsPerSecond > 0), `${m.method} PostMark ${m.guest}`);
    }
    for (const m of measurements.filter((x) => x.benchmark !== 'shared-postmark')) {
      const r = m.result as unknown as SharedPhaseResult;
      const at = `${m.method} ${m.benchmark} ${m.guest}`;
      assert.equal(m.error, '', at);
      assert.equal(r.perGuest.length, r.guests, at);
      assert.deepEqual(r.perGuest.map((p) => p.bytes), r.perGuest.map(() => FILE_BYTES), `${at}: every guest moved its whole file`);
      assert.ok(r.spanMs > 0 && r.aggregateBytesPerSecond > 0, at);
      assert.ok(r.perGuest.every((p) => p.startedUnixMs >= done.createdUnixMs && p.finishedUnixMs <= done.finishedUnixMs), `${at}: fio's clocks are the run's`);
      // Every byte reached the storage servers' block layer (summed over them: parallel-fs
      // spreads files over both; nas-head's head and SAN each see them all): no cache answered.
      const atServers = r.storage.reduce((n, s) => n + (r.phase === 'read' ? s.readBytes : s.writeBytes), 0);
      assert.ok(atServers >= 0.9 * r.totalBytes, `${at}: the servers' block layer saw ${atServers} of ${r.totalBytes} bytes (${JSON.stringify(r.storage)})`);
      if (r.phase === 'read') {
        assert.equal(r.verified, true, at);
        const others = r.perGuest.filter((p) => p.writtenBy !== p.guest).length;
        // On the shared space every guest reads another's file (alone, its own); on iscsi, its own.
        assert.equal(others, m.method !== 'iscsi' && r.guests > 1 ? r.guests : 0, `${at}: who read whose file`);
      }
    }
    const setup = events.find((e) => e.stepId === 'parallel-fs/setup' && e.state === 'progress');
    const storages = record.hosts.filter((h) => h.role === 'storage').map((h) => h.address);
    assert.deepEqual([...(setup?.message ?? '').matchAll(/([\d.]+):\/\S+\/brick/g)].map((m) => m[1]), storages, `one brick on each storage server: ${setup?.message}`);

    t.diagnostic(sharedResultsTable(done, measurements));
    const html = renderReport(done, measurements);
    assert.match(html, /data-space="parallel-fs"/);
    assert.match(html, /data-space="nas-head"/);
    const nas = events.find((e) => e.stepId === 'nas-head/setup' && e.state === 'progress');
    assert.match(nas?.message ?? '', /^storage0 re-exports storage1's LUN \S+ \(ext4 at \S+\) over NFS$/, 'the NAS head: the first storage server, the SAN the last');
    assert.match(html, /data-space="iscsi"/);
    assert.deepEqual(await leftovers(), baseline, 'nothing left of either space');
  });
});
